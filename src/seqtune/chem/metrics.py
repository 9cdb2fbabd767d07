"""Chemistry-aware scores for predictions of the chemistry tasks (the rows are in :mod:`.scores`)."""

from __future__ import annotations

from . import CHEM_TASKS
from .tasks import get_task

__all__ = ["CHEM_TASKS", "score"]


def score(
    task: str, inputs: list[str], predictions: list[str], references: list[str]
) -> tuple[dict[str, float], list[dict]]:
    """Summary (percentages 0–100, means) and one dict per example for a chemistry task.

    ``inputs``/``references`` are the dataset's input and output strings;
    ``predictions`` the model's outputs. Name scores parse all predictions
    with OPSIN in one in-process batch.
    """
    chem_task = get_task(task)
    if not (len(inputs) == len(predictions) == len(references)):
        raise ValueError("inputs, predictions and references must have the same length")
    predictions = [p if isinstance(p, str) else "" for p in predictions]
    summary, rows = chem_task.score_rows(chem_task.targets(inputs, references), predictions, references)
    summary["n"] = float(len(rows))
    return summary, rows
