"""RDKit helpers shared by the builder, the tasks, the scores and the baseline.

Every function here takes untrusted strings (model predictions, user files) and
returns ``None`` instead of raising, because one bad line must never stop a
build or an evaluation.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from functools import lru_cache
from pathlib import Path

from rdkit import Chem, DataStructs, RDLogger
from rdkit.Chem import rdFingerprintGenerator
from rdkit.Chem.MolStandardize import rdMolStandardize
from rdkit.Chem.rdMolDescriptors import CalcMolFormula
from rdkit.Chem.Scaffolds import MurckoScaffold

# RDKit logs every parse failure to stderr; with garbage predictions that is
# thousands of lines that bury real output.
RDLogger.DisableLog("rdApp.*")

# Longer strings are never real answers in these tasks, and parsing megabyte
# strings (a model stuck in a loop) costs seconds each.
MAX_INPUT_CHARS = 5000

_FP_GEN = None


def mol_from_smiles(smiles: str | None) -> Chem.Mol | None:
    if not isinstance(smiles, str):
        return None
    smiles = smiles.strip()
    if not smiles or len(smiles) > MAX_INPUT_CHARS or "\x00" in smiles:
        return None
    try:
        return Chem.MolFromSmiles(smiles)
    except Exception:  # RDKit raises on some malformed unicode input
        return None


def canonical_smiles(smiles: str | None) -> str | None:
    mol = mol_from_smiles(smiles)
    return canonical_from_mol(mol) if mol is not None else None


def canonical_from_mol(mol: Chem.Mol) -> str | None:
    try:
        return Chem.MolToSmiles(mol) or None
    except Exception:
        return None


def smiles_in_atom_order(mol: Chem.Mol) -> str:
    """A SMILES that visits the atoms in the molecule's own order (the order its maker built it),
    not RDKit's canonical ranking."""
    return Chem.MolToSmiles(mol, canonical=False)


def inchi_from_mol(mol: Chem.Mol) -> str | None:
    try:
        return Chem.MolToInchi(mol) or None
    except Exception:
        return None


def inchi_working(smiles: str, inchi: str, hydrogens: bool = False) -> str | None:
    """The atoms of `smiles` in its own order, each with the number InChI gives it (counted within
    its component, as InChI counts): `CC(=O)O` -> `C1 C2 O3 O4`; with `hydrogens`, each atom's
    hydrogen count too: `C1H3 C2 O3 O4H`. The numbering InChI's connection and hydrogen layers are
    written in, spelled out atom by atom (scripts/inchi_working.py). From
    RDKit's AuxInfo (`/N:`: the atom each canonical number belongs to). None where RDKit's InChI of
    `smiles` is not `inchi` (its numbering would be another answer's) or the AuxInfo misses an atom."""
    mol = mol_from_smiles(smiles)
    if mol is None:
        return None
    try:
        found, aux = Chem.MolToInchiAndAuxInfo(mol)
    except Exception:
        return None
    layer = next((part[2:] for part in aux.split("/") if part.startswith("N:")), None)
    if found != inchi or layer is None:
        return None
    numbers = [0] * mol.GetNumAtoms()
    for component in layer.split(";"):
        for number, atom in enumerate(component.split(","), start=1):
            if not atom.isdigit() or not 0 < int(atom) <= len(numbers):
                return None
            numbers[int(atom) - 1] = number
    if not all(numbers):
        return None
    symbols = [a.GetSymbol().lower() if a.GetIsAromatic() else a.GetSymbol() for a in mol.GetAtoms()]
    hs = [_hydrogens(a.GetTotalNumHs()) if hydrogens else "" for a in mol.GetAtoms()]
    return " ".join(f"{s}{n}{h}" for s, n, h in zip(symbols, numbers, hs, strict=True))


def _hydrogens(count: int) -> str:
    return "" if count == 0 else "H" if count == 1 else f"H{count}"


def inchikey_from_mol(mol: Chem.Mol) -> str | None:
    try:
        return Chem.MolToInchiKey(mol) or None
    except Exception:
        return None


def inchikey_from_smiles(smiles: str | None) -> str | None:
    mol = mol_from_smiles(smiles)
    return inchikey_from_mol(mol) if mol is not None else None


def mol_from_inchi(inchi: str | None) -> Chem.Mol | None:
    if not isinstance(inchi, str):
        return None
    inchi = inchi.strip()
    # The InChI library aborts loudly on some inputs that lack the prefix, and
    # only standard-ish InChIs are valid answers anyway.
    if not inchi.startswith("InChI=") or len(inchi) > MAX_INPUT_CHARS or "\x00" in inchi:
        return None
    try:
        return Chem.MolFromInchi(
            inchi, sanitize=True, removeHs=True, logLevel=None, treatWarningAsError=False
        )
    except Exception:
        return None


def formula_from_mol(mol: Chem.Mol) -> str:
    return CalcMolFormula(mol)


_FORMULA_TOKEN = re.compile(r"([A-Z][a-z]?)(\d*)")
_CHARGE_SUFFIX = re.compile(r"([+-]\d*)$")


def parse_formula(formula: str | None) -> tuple[Counter[str], int] | None:
    """Element counts and net charge of a Hill-style formula such as ``C2H3O2-``.

    Parsing (rather than comparing strings) lets ``H6C2O`` match ``C2H6O``;
    a string that is not entirely element tokens is invalid.
    """
    if not isinstance(formula, str):
        return None
    text = formula.strip()
    if not text or len(text) > 200:
        return None
    charge = 0
    m = _CHARGE_SUFFIX.search(text)
    if m:
        sign = 1 if m.group(1)[0] == "+" else -1
        digits = m.group(1)[1:]
        charge = sign * (int(digits) if digits else 1)
        text = text[: m.start()]
    counts: Counter[str] = Counter()
    pos = 0
    for tok in _FORMULA_TOKEN.finditer(text):
        if tok.start() != pos:
            return None
        counts[tok.group(1)] += int(tok.group(2)) if tok.group(2) else 1
        pos = tok.end()
    if pos != len(text) or not counts:
        return None
    return counts, charge


@lru_cache(maxsize=1)
def _tautomers() -> rdMolStandardize.TautomerEnumerator:
    # Only hydrogens moving between heteroatoms along alternating bonds, as InChI's mobile hydrogens
    # do (inchi_tautomers.in, written for this), and tetrahedral stereo kept. RDKit's default
    # transforms also shift keto/enol, which carries an aldose's carbonyl down its chain and drops
    # the stereo of every centre on the way: glucose and its epimers then read as one molecule, and
    # verify: round_trip kept an epimer for glucose (a smiles2inchi test molecule). Of the task's
    # 28,595 readable references, 28,240 read back to their input, against 28,242 with the default
    # (protonated phenols whose InChI puts the proton elsewhere). Double-bond stereo is still
    # dropped: InChI leaves it out where hydrogens move (amidoximes).
    params = rdMolStandardize.CleanupParameters()
    params.tautomerTransformsFile = str(Path(__file__).with_name("inchi_tautomers.in"))
    params.tautomerRemoveSp3Stereo = False
    return rdMolStandardize.TautomerEnumerator(params)


def tautomer_smiles(mol: Chem.Mol | None) -> str | None:
    """Canonical SMILES of RDKit's canonical tautomer: one spelling for the tautomers an InChI does
    not tell apart (paracetamol read back from its InChI is its imidic-acid form). A charged molecule
    is spelled as InChI holds it, its charges and protons not placed (_charged_skeleton)."""
    if mol is None:
        return None
    try:
        if any(a.GetFormalCharge() for a in mol.GetAtoms()):
            return _charged_skeleton(mol)
        return canonical_from_mol(_tautomers().Canonicalize(mol))
    except Exception:  # RDKit raises on odd valences of generated molecules
        return None


def _charged_skeleton(mol: Chem.Mol) -> str:
    """A standard InChI keeps a charged molecule's net charge (/q, /p) but not which atoms carry it,
    nor its bond orders: RDKit reads a benzoxazolium's InChI back with the charge on O instead of N,
    and a dithiocarbamate dianion's with its protons and charges swapped between N and S. So the
    molecule is compared as InChI holds it: made neutral where protons allow (InChI's /p), its
    mobile hydrogens placed (_tautomers), then its heavy atoms, bonds and hydrogens per atom with
    every bond single, the net charge, and each E/Z double bond by its atoms' ranks. Of the task's
    28,600 references 28,363 then read back to their input, against 28,239 (none fewer). The price:
    protonation isomers that InChI tells apart read as one (an acid's alkoxide and carboxylate anions;
    3 such pairs among the references), and an enolate's E/Z drops, as a neutral enol's already did."""
    neutral = _tautomers().Canonicalize(rdMolStandardize.Uncharger().uncharge(mol))
    Chem.AssignStereochemistry(neutral, cleanIt=True, force=True)
    skeleton = Chem.RWMol(neutral)
    for atom in skeleton.GetAtoms():
        atom.SetNumExplicitHs(atom.GetTotalNumHs())
        atom.SetNoImplicit(True)
        atom.SetFormalCharge(0)
        atom.SetIsAromatic(False)
    for bond in skeleton.GetBonds():
        bond.SetBondType(Chem.BondType.SINGLE)
        bond.SetIsAromatic(False)
        bond.SetStereo(Chem.BondStereo.STEREONONE)
    ranks = list(Chem.CanonicalRankAtoms(skeleton, breakTies=False))
    double_bonds = sorted((*sorted((ranks[b.GetBeginAtomIdx()], ranks[b.GetEndAtomIdx()])), str(b.GetStereo()))
                          for b in neutral.GetBonds() if b.GetStereo() != Chem.BondStereo.STEREONONE)
    return f"{Chem.MolToSmiles(skeleton, allHsExplicit=True)} {Chem.GetFormalCharge(mol):+d} {double_bonds}"


def largest_fragment(mol: Chem.Mol) -> Chem.Mol:
    if len(Chem.GetMolFrags(mol)) <= 1:
        return mol
    chooser = rdMolStandardize.LargestFragmentChooser(preferOrganic=True)
    return chooser.choose(mol)


def n_fragments(mol: Chem.Mol) -> int:
    return len(Chem.GetMolFrags(mol))


def murcko_scaffold(mol: Chem.Mol) -> str:
    """Bemis–Murcko scaffold SMILES; ``""`` for acyclic molecules."""
    try:
        return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False)
    except Exception:
        return ""


def random_smiles(mol: Chem.Mol, key: str, seed: int) -> str:
    """A random (non-canonical) SMILES that depends only on ``key`` and ``seed``.

    Seeding per molecule, not per run, keeps a molecule's random SMILES stable
    however the build is sharded or parallelised.
    """
    digest = hashlib.sha256(f"{seed}\x1f{key}".encode()).digest()
    mol_seed = int.from_bytes(digest[:4], "little") & 0x7FFFFFFF
    out = Chem.MolToRandomSmilesVect(mol, 1, randomSeed=mol_seed)
    return out[0] if out else Chem.MolToSmiles(mol)


def _fp_gen():
    global _FP_GEN
    if _FP_GEN is None:
        _FP_GEN = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    return _FP_GEN


@lru_cache(maxsize=4096)
def _fingerprint_for_canonical(canonical: str):
    mol = Chem.MolFromSmiles(canonical)
    return _fp_gen().GetFingerprint(mol) if mol is not None else None


def tanimoto(canonical_a: str | None, canonical_b: str | None) -> float:
    """Morgan (r=2, 2048 bits) Tanimoto similarity; 0.0 when either side is missing."""
    if not canonical_a or not canonical_b:
        return 0.0
    if canonical_a == canonical_b:
        return 1.0
    fa = _fingerprint_for_canonical(canonical_a)
    fb = _fingerprint_for_canonical(canonical_b)
    if fa is None or fb is None:
        return 0.0
    return float(DataStructs.TanimotoSimilarity(fa, fb))
