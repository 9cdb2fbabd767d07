"""The run folder's layout, in one place: every writer (pipeline, training loop, export, sweep)
and every reader (results, report, export, predict) asks a `RunDir` for a path instead of
spelling it, so the layout cannot drift between the two sides."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# Files and folders a run writes; the names are part of the public layout (README's table).
CONFIG = "config.yaml"
RUN_INFO = "run.json"
EPOCHS = "epochs.jsonl"
METRICS = "metrics.json"
LOCK = ".seqtune.lock"
# Written into a run folder by the sweep that started the run, not by the run itself.
ERROR = "error.txt"
SWEEP_LOG = "sweep.log"
DATA, PREDICTIONS, CHECKPOINTS, MODEL, LOGS, HOLDOUTS = (
    "data", "predictions", "checkpoints", "model", "logs", "holdouts")
# `seqtune report`'s figures, beside the report in a sweep or run folder.
REPORT_PLOTS = "report_plots"
# Sub-folders that hold no run of their own: a results scan does not descend into them.
NOT_RUNS = frozenset({MODEL, PREDICTIONS, CHECKPOINTS, DATA, LOGS, HOLDOUTS, REPORT_PLOTS})

# What a run records besides its results, in one place: the pipeline's final scores, the results
# table, the plots and the sweep's config check each take the part they need from these nested
# sets, so a new bookkeeping key is added once. Each set is the one before it plus a reason.
# Where training stood when an epoch record (epochs.jsonl) was written, not how well it did.
EPOCH_COUNTERS = frozenset({"epoch", "step", "examples_seen", "train_examples", "train_seconds", "examples_per_s"})
# Keys of a record or of metrics.json that are not scores: the counters, the losses (columns of
# their own in the results table) and what the run was (model, sizes).
NOT_SCORES = EPOCH_COUNTERS | {"n", "n_params", "n_trainable", "epochs", "train_loss", "eval_loss", "lr",
                               "model", "method", "format"}
# Config keys (flattened) that change how a run is carried out or logged but not its results.
NOT_SETTINGS = frozenset({"out_dir", "train.progress", "train.logger", "train.resume", "train.keep_checkpoints",
                          "train.save_every_steps", "generate.batch_size"})
# ... and those that change what is scored but not the trained model: runs differing only in
# these belong on the same curve of a plot.
NOT_MODEL_SETTINGS = NOT_SETTINGS | {"evaluate_base", "train.eval_generate"}

Status = Literal["done", "failed", "incomplete", "pending"]


@dataclass(frozen=True)
class RunDir:
    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def run_info(self) -> Path:
        return self.root / RUN_INFO

    @property
    def epochs(self) -> Path:
        return self.root / EPOCHS

    @property
    def metrics(self) -> Path:
        return self.root / METRICS

    @property
    def lock(self) -> Path:
        return self.root / LOCK

    @property
    def error(self) -> Path:
        return self.root / ERROR

    @property
    def sweep_log(self) -> Path:
        return self.root / SWEEP_LOG

    @property
    def data(self) -> Path:
        return self.root / DATA

    @property
    def predictions(self) -> Path:
        return self.root / PREDICTIONS

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    @property
    def model(self) -> Path:
        return self.root / MODEL

    @property
    def logs(self) -> Path:
        return self.root / LOGS

    @property
    def holdouts(self) -> Path:
        """Scores of the finished model on holdout sets (`seqtune evaluate --model RUN/model`)."""
        return self.root / HOLDOUTS

    def split(self, name: str) -> Path:
        """data/{train,val,test}.jsonl: the exact splits a run used."""
        return self.data / f"{name}.jsonl"

    def prediction(self, name: str) -> Path:
        """predictions/NAME.jsonl, NAME in base, test, baseline, lookup (the test split) and
        epoch-K (the validation split)."""
        return self.predictions / f"{name}.jsonl"

    def epoch_predictions(self, epoch: int) -> Path:
        return self.prediction(f"epoch-{epoch}")

    def epoch_prediction_files(self) -> list[Path]:
        """predictions/epoch-K.jsonl present on disk, in epoch order."""
        if not self.predictions.is_dir():
            return []
        found = []
        for path in self.predictions.glob("epoch-*.jsonl"):
            epoch = path.stem.removeprefix("epoch-")
            if epoch.isdigit():
                found.append((int(epoch), path))
        return [path for _, path in sorted(found)]

    @property
    def base_scores(self) -> Path:
        """predictions/base.json: the untrained model's scores, kept so a resumed run skips them."""
        return self.predictions / "base.json"

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"step-{step:08d}"

    @property
    def best(self) -> Path:
        """checkpoints/best: the weights (model.pt) and record (best.json) of the best epoch so
        far, which a train.select: best run ends with."""
        return self.checkpoints / "best"

    @property
    def is_run(self) -> bool:
        """A run folder is one with a config.yaml (a sweep writes it before the run starts)."""
        return self.config.is_file()

    @property
    def is_complete(self) -> bool:
        """metrics.json is written last: its presence means the run finished."""
        return self.metrics.is_file()

    @property
    def status(self) -> Status:
        """done (metrics.json exists), failed (error.txt from the sweep), incomplete (started), pending."""
        if self.is_complete:
            return "done"
        if self.error.is_file():
            return "failed"
        return "incomplete" if self.run_info.is_file() or self.epochs.is_file() else "pending"
