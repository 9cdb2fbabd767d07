"""Held out from the whole chain: a run starting from a model seqtune trained scores no val or
test pair that model (or one it started from) trained on, in either direction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seqtune.config import load_config
from seqtune.errors import DataError
from seqtune.lineage import chain_training_texts, run_splits, seen_note


def _jsonl(path: Path, pairs: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"input": x, "output": y}) + "\n" for x, y in pairs))


def _fake_run(root: Path, trained: list[tuple[str, str]], started_from: str) -> Path:
    """A finished run's folder as far as lineage reads it: model/seqtune.json and data/train.jsonl."""
    (root / "model").mkdir(parents=True)
    (root / "model" / "seqtune.json").write_text(json.dumps({"config": {"model": {"name": started_from}}}))
    _jsonl(root / "data" / "train.jsonl", trained)
    return root / "model"


def _cfg(data: Path, model: Path | str, out: Path):
    return load_config(None, {"out_dir": str(out), "data": {"path": str(data), "task": "name2smiles", "val_size": None,
                                                              "test_size": None},
                              "model": {"name": str(model)}})


def _child_data(folder: Path, test: list[tuple[str, str]], val: list[tuple[str, str]]) -> Path:
    _jsonl(folder / "train.jsonl", [(f"train name {i}", f"C{i}") for i in range(6)])
    _jsonl(folder / "val.jsonl", val)
    _jsonl(folder / "test.jsonl", test)
    return folder


def test_pairs_the_chain_trained_on_leave_val_and_test_in_either_direction(tmp_path):
    grand = _fake_run(tmp_path / "grand", [("CCO", "ethanol")], started_from="smollm2-135m")
    parent = _fake_run(tmp_path / "parent", [("CC", "ethane"), ("CCC", "propane")], started_from=str(grand))
    assert chain_training_texts(str(parent)) == ([str(parent), str(grand)], {"CC", "ethane", "CCC", "propane",
                                                                            "CCO", "ethanol"})
    data = _child_data(tmp_path / "d", test=[("ethane", "CC"), ("methane", "C"), ("CCO", "ethanol"), ("butane", "CCCC")],
                       val=[("propane", "CCC"), ("pentane", "CCCCC")])
    splits = run_splits(_cfg(data, parent, tmp_path / "out"))
    # "ethane" was the parent's output (reversed pair), "CCO" the grandparent's input
    assert [p.input for p in splits.test] == ["methane", "butane"]
    assert [p.input for p in splits.val] == ["pentane"]
    assert splits.stats["seen_by_start_model"] == {"models": [str(parent), str(grand)], "val": 1, "test": 2}
    assert splits.stats["used"]["test"] == 2
    assert seen_note(splits) == (f"held out: dropped 2 test and 1 val pairs that the starting model {parent} "
                                 "(or one it started from) trained on")


def test_what_the_reranker_and_its_start_trained_on_is_not_held_out_either(tmp_path):
    # the decoder starts from a model that saw none of the test; the reranker's start saw one pair
    parent = _fake_run(tmp_path / "parent", [("CC", "ethane")], started_from="smollm2-135m")
    grand = _fake_run(tmp_path / "grand", [("CCCC", "butane")], started_from="smollm2-135m")
    reranker = _fake_run(tmp_path / "reranker", [("CCC", "propane")], started_from=str(grand))
    data = _child_data(tmp_path / "d", test=[("butane", "CCCC"), ("methane", "C"), ("ethane", "CC")],
                       val=[("propane", "CCC"), ("pentane", "CCCCC")])
    cfg = _cfg(data, parent, tmp_path / "out")
    cfg.generate.num_beams = cfg.generate.candidates = 2
    assert [p.input for p in run_splits(cfg).test] == ["butane", "methane"]  # without the reranker
    cfg.generate.rerank_model = str(reranker)
    splits = run_splits(cfg)
    assert [p.input for p in splits.test] == ["methane"] and [p.input for p in splits.val] == ["pentane"]
    assert splits.stats["seen_by_start_model"] == {"models": [str(parent), str(reranker), str(grand)],
                                                   "reranker": str(reranker), "val": 1, "test": 2}
    assert seen_note(splits) == (f"held out: dropped 2 test and 1 val pairs that the starting model {parent}, "
                                 f"the reranker {reranker} or a model either started from trained on")


def test_a_model_without_its_run_folder_changes_nothing(tmp_path):
    loose = tmp_path / "copied_model"
    loose.mkdir()
    (loose / "seqtune.json").write_text("{}")
    data = _child_data(tmp_path / "d", test=[("ethane", "CC")], val=[("propane", "CCC")])
    splits = run_splits(_cfg(data, loose, tmp_path / "out"))
    assert [p.input for p in splits.test] == ["ethane"] and "seen_by_start_model" not in splits.stats
    assert seen_note(splits) == ""


def test_a_test_split_the_chain_saw_whole_is_a_one_line_error(tmp_path):
    parent = _fake_run(tmp_path / "parent", [("CC", "ethane")], started_from="smollm2-135m")
    data = _child_data(tmp_path / "d", test=[("ethane", "CC")], val=[("propane", "CCC")])
    with pytest.raises(DataError, match="every test pair is one the starting model"):
        run_splits(_cfg(data, parent, tmp_path / "out"))


def test_a_chained_run_scores_only_what_its_starting_model_never_saw(tmp_path, tiny_llama_dir):
    from seqtune.pipeline import run_pipeline

    pairs = [("C" * k, f"alkane {k}") for k in range(1, 11)]
    first = tmp_path / "first"
    _jsonl(tmp_path / "a" / "train.jsonl", pairs[:6])
    _jsonl(tmp_path / "a" / "val.jsonl", pairs[6:7])
    _jsonl(tmp_path / "a" / "test.jsonl", pairs[7:8])
    common = {"evaluate_base": False, "train": {"epochs": 1, "batch_size": 2, "progress": False, "logger": "none",
                                                "eval_generate": False, "precision": "fp32"},
              "generate": {"max_new_tokens": 4}}
    run_pipeline(load_config(None, {**common, "out_dir": str(first), "data": {"path": str(tmp_path / "a"), "task": "t"},
                                    "model": {"name": str(tiny_llama_dir)}}))
    # the reverse task, starting from that model: two of its test names were the first run's outputs
    reverse = [(y, x) for x, y in pairs]
    _jsonl(tmp_path / "b" / "train.jsonl", reverse[8:])
    _jsonl(tmp_path / "b" / "val.jsonl", reverse[7:8])
    _jsonl(tmp_path / "b" / "test.jsonl", reverse[4:7])
    second = tmp_path / "second"
    run_pipeline(load_config(None, {**common, "out_dir": str(second), "data": {"path": str(tmp_path / "b"), "task": "t"},
                                    "model": {"name": str(first / "model")}}))
    scored = [json.loads(line)["input"] for line in (second / "predictions" / "test.jsonl").read_text().splitlines()]
    assert scored == ["alkane 7"]  # alkane 5 and 6 were the first run's training outputs
    record = json.loads((second / "run.json").read_text())["data"]["seen_by_start_model"]
    assert record == {"models": [str(first / "model")], "val": 0, "test": 2}
    # scoring that model on pairs its chain trained on says so
    from seqtune.inference.predict import evaluate_model

    _jsonl(tmp_path / "mixed.jsonl", reverse[4:7] + reverse[8:9])
    scores = evaluate_model(str(second / "model"), [str(tmp_path / "mixed.jsonl")], str(tmp_path / "eval"))
    assert scores["mixed"]["seen_in_training"] == 3  # two from the first run, one from its own training
    assert json.loads((tmp_path / "eval" / "mixed.json").read_text())["seen_in_training"] == 3


def test_a_chained_run_without_a_test_split_is_no_error(tmp_path):
    parent = _fake_run(tmp_path / "parent", [("CC", "ethane")], started_from="smollm2-135m")
    data = tmp_path / "d"
    _jsonl(data / "train.jsonl", [(f"train name {i}", f"C{i}") for i in range(6)])
    _jsonl(data / "val.jsonl", [("ethane", "CC"), ("propane", "CCC")])
    splits = run_splits(_cfg(data, parent, tmp_path / "out"))
    assert splits.test == [] and [p.input for p in splits.val] == ["propane"]
    assert splits.stats["seen_by_start_model"] == {"models": [str(parent)], "val": 1, "test": 0}
