"""Several names -> SMILES forward models as one picker (twenty-fifth session; not adopted).

    .venv/bin/python scripts/forward_ensemble.py \
        --run runs/lever/i2s_freeze10 docs/results/learning_efficiency/runs/i2s_freeze10/val10_scores.jsonl.gz \
        --run runs/lever/i2s_nameinput docs/results/learning_efficiency/runs/i2s_nameinput/val10_scores.jsonl.gz \
        --reverse runs/tasks/iupac2smiles_reranker/model runs/lever/rr_freeze10/model

Each --run is a forward model's run folder and its stored validation beams (scripts/channel_weights.py
--scores; JSONL, gzipped or not). The beams of the runs are pooled per name; every pooled beam is
scored log P(SMILES | name) under each forward model and log P(name | SMILES) under each --reverse
model (inference.rerank.completion_logprobs, as the decode path scores them), and the script prints,
for the first run alone and for each growing set of runs, how many references are among the pooled
beams and how many the pick gets right: the first run's forward score or the sum over the set's
forward models, plus w times one or both reverse scores. A beam is right by its canonical form
(generate.canonical). Choose on validation, read the test once.
"""

from __future__ import annotations

import argparse
import gzip
import json


def _rows(path: str) -> list[dict]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", nargs=2, action="append", metavar=("RUN_DIR", "BEAMS"), required=True)
    p.add_argument("--reverse", nargs="+", required=True)
    p.add_argument("--beams", type=int, default=10, help="beams of each run to pool")
    args = p.parse_args()
    from seqtune.chem.tasks import canonical_forms
    from seqtune.inference.rerank import completion_logprobs
    from seqtune.modeling import load_finetuned

    beams = [[[b[0] for b in r["beams"][:args.beams]] for r in _rows(path)] for _, path in args.run]
    first = _rows(args.run[0][1])
    names, refs = [r["input"] for r in first], [r["reference"] for r in first]
    pooled = [list(dict.fromkeys(y for run in beams for y in run[i])) for i in range(len(names))]
    flat = [(i, y) for i, ys in enumerate(pooled) for y in ys]
    scores = {}
    for key, folder, forward in [*((f"F{k}", d + "/model", True) for k, (d, _) in enumerate(args.run)),
                                 *((f"R{k}", d, False) for k, d in enumerate(args.reverse))]:
        model, tok, info = load_finetuned(folder)
        pairs = [(names[i], y, info.instruction) if forward else (y, names[i], info.instruction) for i, y in flat]
        scores[key] = dict(zip(flat, completion_logprobs(model, tok, info.format, pairs), strict=True))
    canon = canonical_forms(y for _, y in flat)
    rev_sets = [[f"R{k}"] for k in range(len(args.reverse))] + ([[f"R{k}" for k in range(len(args.reverse))]]
                                                                if len(args.reverse) > 1 else [])
    for n in range(1, len(args.run) + 1):
        pool = [[y for y in dict.fromkeys(y for run in beams[:n] for y in run[i]) if canon.get(y)]
                for i in range(len(names))]
        among = sum(any(canon[y] == ref for y in ys) for ys, ref in zip(pool, refs))
        print(f"runs 1..{n}: reference among the pooled beams {among} of {len(names)}")
        for fwd in ([["F0"], [f"F{k}" for k in range(n)]] if n > 1 else [["F0"]]):
            for rev in rev_sets:
                right = []
                for w in (0.5, 1.0, 2.0):
                    def total(i: int, y: str, fwd=fwd, rev=rev, w=w) -> float:
                        return sum(scores[k][(i, y)] for k in fwd) + w * sum(scores[k][(i, y)] for k in rev)
                    right.append(sum(bool(ys) and canon[max(ys, key=lambda y, i=i: total(i, y))] == refs[i]
                                     for i, ys in enumerate(pool)))
                print(f"  forward {'+'.join(fwd)}, reverse {'+'.join(rev)}: right at w = 0.5 / 1 / 2: {right}")


if __name__ == "__main__":
    main()
