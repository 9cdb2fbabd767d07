"""Rule-based baselines for the results table next to the LM.

``predict``: the deterministic tool of each task (openclatura, OPSIN or RDKit). It is the tool
that made (or verified) the labels of seqtune's chemistry datasets, so on them it scores ~100 %
by construction: a check of the data, not a competitor. ``lookup``: a second, independent
source where one exists offline (PubChem's names for smiles2iupac), for the molecules it covers.
"""

from __future__ import annotations

from .tasks import get_task

# How tables and metrics.json name the first baseline, so no reader takes it for a rival model.
LABEL_SOURCE = "rules (label source): the tool that made or verified the labels, ~100 % by construction"


def predict(task: str, inputs: list[str]) -> list[str]:
    """Predictions of openclatura (smiles2iupac), OPSIN (iupac2smiles) or RDKit (the rest); ``""`` on failure."""
    return get_task(task).baseline(list(inputs))


def lookup(task: str, inputs: list[str]) -> tuple[str, list[str | None]] | None:
    """(what the source is, its answer per input, None where it has none), or None for a task
    without an independent source."""
    found = get_task(task).lookup
    if found is None:
        return None
    source, answers = found
    return source, answers(list(inputs))
