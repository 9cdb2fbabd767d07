"""train.select: best: which epoch's weights a run ends with.

After each epoch the record (eval_loss, and val_<score> where the validation split is
decoded) is compared with the best so far on train.select_metric; a better epoch's weights
replace the copy in checkpoints/best (ties go to the later epoch, so a flat curve ends where
select: last would). At the end of training that copy is loaded back into the model, which
the pipeline then exports and scores on the test split. The choice is in TrainState.best, so
it is checkpointed with the rest of the state and a resumed run goes on comparing with it.
"""

from __future__ import annotations

import json
import math
from typing import Any

from seqtune.config import TrainConfig
from seqtune.errors import ConfigError, SeqtuneError
from seqtune.io import atomic_write_json
from seqtune.metrics import lower_is_better, selection_metric
from seqtune.rundir import RunDir
from seqtune.training.checkpoint import load_weights, save_weights

RECORD = "best.json"


def record_key(metric: str) -> str:
    """Where `metric` is in an epoch record: losses as they are, decoded scores as val_<score>."""
    return metric if metric.endswith("_loss") else f"val_{metric}"


def note_epoch(cfg: TrainConfig, best: dict[str, Any] | None, record: dict[str, Any], model: Any,
               rundir: RunDir) -> dict[str, Any] | None:
    """The best epoch after this one's `record`: this one (its weights saved) when it does at
    least as well as `best` on the selection metric, else `best` unchanged."""
    metric = selection_metric(cfg.select_metric, cfg.eval_generate)
    key = record_key(metric)
    value = record.get(key)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        scores = sorted(k for k, v in record.items() if k.startswith("val_") and isinstance(v, (int, float)))
        raise ConfigError(f"train.select_metric: epoch {record.get('epoch')} has no {key} to select by "
                          f"(got {value!r}; decoded validation scores: {', '.join(scores) or 'none'})")
    lower = lower_is_better(metric)
    if best is not None and (value > best["value"] if lower else value < best["value"]):
        return best
    chosen = {"epoch": record["epoch"], "metric": metric, "split": "val", "value": float(value),
              "lower_is_better": lower}
    save_weights(rundir.best, model)
    atomic_write_json(rundir.best / RECORD, chosen)
    return chosen


def restore_best(best: dict[str, Any] | None, model: Any, rundir: RunDir) -> None:
    """Load the best epoch's weights into `model`; the copy on disk must be the one `best` names."""
    if best is None:
        return
    try:
        kept = json.loads((rundir.best / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        kept = None
    if not isinstance(kept, dict) or kept.get("epoch") != best["epoch"]:
        held = kept.get("epoch") if isinstance(kept, dict) else None
        raise SeqtuneError(f"{rundir.best}: holds epoch {held}'s weights, the run's record names epoch "
                           f"{best['epoch']} as best; run again with train.resume=false")
    load_weights(rundir.best, model)
