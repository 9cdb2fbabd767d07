"""Verified decoding: pick, among K generated candidates, the first one that round-trips to the
input molecule (verify: opsin), or the first well-formed one, judged without the input (verify:
well_formed)."""

from __future__ import annotations

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


def first_well_formed(task: str, candidates: list[list[str]]) -> list[int | None]:
    """For each input, the index of its first well-formed candidate (``ChemTask.well_formed``: a
    name OPSIN parses, a SMILES or InChI in RDKit's canonical form, a formula), else ``None``.
    The input is never read, so this filter cannot pass the answer on from the input molecule."""
    chem_task = get_task(task)
    return [_first(chem_task.well_formed(_texts(cands))) if cands else None for cands in candidates]
