"""Verified decoding: pick, among K generated candidates, the first one consistent with the input
molecule (verify: opsin), the first one a rules tool reads back to the input itself (verify:
round_trip), the first well-formed one (verify: well_formed), or a well-formed spelling of the
answer the candidates agree on most (verify: vote). round_trip maps candidates back and never
the input forward; the last two never read the input; so none of the three can pass the answer
on from the input molecule."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from .tasks import get_task


def _texts(cands: list[str]) -> list[str]:
    return [c if isinstance(c, str) else "" for c in cands]


def _first(flags: list[bool]) -> int | None:
    return next((i for i, ok in enumerate(flags) if ok), None)


def first_consistent(task: str, inputs: list[str], candidates: list[list[str]]) -> list[int | None]:
    """For each input, the index of the first candidate consistent with the input molecule, else ``None``.

    smiles2iupac: OPSIN(candidate) is the input molecule; iupac2smiles: the
    candidate SMILES is OPSIN(input); randomsmiles2canonical: same molecule as
    the input; smiles2formula: same element counts and charge; smiles2inchi:
    the candidate InChI has the input's InChIKey. An input that cannot be read
    (invalid SMILES, name OPSIN cannot parse) gets ``None``.
    """
    chem_task = get_task(task)
    if len(inputs) != len(candidates):
        raise ValueError("inputs and candidates must have the same length")
    out: list[int | None] = []
    for target, cands in zip(chem_task.input_molecules(inputs), candidates, strict=True):
        cands = _texts(cands)
        out.append(_first(chem_task.consistent(target, cands)) if target is not None and cands else None)
    return out


def first_round_trip(task: str, inputs: list[str], candidates: list[list[str]]) -> list[int | None]:
    """For each input, the index of the first candidate that a rules tool reads back to the input
    (``ChemTask.round_trip``: OPSIN's molecule of a name, openclatura's name of a SMILES, RDKit's
    molecule of an InChI, tautomers as one), else ``None``. Names compare as strings: a SMILES passes
    only when the namer writes the input name letter for letter, so names in another convention
    rarely pass."""
    chem_task = get_task(task)
    if chem_task.round_trip is None:
        raise ValueError(f"verify: round_trip: no rules tool reads {task}'s outputs back into its inputs "
                         "without the answer; use vote or well_formed")
    if len(inputs) != len(candidates):
        raise ValueError("inputs and candidates must have the same length")
    input_keys, read_back = chem_task.round_trip
    texts = [_texts(cands) for cands in candidates]
    unique = list(dict.fromkeys(c for cands in texts for c in cands if c))  # each beam read back once
    back = dict(zip(unique, read_back(unique), strict=True))
    return [None if key is None else _first([c != "" and back[c] == key for c in cands])
            for key, cands in zip(input_keys(inputs), texts, strict=True)]


def first_well_formed(task: str, candidates: list[list[str]]) -> list[int | None]:
    """For each input, the index of its first well-formed candidate (``ChemTask.well_formed``: a
    name OPSIN parses, a SMILES or InChI in RDKit's canonical form, a formula), else ``None``.
    The input is never read, so this filter cannot pass the answer on from the input molecule."""
    chem_task = get_task(task)
    return [_first(chem_task.well_formed(_texts(cands))) if cands else None for cands in candidates]


def _by_rank(rank: int) -> float:
    return 1 / (rank + 1)


def molecule_vote(task: str, candidates: list[list[str]], weight: Callable[[int], float] = _by_rank,
                  ranks: list[list[int]] | None = None) -> list[int | None]:
    """For each input, the index of the first well-formed candidate of the answer its candidates
    weigh most, the candidate at 0-based `rank` weighing `weight(rank)` (1/rank counted from 1;
    ties: the answer of the higher-ranked candidate), else of the next answer; ``None`` if no
    candidate is well-formed. Sampled candidates, which have no rank, weigh alike. `ranks` gives
    each candidate's rank where it is not its position (the beams of several spellings of one
    input, interleaved: `generate.spellings`).

    Beams that write the same molecule in different spellings (one canonical, others not) pool
    their weight, so a molecule the model keeps returning to beats one beam that is merely first.
    The rank weight is the study's choice (docs/results/learning_efficiency): on canonicalisation's
    10 beams it kept the right string for 71.0 % of 300 test molecules and 67 of 100 validation
    ones, against 69.0 % and 62 for the first well-formed beam; weighing by the beams' own
    probabilities did no better (70.0 % and 65), an unweighted count worse (64.7 % and 58).
    Written here: a vote over chemically equal outputs is no library's."""
    chem_task = get_task(task)
    flat = [c for cands in candidates for c in _texts(cands)]
    answers, formed = chem_task.answers(flat), chem_task.well_formed(flat)
    out: list[int | None] = []
    start = 0
    for k, cands in enumerate(candidates):
        span = range(start, start + len(cands))
        start += len(cands)
        votes: dict[str, float] = defaultdict(float)
        first_formed: dict[str, int] = {}
        for pos, i in enumerate(span):
            if answers[i] is None:
                continue
            votes[answers[i]] += weight(ranks[k][pos] if ranks is not None else pos)
            if formed[i]:
                first_formed.setdefault(answers[i], pos)
        ranked = sorted(votes, key=lambda a: -votes[a])  # stable: ties keep the first-seen answer
        out.append(next((first_formed[a] for a in ranked if a in first_formed), None))
    return out


Ranks = list[list[int]] | None
# verify mode -> (task, inputs, candidates, ranks) -> the kept candidate per input; the modes of
# `generate.verify` other than none (a test holds the two lists equal). Only the vote weighs by
# rank; the others take the candidates in their order.
PICKERS: dict[str, Callable[[str, list[str], list[list[str]], Ranks], list[int | None]]] = {
    "opsin": lambda task, inputs, candidates, ranks: first_consistent(task, inputs, candidates),
    "round_trip": lambda task, inputs, candidates, ranks: first_round_trip(task, inputs, candidates),
    "well_formed": lambda task, inputs, candidates, ranks: first_well_formed(task, candidates),
    "vote": lambda task, inputs, candidates, ranks: molecule_vote(task, candidates, ranks=ranks),
}


def pick(task: str, verify: str, inputs: list[str], candidates: list[list[str]],
         ranks: Ranks = None) -> list[int | None]:
    """The candidate `verify` keeps for each input (None: none passes; callers keep the top beam).
    `ranks`: each candidate's beam rank, where candidates come from several spellings of the input."""
    if verify not in PICKERS:
        raise ValueError(f"verify: expected one of {', '.join(PICKERS)}, got {verify!r}")
    return PICKERS[verify](task, inputs, candidates, ranks)
