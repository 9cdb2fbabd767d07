"""The round trip over the beams of several models, from their decoded predictions (twenty-ninth session).

    .venv/bin/python scripts/checkpoint_pool.py FINAL.jsonl STEP-591.jsonl [MORE.jsonl ...]

Each file is the per-molecule JSONL of `seqtune evaluate ... --verify round_trip` for one model (a run's
final weights, or one of its checkpoints via --checkpoint) on the same holdout, in the same order. The
pooled pick is the round trip over the models' beams taken model by model: the first model whose beams
hold one that reads back to the input (its `verified` pick), else the first model's own fallback. That
is what `generate.verify: round_trip` keeps from the beams of the models laid end to end, without
decoding them again. Prints exact % for the first model, for the pool, and the molecules right only in
each. Choose on validation, read the test once.
"""

from __future__ import annotations

import argparse

from seqtune.io import read_jsonl


def pooled_pick(rows: list[dict]) -> dict:
    """One molecule's rows, a row per model, first model first: the first verified row, else the first."""
    return next((row for row in rows if row.get("verified")), rows[0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("predictions", nargs="+", help="per-molecule JSONL of each model, first model first")
    args = p.parse_args()
    runs = [read_jsonl(path) for path in args.predictions]
    n = len(runs[0])
    for path, rows in zip(args.predictions, runs):
        if [r["input"] for r in rows] != [r["input"] for r in runs[0]]:
            raise SystemExit(f"{path}: not the same molecules in the same order as {args.predictions[0]}")
    picks = [pooled_pick(list(rows)) for rows in zip(*runs)]
    first, pool = [r["exact"] for r in runs[0]], [pick["exact"] for pick in picks]
    wrong = sum(bool(pick.get("verified")) and not pick["exact"] for pick in picks)
    print(f"first model: {100 * sum(first) / n:.1f} % exact of {n}")
    print(f"pooled over {len(runs)} models: {100 * sum(pool) / n:.1f} % exact "
          f"({sum(p and not f for p, f in zip(pool, first))} right only pooled, "
          f"{sum(f and not p for p, f in zip(pool, first))} only in the first; {wrong} verified picks wrong)")


if __name__ == "__main__":
    main()
