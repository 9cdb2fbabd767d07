"""How often the reference is among a model's first k beams: the ceiling any picker of beams can reach.

    .venv/bin/python scripts/beam_headroom.py --model runs/X/model --holdout runs/X/data/test.jsonl [--beams 10]

Prints, for k = 1, 3, 5 and --beams, the % of inputs whose reference string is among the first k
beams (string match, so for canonicalisation a non-canonical right molecule does not count). A
diagnostic for the study, not a score: choosing the beam that matches needs the reference. For a
chemistry task it also prints what the two pickers that never read the input get from the same
beams: the first well-formed beam (`verify: well_formed`) and the beams' vote on the answer
(`verify: vote`: each beam weighs 1/rank; the winner's first well-formed beam).
"""

from __future__ import annotations

import argparse
import json

from seqtune.chem import CHEM_TASKS
from seqtune.inference.generate import generate
from seqtune.modeling import load_finetuned
from seqtune.prompts import encode_prompt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--holdout", required=True, help="JSONL with input and output")
    ap.add_argument("--beams", type=int, default=10)
    args = ap.parse_args()
    model, tok, info = load_finetuned(args.model)
    with open(args.holdout, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    prompts = [encode_prompt(tok, info.format, r["input"], info.instruction) for r in rows]
    beams = generate(model, tok, prompts, num_beams=args.beams, num_return=args.beams, batch_size=64,
                     text_of=info.format.output_text)
    for k in sorted({1, 3, 5, args.beams}):
        hit = sum(r["output"] in b[:k] for r, b in zip(rows, beams, strict=True))
        print(f"reference among the first {k} beams: {100 * hit / len(rows):.1f} %")
    if info.task in CHEM_TASKS:
        from seqtune.chem.verify import pick

        for verify in ("well_formed", "vote"):
            picks = pick(info.task, verify, [r["input"] for r in rows], beams)
            chosen = [b[0 if i is None else i] for b, i in zip(beams, picks, strict=True)]
            hit = sum(c == r["output"] for c, r in zip(chosen, rows, strict=True))
            print(f"verify: {verify}: {100 * hit / len(rows):.1f} % exact")


if __name__ == "__main__":
    main()
