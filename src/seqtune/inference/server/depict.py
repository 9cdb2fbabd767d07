"""Molecule drawings for the web page (RDKit SVG)."""

from __future__ import annotations


def smiles_svg(smiles: str, width: int = 260, height: int = 180) -> str | None:
    """An SVG drawing of the molecule, or None when RDKit cannot read the SMILES."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem.Draw import rdMolDraw2D

    RDLogger.DisableLog("rdApp.*")  # an unreadable SMILES is an answer here, not a log line
    mol = Chem.MolFromSmiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    drawer = rdMolDraw2D.MolDraw2DSVG(width, height)
    drawer.drawOptions().clearBackground = False
    rdMolDraw2D.PrepareAndDrawMolecule(drawer, mol)
    drawer.FinishDrawing()
    return drawer.GetDrawingText()
