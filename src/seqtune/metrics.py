"""Sequence scores: exact match and normalised edit distance (Levenshtein / length of the longer string)."""

from __future__ import annotations

import warnings
from typing import Any

from rapidfuzz.distance import Levenshtein


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
