"""How often the reference is among a model's first k beams: the ceiling any picker of beams can reach.

    .venv/bin/python scripts/beam_headroom.py --model runs/X/model --holdout runs/X/data/test.jsonl [--beams 10]
        [--samples 20 --temperature 1.0]

Prints, for k = 1, 3, 5 and --beams, the % of inputs whose reference string is among the first k
beams (string match, so for canonicalisation a non-canonical right molecule does not count). A
diagnostic for the study, not a score: choosing the beam that matches needs the reference. For a
chemistry task it also prints what the two pickers that never read the input get from the same
beams: the first well-formed beam (`verify: well_formed`) and the beams' vote on the answer
(`verify: vote`: each beam weighs 1/rank; the winner's first well-formed beam). With --samples it
also samples that many outputs per input (seed 0) and prints how often the reference is among
them, their vote (each sample weighs 1), and the vote of beams and samples together (each sample
weighs 1/--samples, so all samples weigh as much as the top beam): self-consistency decoding.
With --spellings S it also decodes up to S spellings of each input molecule (chem.tasks.input_spellings,
what `generate.spellings` decodes) and prints, for the first s spellings and the first k beams of
each, how often the reference is among them and what their vote keeps: test-time augmentation.
"""

from __future__ import annotations

import argparse
import json

import torch

from seqtune.chem import CHEM_TASKS
from seqtune.inference.generate import generate
from seqtune.modeling import load_finetuned
from seqtune.prompts import encode_prompt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--holdout", required=True, help="JSONL with input and output")
    ap.add_argument("--beams", type=int, default=10)
    ap.add_argument("--samples", type=int, default=0)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--spellings", type=int, default=0)
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
    if info.task not in CHEM_TASKS:
        return
    from seqtune.chem.verify import molecule_vote, pick

    def exact(picks: list[int | None], cands: list[list[str]]) -> float:
        chosen = [c[0 if i is None else i] for c, i in zip(cands, picks, strict=True)]
        return 100 * sum(c == r["output"] for c, r in zip(chosen, rows, strict=True)) / len(rows)

    for verify in ("well_formed", "vote"):
        print(f"verify: {verify}: {exact(pick(info.task, verify, [r['input'] for r in rows], beams), beams):.1f} % exact")
    if args.spellings > 1:
        spelled_votes(args, model, tok, info, rows, exact)
    if args.samples:
        torch.manual_seed(0)
        samples = generate(model, tok, prompts, num_return=args.samples, batch_size=16, text_of=info.format.output_text,
                           temperature=args.temperature)
        hit = sum(r["output"] in s for r, s in zip(rows, samples, strict=True))
        print(f"reference among {args.samples} samples: {100 * hit / len(rows):.1f} %")
        print(f"vote of the samples: {exact(molecule_vote(info.task, samples, lambda rank: 1.0), samples):.1f} % exact")
        both = [b + s for b, s in zip(beams, samples, strict=True)]
        n = len(beams[0])

        def weight(rank: int) -> float:
            return 1 / (rank + 1) if rank < n else 1 / args.samples

        print(f"vote of beams and samples: {exact(molecule_vote(info.task, both, weight), both):.1f} % exact")


def spelled_votes(args: argparse.Namespace, model, tok, info, rows: list[dict], exact) -> None:
    from seqtune.chem.verify import molecule_vote
    from seqtune.inference.decode import DecodeSettings, interleave, spelled_beams

    settings = DecodeSettings(num_beams=args.beams, verify="vote", batch_size=64, spellings=args.spellings)
    per = spelled_beams(model, tok, info.format, info.task, [r["input"] for r in rows], [info.instruction] * len(rows),
                        settings)
    print(f"spellings per input: {sum(map(len, per)) / len(rows):.2f} on average (up to {args.spellings})")
    for s in range(1, args.spellings + 1):
        for k in sorted(k for k in {1, 3, 5, args.beams} if k <= args.beams):
            merged = [interleave(variants[:s], k) for variants in per]
            cands = [texts for texts, _ in merged]
            hit = 100 * sum(r["output"] in c for r, c in zip(rows, cands, strict=True)) / len(rows)
            voted = exact(molecule_vote(info.task, cands, ranks=[ranks for _, ranks in merged]), cands)
            print(f"{s} spellings x {k} beams: reference among them {hit:.1f} %, vote {voted:.1f} % exact")


if __name__ == "__main__":
    main()
