"""How often the reference is among a model's first k beams: the ceiling any picker of beams can reach.

    .venv/bin/python scripts/beam_headroom.py --model runs/X/model --holdout runs/X/data/test.jsonl [--beams 10]

Prints, for k = 1, 3, 5 and --beams, the % of inputs whose reference string is among the first k
beams (string match, so for canonicalisation a non-canonical right molecule does not count). A
diagnostic for the study, not a score: choosing the beam that matches needs the reference. For
randomsmiles2canonical it also prints what two pickers that never read the input get from the same
beams: the first beam in RDKit's canonical form (`verify: well_formed`), and a vote of the beams on
the molecule (each beam's weight 1/rank, the winning molecule's first canonical beam).
"""

from __future__ import annotations

import argparse
import collections
import json

from seqtune.inference.generate import generate
from seqtune.modeling import load_finetuned
from seqtune.prompts import encode_prompt


def molecule_vote(beams: list[str]) -> int | None:
    """Index of the first canonical beam of the molecule the beams weigh most (1/rank each)."""
    from seqtune.chem.molecules import canonical_smiles

    mols = [canonical_smiles(b) for b in beams]
    weight: dict[str, float] = collections.defaultdict(float)
    for rank, mol in enumerate(mols, start=1):
        if mol is not None:
            weight[mol] += 1 / rank
    written = {b: i for i, b in reversed(list(enumerate(beams))) if mols[i] == b}
    return next((written[m] for m in sorted(weight, key=lambda m: -weight[m]) if m in written), None)


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
    if info.task == "randomsmiles2canonical":
        from seqtune.chem.verify import first_well_formed

        vote = [molecule_vote(b) for b in beams]
        for name, picks in (("first canonical beam", first_well_formed(info.task, beams)), ("molecule vote", vote)):
            chosen = [b[0 if i is None else i] for b, i in zip(beams, picks, strict=True)]
            hit = sum(c == r["output"] for c, r in zip(chosen, rows, strict=True))
            print(f"{name}: {100 * hit / len(rows):.1f} % exact")


if __name__ == "__main__":
    main()
