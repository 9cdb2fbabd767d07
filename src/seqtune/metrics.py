"""Sequence scores: exact match and normalised edit distance (Levenshtein / length of the longer string)."""

from __future__ import annotations

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
    """Sequence scores, plus chemistry scores for chemistry tasks when RDKit/OPSIN are installed."""
    summary, rows = sequence_scores(predictions, references)
    chem = _chem_module()
    if chem is not None and task in chem.CHEM_TASKS:
        chem_summary, chem_rows = chem.score(task, inputs, predictions, references)
        summary.update(chem_summary)
        for r, c in zip(rows, chem_rows):
            r.update(c)
    return summary, rows


def _chem_module() -> Any:
    try:
        from seqtune.chem import metrics as chem_metrics
    except ImportError:
        return None
    return chem_metrics
