"""Chemistry-aware scores for predictions of the chemistry tasks.

String match under-rates models on these tasks: many names and SMILES denote
the same molecule. These scores compare molecules instead, via OPSIN for names
and RDKit for SMILES, formulas and InChIs. Garbage predictions (empty, huge,
odd unicode) score as wrong, never raise.
"""

from __future__ import annotations

from . import CHEM_TASKS, molecules, naming
from .tasks import check_task

__all__ = ["CHEM_TASKS", "score"]


def _pct(flags: list[bool]) -> float:
    return 100.0 * sum(flags) / len(flags) if flags else 0.0


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _summary(rows: list[dict], pct: tuple[str, ...], mean: tuple[str, ...]) -> dict[str, float]:
    """`<flag>_pct` for each boolean column, `mean_<value>` for each number column (None skipped)."""
    out = {f"{k}_pct": _pct([r[k] for r in rows]) for k in pct}
    out.update({f"mean_{k}": _mean([r[k] for r in rows if r[k] is not None]) for k in mean})
    return out


def _target_molecules(task: str, inputs: list[str], references: list[str]) -> list[str | None]:
    """Canonical SMILES of the molecule each example is about.

    Taken from the input where the input is a structure (so a reference name
    that is itself wrong cannot mislead the score), else from the reference.
    """
    if task == "iupac2smiles":
        targets = [molecules.canonical_smiles(r) for r in references]
        missing = [i for i, t in enumerate(targets) if t is None]
        if missing:
            parsed = naming.roundtrip([inputs[i] for i in missing], [None] * len(missing))
            for i, check in zip(missing, parsed, strict=True):
                targets[i] = check.canonical
        return targets
    targets = [molecules.canonical_smiles(s) for s in inputs]
    if task == "smiles2iupac":
        missing = [i for i, t in enumerate(targets) if t is None]
        if missing:
            parsed = naming.roundtrip([references[i] for i in missing], [None] * len(missing))
            for i, check in zip(missing, parsed, strict=True):
                targets[i] = check.canonical
    return targets


def _score_names(targets: list[str | None], predictions: list[str]) -> tuple[dict, list[dict]]:
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


def _score_smiles(
    targets: list[str | None], predictions: list[str], references: list[str]
) -> tuple[dict, list[dict]]:
    rows = []
    for target, pred, ref in zip(targets, predictions, references, strict=True):
        mol = molecules.mol_from_smiles(pred)
        canon = molecules.canonical_from_mol(mol) if mol is not None else None
        key = molecules.inchikey_from_mol(mol) if mol is not None else None
        target_key = molecules.inchikey_from_smiles(target) if target is not None else None
        rows.append(
            {
                "valid_smiles": canon is not None,
                "canonical_match": canon is not None and canon == target,
                "same_inchikey": key is not None and key == target_key,
                # The randomsmiles2canonical task asks for the canonical string itself.
                "exact_string": isinstance(pred, str) and pred.strip() == (ref or "").strip(),
                "tanimoto": molecules.tanimoto(canon, target),
            }
        )
    pct = ("valid_smiles", "canonical_match", "same_inchikey", "exact_string")
    return _summary(rows, pct, ("tanimoto",)), rows


def _score_formulas(
    targets: list[str | None], predictions: list[str], references: list[str]
) -> tuple[dict, list[dict]]:
    rows = []
    for target, pred, ref in zip(targets, predictions, references, strict=True):
        mol = molecules.mol_from_smiles(target) if target is not None else None
        truth = molecules.parse_formula(molecules.formula_from_mol(mol) if mol is not None else ref)
        got = molecules.parse_formula(pred)
        error: float | None
        if truth is None:
            error = None
        elif got is None:
            error = float(sum(truth[0].values()))
        else:
            elements = set(truth[0]) | set(got[0])
            error = float(sum(abs(truth[0][e] - got[0][e]) for e in elements))
        rows.append(
            {
                "valid_formula": got is not None,
                "formula_match": got is not None and truth is not None and got == truth,
                "exact_string": isinstance(pred, str) and pred.strip() == (ref or "").strip(),
                "element_count_error": error,
            }
        )
    # element_count_error: L1 distance between element counts; an invalid formula costs all
    # the reference's atoms; unknown (None) where the reference has no formula.
    return _summary(rows, ("valid_formula", "formula_match", "exact_string"), ("element_count_error",)), rows


def _score_inchis(
    targets: list[str | None], predictions: list[str], references: list[str]
) -> tuple[dict, list[dict]]:
    rows = []
    for target, pred, ref in zip(targets, predictions, references, strict=True):
        mol = molecules.mol_from_inchi(pred)
        canon = molecules.canonical_from_mol(mol) if mol is not None else None
        key = molecules.inchikey_from_mol(mol) if mol is not None else None
        if target is not None:
            target_key = molecules.inchikey_from_smiles(target)
        else:
            ref_mol = molecules.mol_from_inchi(ref)
            target_key = molecules.inchikey_from_mol(ref_mol) if ref_mol is not None else None
            target = molecules.canonical_from_mol(ref_mol) if ref_mol is not None else None
        rows.append(
            {
                "valid_inchi": mol is not None,
                "same_molecule": key is not None and key == target_key,
                "exact_string": isinstance(pred, str) and pred.strip() == (ref or "").strip(),
                "tanimoto": molecules.tanimoto(canon, target),
            }
        )
    return _summary(rows, ("valid_inchi", "same_molecule", "exact_string"), ("tanimoto",)), rows


def score(
    task: str, inputs: list[str], predictions: list[str], references: list[str]
) -> tuple[dict[str, float], list[dict]]:
    """Summary (percentages 0–100, means) and one dict per example for a chemistry task.

    ``inputs``/``references`` are the dataset's input and output strings;
    ``predictions`` the model's outputs. Name scores parse all predictions
    with OPSIN in one in-process batch.
    """
    check_task(task)
    if not (len(inputs) == len(predictions) == len(references)):
        raise ValueError("inputs, predictions and references must have the same length")
    predictions = [p if isinstance(p, str) else "" for p in predictions]
    targets = _target_molecules(task, inputs, references)
    if task == "smiles2iupac":
        summary, rows = _score_names(targets, predictions)
    elif task in ("iupac2smiles", "randomsmiles2canonical"):
        summary, rows = _score_smiles(targets, predictions, references)
    elif task == "smiles2formula":
        summary, rows = _score_formulas(targets, predictions, references)
    else:
        summary, rows = _score_inchis(targets, predictions, references)
    summary["n"] = float(len(rows))
    return summary, rows
