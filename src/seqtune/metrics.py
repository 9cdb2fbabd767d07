"""Sequence scores: exact match and normalised edit distance (Levenshtein / length of the longer
string); and which way each score is better, for train.select: best."""

from __future__ import annotations

import warnings
from typing import Any

from rapidfuzz.distance import Levenshtein

# Scores where less is better; every other score (exact match, percentages, Tanimoto) is
# better higher. Compared without a split prefix (val_, top_beam_).
LOWER_IS_BETTER = frozenset({"eval_loss", "train_loss", "edit_distance", "mean_element_count_error"})


def lower_is_better(metric: str) -> bool:
    return metric.removeprefix("val_").removeprefix("top_beam_") in LOWER_IS_BETTER


def selection_metric(select_metric: str, eval_generate: bool) -> str:
    """train.select_metric resolved: auto is the decoded exact match where each epoch is decoded,
    else the validation loss (the one score every run has)."""
    if select_metric != "auto":
        return select_metric.removeprefix("val_")
    return "exact_match" if eval_generate else "eval_loss"


def normalized_edit_distance(a: str, b: str) -> float:
    return float(Levenshtein.normalized_distance(a, b))


def sequence_scores(predictions: list[str], references: list[str]) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Summary (exact_match in %, mean edit_distance in [0, 1]) and per-example scores."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    rows = [{"exact": p.strip() == r.strip(), "edit_distance": normalized_edit_distance(p.strip(), r.strip())}
            for p, r in zip(predictions, references)]
    n = max(len(rows), 1)
    summary = {
        "n": len(rows),
        "exact_match": 100.0 * sum(r["exact"] for r in rows) / n,
        "edit_distance": sum(r["edit_distance"] for r in rows) / n,
    }
    return summary, rows


def score(task: str, inputs: list[str], predictions: list[str], references: list[str]
          ) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Sequence scores, plus chemistry scores (OPSIN round trip, validity, Tanimoto) for chemistry tasks."""
    from seqtune.chem import CHEM_TASKS

    summary, rows = sequence_scores(predictions, references)
    if task in CHEM_TASKS:
        try:
            from seqtune.chem.metrics import score as chem_score
        except ModuleNotFoundError as err:  # the chem extra (RDKit, JPype) is optional
            warnings.warn(f"no chemistry scores for {task}: {err}", stacklevel=2)
            return summary, rows
        chem_summary, chem_rows = chem_score(task, inputs, predictions, references)
        summary.update({k: v for k, v in chem_summary.items() if k != "n"})
        for r, c in zip(rows, chem_rows):
            r.update(c)
    return summary, rows
