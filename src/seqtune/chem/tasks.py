"""The chemistry tasks: how one verified (molecule, name) pair becomes an (input, output) example."""

from __future__ import annotations

from . import CHEM_TASKS, molecules

__all__ = ["CHEM_TASKS", "INPUT_KIND", "OUTPUT_KIND", "check_task", "make_example"]

# What kind of string each task's output is; the scores and the verifier
# dispatch on this rather than on task names.
OUTPUT_KIND: dict[str, str] = {
    "smiles2iupac": "name",
    "iupac2smiles": "smiles",
    "randomsmiles2canonical": "smiles",
    "smiles2formula": "formula",
    "smiles2inchi": "inchi",
}
INPUT_KIND: dict[str, str] = {
    "smiles2iupac": "smiles",
    "iupac2smiles": "name",
    "randomsmiles2canonical": "smiles",
    "smiles2formula": "smiles",
    "smiles2inchi": "smiles",
}


def check_task(task: str) -> str:
    if task not in CHEM_TASKS:
        raise ValueError(f"Unknown chemistry task {task!r}; expected one of {sorted(CHEM_TASKS)}")
    return task


def make_example(task: str, canonical: str, name: str, seed: int) -> tuple[str, str] | None:
    """``(input, output)`` for a molecule given by its canonical SMILES and verified name.

    Returns ``None`` when RDKit cannot produce the output (e.g. no InChI), which
    the builder counts as a reject.
    """
    check_task(task)
    if task == "smiles2iupac":
        return canonical, name
    if task == "iupac2smiles":
        return name, canonical
    mol = molecules.mol_from_smiles(canonical)
    if mol is None:
        return None
    if task == "smiles2formula":
        return canonical, molecules.formula_from_mol(mol)
    if task == "randomsmiles2canonical":
        return molecules.random_smiles(mol, canonical, seed), canonical
    inchi = molecules.inchi_from_mol(mol)
    return (canonical, inchi) if inchi else None
