"""The committed demo dataset is what its provenance says, and every pair in it is chemically right."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[1] / "data" / "smiles2iupac_demo"
SPLITS = ("train", "val", "test")


def _rows(split: str) -> list[dict]:
    return [json.loads(line) for line in (DEMO / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]


def test_demo_files_match_provenance_and_splits_are_disjoint():
    prov = json.loads((DEMO / "provenance.json").read_text())
    assert prov["task"] == "smiles2iupac" and prov["seed"] == 0 and prov["source"]["source"] == "moses"
    assert prov["counts"] == {"train": 3000, "val": 300, "test": 300}
    assert prov["considered"] == sum(prov["counts"].values()) + sum(prov["rejects"].values())
    seen: set[str] = set()
    for split in SPLITS:
        rows = _rows(split)
        assert len(rows) == prov["counts"][split]
        for row in rows:
            assert row["input"] == row["smiles"] and row["output"]
            assert row["smiles"] not in seen
            seen.add(row["smiles"])
    size = sum((DEMO / f"{s}.jsonl").stat().st_size for s in SPLITS)
    assert size < 1_000_000


@pytest.mark.skipif(shutil.which("java") is None, reason="no Java runtime for OPSIN")
def test_every_demo_pair_round_trips_through_opsin(tmp_path):
    pytest.importorskip("rdkit")
    py2opsin = pytest.importorskip("py2opsin").py2opsin
    from seqtune.chem import molecules

    rows = [r for s in SPLITS for r in _rows(s)]
    # py2opsin runs the OPSIN jar as its own Java process: independent of seqtune's JPype code.
    parsed = py2opsin([r["output"] for r in rows], tmp_fpath=str(tmp_path / "names.txt"))
    wrong = [r for r, smi in zip(rows, parsed, strict=True) if molecules.canonical_smiles(smi) != r["smiles"]]
    assert not wrong, wrong[:3]
