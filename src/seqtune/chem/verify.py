"""Verified decoding: pick, among K generated candidates, the first one that round-trips to the input molecule."""

from __future__ import annotations

from . import molecules, naming
from .tasks import check_task


def _input_molecules(task: str, inputs: list[str]) -> list[str | None]:
    if task == "iupac2smiles":
        return [check.canonical for check in naming.roundtrip(list(inputs), [None] * len(inputs))]
    return [molecules.canonical_smiles(s) for s in inputs]


def _consistent_flags(task: str, target: str, cands: list[str]) -> list[bool]:
    if task == "smiles2iupac":
        return [check.same_smiles for check in naming.roundtrip(list(cands), [target] * len(cands))]
    if task in ("iupac2smiles", "randomsmiles2canonical"):
        return [molecules.canonical_smiles(c) == target for c in cands]
    mol = molecules.mol_from_smiles(target)
    if task == "smiles2formula":
        truth = molecules.parse_formula(molecules.formula_from_mol(mol)) if mol is not None else None
        return [truth is not None and molecules.parse_formula(c) == truth for c in cands]
    key = molecules.inchikey_from_mol(mol) if mol is not None else None
    flags = []
    for c in cands:
        cand_mol = molecules.mol_from_inchi(c)
        flags.append(
            key is not None and cand_mol is not None and molecules.inchikey_from_mol(cand_mol) == key
        )
    return flags


def first_consistent(task: str, inputs: list[str], candidates: list[list[str]]) -> list[int | None]:
    """For each input, the index of the first candidate consistent with the input molecule, else ``None``.

    smiles2iupac: OPSIN(candidate) is the input molecule; iupac2smiles: the
    candidate SMILES is OPSIN(input); randomsmiles2canonical: same molecule as
    the input; smiles2formula: same element counts and charge; smiles2inchi:
    the candidate InChI has the input's InChIKey. An input that cannot be read
    (invalid SMILES, name OPSIN cannot parse) gets ``None``.
    """
    check_task(task)
    if len(inputs) != len(candidates):
        raise ValueError("inputs and candidates must have the same length")
    targets = _input_molecules(task, inputs)
    out: list[int | None] = []
    for target, cands in zip(targets, candidates, strict=True):
        cands = [c if isinstance(c, str) else "" for c in cands]
        if target is None or not cands:
            out.append(None)
            continue
        flags = _consistent_flags(task, target, cands)
        out.append(next((i for i, ok in enumerate(flags) if ok), None))
    return out
