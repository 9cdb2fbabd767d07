"""The chemistry tasks: one ``ChemTask`` per task, in the registry ``TASKS``.

A task object holds everything that differs between tasks (how a verified molecule
becomes an example, which molecule an example is about, how predictions are scored and
checked, what the deterministic tools answer), so the code around it (the builder, the
scores, verified decoding, the baseline) is written once and asks ``get_task`` instead of
testing task names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from . import CHEM_TASKS, INPUT_KINDS, inchi_prefix, molecules, naming, opsin, pubchem, scores

__all__ = ["CHEM_TASKS", "INSTRUCTIONS", "TASKS", "ChemTask", "get_task", "make_example", "mix_examples"]

Example = tuple[str, str]


@dataclass(frozen=True)
class ChemTask:
    name: str
    # The instruction the task is trained with when it is mixed into another task's run.
    instruction: str
    # (canonical SMILES, verified name, seed) -> (input, output), or None where RDKit cannot
    # produce the output (e.g. no InChI): the builder counts that as a reject.
    make_example: Callable[[str, str, int], Example | None]
    # (inputs, references) -> canonical SMILES of the molecule each example is about, None
    # where unknown. Taken from the structure side of the pair (so a reference name that is
    # itself wrong cannot mislead the score), from the name side where RDKit cannot read it.
    targets: Callable[[list[str], list[str]], list[str | None]]
    # (targets, predictions, references) -> summary and one row per example; see `scores`.
    score_rows: Callable[[list[str | None], list[str], list[str]], scores.Scores]
    # inputs -> canonical SMILES of each input's molecule (None where it cannot be read), the
    # molecule verified decoding checks the candidates against.
    input_molecules: Callable[[list[str]], list[str | None]]
    # (input molecule, candidates) -> whether each candidate is a right answer for it.
    consistent: Callable[[str, list[str]], list[bool]]
    # candidates -> whether each is a well-formed output of the task, judged without the input
    # (a name OPSIN parses, a SMILES or InChI in RDKit's own canonical form, a formula).
    well_formed: Callable[[list[str]], list[bool]]
    # candidates -> what each one says, in one spelling per answer (canonical SMILES of the
    # molecule a SMILES, name or InChI denotes; a formula's element counts), None where it
    # cannot be read: how `verify: vote` tells which beams give the same answer.
    answers: Callable[[list[str]], list[str | None]]
    # inputs -> the deterministic tool's answers (openclatura, OPSIN or RDKit), "" on failure.
    baseline: Callable[[list[str]], list[str]]
    # (inputs -> keys, candidates -> keys), None where unreadable: `verify: round_trip` keeps the first
    # candidate whose key is its input's. A rules tool reads each candidate back into what the task
    # reads (OPSIN reads a name, openclatura names a SMILES, RDKit reads an InChI); the input is only
    # written in the same form (canonical SMILES, the name as given), never mapped forward, so the
    # check cannot hand the model the answer. None where the only way back passes through the answer
    # itself (a formula names no molecule; a canonical SMILES read back is the input's own canonical form).
    round_trip: tuple[Callable[[list[str]], list[str | None]], Callable[[list[str]], list[str | None]]] | None = None
    # (input, output) -> (SMILES, name), for the tasks whose pairs hold both, from which
    # `data.mix` makes the other tasks' pairs.
    molecule_and_name: Callable[[str, str], tuple[str, str]] | None = None
    # (what it is, inputs -> answers, None where it has none): a second baseline independent of
    # the tools that made the labels (which score ~100 % by construction), where one exists offline.
    lookup: tuple[str, Callable[[list[str]], list[str | None]]] | None = None
    # input -> a test of an output's start (None where the input cannot be read): whether it can
    # still be a right answer for that input, judged from the candidate alone (`generate.guide`).
    prefix_check: Callable[[str], Callable[[str, bool], bool] | None] | None = None

    @property
    def input_kind(self) -> str:
        """``"smiles"`` or ``"name"``: what the task reads."""
        return INPUT_KINDS[self.name]


def _read_smiles(texts: list[str]) -> list[str | None]:
    return [molecules.canonical_smiles(s) for s in texts]


def _read_names(names: list[str]) -> list[str | None]:
    """OPSIN's reading of each name as canonical SMILES, in one batch."""
    return [check.canonical for check in naming.roundtrip(list(names), [None] * len(names))]


def _smiles_else_names(smiles: list[str], names: list[str]) -> list[str | None]:
    """Canonical SMILES of each SMILES string, OPSIN's reading of its paired name where RDKit
    cannot read the SMILES."""
    found = _read_smiles(smiles)
    missing = [i for i, t in enumerate(found) if t is None]
    if missing:
        for i, molecule in zip(missing, _read_names([names[i] for i in missing]), strict=True):
            found[i] = molecule
    return found


def _from_molecule(make: Callable[[Any, str, int], Example | None]) -> Callable[[str, str, int], Example | None]:
    """An example maker that needs the RDKit molecule: None where the SMILES does not parse."""

    def example(canonical: str, name: str, seed: int) -> Example | None:
        mol = molecules.mol_from_smiles(canonical)
        return make(mol, canonical, seed) if mol is not None else None

    return example


def _inchi_example(mol: Any, canonical: str, seed: int) -> Example | None:
    inchi = molecules.inchi_from_mol(mol)
    return (canonical, inchi) if inchi else None


def _per_molecule(render: Callable[[Any, str], str]) -> Callable[[list[str]], list[str]]:
    """A baseline that reads each input SMILES with RDKit and renders the answer from the molecule."""

    def predict(inputs: list[str]) -> list[str]:
        out: list[str] = []
        for text in inputs:
            mol = molecules.mol_from_smiles(text)
            out.append(render(mol, text) if mol is not None else "")
        return out

    return predict


def _openclatura_name(mol: Any, text: str) -> str:
    name, _ = naming.name_smiles(molecules.canonical_from_mol(mol) or text)
    return name or ""


def _openclatura_names(candidates: list[str]) -> list[str | None]:
    """openclatura's name of each SMILES, None where RDKit cannot read it or the namer fails. A beam
    can be a molecule the namer struggles with; 5 s each bounds a pathological one. (verify's
    first_round_trip hands each distinct beam over once.)"""
    canonicals = [molecules.canonical_smiles(c) for c in candidates]
    return [naming.name_smiles(c, timeout_s=5.0)[0] if c else None for c in canonicals]


def _names_as_given(names: list[str]) -> list[str | None]:
    return [name.strip() for name in names]


def _smiles_tautomers(texts: list[str]) -> list[str | None]:
    return [molecules.tautomer_smiles(molecules.mol_from_smiles(s)) for s in texts]


def _inchi_tautomers(candidates: list[str]) -> list[str | None]:
    """The molecule of each standard InChI; an InChI that is not the standard one of its own molecule
    (atoms numbered otherwise: a string the answer never is) reads back to nothing."""
    mols = [molecules.mol_from_inchi(c) for c in candidates]
    return [molecules.tautomer_smiles(mol) if mol is not None and molecules.inchi_from_mol(mol) == c else None
            for mol, c in zip(mols, candidates, strict=True)]


def _names_match(molecule: str, candidates: list[str]) -> list[bool]:
    return [check.same_smiles for check in naming.roundtrip(list(candidates), [molecule] * len(candidates))]


def _same_canonical(molecule: str, candidates: list[str]) -> list[bool]:
    return [molecules.canonical_smiles(c) == molecule for c in candidates]


def _same_formula(molecule: str, candidates: list[str]) -> list[bool]:
    """Same element counts and charge."""
    mol = molecules.mol_from_smiles(molecule)
    truth = molecules.parse_formula(molecules.formula_from_mol(mol)) if mol is not None else None
    return [truth is not None and molecules.parse_formula(c) == truth for c in candidates]


def _same_inchikey(molecule: str, candidates: list[str]) -> list[bool]:
    mol = molecules.mol_from_smiles(molecule)
    key = molecules.inchikey_from_mol(mol) if mol is not None else None
    flags = []
    for c in candidates:
        cand_mol = molecules.mol_from_inchi(c)
        flags.append(key is not None and cand_mol is not None and molecules.inchikey_from_mol(cand_mol) == key)
    return flags


def _inchi_molecules(candidates: list[str]) -> list[str | None]:
    mols = [molecules.mol_from_inchi(c) for c in candidates]
    return [molecules.canonical_from_mol(mol) if mol is not None else None for mol in mols]


def _formula_counts(candidates: list[str]) -> list[str | None]:
    parsed = [molecules.parse_formula(c) for c in candidates]
    return [repr((sorted(p[0].items()), p[1])) if p is not None else None for p in parsed]


def _opsin_parses(candidates: list[str]) -> list[bool]:
    return [check.canonical is not None for check in naming.roundtrip(list(candidates), [None] * len(candidates))]


def _canonical_form(candidates: list[str]) -> list[bool]:
    return [molecules.canonical_smiles(c) == c for c in candidates]


def _standard_inchi(candidates: list[str]) -> list[bool]:
    mols = [molecules.mol_from_inchi(c) for c in candidates]
    return [mol is not None and molecules.inchi_from_mol(mol) == c for mol, c in zip(mols, candidates, strict=True)]


TASKS: dict[str, ChemTask] = {
    task.name: task
    for task in (
        ChemTask(
            "smiles2iupac",
            instruction="Translate the SMILES string of a molecule into its IUPAC name.",
            make_example=lambda canonical, name, seed: (canonical, name),
            targets=lambda inputs, references: _smiles_else_names(inputs, references),
            score_rows=scores.score_names,
            input_molecules=_read_smiles,
            consistent=_names_match,
            well_formed=_opsin_parses,
            answers=_read_names,
            round_trip=(_read_smiles, _read_names),
            baseline=_per_molecule(_openclatura_name),
            molecule_and_name=lambda input, output: (input, output),
            lookup=(pubchem.SOURCE, pubchem.iupac_names),
        ),
        ChemTask(
            "iupac2smiles",
            instruction="Translate the IUPAC name of a molecule into its SMILES string.",
            make_example=lambda canonical, name, seed: (name, canonical),
            targets=lambda inputs, references: _smiles_else_names(references, inputs),
            score_rows=scores.score_smiles,
            input_molecules=_read_names,
            consistent=_same_canonical,
            well_formed=_canonical_form,
            answers=_read_smiles,
            round_trip=(_names_as_given, _openclatura_names),
            baseline=lambda inputs: [molecule or "" for molecule in _read_names(inputs)],
            molecule_and_name=lambda input, output: (output, input),
        ),
        ChemTask(
            "smiles2formula",
            instruction="Give the molecular formula of the molecule with this SMILES string.",
            make_example=_from_molecule(lambda mol, canonical, seed: (canonical, molecules.formula_from_mol(mol))),
            targets=lambda inputs, references: _read_smiles(inputs),
            score_rows=scores.score_formulas,
            input_molecules=_read_smiles,
            consistent=_same_formula,
            well_formed=lambda candidates: [molecules.parse_formula(c) is not None for c in candidates],
            answers=_formula_counts,
            baseline=_per_molecule(lambda mol, text: molecules.formula_from_mol(mol)),
        ),
        ChemTask(
            "randomsmiles2canonical",
            instruction="Write the canonical SMILES string of this molecule.",
            make_example=_from_molecule(
                lambda mol, canonical, seed: (molecules.random_smiles(mol, canonical, seed), canonical)
            ),
            targets=lambda inputs, references: _read_smiles(inputs),
            score_rows=scores.score_smiles,
            input_molecules=_read_smiles,
            consistent=_same_canonical,
            well_formed=_canonical_form,
            answers=_read_smiles,
            baseline=_per_molecule(lambda mol, text: molecules.canonical_from_mol(mol) or ""),
        ),
        ChemTask(
            "smiles2inchi",
            instruction="Give the InChI of the molecule with this SMILES string.",
            make_example=_from_molecule(_inchi_example),
            targets=lambda inputs, references: _read_smiles(inputs),
            score_rows=scores.score_inchis,
            input_molecules=_read_smiles,
            consistent=_same_inchikey,
            well_formed=_standard_inchi,
            answers=_inchi_molecules,
            round_trip=(_smiles_tautomers, _inchi_tautomers),
            baseline=_per_molecule(lambda mol, text: molecules.inchi_from_mol(mol) or ""),
            prefix_check=inchi_prefix.prefix_check,
        ),
    )
}

INSTRUCTIONS: dict[str, str] = {name: task.instruction for name, task in TASKS.items()}


def get_task(task: str) -> ChemTask:
    if task not in TASKS:
        raise ValueError(f"Unknown chemistry task {task!r}; expected one of {sorted(CHEM_TASKS)}")
    return TASKS[task]


def prefix_checks(task: str, inputs: list[str]) -> list[Callable[[str, bool], bool] | None]:
    """Per input, the test `generate.guide` runs on each beam's text so far (chem.inchi_prefix)."""
    check = get_task(task).prefix_check
    if check is None:
        raise ValueError(f"guide: no check of a partial output for {task!r}")
    return [check(x) for x in inputs]


def make_example(task: str, canonical: str, name: str, seed: int) -> Example | None:
    """``(input, output)`` of `task` for a molecule given by its canonical SMILES and verified name."""
    return get_task(task).make_example(canonical, name, seed)


def molecule_and_name(task: str, input: str, output: str) -> tuple[str, str]:
    """(canonical SMILES, IUPAC name) of a smiles2iupac or iupac2smiles pair."""
    split = TASKS[task].molecule_and_name if task in TASKS else None
    if split is None:
        raise ValueError(f"data.mix: needs a smiles2iupac or iupac2smiles run (both a SMILES and a name per pair), "
                         f"not {task!r}")
    smiles, name = split(input, output)
    return molecules.canonical_smiles(smiles) or smiles, name


def mix_examples(task: str, pairs: list[tuple[str, str]], extra: list[str], seed: int) -> list[tuple[str, str, str]]:
    """(input, output, instruction) for every pair and every task of `extra`, made from the
    pair's molecule and name: the multi-task data of a `data.mix` run, in a fixed order."""
    for t in extra:
        get_task(t)
        if t == task:
            raise ValueError(f"data.mix: {t!r} is the run's own task")
    out: list[tuple[str, str, str]] = []
    for other in map(get_task, extra):
        for input, output in pairs:
            canonical, name = molecule_and_name(task, input, output)
            made = other.make_example(canonical, name, seed)
            if made is not None:
                out.append((made[0], made[1], other.instruction))
    return out


def random_smiles_inputs(inputs: list[str], epoch: int, seed: int) -> list[str]:
    """A fresh random SMILES of each input molecule for this epoch (the input as it is where
    RDKit cannot read it): the same for the same (inputs, epoch, seed), so runs resume exactly."""
    out = []
    for i, smiles in enumerate(inputs):
        mol = molecules.mol_from_smiles(smiles)
        out.append(molecules.random_smiles(mol, f"{epoch}:{i}:{smiles}", seed) if mol is not None else smiles)
    return out


def name_ordered_smiles(names: list[str], smiles_list: list[str]) -> list[str]:
    """Each SMILES rewritten in the atom order OPSIN builds its molecule from the paired name
    (RDKit writes it, aromatic, not canonical), so the SMILES reads in the order the name does:
    its first substituent first, its locants in turn (`data.output_order` / `data.input_order: name`).
    RDKit's canonical order is a global ranking a model must otherwise learn on top of the name.
    A SMILES whose name OPSIN cannot read, or reads as another molecule, is kept as it is."""
    out = []
    for parsed, smiles in zip(opsin.parse_names(list(names)), smiles_list, strict=True):
        mol = molecules.mol_from_smiles(parsed)
        if mol is None or molecules.canonical_from_mol(mol) != molecules.canonical_smiles(smiles):
            out.append(smiles)
            continue
        out.append(molecules.smiles_in_atom_order(mol))
    return out


def canonical_forms(texts: Iterable[str]) -> dict[str, str]:
    """Each distinct SMILES -> its RDKit canonical form (`generate.canonical`); text RDKit cannot
    read -> itself. Beams repeat across an input's candidates: each is parsed once."""
    return {t: molecules.canonical_smiles(t) or t for t in dict.fromkeys(texts)}


def input_spellings(task: str, inputs: list[str], n: int) -> list[list[str]]:
    """Up to `n` distinct spellings of each input's molecule: the input itself first, then random
    SMILES of it seeded by the input alone (so an input decodes the same wherever it appears).
    An input RDKit cannot read, or a molecule with fewer spellings, gets fewer. What test-time
    augmentation (`generate.spellings`) decodes; the answer still comes from the model. No added
    spelling is RDKit's canonical SMILES, so canonicalisation is never handed its answer as input."""
    if get_task(task).input_kind != "smiles":
        raise ValueError(f"generate.spellings: {task} reads names, not SMILES")
    out = []
    for smiles in inputs:
        mol = molecules.mol_from_smiles(smiles)
        found = [smiles]
        canonical = molecules.canonical_from_mol(mol) if mol is not None else None
        # Small molecules have few spellings: a bounded number of draws, not a search for n.
        for draw in range(3 * n if mol is not None and n > 1 else 0):
            candidate = molecules.random_smiles(mol, f"spelling:{draw}:{smiles}", 0)
            if candidate not in found and candidate != canonical:
                found.append(candidate)
            if len(found) == n:
                break
        out.append(found)
    return out
