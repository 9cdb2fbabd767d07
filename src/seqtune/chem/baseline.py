"""Rule-based baseline: what the deterministic tools produce, for the results table next to the LM."""

from __future__ import annotations

from .tasks import get_task


def predict(task: str, inputs: list[str]) -> list[str]:
    """Predictions of openclatura (smiles2iupac), OPSIN (iupac2smiles) or RDKit (the rest); ``""`` on failure."""
    return get_task(task).baseline(list(inputs))
