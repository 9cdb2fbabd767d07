"""Metric logging through Accelerate's trackers: TensorBoard, MLflow, W&B and trackio, offline.

Accelerate does the logging. This module is the glue: it points each tracker at the run
folder's logs/ and keeps it off the network unless the user's environment says otherwise,
names the run after the run folder, and logs the resolved config as hyper-parameters.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from seqtune.config_help import yaml_value
from seqtune.config_sources import flatten
from seqtune.config_values import logger_names
from seqtune.errors import ConfigError
from seqtune.rundir import RunDir

# The W&B and trackio project and the MLflow experiment, where the environment names none.
PROJECT = "seqtune"


def _tensorboard(log_dir: Path, run_name: str) -> Any:
    from accelerate.tracking import TensorBoardTracker

    return TensorBoardTracker(run_name, log_dir)


def _mlflow(log_dir: Path, run_name: str) -> Any:
    # MLflow 3 refuses its file store without the opt-in, and sends usage telemetry unless told
    # not to; both are read when mlflow is imported or the store opened, so set them first.
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow
    from accelerate.tracking import MLflowTracker

    # set_tracking_uri outranks the environment variable, so a user's URI is passed on explicitly.
    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI") or (log_dir / "mlruns").resolve().as_uri())
    return MLflowTracker(experiment_name=PROJECT, run_name=run_name)


def _wandb(log_dir: Path, run_name: str) -> Any:
    from accelerate.tracking import WandBTracker

    mode = os.environ.get("WANDB_MODE", "offline")
    if mode == "offline":
        # wandb's service process reports its own errors over the network unless this is off.
        os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
    log_dir.mkdir(parents=True, exist_ok=True)
    return WandBTracker(os.environ.get("WANDB_PROJECT", PROJECT), name=run_name, dir=str(log_dir), mode=mode)


def _trackio(log_dir: Path, run_name: str) -> Any:
    if "trackio" not in sys.modules and "TRACKIO_DIR" not in os.environ:
        # trackio fixes its storage folder when first imported (in a process, the first run's
        # folder holds every later run's trackio data); the variable is not left behind, or
        # the next run would take it for the user's choice.
        os.environ["TRACKIO_DIR"] = str((log_dir / "trackio").resolve())
        try:
            import trackio  # noqa: F401
        finally:
            del os.environ["TRACKIO_DIR"]
    try:
        from accelerate.tracking import TrackioTracker
    except ImportError:  # added in accelerate 1.9
        raise ConfigError("train.logger: trackio needs accelerate >= 1.9 (pip install -U accelerate)") from None
    return TrackioTracker(PROJECT, name=run_name)


_MAKERS: dict[str, Callable[[Path, str], Any]] = {
    "tensorboard": _tensorboard, "mlflow": _mlflow, "wandb": _wandb, "trackio": _trackio}


def hyperparameters(config: dict[str, Any]) -> dict[str, bool | int | float | str]:
    """A config (nested sections or dotted keys) as {dotted key: value}; values other than
    numbers, booleans and text (null, lists) as YAML spells them: TensorBoard refuses those."""
    return {key: value if isinstance(value, (bool, int, float, str)) else yaml_value(value)
            for key, value in flatten(config).items()}


def _saved_config(run_dir: Path) -> dict[str, Any]:
    path = RunDir(run_dir).config
    loaded = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    return loaded if isinstance(loaded, dict) else {}


class Tracker:
    """The trackers `kind` names (`train.logger`: comma-separated, or a list), started at once;
    nothing when `enabled` is False (processes other than the main one). `log_dir` is a run
    folder's logs/: the config logged defaults to that folder's config.yaml (written before
    training), the run name to the folder's name."""

    def __init__(self, kind: str | Iterable[str], log_dir: str | Path, enabled: bool = True, *,
                 config: dict[str, Any] | None = None, run_name: str | None = None) -> None:
        names = logger_names(kind if isinstance(kind, str) else ",".join(kind)) if enabled else []
        self.kind = ",".join(names) or "none"
        self.trackers: list[Any] = []  # accelerate.tracking.GeneralTracker, started
        if not names:
            return
        from accelerate import PartialState

        PartialState()  # Accelerate's trackers log through its logger, which needs the state set up
        log_dir = Path(log_dir)
        run_dir = log_dir.resolve().parent
        values = hyperparameters(config if config is not None else _saved_config(run_dir))
        try:
            for name in names:
                tracker = _MAKERS[name](log_dir, run_name or run_dir.name)
                tracker.start()
                self.trackers.append(tracker)
                if values:
                    tracker.store_init_configuration(values)
        except BaseException:
            self.close()  # the trackers already started would otherwise hold their runs open
            raise

    def log(self, metrics: dict[str, float], step: int) -> None:
        for tracker in self.trackers:
            tracker.log(metrics, step=step)

    def close(self) -> None:
        trackers, self.trackers = self.trackers, []
        with contextlib.ExitStack() as finish:  # every run is finished even if one of them fails
            for tracker in trackers:
                finish.callback(tracker.finish)
