"""Dataset builder: rejects by reason, determinism, resumption, splits, and an independent OPSIN check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("rdkit")
pytest.importorskip("openclatura")
pytest.importorskip("jpype")

from seqtune.chem import opsin as _opsin  # noqa: E402

if not _opsin.java_available():
    pytest.skip("no Java runtime for OPSIN (scripts/setup_chem.sh installs one)", allow_module_level=True)

from seqtune.chem import molecules  # noqa: E402
from seqtune.chem.build import dataset as build  # noqa: E402
from seqtune.chem.build import sources, splits  # noqa: E402

OUT_FILES = ("train.jsonl", "val.jsonl", "test.jsonl", "provenance.json")
BAD_LINES = {
    "": "empty_line",
    "not_a_smiles": "invalid_smiles",
    "C1CC": "invalid_smiles",
    "c1cccc1": "invalid_smiles",  # cannot be kekulized
    "[Na+].[Na+]": None,  # mixture: largest fragment is an ion; outcome not pinned
    "C" * 60: "too_many_atoms",
}


@pytest.fixture(scope="module")
def smiles_file(tmp_path_factory) -> Path:
    nci = sources.load_nci().smiles[:60]
    lines = list(nci[:30]) + list(BAD_LINES) + [nci[3]] + list(nci[30:])  # nci[3] again: a duplicate
    path = tmp_path_factory.mktemp("src") / "mols.smi"
    path.write_text("\n".join(lines) + "\n")
    return path


def _build(smiles_file: Path, out: Path, **kw) -> build.BuildResult:
    args = {"seed": 0, "val_frac": 0.1, "test_frac": 0.1, "workers": 1, "shard_size": 16, "progress": False}
    args.update(kw)
    return build.build_dataset("smiles2iupac", str(smiles_file), 1000, out, **args)


@pytest.fixture(scope="module")
def built(smiles_file, tmp_path_factory) -> build.BuildResult:
    return _build(smiles_file, tmp_path_factory.mktemp("built"))


def _rows(out: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (out / f"{split}.jsonl").read_text().splitlines()]


def _all_rows(out: Path) -> list[dict]:
    return [r for s in build.SPLITS for r in _rows(out, s)]


def test_rejects_are_counted_by_reason_and_counts_add_up(built, smiles_file):
    prov = json.loads((built.out_dir / "provenance.json").read_text())
    n_lines = len(smiles_file.read_text().splitlines())
    assert prov["source_records"] == n_lines == 67
    assert prov["considered"] == n_lines  # n=1000 > source, so every record was looked at
    assert prov["considered"] == sum(prov["counts"].values()) + sum(prov["rejects"].values())
    assert prov["total"] == sum(prov["counts"].values()) == len(_all_rows(built.out_dir))
    assert prov["rejects"]["empty_line"] == 1
    assert prov["rejects"]["invalid_smiles"] == 3
    assert prov["rejects"]["too_many_atoms"] >= 1
    assert prov["rejects"]["duplicate"] == 1
    assert prov["total"] >= 45  # most NCI molecules get a verified name
    assert prov["versions"]["opsin"] != "unknown" and prov["seed"] == 0
    for split in build.SPLITS:
        assert prov["counts"][split] == len(_rows(built.out_dir, split))


def test_rows_have_required_keys_and_no_molecule_is_in_two_splits(built):
    seen: dict[str, str] = {}
    bad = {s for s, reason in BAD_LINES.items() if reason}
    for split in build.SPLITS:
        for row in _rows(built.out_dir, split):
            assert {"input", "output", "smiles"} <= set(row)
            assert row["input"] == row["smiles"] == molecules.canonical_smiles(row["smiles"])
            assert row["smiles"] not in seen, f"{row['smiles']} in {seen.get(row['smiles'])} and {split}"
            assert row["smiles"] not in bad
            seen[row["smiles"]] = split
    assert len(_rows(built.out_dir, "val")) >= 1 and len(_rows(built.out_dir, "test")) >= 1


@pytest.mark.skipif(shutil.which("java") is None, reason="py2opsin needs a java executable")
def test_every_pair_round_trips_through_an_independent_opsin_run(built, tmp_path):
    # py2opsin runs the OPSIN jar as a separate Java process, not through our JPype code.
    py2opsin = pytest.importorskip("py2opsin").py2opsin
    rows = _all_rows(built.out_dir)
    parsed = py2opsin([r["output"] for r in rows], tmp_fpath=str(tmp_path / "names.txt"))
    assert len(parsed) == len(rows)
    for row, smi in zip(rows, parsed, strict=True):
        assert molecules.canonical_smiles(smi) == row["smiles"], row
        assert molecules.inchikey_from_smiles(smi) == molecules.inchikey_from_smiles(row["smiles"])


def test_rebuild_in_fresh_dir_with_two_workers_is_byte_identical(built, smiles_file, tmp_path):
    other = _build(smiles_file, tmp_path / "again", workers=2)
    assert other.shards_computed == 5 and other.shards_reused == 0
    for name in OUT_FILES:
        assert (other.out_dir / name).read_bytes() == (built.out_dir / name).read_bytes(), name


def test_interrupted_build_resumes_from_finished_shards(smiles_file, tmp_path):
    out = tmp_path / "resume"
    first = _build(smiles_file, out)
    reference = {name: (out / name).read_bytes() for name in OUT_FILES}
    shards = sorted((out / ".shards").glob("*/shard_*.jsonl"))
    assert first.shards_computed == len(shards) == 5
    stamps = {p: p.stat().st_mtime_ns for p in shards}
    # Simulate a crash after three shards: outputs and the last two shards never got written.
    for name in OUT_FILES:
        (out / name).unlink()
    shards[-1].unlink()
    shards[-2].unlink()
    (shards[0].parent / ".shard_000004.jsonl.abc.tmp").write_text("half a shard")
    again = _build(smiles_file, out)
    assert (again.shards_computed, again.shards_reused) == (2, 3)
    for p in shards[:3]:
        assert p.stat().st_mtime_ns == stamps[p], f"{p.name} was redone"
    for name in OUT_FILES:
        assert (out / name).read_bytes() == reference[name], name
    assert not list(shards[0].parent.glob("*.tmp"))


def test_n_limits_pairs_and_different_seed_changes_selection(smiles_file, tmp_path):
    small = _build(smiles_file, tmp_path / "small", shard_size=8)
    # n is reached early, so later shards are never named.
    limited = build.build_dataset(
        "smiles2iupac",
        str(smiles_file),
        20,
        tmp_path / "n20",
        seed=0,
        workers=1,
        shard_size=8,
        progress=False,
    )
    assert limited.provenance["total"] == 20
    assert limited.provenance["considered"] == 20 + sum(limited.rejects.values())
    assert limited.shards_computed < small.shards_computed
    other_seed = build.build_dataset(
        "smiles2iupac", str(smiles_file), 20, tmp_path / "s1", seed=1, workers=1, shard_size=8, progress=False
    )
    assert {r["smiles"] for r in _all_rows(other_seed.out_dir)} != {
        r["smiles"] for r in _all_rows(limited.out_dir)
    }


def test_scaffold_split_keeps_scaffolds_apart(built, smiles_file, tmp_path):
    shutil.copytree(built.out_dir / ".shards", tmp_path / "scaf" / ".shards")
    result = _build(smiles_file, tmp_path / "scaf", split="scaffold", val_frac=0.15, test_frac=0.15)
    assert result.shards_computed == 0  # split and task are not part of the shard cache key
    owner: dict[str, str] = {}
    for split in build.SPLITS:
        for row in _rows(result.out_dir, split):
            scaffold = molecules.murcko_scaffold(molecules.mol_from_smiles(row["smiles"]))
            assert owner.setdefault(scaffold, split) == split, f"scaffold {scaffold!r} in two splits"
    assert result.counts["train"] > 0 and result.counts["val"] + result.counts["test"] > 0


@pytest.mark.parametrize("task", ["iupac2smiles", "smiles2formula", "randomsmiles2canonical", "smiles2inchi"])
def test_other_tasks_reuse_the_same_molecules(built, smiles_file, tmp_path, task):
    out = tmp_path / task
    shutil.copytree(built.out_dir / ".shards", out / ".shards")
    result = build.build_dataset(
        task,
        str(smiles_file),
        1000,
        out,
        seed=0,
        val_frac=0.1,
        test_frac=0.1,
        workers=1,
        shard_size=16,
        progress=False,
    )
    assert result.shards_computed == 0
    for split in build.SPLITS:
        base, rows = _rows(built.out_dir, split), _rows(out, split)
        assert [r["smiles"] for r in rows] == [r["smiles"] for r in base]
        if task == "iupac2smiles":
            assert [(r["input"], r["output"]) for r in rows] == [(b["output"], b["smiles"]) for b in base]
        elif task == "randomsmiles2canonical":
            assert all(molecules.canonical_smiles(r["input"]) == r["output"] == r["smiles"] for r in rows)
        elif task == "smiles2inchi":
            assert all(r["output"].startswith("InChI=1S/") for r in rows)


def test_cli_main(smiles_file, tmp_path, capsys):
    out = tmp_path / "cli"
    rc = build.main(
        [
            "--task",
            "smiles2formula",
            "--source",
            str(smiles_file),
            "--n",
            "10",
            "--out",
            str(out),
            "--workers",
            "1",
            "--no-progress",
            "--clean-shards",
        ]
    )
    assert rc == 0
    assert "train=" in capsys.readouterr().out
    assert not (out / ".shards").exists()
    assert json.loads((out / "provenance.json").read_text())["total"] == 10
    assert build.main(["--source", str(tmp_path / "missing.smi"), "--n", "5", "--out", str(out)]) == 2
    with pytest.raises(SystemExit):
        build.main(["--split", "bogus", "--n", "5", "--out", str(out)])


def test_csv_source_with_smiles_column(tmp_path):
    path = tmp_path / "mols.csv"
    path.write_text('id,SMILES\n1,CCO\n2,"c1ccccc1"\n3,\n')
    data = sources.load_file(path)
    assert data.smiles == ["CCO", "c1ccccc1", ""]
    assert data.record_id(0) == "mols.csv:2"


def test_split_sizes_accept_fractions_and_counts():
    assert splits.split_sizes(100, 0.1, 0.2) == (70, 10, 20)
    assert splits.split_sizes(100, 5, 7) == (88, 5, 7)
    assert splits.split_sizes(3, 5, 7) == (0, 0, 3)
    with pytest.raises(ValueError):
        build.build_dataset("smiles2iupac", "nci", 10, "unused", val_frac=0.6, test_frac=0.5)
    with pytest.raises(ValueError):
        build.build_dataset("smiles2iupac", "nci", 10, "unused", val_frac=2.5)


def test_pubchem_source_with_its_own_names(tmp_path):
    result = build.build_dataset(
        "smiles2iupac",
        "pubchem",
        30,
        tmp_path / "pc",
        namer="source",
        workers=1,
        shard_size=40,
        progress=False,
    )
    prov = result.provenance
    assert prov["total"] == 30 and prov["source"]["package"].startswith("chemicals==")
    assert prov["considered"] == 30 + sum(prov["rejects"].values())
    assert prov["rejects"].get("mixture", 0) > 0  # salts: PubChem names them as a whole ("sodium;...")
    assert all(";" not in r["output"] for r in _all_rows(result.out_dir))


def test_moses_source_reads_the_cached_wheel():
    try:
        sources.moses_wheel(download=False)
    except FileNotFoundError:
        pytest.skip("MOSES wheel not cached; run scripts/setup_chem.sh")
    data = sources.load_source("moses")
    assert len(data) > 1_500_000
    assert molecules.canonical_smiles(data.smiles[0]) is not None
    assert data.meta["package"] == "molsets==0.3.1"


def test_unknown_source_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="Unknown source"):
        sources.load_source(str(tmp_path / "nope.smi"))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.sampled_from(["", "c1ccccc1", "C1CCCCC1", "c1ccncc1", "C1CC1", "c1ccc2ccccc2c1"]),
        min_size=1,
        max_size=80,
    ),
    st.sampled_from([0.0, 0.1, 0.25, 3]),
    st.sampled_from([0.0, 0.1, 0.2, 2]),
    st.integers(0, 3),
)
def test_splits_partition_rows_and_scaffold_split_never_shares_a_scaffold(scaffolds, val, test, seed):
    rows = [{"smiles": f"m{i}", "scaffold": s} for i, s in enumerate(scaffolds)]
    for splitter in (splits.split_random, splits.split_scaffold):
        parts = splitter(rows, val, test, seed)
        ids = [r["smiles"] for name in splits.SPLITS for r in parts[name]]
        assert sorted(ids) == sorted(r["smiles"] for r in rows)
        assert parts == splitter(rows, val, test, seed)
    parts = splits.split_random(rows, val, test, seed)
    assert [len(parts[s]) for s in splits.SPLITS] == list(splits.split_sizes(len(rows), val, test))
    scaffold_parts = splits.split_scaffold(rows, val, test, seed)
    owners = {}
    for name in splits.SPLITS:
        for r in scaffold_parts[name]:
            assert owners.setdefault(r["scaffold"], name) == name
