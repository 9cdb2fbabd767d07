"""Whether the start of an InChI can still be the InChI of a given molecule: the check that
`generate.guide` runs on every beam while it is searched, so that beams which have already
written another molecule give their place to beams that have not.

What is held against the input molecule: the formula layer (its heavy atoms, and its hydrogens where
the input has no isotope: a charged input's within the protons InChI may move), the layers a
molecule without charge, isotopes or stereo can have, the bonds of the connection layer written so
far as a pattern RDKit must find in the input's heavy-atom graph, and the hydrogens the /h layer
puts on each atom. Each atom number's element and number of bonded heavy atoms come from the two
rules InChI's numbering states about a single atom: elements in the formula's order, and within an
element fewer neighbours first (every one of the task's 28,396 one-component references keeps both).
What is not: the refinement by neighbours that makes the numbering canonical, which is the part the
model has to learn; a start that passes may number the atoms wrongly, and `verify: round_trip`
judges the finished InChI. The input's InChI is never computed. Written here: no library reads a
partial InChI.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from .molecules import parse_formula

_ELEMENT = re.compile(r"([A-Z][a-z]?)(\d*)")
_COMPONENT = re.compile(r"^(\d*)((?:[A-Z][a-z]?\d*)+)$")
_LAYER_END = "/"
_CONNECTION_TOKEN = re.compile(r"\d+|[-(),;*]")


def formula_atoms(formula: str) -> list[str] | None:
    """The heavy atoms an InChI's formula layer numbers, in its order (carbon first, then
    alphabetical, hydrogen not numbered), for one component; None for several components or a
    formula that does not read."""
    if "." in formula:
        return None
    match = _COMPONENT.match(formula)
    if match is None or match.group(1):
        return None
    atoms: list[str] = []
    for element, count in _ELEMENT.findall(match.group(2)):
        if element != "H":
            atoms.extend([element] * (int(count) if count else 1))
    return atoms


def heavy_counts(formula: str) -> Counter[str] | None:
    """Heavy-atom counts of a formula layer, all components summed (a leading number multiplies
    its component); None where it does not read."""
    total: Counter[str] = Counter()
    for part in formula.split("."):
        match = _COMPONENT.match(part)
        if match is None:
            return None
        times = int(match.group(1)) if match.group(1) else 1
        parsed = parse_formula(match.group(2))
        if parsed is None:
            return None
        for element, count in parsed[0].items():
            if element != "H":
                total[element] += times * count
    return total


class Unreadable(ValueError):
    """Text no InChI layer has: the beam cannot become a right answer."""


def connection_bonds(layer: str, complete: bool) -> set[tuple[int, int]]:
    """The bonds (pairs of 1-based atom numbers) a one-component connection layer's text says, up to
    its last whole number (all of it when `complete`). Raises Unreadable where no InChI would say it."""
    text = layer if complete else re.sub(r"\d+$", "", layer)
    bonds: set[tuple[int, int]] = set()
    current: int | None = None
    stack: list[int | None] = []
    pos = 0
    for token in _CONNECTION_TOKEN.finditer(text):
        if token.start() != pos:
            raise Unreadable(text)
        pos = token.end()
        t = token.group()
        if t.isdigit():
            atom = int(t)
            if atom == current or atom == 0:
                raise Unreadable(text)
            if current is not None:
                bond = (min(atom, current), max(atom, current))
                if bond in bonds:  # an InChI says each bond once
                    raise Unreadable(text)
                bonds.add(bond)
            current = atom
        elif t == "(":
            stack.append(current)
        elif t in ",)" and stack:
            current = stack[-1] if t == "," else stack.pop()
        elif t != "-":
            raise Unreadable(text)
    if pos != len(text) or (complete and stack):
        raise Unreadable(text)
    return bonds


_H_ITEM = re.compile(r"\(H(\d*)-?((?:,\d+)+)\)|((?:\d+(?:-\d+)?,)*\d+(?:-\d+)?)H(\d*)")
# How an item of an /h layer can start: "2-5,8H", "(H2,7,8" on their way to being whole.
_H_ITEM_START = re.compile(r"\((?:H\d*-?(?:,\d+)*,?)?|(?:\d+(?:-\d+)?,)*(?:\d+-?\d*)?(?:H\d*)?")


def hydrogen_counts(layer: str, complete: bool, n_atoms: int | None = None
                    ) -> tuple[dict[int, int], dict[tuple[int, ...], int]]:
    """(fixed hydrogens per atom, hydrogens of each mobile-hydrogen group of atoms) that an /h layer's
    text says, up to its last whole item (all of it when `complete`); a group still being written
    counts its hydrogens so far and its atoms so far, the last one too where, with `n_atoms` atoms,
    it cannot grow. Raises Unreadable where no InChI would say it."""
    items: list[re.Match[str]] = []
    pos = 0
    while pos < len(layer):
        if pos:  # items are separated by commas; a mobile group may follow without one
            if layer[pos] not in ",(":
                raise Unreadable(layer)
            pos += layer[pos] == ","
        item = _H_ITEM.match(layer, pos)
        if item is None or (not complete and item.end() == len(layer) and item.group(2) is None):
            break  # the last item may still grow ("1H" -> "1H3")
        items.append(item)
        pos = item.end()
    if pos < len(layer) and (complete or not _H_ITEM_START.fullmatch(layer, pos)):
        raise Unreadable(layer)
    fixed: dict[int, int] = {}
    mobile: dict[tuple[int, ...], int] = {}
    groups = [(item.group(2), int(item.group(1) or 1)) for item in items if item.group(2)]
    if layer.startswith("(", pos):  # a group still being written: digits only grow, so "(H2" has >= 2
        head, _, atoms = layer[pos:].partition(",")
        last = re.search(r"\d+$", atoms)
        if last and (n_atoms is None or int(last.group()) * 10 <= n_atoms):
            atoms = atoms[:last.start()]
        groups.append((atoms, int(head[2:].rstrip("-") or 1) if head.startswith("(H") else 0))
    for atoms, count in groups:
        group = tuple(int(a) for a in atoms.split(",") if a)
        if len(set(group)) < len(group) or set(group) & {a for g in mobile for a in g}:
            raise Unreadable(layer)
        mobile[group] = count
    for item in items:
        if item.group(2):
            continue
        count = int(item.group(4)) if item.group(4) else 1
        for part in item.group(3).split(","):
            first, _, last = part.partition("-")
            for a in range(int(first), int(last or first) + 1):
                if a in fixed:
                    raise Unreadable(layer)
                fixed[a] = count
    return fixed, mobile


def _pattern(atoms: list[str], degrees: list[int], bonds: set[tuple[int, int]],
             hydrogens: dict[int, int] | None = None) -> Any:
    """RDKit query of the bonded atoms (all of them when `hydrogens` is given): each atom its element,
    its number of heavy neighbours and, where `hydrogens` says, its number of hydrogens; each bond of
    any order. Matched against the input's heavy atoms alone, where D counts heavy neighbours."""
    from rdkit import Chem

    used = sorted({a for bond in bonds for a in bond} | set(hydrogens or ()))
    index = {a: i for i, a in enumerate(used)}
    query = Chem.RWMol()
    for a in used:
        h = f"&H{hydrogens[a]}" if hydrogens and a in hydrogens else ""
        query.AddAtom(Chem.AtomFromSmarts(f"[#{_z(atoms[a - 1])}&D{degrees[a - 1]}{h}]"))  # aromatic or not
    any_bond = Chem.BondFromSmarts("~")
    for a, b in bonds:
        query.AddBond(index[a], index[b], Chem.BondType.SINGLE)
        query.ReplaceBond(query.GetNumBonds() - 1, any_bond)
    return query


def _z(element: str) -> int:
    from rdkit import Chem

    return Chem.GetPeriodicTable().GetAtomicNumber(element)


# The layers a standard InChI has, in their order; a one-component molecule without charge,
# isotopes or stereo has only the first two after its formula.
_LAYER_ORDER = "chqpbtmsi"


class _Input:
    """What the check needs to know of the input molecule (heavy atoms, bonds, hydrogens)."""

    def __init__(self, mol: Any) -> None:
        from rdkit import Chem

        # The heavy-atom graph: explicit hydrogen atoms (isotopes too) removed, so D counts heavy neighbours.
        self.mol = Chem.RemoveAllHs(mol, sanitize=False)
        self.degrees: dict[str, list[int]] = {}  # per element, its atoms' heavy neighbours, fewest first
        for atom in self.mol.GetAtoms():
            self.degrees.setdefault(atom.GetSymbol(), []).append(atom.GetDegree())
        for found in self.degrees.values():
            found.sort()
        self.counts = Counter({element: len(found) for element, found in self.degrees.items()})
        self.n_bonds = self.mol.GetNumBonds()
        # A charged or isotope-labelled input's InChI may move hydrogens (/p) or count them apart
        # (/i): its hydrogens and later layers are then not judged.
        self.plain = not any(a.GetFormalCharge() or a.GetIsotope() or a.GetAtomicNum() == 1 for a in mol.GetAtoms())
        self.hydrogens = sum(a.GetTotalNumHs() for a in mol.GetAtoms())
        # A charged input's formula layer counts the hydrogens of the form InChI made neutral (/p): at
        # most one fewer per positive charge, one more per negative (all 2,473 charged one-component
        # references of the task keep this); an uncharged input's, its own.
        counted = not any(a.GetIsotope() or a.GetAtomicNum() == 1 for a in mol.GetAtoms())
        positive = sum(max(a.GetFormalCharge(), 0) for a in mol.GetAtoms())
        negative = sum(max(-a.GetFormalCharge(), 0) for a in mol.GetAtoms())
        self.formula_hydrogens = range(self.hydrogens - positive, self.hydrogens + negative + 1) if counted else None
        stereo = (any(a.GetChiralTag() != Chem.ChiralType.CHI_UNSPECIFIED for a in mol.GetAtoms())
                  or any(b.GetStereo() != Chem.BondStereo.STEREONONE for b in mol.GetBonds()))
        self.layers = "ch" + ("btms" if stereo else "")

    def judge(self, layers: list[str]) -> bool:
        """Whether the layers so far (the last one unfinished) can be this molecule's InChI."""
        formula = layers[1]
        if re.search(r"[^A-Za-z0-9.]", formula):
            return False
        if len(layers) < 3:  # the formula so far, its last element aside, within the molecule's atoms
            done = re.sub(r"(?:(?:^|\.)\d*)?(?:[A-Z][a-z]?\d*)?$", "", formula)
            written = heavy_counts(done) if done else Counter()
            return written is not None and not written - self.counts
        if heavy_counts(formula) != self.counts:
            return False
        atoms = formula_atoms(formula)
        if atoms is None:  # several components: their layers are not judged
            return True
        if self.formula_hydrogens is not None and _formula_hydrogens(formula) not in self.formula_hydrogens:
            return False
        if self.plain and not _in_order([layer[:1] for layer in layers[2:]], self.layers):
            return False
        if len(atoms) < 2 or not layers[2]:
            return True
        if not layers[2].startswith("c"):
            return False
        try:
            return self._judge_atoms(atoms, layers)
        except Unreadable:
            return False

    def _numbered_degrees(self, atoms: list[str]) -> list[int]:
        """The number of heavy neighbours of each atom number: within an element, fewer first."""
        seen: Counter[str] = Counter()
        degrees = []
        for element in atoms:
            degrees.append(self.degrees[element][seen[element]])
            seen[element] += 1
        return degrees

    def _judge_atoms(self, atoms: list[str], layers: list[str]) -> bool:
        complete = len(layers) > 3
        if _beyond(layers[2], len(atoms)):
            return False
        bonds = connection_bonds(layers[2][1:], complete)
        if any(b > len(atoms) for bond in bonds for b in bond) or (complete and len(bonds) != self.n_bonds):
            return False
        degrees = self._numbered_degrees(atoms)
        if bonds and not self.mol.HasSubstructMatch(_pattern(atoms, degrees, bonds)):
            return False
        if not (complete and self.plain and layers[3].startswith("h")):
            return True
        layer, h_complete = layers[3][1:], len(layers) > 4
        if re.search(r"[^0-9,()H-]", layer) or _beyond(layer, len(atoms)):
            return False
        fixed, mobile = hydrogen_counts(layer, h_complete, len(atoms))
        if any(atoms[a - 1] == "C" for group in mobile for a in group):  # standard InChI moves H between heteroatoms
            return False
        written = sum(fixed.values()) + sum(mobile.values())
        if written > self.hydrogens or (h_complete and written != self.hydrogens):
            return False
        if h_complete:  # the whole layer: an atom it does not name has no fixed hydrogen
            fixed = {a: fixed.get(a, 0) for a in range(1, len(atoms) + 1)}
        moving = {a for group in mobile for a in group}
        fixed = {a: h for a, h in fixed.items() if a not in moving}
        return self.mol.HasSubstructMatch(_pattern(atoms, degrees, bonds, fixed))


def _in_order(letters: list[str], allowed: str) -> bool:
    """Each started layer one of `allowed`, in InChI's order, none twice."""
    if any(letter not in allowed for letter in letters if letter):
        return False
    ranks = [_LAYER_ORDER.index(letter) for letter in letters if letter]
    return all(a < b for a, b in zip(ranks, ranks[1:]))


def prefix_check(smiles: str) -> Callable[[str, bool], bool] | None:
    """For an input SMILES, a function of (an InChI's start, whether it ends there) saying whether it
    can still be that molecule's InChI; None where RDKit cannot read the input (nothing is pruned)."""
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    molecule = _Input(mol)

    @lru_cache(maxsize=4096)
    def judge(text: str) -> bool:
        return molecule.judge(text.split(_LAYER_END))

    def check(text: str, ends: bool = False) -> bool:
        return judge(text + _LAYER_END if ends else text)

    return check


def _beyond(layer: str, n_atoms: int) -> bool:
    """Whether the layer names an atom past the last, counting the number it is still writing (it
    can only grow); digits after an H are a count of hydrogens, not an atom."""
    return any(int(a) > n_atoms for a in re.findall(r"(?<![H\d])\d+", layer))


def _formula_hydrogens(formula: str) -> int:
    parsed = parse_formula(formula)
    return parsed[0]["H"] if parsed else 0
