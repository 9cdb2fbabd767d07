"""Checkpoints that survive being killed at any moment.

A checkpoint is written into a hidden temporary folder and renamed into place only
once complete, so `checkpoints/step-*` folders are always whole; a crash (or a full
disk) during a save leaves the previous checkpoint untouched.
"""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from seqtune.errors import SeqtuneError
from seqtune.io import atomic_write_json, fsync_dir


def _trainable_state(model: Any) -> dict[str, torch.Tensor]:
    # Frozen weights (the base under LoRA) come back from the base model; only what
    # training changes is saved. named_parameters() lists a tied weight once.
    return {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(root: Path, step: int, model: Any, optimizer: Any, scheduler: Any,
                    state: dict[str, Any], rng: dict[str, Any]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        torch.save(_trainable_state(model), tmp / "model.pt")
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng},
                   tmp / "optimizer.pt")
        atomic_write_json(tmp / "state.json", state)
        fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        fsync_dir(root)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if err.errno == errno.ENOSPC:
            prev = latest_checkpoint(root)
            raise SeqtuneError(f"{root}: disk full while saving checkpoint step {step}; "
                               f"previous checkpoint {prev} is intact") from None
        raise
    return final


def latest_checkpoint(root: Path) -> Path | None:
    if not root.is_dir():
        return None
    done = [p for p in root.glob("step-*") if (p / "state.json").is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[1])) if done else None


def load_checkpoint(path: Path, model: Any, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    weights = torch.load(path / "model.pt", map_location="cpu", weights_only=True)
    missing = [n for n, p in model.named_parameters() if p.requires_grad and n not in weights]
    if missing:
        raise SeqtuneError(f"{path}: checkpoint does not match the model (missing {missing[0]}, ...)")
    with torch.no_grad():
        params = dict(model.named_parameters())
        for n, t in weights.items():
            params[n].copy_(t)
    extra = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=False)
    optimizer.load_state_dict(extra["optimizer"])
    scheduler.load_state_dict(extra["scheduler"])
    state = json.loads((path / "state.json").read_text())
    return {"state": state, "rng": extra["rng"]}


def prune_checkpoints(root: Path, keep_last: int, keep: Path | None = None) -> None:
    done = sorted((p for p in root.glob("step-*") if (p / "state.json").is_file()),
                  key=lambda p: int(p.name.split("-")[1]))
    for p in done[:-keep_last] if keep_last > 0 else []:
        if p != keep:
            shutil.rmtree(p, ignore_errors=True)
