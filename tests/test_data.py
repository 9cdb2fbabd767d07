"""Readers, validation messages (file and line), dedupe and seeded splits."""

import json

import pytest

from seqtune.config import DataConfig
from seqtune.data import dedupe, load_splits, read_pairs, save_splits
from seqtune.errors import DataError


def _write(path, text, mode="w"):
    if mode == "wb":
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def test_read_all_formats(tmp_path):
    rows = [("CCO", "ethanol"), ("C", "methane"), ('C"C', "a, b")]
    csv = _write(tmp_path / "p.csv", "input,output\r\nCCO,ethanol\r\nC,methane\r\n\"C\"\"C\",\"a, b\"\r\n")
    tsv = _write(tmp_path / "p.tsv", "input\toutput\nCCO\tethanol\nC\tmethane\nC\"C\ta, b\n")
    jsonl = _write(tmp_path / "p.jsonl", "".join(json.dumps({"input": a, "output": b}) + "\n" for a, b in rows))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"input": [a for a, _ in rows], "output": [b for _, b in rows]}), tmp_path / "p.parquet")
    for path in (csv, jsonl, tmp_path / "p.parquet"):
        assert [(p.input, p.output) for p in read_pairs(path)] == rows, path
    assert [(p.input, p.output) for p in read_pairs(tsv)][:2] == rows[:2]


def test_bom_and_column_map(tmp_path):
    path = _write(tmp_path / "p.csv", "\ufeffsmiles,name\nCCO,ethanol\n")
    assert read_pairs(path, "smiles", "name")[0].input == "CCO"


@pytest.mark.parametrize("name,content,message", [
    ("empty.csv", "", "empty.csv: file is empty"),
    ("nocol.csv", "input,name\nCCO,ethanol\n", "nocol.csv:2: missing column 'output'"),
    ("blank.csv", "input,output\nCCO,ethanol\nC,\n", "blank.csv:3: empty value in column 'output'"),
    ("bad.jsonl", '{"input": "C", "output": "methane"}\n{"input": "C",\n', "bad.jsonl:2: not valid JSON"),
    ("num.jsonl", '{"input": "C", "output": 5}\n', "num.jsonl:1: column 'output' must be text"),
    ("list.jsonl", '[1, 2]\n', "list.jsonl:1: expected a JSON object"),
    ("p.xlsx", "x", "unknown file type"),
])
def test_errors_name_file_and_line(tmp_path, name, content, message):
    path = _write(tmp_path / name, content)
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        read_pairs(path)


def test_bad_encoding_names_line(tmp_path):
    path = _write(tmp_path / "latin.csv", b"input,output\nCCO,ethanol\nC,m\xe9thane\n", "wb")
    with pytest.raises(DataError, match=r"latin.csv:3: not valid UTF-8"):
        read_pairs(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_pairs(tmp_path / "nope.csv")


def test_dedupe_keeps_first():
    from seqtune.data import Pair

    pairs, dropped = dedupe([Pair("a", "1"), Pair("b", "2"), Pair("a", "3")])
    assert [(p.input, p.output) for p in pairs] == [("a", "1"), ("b", "2")] and dropped == 1


def _pairs_file(tmp_path, n=200):
    return _write(tmp_path / "pairs.jsonl", "".join(json.dumps({"input": f"x{i}", "output": f"y{i}"}) + "\n"
                                                    for i in list(range(n)) + [0, 1, 2]))


def test_split_is_seeded_disjoint_and_nested(tmp_path):
    path = _pairs_file(tmp_path)
    cfg = DataConfig(path=str(path), val_fraction=0.1, test_fraction=0.1, val_size=None, test_size=None)
    a, b = load_splits(cfg), load_splits(cfg)
    assert a.digest() == b.digest()
    assert a.stats["duplicates_dropped"] == 3
    sets = [{p.input for p in s} for s in (a.train, a.val, a.test)]
    assert len(sets[0]) == 160 and len(sets[1]) == 20 and len(sets[2]) == 20
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    other = load_splits(DataConfig(path=str(path), seed=7, val_size=None, test_size=None))
    assert other.digest() != a.digest()
    small = load_splits(DataConfig(path=str(path), val_fraction=0.1, test_fraction=0.1, train_size=50))
    big = load_splits(DataConfig(path=str(path), val_fraction=0.1, test_fraction=0.1, train_size=100))
    assert {p.input for p in small.train} < {p.input for p in big.train}  # data-size sweeps are nested
    assert small.test == big.test


def test_folder_with_splits_removes_leaks(tmp_path):
    d = tmp_path / "ds"
    d.mkdir()
    _write(d / "train.csv", "input,output\na,1\nb,2\nc,3\n")
    _write(d / "test.jsonl", json.dumps({"input": "b", "output": "2"}) + "\n")
    s = load_splits(DataConfig(path=str(d)))
    assert [p.input for p in s.train] == ["a", "c"] and [p.input for p in s.test] == ["b"]
    assert s.stats["leaked_from_train"] == 1
    save_splits(s, tmp_path / "out")
    assert (tmp_path / "out" / "train.jsonl").read_text().count("\n") == 2
