"""The chemistry tasks: how one verified (molecule, name) pair becomes an (input, output) example."""

from __future__ import annotations

from . import CHEM_TASKS, molecules

__all__ = ["CHEM_TASKS", "check_task", "make_example"]


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


# The instruction each task is trained with when it is mixed into another task's run.
INSTRUCTIONS: dict[str, str] = {
    "smiles2iupac": "Translate the SMILES string of a molecule into its IUPAC name.",
    "iupac2smiles": "Translate the IUPAC name of a molecule into its SMILES string.",
    "smiles2formula": "Give the molecular formula of the molecule with this SMILES string.",
    "randomsmiles2canonical": "Write the canonical SMILES string of this molecule.",
    "smiles2inchi": "Give the InChI of the molecule with this SMILES string.",
}


def molecule_and_name(task: str, input: str, output: str) -> tuple[str, str]:
    """(canonical SMILES, IUPAC name) of a smiles2iupac or iupac2smiles pair."""
    if task == "smiles2iupac":
        smiles, name = input, output
    elif task == "iupac2smiles":
        smiles, name = output, input
    else:
        raise ValueError(f"data.mix: needs a smiles2iupac or iupac2smiles run (both a SMILES and a name per pair), "
                         f"not {task!r}")
    return molecules.canonical_smiles(smiles) or smiles, name


def mix_examples(task: str, pairs: list[tuple[str, str]], extra: list[str], seed: int) -> list[tuple[str, str, str]]:
    """(input, output, instruction) for every pair and every task of `extra`, made from the
    pair's molecule and name: the multi-task data of a `data.mix` run, in a fixed order."""
    for t in extra:
        check_task(t)
        if t == task:
            raise ValueError(f"data.mix: {t!r} is the run's own task")
    out: list[tuple[str, str, str]] = []
    for t in extra:
        for input, output in pairs:
            canonical, name = molecule_and_name(task, input, output)
            made = make_example(t, canonical, name, seed)
            if made is not None:
                out.append((made[0], made[1], INSTRUCTIONS[t]))
    return out


def random_smiles_inputs(inputs: list[str], epoch: int, seed: int) -> list[str]:
    """A fresh random SMILES of each input molecule for this epoch (the input as it is where
    RDKit cannot read it): the same for the same (inputs, epoch, seed), so runs resume exactly."""
    out = []
    for i, smiles in enumerate(inputs):
        mol = molecules.mol_from_smiles(smiles)
        out.append(molecules.random_smiles(mol, f"{epoch}:{i}:{smiles}", seed) if mol is not None else smiles)
    return out
