"""Checkpoints that survive being killed at any moment.

A checkpoint is written into a hidden temporary folder and renamed into place only
once complete, so `checkpoints/step-*` folders are always whole; a crash (or a full
disk) during a save leaves the previous checkpoint untouched.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import torch

from seqtune.errors import SeqtuneError
from seqtune.io import atomic_write_json, fsync_dir

FILES = ("model.pt", "optimizer.pt", "state.json")


def _step(folder: Path) -> int:
    return int(folder.name.split("-")[1])


def _complete(folder: Path) -> bool:
    # All files, not just state.json: a step folder being deleted (pruned, or replaced by a
    # re-save of the same step) loses its files one by one, in no set order.
    return all((folder / f).is_file() for f in FILES)


def _trainable_state(model: Any) -> dict[str, torch.Tensor]:
    # Frozen weights (the base under LoRA) come back from the base model; only what
    # training changes is saved. named_parameters() lists a tied weight once.
    return {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad}


class _KeepWriteError:
    """A file that remembers why a write failed: torch.save reports a failed write as a
    RuntimeError without errno, which would hide a full disk."""

    def __init__(self, fh: Any):
        self._fh = fh
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._fh.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self._fh.flush()


def _save(obj: Any, path: Path) -> None:
    with open(path, "wb") as fh:
        sink = _KeepWriteError(fh)
        try:
            torch.save(obj, sink)
        except RuntimeError:
            if sink.error is not None:
                raise sink.error from None
            raise
        fh.flush()
        # The folder's rename must not reach the disk before the data it names.
        os.fsync(fh.fileno())


def save_checkpoint(root: Path, step: int, model: Any, optimizer: Any, scheduler: Any,
                    state: dict[str, Any], rng: dict[str, Any]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        _save(_trainable_state(model), tmp / "model.pt")
        _save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng},
              tmp / "optimizer.pt")
        atomic_write_json(tmp / "state.json", state)
        fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        fsync_dir(root)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            prev = latest_checkpoint(root)
            kept = f"previous checkpoint {prev} is intact" if prev else "there is no earlier checkpoint"
            raise SeqtuneError(f"{root}: disk full while saving checkpoint step {step}; {kept}") from None
        raise
    return final


def latest_checkpoint(root: Path) -> Path | None:
    if not root.is_dir():
        return None
    done = [p for p in root.glob("step-*") if _complete(p)]
    return max(done, key=_step) if done else None


def load_weights(path: Path, model: Any, every_trainable: bool = True) -> None:
    """Copy a checkpoint's weights (model.pt) into `model`. `every_trainable`: the checkpoint
    must hold every parameter that trains (a resume); off, it may hold a subset (scoring a
    frozen-layer run's checkpoint through its exported model). A weight the model does not
    have (a LoRA adapter, scored through a merged model) is always refused."""
    if not (path / "model.pt").is_file():
        raise SeqtuneError(f"{path}: not a training checkpoint (no model.pt)")
    weights = torch.load(path / "model.pt", map_location="cpu", weights_only=True)
    params = dict(model.named_parameters())
    unknown = [n for n in weights if n not in params]
    if unknown:
        raise SeqtuneError(f"{path}: checkpoint weights {unknown[0]!r}... do not fit this model (a LoRA run's "
                           "checkpoints hold adapters only; score its exported model instead)")
    missing = [n for n, p in params.items() if every_trainable and p.requires_grad and n not in weights]
    if missing:
        raise SeqtuneError(f"{path}: checkpoint does not match the model (missing {missing[0]}, ...)")
    with torch.no_grad():
        for n, t in weights.items():
            params[n].copy_(t)


def load_checkpoint(path: Path, model: Any, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    load_weights(path, model)
    try:
        # weights_only: a checkpoint is data; a pickle could run code planted in a run folder.
        extra = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise SeqtuneError(f"{path}/optimizer.pt: holds objects other than tensors and numbers (made by an older "
                           "seqtune, or tampered with); not loaded. Use train.resume=false to start over") from None
    optimizer.load_state_dict(extra["optimizer"])
    scheduler.load_state_dict(extra["scheduler"])
    state = json.loads((path / "state.json").read_text())
    return {"state": state, "rng": extra["rng"]}


def prune_checkpoints(root: Path, keep_last: int, keep: Path | None = None) -> None:
    done = sorted((p for p in root.glob("step-*") if _complete(p)), key=_step)
    old = done[:-keep_last] if keep_last > 0 else []
    if keep is not None:  # and what is left of older folders whose deletion was cut short
        old += [p for p in root.glob("step-*") if p.is_dir() and not _complete(p) and _step(p) < _step(keep)]
    for p in old:
        if p != keep:
            shutil.rmtree(p, ignore_errors=True)
