"""How to pick among beams with noisy-channel scores (generate.rerank_model), and what else was tried.

    .venv/bin/python scripts/channel_weights.py --model runs/tasks/iupac2smiles/model \
        --reverse runs/tasks/iupac2smiles_reranker/model --holdout runs/tasks/iupac2smiles/data/val.jsonl \
        [--beams 10] [--scores runs/X/val_scores.jsonl] [--unseen-by DIR] [--canonical]

Decodes --beams beams per input (the decode path's own beams), scores every distinct beam y of
input x by log P(y | x) under --model and log P(x | y) under --reverse (inference.rerank, the
scores the reranker adds), and prints exact match % for the top beam, for log P(y | x) + w log P(x | y)
at several weights w (w = 1 is what generate.rerank_model does), for the reverse score alone, and
for two variants of the product: the forward score normalised by length (log P(y | x) per
character times the beams' mean length), and, for a chemistry task, pooled by molecule (the
forward probabilities of a molecule's spellings summed, its best reverse score). Each is over all
beams and, for a chemistry task, over the well-formed ones only (what `verify: well_formed` after
the reranker keeps). A second --reverse model adds its score too, and the rules that sum both
reverse scores (nineteenth session: no gain over the better reranker alone). --unseen-by DIR scores
only the inputs that DIR's chain of models never trained on (seqtune.lineage). --scores keeps the
scored beams (JSONL) and reads them back on the next call instead of decoding again. --canonical,
for a model taught non-canonical SMILES (data.output_order: name): the reverse model reads each
beam canonical (as written if it was taught SMILES in the name's order, data.input_order: name), and
a beam counts as right, and as well-formed, by its canonical form (what generate.canonical does). For a task
with a round trip (generate.verify: round_trip) it also prints that pick after the reranker's order.
Choose on validation, read the test once.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path

WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
Scores = dict[str, tuple[float, ...]]


def scored_beams(args: argparse.Namespace) -> tuple[str, list[str], list[str], list[Scores]]:
    """(task, inputs, references, each input's distinct beams in order with their (forward, reverse,
    [second reverse]) scores)."""
    from seqtune.inference.decode import DecodeSettings, spelled_beams
    from seqtune.inference.predict import read_inputs
    from seqtune.inference.rerank import channel_scores, load_reverse
    from seqtune.modeling import load_finetuned

    model, tok, info = load_finetuned(args.model)
    inputs, refs = read_inputs(args.holdout, "input", "output")
    s = DecodeSettings(num_beams=args.beams, candidates=args.beams, verify="well_formed", batch_size=32)
    instructions = [info.instruction] * len(inputs)
    decoded = [b[0] for b in spelled_beams(model, tok, info.format, info.task, inputs, instructions, s)]
    canonical = None
    if args.canonical:
        from seqtune.chem.tasks import canonical_forms

        canonical = canonical_forms(y for beams in decoded for y in beams)
    per_reverse = [channel_scores(model, tok, info.format, inputs, instructions, decoded,
                                  load_reverse(folder, str(model.device)), reverse_text=canonical)
                   for folder in args.reverse]
    scores = [{y: (*first[y], *(more[y][1] for more in others)) for y in first}
              for first, *others in zip(*per_reverse, strict=True)]
    return info.task, inputs, refs, scores


def pooled(task: str) -> Callable[[list[str], Scores], dict[str, float]]:
    """Each beam's score as its molecule's: the forward probabilities of the molecule's spellings
    among the beams summed, plus the best reverse score of any of them."""
    from seqtune.chem.tasks import get_task

    def score(beams: list[str], per: Scores) -> dict[str, float]:
        answers = get_task(task).answers(beams)
        forward: dict[str | None, list[float]] = {}
        reverse: dict[str | None, float] = {}
        for y, a in zip(beams, answers, strict=True):
            key = a if a is not None else y
            forward.setdefault(key, []).append(per[y][0])
            reverse[key] = max(reverse.get(key, -math.inf), per[y][1])
        total = {k: math.log(sum(math.exp(f - max(v)) for f in v)) + max(v) + reverse[k] for k, v in forward.items()}
        return {y: total[a if a is not None else y] for y, a in zip(beams, answers, strict=True)}

    return score


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--reverse", required=True, nargs="+", help="model folder(s) of the reverse task: one or two")
    ap.add_argument("--holdout", required=True, help="JSONL with input and output")
    ap.add_argument("--beams", type=int, default=10)
    ap.add_argument("--scores", type=Path, help="JSONL of the scored beams: written once, read back after")
    ap.add_argument("--unseen-by", help="model folder: score only inputs its chain never trained on")
    ap.add_argument("--canonical", action="store_true", help="beams are right and well-formed by their canonical form")
    args = ap.parse_args()
    if args.scores and args.scores.exists():
        saved = [json.loads(line) for line in args.scores.read_text(encoding="utf-8").splitlines()]
        task, inputs, refs = saved[0]["task"], [r.get("input") for r in saved], [r["reference"] for r in saved]
        scores = [{y: tuple(rest) for y, *rest in r["beams"]} for r in saved]
    else:
        task, inputs, refs, scores = scored_beams(args)
        if args.scores:
            args.scores.write_text("".join(json.dumps({"task": task, "input": x, "reference": r,
                                                       "beams": [[y, *s[y]] for y in s]}) + "\n"
                                           for x, r, s in zip(inputs, refs, scores, strict=True)), encoding="utf-8")
    if args.unseen_by:
        from seqtune.lineage import chain_training_texts

        seen = chain_training_texts(args.unseen_by)[1]
        keep = [i for i, (x, r) in enumerate(zip(inputs, refs, strict=True)) if x not in seen and r not in seen]
        inputs, refs, scores = [inputs[i] for i in keep], [refs[i] for i in keep], [scores[i] for i in keep]
    from seqtune.chem import CHEM_TASKS

    beams = [list(per) for per in scores]
    answer: Callable[[str], str] = lambda y: y  # noqa: E731
    if args.canonical:  # a beam is what its canonical form is
        from seqtune.chem.tasks import canonical_forms

        answer = canonical_forms(y for b in beams for y in b).__getitem__
    formed = None
    if task in CHEM_TASKS:
        from seqtune.chem.tasks import get_task

        formed = [dict(zip(b, get_task(task).well_formed([answer(y) for y in b]), strict=True)) for b in beams]
    n = len(refs)
    print(f"{n} inputs, {max(map(len, beams))} distinct beams at most; reference among them for "
          f"{100 * sum(r in map(answer, b) for r, b in zip(refs, beams)) / n:.1f} %")
    print(f"top beam: {100 * sum(answer(b[0]) == r for b, r in zip(beams, refs) if b) / n:.1f} %")

    def per_beam(key: Callable[..., float]) -> Callable[[list[str], Scores], dict[str, float]]:
        return lambda cands, per: {y: key(*per[y]) for y in cands}

    def length_normalised(cands: list[str], per: Scores) -> dict[str, float]:
        mean = sum(map(len, cands)) / len(cands)
        return {y: per[y][0] / (len(y) + 1) * (mean + 1) + per[y][1] for y in cands}

    rules = [(f"w = {w:g}", per_beam(lambda f, r, *_, w=w: f + w * r)) for w in WEIGHTS]
    rules += [("reverse alone", per_beam(lambda f, r, *_: r)), ("forward per character, w = 1", length_normalised)]
    if max((len(t) for per in scores for t in per.values()), default=0) == 3:  # a second reverse model's scores
        rules += [(f"both reverses, w = {w:g} each", per_beam(lambda f, r, r2, w=w: f + w * (r + r2))) for w in (0.5, 1)]
        rules.append(("second reverse alone, w = 1", per_beam(lambda f, r, r2: f + r2)))
    if formed:
        rules.append(("pooled by molecule, w = 1", pooled(task)))
    for name, rule in rules:
        cells = []
        for only_formed in (False, True) if formed else (False,):
            right = 0
            for i, (cands, ref) in enumerate(zip(beams, refs)):
                if not cands:
                    continue
                value = rule(cands, scores[i])
                pool = [y for y in cands if formed[i][y]] if only_formed else cands
                right += answer(max(pool or cands, key=value.__getitem__)) == ref
            cells.append(f"{100 * right / n:.1f} %")
        print(f"{name}: " + (f"all beams {cells[0]}, well-formed beams {cells[1]}" if formed else cells[0]))
    if formed and get_task(task).round_trip is not None and all(inputs):
        round_trip(task, inputs, refs, beams, scores, answer)


def round_trip(task: str, inputs: list[str], refs: list[str], beams: list[list[str]], scores: list[Scores],
               answer: Callable[[str], str]) -> None:
    """generate.verify: round_trip after the reranker (w = 1): the first beam in reranked order that the
    rules tool reads back to the input, else the reranked first."""
    from seqtune.chem.verify import first_round_trip

    ordered = [[answer(y) for y in sorted(b, key=lambda y, i=i: -(scores[i][y][0] + scores[i][y][1]))]
               for i, b in enumerate(beams)]
    picks = first_round_trip(task, inputs, ordered)
    right = sum((o[p] if p is not None else (o[0] if o else "")) == r for o, p, r in zip(ordered, picks, refs))
    print(f"round trip, else w = 1: {100 * right / len(refs):.1f} % ({sum(p is not None for p in picks)} passed)")


if __name__ == "__main__":
    main()
