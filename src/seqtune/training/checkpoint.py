"""Checkpoints that survive being killed at any moment.

A checkpoint is written into a hidden temporary folder and renamed into place only
once complete, so `checkpoints/step-*` folders are always whole; a crash (or a full
disk) during a save leaves the previous checkpoint untouched. Each holds a manifest of
its files' sizes and sha256, checked on resume: a checkpoint damaged afterwards (a truncated
copy, a bad disk) is skipped for the newest intact one.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqtune.errors import SeqtuneError, TrainingDiverged
from seqtune.io import atomic_write_json, fsync_dir

FILES = ("model.pt", "optimizer.pt", "state.json")
MANIFEST = "manifest.json"
# state.json is left out: it is rewritten (atomically) after the save to add the epoch's evaluation.
HASHED = ("model.pt", "optimizer.pt")


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


def rng_state() -> dict[str, Any]:
    """Every RNG's state as tensors, ints and strings only, so that a checkpoint loads with
    torch.load(weights_only=True): unpickling objects from a run folder could run planted code."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, mt, gauss = random.getstate()
    state = {"torch": torch.get_rng_state(), "python": [version, torch.tensor(mt, dtype=torch.int64), gauss],
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(int(x) for x in mt.tolist()), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _digest(path: Path) -> dict[str, Any]:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 23):
            h.update(chunk)
    return {"size": path.stat().st_size, "sha256": h.hexdigest()}


def nonfinite_weight(model: Any) -> str | None:
    """The name of the first trainable weight holding NaN/inf, or None: such a state is never
    saved, so the last checkpoint stays the last good one."""
    for n, p in model.named_parameters():
        if p.requires_grad and not bool(torch.isfinite(p).all()):
            return n
    return None


def save_checkpoint(root: Path, step: int, model: Any, optimizer: Any, scheduler: Any,
                    state: dict[str, Any], rng: dict[str, Any], scaler: Any = None) -> Path:
    """`scaler`: an fp16 run's GradScaler, whose scale a resumed run must go on from (a fresh
    one would skip steps an uninterrupted run takes)."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        _save(_trainable_state(model), tmp / "model.pt")
        extra = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng}
        if scaler is not None:
            extra["scaler"] = scaler.state_dict()
        _save(extra, tmp / "optimizer.pt")
        atomic_write_json(tmp / MANIFEST, {"files": {f: _digest(tmp / f) for f in HASHED}})
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


def verify_checkpoint(path: Path) -> str | None:
    """What is wrong with a complete checkpoint folder, or None if it is intact. Folders from
    before manifests existed pass on their file list alone: there is nothing to check against."""
    try:
        if not isinstance(json.loads((path / "state.json").read_text(encoding="utf-8")), dict):
            return "state.json holds no training state"
    except (OSError, ValueError):
        return "state.json is unreadable"
    if not (path / MANIFEST).is_file():
        return None
    try:
        files = json.loads((path / MANIFEST).read_text(encoding="utf-8"))["files"]
        for name, want in files.items():
            size = (path / name).stat().st_size
            if size != want["size"]:
                return f"{name} is {size} bytes, {want['size']} were saved"
            if _digest(path / name)["sha256"] != want["sha256"]:
                return f"{name} differs from the sha256 recorded at save"
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"{MANIFEST} or a file it lists is unreadable ({err})"
    return None


def intact_checkpoint(root: Path, announce: bool = True) -> Path | None:
    """The newest checkpoint that passes verify_checkpoint. Passing over a damaged one is said
    in one line; when every one is damaged the run stops rather than silently start over."""
    if not root.is_dir():
        return None
    damaged: list[str] = []
    for path in sorted((p for p in root.glob("step-*") if _complete(p)), key=_step, reverse=True):
        why = verify_checkpoint(path)
        if why is None:
            if damaged and announce:
                print(f"checkpoint {'; '.join(damaged)}: damaged, passed over; resuming from the newest intact "
                      f"one, {path.name}")
            return path
        damaged.append(f"{path.name} ({why})")
    if damaged:
        raise SeqtuneError(f"{root}: every checkpoint is damaged ({'; '.join(damaged)}); "
                           "use train.resume=false to start over")
    return None


def resume(root: Path, model: Any, optimizer: Any, scheduler: Any, fingerprint: dict[str, Any],
           announce: bool = True, scaler: Any = None) -> dict[str, Any] | None:
    """Load the newest intact checkpoint into model, optimizer, scheduler and the RNGs; returns
    its train state, or None when there is none. A checkpoint of another experiment (other data
    or settings that shape the steps) is refused: continuing it would silently mix the two."""
    latest = intact_checkpoint(root, announce)
    if latest is None:
        return None
    # Compared before any weight is loaded: a changed setting (a LoRA rank) also changes the
    # weights' shapes, and loading them first would fail with torch's error instead of this one.
    old = json.loads((latest / "state.json").read_text()).get("fingerprint") or {}
    changed = [k for k in fingerprint if k in old and old[k] != fingerprint[k]]
    if changed:
        k = changed[0]
        raise SeqtuneError(f"{latest}: checkpoint was made with {k}={old[k]!r}, this run has {fingerprint[k]!r}; "
                           f"use another out_dir or train.resume=false to start over")
    saved = load_checkpoint(latest, model, optimizer, scheduler, scaler)
    set_rng_state(saved["rng"])
    state = saved["state"]
    if announce:
        print(f"resuming from {latest} (epoch {state['epoch'] + 1}, step {state['global_step']})")
    return state


def diverged(root: Path, what: str, step: int, epoch: int, lr: float) -> TrainingDiverged:
    """The one-line stop for a NaN/inf loss or weight, naming the checkpoint a rerun resumes from."""
    good = latest_checkpoint(root)
    kept = f"the last good checkpoint, {good}, is kept" if good else "no checkpoint was saved"
    return TrainingDiverged(f"{what} by step {step} (epoch {epoch + 1}); training stopped and {kept}; "
                            f"try a lower train.lr (now {lr:g}) or check the data")


def _load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise SeqtuneError(f"{path}: holds objects other than tensors and numbers (made by an older seqtune, or "
                           "tampered with); not loaded. Use train.resume=false to start over") from None
    except (RuntimeError, EOFError, OSError) as err:  # a truncated or corrupt zip archive
        raise SeqtuneError(f"{path}: cannot be read ({str(err).splitlines()[0]}); the checkpoint is damaged") from None


def save_weights(folder: Path, model: Any) -> Path:
    """The trainable weights alone, as a checkpoint's model.pt (load_weights reads them back),
    replacing the folder's earlier copy only once whole: the best epoch's weights of
    train.select: best."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".model.pt.tmp"
    _save(_trainable_state(model), tmp)
    os.replace(tmp, folder / "model.pt")
    fsync_dir(folder)
    return folder


def load_weights(path: Path, model: Any, every_trainable: bool = True) -> None:
    """Copy a checkpoint's weights (model.pt) into `model`. `every_trainable`: the checkpoint
    must hold every parameter that trains (a resume); off, it may hold a subset (scoring a
    frozen-layer run's checkpoint through its exported model). A weight the model does not
    have (a LoRA adapter, scored through a merged model) is always refused."""
    if not (path / "model.pt").is_file():
        raise SeqtuneError(f"{path}: not a training checkpoint (no model.pt)")
    weights = _load(path / "model.pt")
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


def load_checkpoint(path: Path, model: Any, optimizer: Any, scheduler: Any, scaler: Any = None) -> dict[str, Any]:
    load_weights(path, model)
    # weights_only (in _load): a checkpoint is data; a pickle could run code planted in a run folder.
    extra = _load(path / "optimizer.pt")
    optimizer.load_state_dict(extra["optimizer"])
    scheduler.load_state_dict(extra["scheduler"])
    # A checkpoint of a bf16/fp32 run holds none: an fp16 resume of it starts a fresh scale.
    if scaler is not None and extra.get("scaler"):
        scaler.load_state_dict(extra["scaler"])
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
