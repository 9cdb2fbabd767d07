"""Metric logging to TensorBoard or MLflow (or nowhere), behind one small interface."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seqtune.errors import ConfigError


class Tracker:
    def __init__(self, kind: str, log_dir: Path, enabled: bool = True) -> None:
        self.kind = kind if enabled else "none"
        self._writer: Any = None
        if self.kind == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(log_dir))
        elif self.kind == "mlflow":
            try:
                import mlflow
            except ImportError:
                raise ConfigError("train.logger: mlflow is not installed (pip install mlflow)") from None
            self._writer = mlflow
            if mlflow.active_run() is None:
                mlflow.start_run()

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.kind == "tensorboard":
            for k, v in metrics.items():
                self._writer.add_scalar(k, v, step)
        elif self.kind == "mlflow":
            self._writer.log_metrics({k.replace("/", "_"): v for k, v in metrics.items()}, step=step)

    def close(self) -> None:
        if self.kind == "tensorboard":
            self._writer.close()
        elif self.kind == "mlflow":
            self._writer.end_run()
