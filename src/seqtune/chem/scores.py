"""Score rows for each kind of chemistry output: IUPAC names, SMILES, formulas and InChIs.

String match under-rates models on these tasks: many names and SMILES denote the same
molecule. These scores compare molecules instead, via OPSIN for names and RDKit for
SMILES, formulas and InChIs. Garbage predictions (empty, huge, odd unicode) score as
wrong, never raise. Every scorer takes the canonical SMILES of the molecule each example
is about (``None`` where unknown), the predictions and the reference outputs, and returns
a summary (percentages 0–100, means) and one dict per example.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import molecules, naming

Scores = tuple[dict[str, float], list[dict]]


def _pct(flags: list[bool]) -> float:
    return 100.0 * sum(flags) / len(flags) if flags else 0.0


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _summary(rows: list[dict], pct: tuple[str, ...], mean: tuple[str, ...]) -> dict[str, float]:
    """`<flag>_pct` for each boolean column, `mean_<value>` for each number column (None skipped)."""
    out = {f"{k}_pct": _pct([r[k] for r in rows]) for k in pct}
    out.update({f"mean_{k}": _mean([r[k] for r in rows if r[k] is not None]) for k in mean})
    return out


def _exact(prediction: str, reference: str) -> bool:
    return isinstance(prediction, str) and prediction.strip() == (reference or "").strip()


def score_names(targets: list[str | None], predictions: list[str], references: list[str]) -> Scores:
    checks = naming.roundtrip(list(predictions), targets)
    rows = []
    for target, check in zip(targets, checks, strict=True):
        rows.append(
            {
                "opsin_parsable": check.parsable,
                "same_molecule": check.same_smiles,
                "same_inchikey": check.same_inchikey,
                "tanimoto": molecules.tanimoto(check.canonical, target),
                "predicted_smiles": check.canonical,
            }
        )
    return _summary(rows, ("opsin_parsable", "same_molecule", "same_inchikey"), ("tanimoto",)), rows


@dataclass(frozen=True)
class _Structure:
    """A predicted structure (SMILES or InChI) as RDKit reads it, against the example's molecule."""

    parsed: bool
    canonical: str | None
    same_inchikey: bool
    exact: bool
    tanimoto: float


def _structures(
    read: Callable[[str], Any],
    targets: list[str | None],
    target_keys: list[str | None],
    predictions: list[str],
    references: list[str],
) -> list[_Structure]:
    out = []
    for target, target_key, pred, ref in zip(targets, target_keys, predictions, references, strict=True):
        mol = read(pred)
        canon = molecules.canonical_from_mol(mol) if mol is not None else None
        key = molecules.inchikey_from_mol(mol) if mol is not None else None
        same = key is not None and key == target_key
        out.append(_Structure(mol is not None, canon, same, _exact(pred, ref), molecules.tanimoto(canon, target)))
    return out


def score_smiles(targets: list[str | None], predictions: list[str], references: list[str]) -> Scores:
    keys = [molecules.inchikey_from_smiles(t) if t is not None else None for t in targets]
    rows = [
        {
            "valid_smiles": s.canonical is not None,
            "canonical_match": s.canonical is not None and s.canonical == target,
            "same_inchikey": s.same_inchikey,
            # The randomsmiles2canonical task asks for the canonical string itself.
            "exact_string": s.exact,
            "tanimoto": s.tanimoto,
        }
        for s, target in zip(_structures(molecules.mol_from_smiles, targets, keys, predictions, references), targets)
    ]
    pct = ("valid_smiles", "canonical_match", "same_inchikey", "exact_string")
    return _summary(rows, pct, ("tanimoto",)), rows


def _molecule_or_reference_inchi(target: str | None, reference: str) -> tuple[str | None, str | None]:
    """(canonical SMILES, InChIKey) of the example's molecule, from the reference InChI where the
    input gave none."""
    if target is not None:
        return target, molecules.inchikey_from_smiles(target)
    mol = molecules.mol_from_inchi(reference)
    if mol is None:
        return None, None
    return molecules.canonical_from_mol(mol), molecules.inchikey_from_mol(mol)


def score_inchis(targets: list[str | None], predictions: list[str], references: list[str]) -> Scores:
    known = [_molecule_or_reference_inchi(t, r) for t, r in zip(targets, references, strict=True)]
    structures = _structures(molecules.mol_from_inchi, [t for t, _ in known], [k for _, k in known],
                             predictions, references)
    rows = [
        {
            "valid_inchi": s.parsed,
            "same_molecule": s.same_inchikey,
            "exact_string": s.exact,
            "tanimoto": s.tanimoto,
        }
        for s in structures
    ]
    return _summary(rows, ("valid_inchi", "same_molecule", "exact_string"), ("tanimoto",)), rows


def _element_count_error(truth: Any, got: Any) -> float | None:
    """L1 distance between element counts; an invalid formula costs all the reference's atoms;
    unknown (None) where the reference has no formula."""
    if truth is None:
        return None
    if got is None:
        return float(sum(truth[0].values()))
    elements = set(truth[0]) | set(got[0])
    return float(sum(abs(truth[0][e] - got[0][e]) for e in elements))


def score_formulas(targets: list[str | None], predictions: list[str], references: list[str]) -> Scores:
    rows = []
    for target, pred, ref in zip(targets, predictions, references, strict=True):
        mol = molecules.mol_from_smiles(target) if target is not None else None
        truth = molecules.parse_formula(molecules.formula_from_mol(mol) if mol is not None else ref)
        got = molecules.parse_formula(pred)
        rows.append(
            {
                "valid_formula": got is not None,
                "formula_match": got is not None and truth is not None and got == truth,
                "exact_string": _exact(pred, ref),
                "element_count_error": _element_count_error(truth, got),
            }
        )
    return _summary(rows, ("valid_formula", "formula_match", "exact_string"), ("element_count_error",)), rows
