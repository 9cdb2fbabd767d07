"""Rule-based baseline: what the deterministic tools produce, for the results table next to the LM."""

from __future__ import annotations

from . import molecules, naming
from .tasks import check_task


def predict(task: str, inputs: list[str]) -> list[str]:
    """Predictions of openclatura (smiles2iupac), OPSIN (iupac2smiles) or RDKit (the rest); ``""`` on failure."""
    check_task(task)
    if task == "iupac2smiles":
        return [c.canonical or "" for c in naming.roundtrip(list(inputs), [None] * len(inputs))]
    out: list[str] = []
    for text in inputs:
        mol = molecules.mol_from_smiles(text)
        if mol is None:
            out.append("")
        elif task == "smiles2iupac":
            name, _ = naming.name_smiles(molecules.canonical_from_mol(mol) or text)
            out.append(name or "")
        elif task == "randomsmiles2canonical":
            out.append(molecules.canonical_from_mol(mol) or "")
        elif task == "smiles2formula":
            out.append(molecules.formula_from_mol(mol))
        else:
            out.append(molecules.inchi_from_mol(mol) or "")
    return out
