"""How much the reverse model should weigh in noisy-channel reranking (generate.rerank_model).

    .venv/bin/python scripts/channel_weights.py --model runs/tasks/iupac2smiles/model \
        --reverse runs/smiles2iupac_cpu/model --holdout runs/tasks/iupac2smiles/heldout/val.jsonl [--beams 10]

Decodes --beams beams per input (the decode path's own beams), scores every distinct beam y of
input x by log P(y | x) under --model and log P(x | y) under --reverse (inference.rerank, the
scores the reranker adds), and prints exact match % for the top beam, for log P(y | x) + w log P(x | y)
at several weights w (w = 1 is what generate.rerank_model does), and for the reverse score alone,
each over all beams and, for a chemistry task, over the well-formed ones only (what
`verify: well_formed` after the reranker keeps). Choose w on validation, read the test once.
"""

from __future__ import annotations

import argparse

from seqtune.chem import CHEM_TASKS
from seqtune.inference.decode import DecodeSettings, spelled_beams
from seqtune.inference.predict import read_inputs
from seqtune.inference.rerank import channel_scores, load_reverse
from seqtune.modeling import load_finetuned

WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--reverse", required=True, help="model folder of the reverse task")
    ap.add_argument("--holdout", required=True, help="JSONL with input and output")
    ap.add_argument("--beams", type=int, default=10)
    args = ap.parse_args()
    model, tok, info = load_finetuned(args.model)
    inputs, refs = read_inputs(args.holdout, "input", "output")
    s = DecodeSettings(num_beams=args.beams, candidates=args.beams, verify="well_formed", batch_size=32)
    instructions = [info.instruction] * len(inputs)
    decoded = [b[0] for b in spelled_beams(model, tok, info.format, info.task, inputs, instructions, s)]
    scores = channel_scores(model, tok, info.format, inputs, instructions, decoded,
                            load_reverse(args.reverse, str(model.device)))
    beams = [list(per) for per in scores]
    formed = None
    if info.task in CHEM_TASKS:
        from seqtune.chem.tasks import get_task

        formed = [dict(zip(b, get_task(info.task).well_formed(b), strict=True)) for b in beams]
    n = len(inputs)
    print(f"{args.holdout}: {n} inputs, {args.beams} beams; reference among them for "
          f"{100 * sum(r in b for r, b in zip(refs, beams)) / n:.1f} %")
    print(f"top beam: {100 * sum(b[0] == r for b, r in zip(beams, refs) if b) / n:.1f} %")
    rules = [(f"w = {w:g}", lambda f, r, w=w: f + w * r) for w in WEIGHTS] + [("reverse alone", lambda f, r: r)]
    for name, key in rules:
        cells = []
        for only_formed in (False, True) if formed else (False,):
            right = 0
            for i, (cands, ref) in enumerate(zip(beams, refs)):
                pool = [y for y in cands if formed[i][y]] if only_formed else cands
                pool = pool or cands
                right += bool(pool) and max(pool, key=lambda y: key(*scores[i][y])) == ref
            cells.append(f"{100 * right / n:.1f} %")
        print(f"{name}: " + (f"all beams {cells[0]}, well-formed beams {cells[1]}" if formed else cells[0]))


if __name__ == "__main__":
    main()
