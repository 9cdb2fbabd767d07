"""RunDir owns the run folder: writers and readers ask it for paths and status, and no other
module spells the layout."""

import ast
import json
from pathlib import Path

from seqtune.experiments.results import find_runs, load_run
from seqtune.rundir import (
    CONFIG,
    EPOCH_COUNTERS,
    EPOCHS,
    ERROR,
    HOLDOUTS,
    LOCK,
    METRICS,
    NOT_MODEL_SETTINGS,
    NOT_SCORES,
    NOT_SETTINGS,
    REPORT_PLOTS,
    RUN_INFO,
    SWEEP_LOG,
    RunDir,
)

SRC = Path(__file__).resolve().parents[1] / "src" / "seqtune"


def test_paths(tmp_path):
    run = RunDir(str(tmp_path))
    assert run.root == tmp_path and run.config == tmp_path / "config.yaml" and run.metrics == tmp_path / "metrics.json"
    assert run.split("test") == tmp_path / "data" / "test.jsonl"
    assert run.epoch_predictions(3) == tmp_path / "predictions" / "epoch-3.jsonl"
    assert run.base_scores == tmp_path / "predictions" / "base.json"
    assert run.checkpoint(12) == tmp_path / "checkpoints" / "step-00000012"
    assert run.holdouts == tmp_path / "holdouts" and run.lock == tmp_path / ".seqtune.lock"


def test_status_follows_the_files_of_a_run_and_its_sweep(tmp_path):
    run = RunDir(tmp_path / "r")
    assert run.status == "pending" and not run.is_run
    run.root.mkdir()
    run.config.write_text("{}\n")
    assert run.is_run and run.status == "pending"
    run.epochs.write_text("{}\n")
    assert run.status == "incomplete"
    run.error.write_text("exit code 1\n")
    assert run.status == "failed"
    run.metrics.write_text("{}")
    assert run.status == "done" and run.is_complete  # metrics.json is written last


def test_epoch_prediction_files_in_epoch_order(tmp_path):
    run = RunDir(tmp_path)
    assert run.epoch_prediction_files() == []
    run.predictions.mkdir()
    for k in (10, 2, 1):
        run.epoch_predictions(k).write_text("")
    assert run.epoch_prediction_files() == [run.epoch_predictions(k) for k in (1, 2, 10)]


def test_bookkeeping_keys_are_one_nested_definition():
    assert EPOCH_COUNTERS < NOT_SCORES and NOT_SETTINGS < NOT_MODEL_SETTINGS
    assert not NOT_SCORES & {"exact_match", "edit_distance", "same_molecule_pct", "verified_pct"}


def test_no_other_module_spells_the_run_folder_layout():
    names = {CONFIG, RUN_INFO, EPOCHS, METRICS, LOCK, ERROR, SWEEP_LOG, HOLDOUTS, REPORT_PLOTS, "checkpoints"}
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "rundir.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{path.relative_to(SRC)}:{node.lineno} {node.value!r}")
    assert not found, "\n".join(found)


def test_a_finished_run_has_what_rundir_names_and_the_readers_find_it(tmp_path, tiny_llama_dir):
    from seqtune.cli import main

    data = tmp_path / "pairs"
    data.mkdir()
    for split in ("train", "val", "test"):
        (data / f"{split}.jsonl").write_text("".join(json.dumps({"input": f"{split} {i}", "output": f"{i}"}) + "\n"
                                                     for i in range(6)))
    run = RunDir(tmp_path / "sweep" / "one")
    assert main(["run", f"out_dir={run.root}", f"data.path={data}", "data.task=toy", "data.test_size=null",
                 f"model.name={tiny_llama_dir}", "model.format=plain", "train.epochs=1", "train.batch_size=4",
                 "train.progress=false", "train.logger=none", "generate.max_new_tokens=4"]) == 0
    for path in (run.config, run.run_info, run.epochs, run.metrics, run.split("train"), run.split("test"),
                 run.prediction("base"), run.base_scores, run.epoch_predictions(1), run.prediction("test"),
                 run.model / "seqtune.json", run.checkpoints):
        assert path.exists(), path
    assert run.status == "done" and run.epoch_prediction_files() == [run.epoch_predictions(1)]
    assert find_runs(tmp_path / "sweep") == [run.root]
    loaded = load_run(run.root)
    assert loaded["status"] == "done" and loaded["epochs"][0]["epoch"] == 1 and loaded["metrics"]["tuned"]
