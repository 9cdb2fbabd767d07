"""95 % bootstrap confidence intervals of a scored set's summary, from its per-example scores.

Examples are resampled with replacement (1,000 resamples, a fixed seed, so a rerun gives the
same interval) and each score is recomputed on every resample (the scores every example has on
the same resamples); the interval is the 2.5th and 97.5th percentile of those
(scipy.stats.bootstrap, percentile method). An interval is attached as
`ci95: {score: [low, high]}` beside the scores it belongs to.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

RESAMPLES = 1000
LEVEL = 0.95
SEED = 0
# How the intervals were made, recorded once in metrics.json so a reader can redo them.
METHOD = {"method": "bootstrap over examples, percentile interval (scipy.stats.bootstrap)", "level": LEVEL,
          "resamples": RESAMPLES, "seed": SEED}
CI_KEY = "ci95"
# Resampled values held at once (metrics x resamples x examples): bounds memory on large sets.
_CELLS = 4_000_000


def per_example(key: str, rows: Sequence[dict[str, Any]]) -> list[float | None] | None:
    """The per-example values whose mean is summary score `key`, on the summary's scale (booleans
    as 0/100 for a percentage), None for an example without one (a molecule no score covers);
    None when the rows do not hold them."""
    if key == "exact_match":
        column, scale = "exact", 100.0
    elif key.endswith("_pct"):
        column, scale = key.removesuffix("_pct"), 100.0
    elif key.startswith("mean_"):
        column, scale = key.removeprefix("mean_"), 1.0
    else:
        column, scale = key, 1.0
    if not rows or any(column not in r for r in rows):
        return None
    values: list[float | None] = []
    for r in rows:
        v = r[column]
        if v is None:
            values.append(None)
        elif isinstance(v, (bool, int, float)):
            values.append(scale * float(v))
        else:
            return None
    return values


def _percentile_bootstrap(data: Any, resamples: int, level: float, seed: int) -> tuple[Any, Any]:
    """Low and high ends for each row of `data` (scores x examples), examples resampled together."""
    import numpy as np
    from scipy.stats import bootstrap

    if data.shape[1] < 2:  # every resample of one example is that example
        return data[:, 0], data[:, 0]
    with warnings.catch_warnings():
        # A constant row warns that its interval is degenerate: it is a point, which is right.
        warnings.simplefilter("ignore")
        found = bootstrap((data,), np.mean, n_resamples=resamples, batch=max(1, _CELLS // data.size),
                          method="percentile", confidence_level=level, rng=np.random.default_rng(seed),
                          axis=-1, vectorized=True).confidence_interval
    return np.atleast_1d(found.low), np.atleast_1d(found.high)


def bootstrap_intervals(columns: dict[str, Sequence[float | None]], resamples: int = RESAMPLES,
                        level: float = LEVEL, seed: int = SEED) -> dict[str, list[float]]:
    """Percentile bootstrap interval of the mean of each column. Columns without gaps are
    resampled together by example; a column with missing values (None) is resampled over the
    examples that have one, as its mean is taken over those."""
    import numpy as np

    full = [k for k, v in columns.items() if v and all(x is not None for x in v)]
    groups = [full] if full else []
    groups += [[k] for k, v in columns.items() if k not in full and any(x is not None for x in v)]
    out = {}
    for names in groups:
        data = np.array([[x for x in columns[k] if x is not None] for k in names], dtype=float)
        lows, highs = _percentile_bootstrap(data, resamples, level, seed)
        for k, lo, hi in zip(names, lows, highs):
            if math.isfinite(lo) and math.isfinite(hi):
                out[k] = [float(lo), float(hi)]
    return out


def intervals(summary: dict[str, Any], rows: Sequence[dict[str, Any]]) -> dict[str, list[float]]:
    """`{score: [low, high]}` for every score of `summary` that is the mean of a per-example
    value of `rows` (checked: a score computed otherwise gets no interval rather than a wrong one)."""
    columns: dict[str, list[float | None]] = {}
    for key, value in summary.items():
        if key == "n" or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        values = per_example(key, rows)
        present = [v for v in values or [] if v is not None]
        if present and math.isclose(sum(present) / len(present), value, rel_tol=1e-6, abs_tol=1e-9):
            columns[key] = values  # type: ignore[assignment]
    return bootstrap_intervals(columns)


def with_intervals(summary: dict[str, Any], rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """`summary` plus its `ci95` (none added when no score has per-example values)."""
    found = intervals(summary, rows)
    return {**summary, CI_KEY: found} if found else dict(summary)
