"""What `generate.retry_beams` gives, from two `seqtune evaluate` outputs run apart: the first search's rows,
and a wider search of the inputs none of whose beams verified. A miss takes the wider search's row where one
of its beams verified (the first search's top beam kept, as decode_rows keeps it); the rest stand.

    .venv/bin/python scripts/retry_merge.py FIRST.jsonl [FIRST2.jsonl ...] --retry WIDE.jsonl [...] \
        [--replace AGAIN.jsonl ...] --out ROWS.jsonl

Retry files apply in their order (a later one only to the misses left). --replace: rows of some inputs
decoded again whole (another check or guide): they stand for those inputs, whatever came before.

Prints the merged scores, summed as scripts/prediction_intervals.py sums committed rows, with their 95 %
intervals (seqtune.stats). Used for the thirty-fifth session's smiles2inchi figure on the first 200 and the
thirty-sixth's and thirty-seventh's on all 300 (runs/lever/degree/, retry/, retry320/, charged/).
"""

from __future__ import annotations

import argparse
import json

from prediction_intervals import summary as summed  # this folder's script: runs from scripts/ like it

from seqtune.io import atomic_write_jsonl, read_jsonl
from seqtune.stats import intervals


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("first", nargs="+")
    p.add_argument("--retry", nargs="+", required=True)
    p.add_argument("--replace", nargs="*", default=[])
    p.add_argument("--out", required=True)
    a = p.parse_args()
    rows = [row for path in a.first for row in read_jsonl(path)]
    rescued = 0
    for path in a.retry:
        wide = {row["input"]: row for row in read_jsonl(path) if row["verified"]}
        for i, row in enumerate(rows):
            if not row["verified"] and row["input"] in wide:
                rows[i] = {**wide[row["input"]], "top_beam": row["top_beam"]}
                rescued += 1
    again = {row["input"]: row for path in a.replace for row in read_jsonl(path)}
    rows = [again.get(row["input"], row) for row in rows]
    atomic_write_jsonl(a.out, rows)
    n = len(rows)
    summary = {"n": n, **summed(rows), "top_beam_exact_match": 100.0 * sum(r["top_beam"] == r["reference"] for r in rows) / n}
    summary["ci95"] = intervals(summary, rows)
    print(json.dumps({"rescued": rescued, "replaced": sum(r["input"] in again for r in rows), **summary}, indent=1))


if __name__ == "__main__":
    main()
