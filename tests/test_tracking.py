"""train.logger through Accelerate's trackers: each writes offline into the run folder's logs/,
with the config as hyper-parameters and the run folder's name as the run name."""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from seqtune.cli import main
from seqtune.config import RunConfig, TrainConfig, load_config, save_config
from seqtune.errors import ConfigError
from seqtune.training.tracking import Tracker, hyperparameters

# Variables that would send a tracker elsewhere (or that the glue sets): unset for each test,
# and whatever the glue sets is undone afterwards.
TRACKER_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID", "MLFLOW_TAGS",
               "MLFLOW_ALLOW_FILE_STORE", "MLFLOW_DISABLE_TELEMETRY", "WANDB_MODE", "WANDB_PROJECT",
               "WANDB_DIR", "WANDB_ERROR_REPORTING", "TRACKIO_DIR", "TRACKIO_SPACE_ID", "TRACKIO_SERVER_URL")


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A run folder `myrun` with its config.yaml, as the pipeline writes it before training; the
    working directory is its parent, so a tracker writing outside the run folder is seen."""
    for name in TRACKER_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "myrun"
    run.mkdir()
    save_config(RunConfig(out_dir=str(run)), run / "config.yaml")
    return run


def _log_some(tracker: Tracker) -> None:
    tracker.log({"train/loss": 1.5, "train/lr": 1e-3}, step=10)
    tracker.log({"epoch/exact_match": 0.25, "epoch/epoch": 1}, step=20)
    tracker.close()


def _only_the_run_folder_written(run: Path) -> None:
    assert sorted(os.listdir(run.parent)) == ["myrun"]
    assert sorted(os.listdir(run)) == ["config.yaml", "logs"]


def _scalars(event_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(event_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_writes_events_named_after_the_run_with_the_config(run_dir: Path) -> None:
    _log_some(Tracker("tensorboard", run_dir / "logs"))
    _only_the_run_folder_written(run_dir)
    events = run_dir / "logs" / "myrun"  # the run name is the run folder's name
    scalars = _scalars(events)
    assert scalars["train/loss"] == [(10, 1.5)]
    assert scalars["epoch/exact_match"] == [(20, 0.25)]
    (hparams,) = events.glob("*/hparams.yml")
    logged = yaml.safe_load(hparams.read_text())
    assert logged["train.lr"] == 5e-4 and logged["out_dir"] == str(run_dir)
    assert logged["data.instruction_column"] == "null"  # None, which TensorBoard refuses, as YAML spells it


def test_mlflow_file_store_holds_the_run_with_params_and_metrics(run_dir: Path) -> None:
    from mlflow.tracking import MlflowClient

    _log_some(Tracker("mlflow", run_dir / "logs"))
    _only_the_run_folder_written(run_dir)
    store = run_dir / "logs" / "mlruns"
    client = MlflowClient(tracking_uri=store.resolve().as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("seqtune").experiment_id])
    assert run.info.run_name == "myrun" and run.info.status == "FINISHED"
    assert run.data.params["train.lr"] == "0.0005" and run.data.params["train.logger"] == "tensorboard"
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [(10, 1.5)]
    assert run.data.metrics["epoch/exact_match"] == 0.25


def _wandb_records(path: Path) -> list[Any]:
    """The records of a W&B run file: a LevelDB-style log of protobuf records in 32 KiB blocks."""
    from wandb.proto import wandb_internal_pb2

    data, block, pos, part, records = path.read_bytes(), 32768, 7, b"", []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if pos + 7 + length > len(data):  # a record still being written
            break
        part += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(part)
            records.append(record)
            part = b""
    return records


def _finished_wandb_records(path: Path, timeout: float = 60) -> list[Any]:
    """The run file's records once wandb's service process has written the run's end: `finish()`
    can return before it has (the process's exit waits for it)."""
    deadline = time.monotonic() + timeout
    while True:
        records = _wandb_records(path)
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


def test_wandb_runs_offline_into_logs_with_history_and_config(run_dir: Path) -> None:
    _log_some(Tracker("wandb", run_dir / "logs"))
    _only_the_run_folder_written(run_dir)
    (offline,) = (run_dir / "logs" / "wandb").glob("offline-run-*")
    (run_file,) = offline.glob("run-*.wandb")
    history, config, names = {}, {}, []
    for record in _finished_wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            names.append((record.run.project, record.run.display_name))
        elif kind == "history":
            row = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            history.update({(k, row["_step"]): v for k, v in row.items() if not k.startswith("_")})
        elif kind == "config":
            config.update({u.key or ".".join(u.nested_key): json.loads(u.value_json) for u in record.config.update})
    assert ("seqtune", "myrun") in names
    assert history[("train/loss", 10)] == 1.5 and history[("epoch/exact_match", 20)] == 0.25
    assert config["train.lr"] == 5e-4 and config["model.name"] == "smollm2-135m"


def test_trackio_writes_its_local_database_into_logs(run_dir: Path) -> None:
    # trackio fixes its folder on first import: a fresh process shows where a run's first import goes.
    script = textwrap.dedent("""
        import sys
        from seqtune.training.tracking import Tracker
        t = Tracker("trackio", sys.argv[1])
        t.log({"train/loss": 1.5, "train/lr": 1e-3}, step=10)
        t.log({"epoch/exact_match": 0.25}, step=20)
        t.close()
    """)
    env = {k: v for k, v in os.environ.items() if k not in TRACKER_ENV} | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script, "myrun/logs"], cwd=run_dir.parent, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    _only_the_run_folder_written(run_dir)
    db = sqlite3.connect(run_dir / "logs" / "trackio" / "seqtune.db")  # project "seqtune"
    try:
        rows = db.execute("select run_name, step, metrics from metrics order by step").fetchall()
        (config,) = db.execute("select run_name, config from configs").fetchall()
    finally:
        db.close()
    assert [(name, step) for name, step, _ in rows] == [("myrun", 10), ("myrun", 20)]
    assert json.loads(rows[0][2])["train/loss"] == 1.5 and json.loads(rows[1][2])["epoch/exact_match"] == 0.25
    assert config[0] == "myrun" and json.loads(config[1])["train.lr"] == 5e-4


def test_several_loggers_at_once_as_a_list_or_comma_separated(run_dir: Path) -> None:
    assert load_config(overrides=["train.logger=tensorboard, mlflow,wandb"]).train.logger == "tensorboard, mlflow,wandb"
    tracker = Tracker(["tensorboard", "mlflow", "wandb"], run_dir / "logs", config={"train": {"lr": 0.1}},
                      run_name="given")
    assert [t.name for t in tracker.trackers] == ["tensorboard", "mlflow", "wandb"]
    _log_some(tracker)
    logs = run_dir / "logs"
    assert _scalars(logs / "given")["train/loss"] == [(10, 1.5)]
    assert list((logs / "mlruns").glob("*/*/metrics/train/loss")) and list((logs / "mlruns").glob("*/*/params/train.lr"))
    assert list((logs / "wandb").glob("offline-run-*/run-*.wandb"))


def test_none_and_processes_other_than_the_main_one_log_nothing(run_dir: Path, monkeypatch) -> None:
    for kind in ("none", "", "none,none"):
        _log_some(Tracker(kind, run_dir / "logs"))
    monkeypatch.setitem(sys.modules, "wandb", None)  # not needed where nothing is logged
    _log_some(Tracker("tensorboard,wandb", run_dir / "logs", enabled=False))
    assert not (run_dir / "logs").exists()


def test_unknown_logger_is_rejected_where_it_was_written(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^option --train.logger: train.logger: 'tensorbord' is not one of "
                                          r"none, tensorboard, mlflow, wandb, trackio$"):
        load_config(overrides=["--train.logger", "tensorboard,tensorbord"])
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  lr: 0.001\n  logger: comet\n")
    with pytest.raises(ConfigError, match=rf"^{cfg}:3: train.logger: 'comet' is not one of"):
        load_config(cfg)
    with pytest.raises(ConfigError, match="'comet' is not one of"):
        Tracker("comet", tmp_path / "logs")


@pytest.mark.parametrize("name,module,package", [("wandb", "wandb", "wandb"), ("mlflow", "mlflow", "mlflow-skinny"),
                                                 ("trackio", "trackio", "trackio")])
def test_a_missing_package_is_one_line_naming_it(monkeypatch, capsys, tmp_path, name, module, package) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now fails, as if not installed
    message = f"train.logger: {name} is not installed (pip install {package})"
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[f"train.logger=tensorboard,{name}"])
    assert str(err.value) == f"argument train.logger=tensorboard,{name}: {message}"
    # before any work: the command stops at its config, with one line and exit 2
    assert main(["run", "configs/demo.yaml", "--train.logger", name, "--print-config"]) == 2
    assert capsys.readouterr().err == f"seqtune: error: option --train.logger: {message}\n"
    with pytest.raises(ConfigError, match="pip install"):  # a TrainConfig built in code is checked too
        Tracker(TrainConfig(logger=name).logger, tmp_path / "logs")
    assert not (tmp_path / "logs").exists()


def test_hyperparameters_are_dotted_keys_with_values_every_tracker_takes() -> None:
    flat = hyperparameters({"out_dir": "r", "data": {"val_size": None, "seed": 1}, "train": {"packing": "auto"},
                            "x": [1, 2], "y": {}})
    assert flat == {"out_dir": "r", "data.val_size": "null", "data.seed": 1, "train.packing": "auto",
                    "x": "[1, 2]", "y": "{}"}


def test_training_logs_steps_epoch_scores_and_config(run_dir: Path) -> None:
    """Through the loop: step losses, each epoch's record (scores from the epoch hook included),
    and the run folder's config.yaml as hyper-parameters."""
    from tiny import make_model, make_tokenizer

    from seqtune.prompts import encode_example, get_format
    from seqtune.training.batching import Example
    from seqtune.training.loop import train

    tok = make_tokenizer("llama")
    examples = [Example(*map(tuple, encode_example(tok, get_format("plain"), f"CC{'C' * i}O", f"ol {i}", "")))
                for i in range(8)]
    cfg = TrainConfig(epochs=2, batch_size=4, log_every=1, progress=False, precision="fp32", logger="tensorboard")
    train(make_model("llama", len(tok), hidden=32, layers=1), examples[:6], examples[6:], cfg, run_dir, 0,
          on_epoch_end=lambda epoch, _model: {"exact_match": epoch / 10})
    events = run_dir / "logs" / "myrun"
    scalars = _scalars(events)
    assert [step for step, _ in scalars["train/loss"]] == [1, 2, 3, 4]
    assert scalars["epoch/exact_match"] == [(2, pytest.approx(0.1)), (4, pytest.approx(0.2))]
    assert [step for step, _ in scalars["epoch/eval_loss"]] == [2, 4]
    (hparams,) = events.glob("*/hparams.yml")
    assert yaml.safe_load(hparams.read_text())["train.logger"] == "tensorboard"
