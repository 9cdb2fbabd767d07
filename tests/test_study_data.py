"""The shipped study data: holdouts disjoint from every shipped training set, by InChIKey."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOLDOUTS = {"moses_scaffold": 500, "nci_small": 500}


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _keys(paths) -> dict[str, str]:
    from seqtune.chem.molecules import inchikey_from_smiles

    out = {}
    for path in paths:
        for row in _rows(path):
            key = inchikey_from_smiles(row.get("smiles") or row["input"])
            assert key, f"{path}: unreadable molecule {row}"
            out[key] = f"{path.relative_to(ROOT)}:{row.get('id')}"
    return out


def test_holdouts_are_verified_and_sized():
    for name, n in HOLDOUTS.items():
        rows = _rows(ROOT / "data" / "holdouts" / name / "test.jsonl")
        assert len(rows) == n and len({r["smiles"] for r in rows}) == n
        prov = json.loads((ROOT / "data" / "holdouts" / name / "provenance.json").read_text())
        assert "OPSIN parses it to the same" in prov["verification"]
    small = _rows(ROOT / "data" / "holdouts" / "nci_small" / "test.jsonl")
    from seqtune.chem.molecules import mol_from_smiles

    assert max(mol_from_smiles(r["smiles"]).GetNumHeavyAtoms() for r in small) <= 14


def test_no_holdout_molecule_is_in_any_shipped_training_set():
    pytest.importorskip("rdkit")
    held = _keys(sorted((ROOT / "data" / "holdouts").glob("*/test.jsonl")))
    shipped = [p for p in sorted((ROOT / "data").rglob("*.jsonl")) if "holdouts" not in p.parts]
    assert len(shipped) >= 9  # demo, pubchem_small, moses: train/val/test each
    leaks = {k: v for k, v in _keys(shipped).items() if k in held}
    assert not leaks, f"holdout molecules in shipped data: {list(leaks.items())[:5]}"
