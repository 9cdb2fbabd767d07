"""The training loop: completion-only loss, padding-free batches, bf16/fp16 autocast, exact resume.

One loop for one GPU, several GPUs (`accelerate launch` / `torchrun`, via Accelerate's
DDP set-up) and the CPU. The order of examples depends only on (seed, epoch), and the
RNG state is checkpointed, so a run resumed from any checkpoint replays exactly the
steps an uninterrupted run would have taken.

    set_up        speed plan, optimiser, schedule; resume from the newest intact checkpoint
    train         epochs of steps (training/step.py), logging every `log_every` steps,
                  a checkpoint every `save_every_steps` and at each epoch's end
    end_epoch     evaluate the epoch, record it in epochs.jsonl and the checkpoint; with
                  train.select: best, keep its weights when the best so far (selection.py)
    StopSignals   Ctrl-C / SIGTERM stop at the next step boundary, after a checkpoint
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqtune import runtime
from seqtune.config import TrainConfig
from seqtune.errors import ConfigError, SeqtuneError, TrainingInterrupted
from seqtune.io import atomic_write_json, atomic_write_jsonl
from seqtune.modeling import enable_gradient_checkpointing
from seqtune.rundir import RunDir
from seqtune.training import selection, step
from seqtune.training.batching import Example, step_order
from seqtune.training.checkpoint import (
    diverged,
    latest_checkpoint,
    nonfinite_weight,
    prune_checkpoints,
    resume,
    save_checkpoint,
)
from seqtune.training.checkpoint import rng_state as _rng_state
from seqtune.training.speed import SpeedPlan, resolve_speed_plan
from seqtune.training.step import evaluate_loss, make_optimizer, make_scaler
from seqtune.training.tracking import Tracker

EpochHook = Callable[[int, Any], dict[str, Any]]


@dataclass
class TrainState:
    """Where a run stands; checkpointed as state.json, and what `train` returns."""

    global_step: int = 0
    epoch: int = 0  # epoch in progress (0-based)
    step_in_epoch: int = 0  # next step of that epoch to run
    examples_seen: int = 0
    epoch_loss_sum: float = 0.0
    epoch_tokens: int = 0
    train_seconds: float = 0.0
    pending_eval: bool = False  # epoch's steps done, its evaluation not yet recorded
    history: list | None = None  # one record per finished epoch, as in epochs.jsonl
    # What the run was started with (data hash, settings that shape the steps); a resume
    # with different ones would silently continue another experiment, so it is refused.
    fingerprint: dict | None = None
    # train.select: best: the best epoch so far ({epoch, metric, value, ...}), its weights in checkpoints/best.
    best: dict | None = None


@dataclass
class _Run:
    """One call of `train`: what it was given and set up, and the TrainState it advances."""

    cfg: TrainConfig
    plan: SpeedPlan
    state: TrainState
    model: Any  # the model itself: saved, evaluated, handed to on_epoch_end
    stepped: Any  # what the steps run through: the model, or its DDP / torch.compile wrapper
    optimizer: Any
    scheduler: Any
    accelerator: Any
    tracker: Tracker
    rundir: RunDir
    total_steps: int
    pad_id: int
    n_train: int
    val_examples: list[Example]
    on_epoch_end: EpochHook | None
    budget: int  # tokens per forward pass; halved for good after an out-of-memory (oom_halving)
    # The loss summed on the device; read back (a host sync) only at log and save points.
    running: torch.Tensor
    scaler: Any  # fp16's GradScaler (checkpointed with the optimiser), else None

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_up(model: Any, train_examples: list[Example], val_examples: list[Example], cfg: TrainConfig,
           out_dir: str | Path, pad_id: int, accelerator: Any = None, fingerprint: dict[str, Any] | None = None,
           on_epoch_end: EpochHook | None = None) -> _Run:
    """Everything before the first step: the speed plan, optimiser and schedule, and the state
    to go on from when the run folder holds a checkpoint of this experiment."""
    from accelerate import Accelerator
    from transformers import get_scheduler

    # runtime.training_device: `seqtune check` asks it too, to time steps where they will run.
    accelerator = accelerator or Accelerator(cpu=runtime.training_device().type != "cuda")
    device, world, main = accelerator.device, accelerator.num_processes, accelerator.is_main_process
    plan = resolve_speed_plan(cfg, model, train_examples, pad_id, device, world, announce=main)
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):  # AdamW accepts inf and turns every weight into NaN
        raise ConfigError(f"train.lr: must be a finite number > 0, got {cfg.lr}")
    seed_everything(cfg.seed)
    model.to(device)
    model.train()
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    optimizer = make_optimizer(model, cfg)
    scaler = make_scaler(plan, device)
    total_steps = math.ceil(len(train_examples) / cfg.batch_size) * cfg.epochs
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    scheduler = get_scheduler(cfg.lr_schedule, optimizer, num_warmup_steps=int(cfg.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    fingerprint = {"n_train": len(train_examples), "batch_size": cfg.batch_size, "lr": cfg.lr, "seed": cfg.seed,
                   "lr_schedule": cfg.lr_schedule, "order": cfg.order,
                   "prompt_loss_weight": cfg.prompt_loss_weight, **(fingerprint or {})}
    rundir = RunDir(out_dir)
    state = TrainState(history=[], fingerprint=fingerprint)
    saved = (resume(rundir.checkpoints, model, optimizer, scheduler, fingerprint, announce=main, scaler=scaler)
             if cfg.resume else None)
    if saved is not None:
        state = dataclasses.replace(TrainState(**saved), fingerprint=fingerprint)
    stepped = accelerator.prepare_model(model) if world > 1 else model
    if cfg.compile:
        stepped = torch.compile(stepped, dynamic=True)
    return _Run(cfg=cfg, plan=plan, state=state, model=model, stepped=stepped, optimizer=optimizer,
                scheduler=scheduler, accelerator=accelerator, tracker=Tracker(cfg.logger, rundir.logs, enabled=main),
                rundir=rundir, total_steps=total_steps, pad_id=pad_id, n_train=len(train_examples),
                val_examples=val_examples, on_epoch_end=on_epoch_end, budget=cfg.micro_batch_tokens,
                running=torch.zeros((), dtype=torch.float64, device=device), scaler=scaler)


class StopSignals:
    """SIGINT and SIGTERM during training ask for a stop at the next step boundary, after a
    checkpoint, instead of killing a step half done; the caller's handlers come back on exit."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, ckpt_root: Path) -> None:
        self.ckpt_root = ckpt_root
        self.received: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        self._old = {s: signal.signal(s, self._note) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)

    def _note(self, signum: int, _frame: Any) -> None:
        self.received = signum
        # A second Ctrl-C should not wait for the checkpoint: the next one acts as usual.
        signal.signal(signum, self._old.get(signum, signal.SIG_DFL))

    def interrupted(self) -> TrainingInterrupted:
        name = signal.Signals(self.received).name
        return TrainingInterrupted(f"stopped by {name}; checkpoint saved in {self.ckpt_root}, run again to resume")


def bank_loss(run: _Run) -> None:
    """Move the device-side running loss into the state; a NaN/inf stops the run here,
    before any checkpoint or model of that state is written."""
    state, acc = run.state, run.accelerator
    value = float(run.running.item())
    # Every process must stop at the same step, or the others would wait for it forever.
    seen = float(acc.reduce(run.running.reshape(1).clone(), reduction="sum")[0]) if acc.num_processes > 1 else value
    run.running.zero_()
    if not math.isfinite(seen):
        raise diverged(run.rundir.checkpoints, f"training loss became {seen}", state.global_step, state.epoch,
                       run.cfg.lr)
    state.epoch_loss_sum += value


def save(run: _Run) -> None:
    """Checkpoint the run as it stands (its running loss banked first)."""
    bank_loss(run)
    state, root = run.state, run.rundir.checkpoints
    # Weights can go bad while the loss that led there was finite (an infinite step size).
    bad = nonfinite_weight(run.model)
    if bad is not None:
        raise diverged(root, f"weight {bad} became NaN/inf", state.global_step, state.epoch, run.cfg.lr)
    if run.main:
        path = save_checkpoint(root, state.global_step, run.model, run.optimizer, run.scheduler,
                               state.__dict__, _rng_state(), run.scaler)
        prune_checkpoints(root, run.cfg.keep_checkpoints, keep=path)
    run.accelerator.wait_for_everyone()


def end_epoch(run: _Run) -> None:
    """Evaluate the epoch just trained and record it; the checkpoint then holds the record."""
    state, acc, device = run.state, run.accelerator, run.accelerator.device
    loss_sum, tokens = state.epoch_loss_sum, state.epoch_tokens
    if acc.num_processes > 1:  # each process saw its own share of every step
        both = acc.reduce(torch.tensor([loss_sum, float(tokens)], dtype=torch.float64, device=device), reduction="sum")
        loss_sum, tokens = float(both[0]), int(both[1])
    record = {
        "epoch": state.epoch + 1, "step": state.global_step, "examples_seen": state.examples_seen,
        "train_examples": run.n_train,
        "train_loss": loss_sum / max(tokens, 1),
        "eval_loss": evaluate_loss(run.model, run.val_examples, run.plan, run.pad_id, device,
                                   run.cfg.micro_batch_tokens),
        "train_seconds": round(state.train_seconds, 3),
        "examples_per_s": round(state.examples_seen / max(state.train_seconds, 1e-9), 3),
    }
    if run.on_epoch_end is not None and run.main:
        record.update(run.on_epoch_end(state.epoch + 1, run.model))
    if run.main and run.cfg.select == "best":  # the decoded scores are the main process's alone
        state.best = selection.note_epoch(run.cfg, state.best, record, run.model, run.rundir)
    acc.wait_for_everyone()
    state.history.append(record)
    run.tracker.log({f"epoch/{k}": v for k, v in record.items() if isinstance(v, (int, float))}, state.global_step)
    if run.main:
        atomic_write_jsonl(run.rundir.epochs, state.history)
    state.epoch += 1
    state.step_in_epoch = 0
    state.epoch_loss_sum = 0.0
    state.epoch_tokens = 0
    state.pending_eval = False
    if run.main:
        latest_path = latest_checkpoint(run.rundir.checkpoints)
        if latest_path is not None:  # the epoch-end checkpoint now records the evaluation too
            atomic_write_json(latest_path / "state.json", state.__dict__)


def epoch_steps(run: _Run, train_examples: list[Example], epoch_examples: Callable[[int], list[Example]] | None,
                ) -> tuple[list[Example], list[list[int]]]:
    """The epoch in progress: its training examples, and its steps as indices into them."""
    state, cfg = run.state, run.cfg
    examples = epoch_examples(state.epoch) if epoch_examples is not None else train_examples
    if len(examples) != len(train_examples):
        raise SeqtuneError(f"epoch {state.epoch + 1}: {len(examples)} training examples, expected "
                           f"{len(train_examples)}")
    order = step_order(len(examples), cfg.batch_size, cfg.seed, state.epoch, [len(ex) for ex in examples], cfg.order)
    return examples, order


def take_step(run: _Run, examples: list[Example], idx: list[int]) -> None:
    """One optimiser step on examples[idx] (this process's share of them) and its bookkeeping."""
    state, acc = run.state, run.accelerator
    t0 = time.perf_counter()
    mine = [examples[i] for i in idx[acc.process_index::acc.num_processes]]
    # Through the module, so that tests/test_step.py sees train, check and the bench call one function.
    result = step.train_step(run.stepped, run.optimizer, mine, run.plan, run.cfg, pad_id=run.pad_id,
                             device=acc.device, budget=run.budget, accelerator=acc, scaler=run.scaler)
    run.scheduler.step()
    state.train_seconds += time.perf_counter() - t0
    run.budget = result.budget
    state.global_step += 1
    state.step_in_epoch += 1
    state.examples_seen += len(idx)
    run.running += result.loss_sum
    state.epoch_tokens += result.tokens


def progress_bar(run: _Run) -> Any:
    """tqdm over the run's steps; a disabled one (every call a no-op) off the main process or
    with train.progress=false."""
    from tqdm.auto import tqdm

    return tqdm(total=run.total_steps, initial=run.state.global_step, desc="train", unit="step",
                dynamic_ncols=True, disable=not (run.main and run.cfg.progress))


def log_loss(run: _Run, progress: Any) -> None:
    bank_loss(run)
    state = run.state
    mean = state.epoch_loss_sum / max(state.epoch_tokens, 1)
    run.tracker.log({"train/loss": mean, "train/lr": run.scheduler.get_last_lr()[0]}, state.global_step)
    progress.set_postfix(epoch=state.epoch + 1, loss=f"{mean:.4f}")


def train(
    model: Any,
    train_examples: list[Example],
    val_examples: list[Example],
    cfg: TrainConfig,
    out_dir: str | Path,
    pad_id: int,
    on_epoch_end: EpochHook | None = None,
    accelerator: Any = None,
    fingerprint: dict[str, Any] | None = None,
    epoch_examples: Callable[[int], list[Example]] | None = None,
) -> TrainState:
    """Train `model` in place; returns the final TrainState (history: the per-epoch records).

    `epoch_examples(epoch)`, when given, supplies each epoch's training examples (as many as
    `train_examples`, e.g. with freshly augmented inputs): a function of the epoch alone, so
    a resumed run sees the same examples."""
    run = set_up(model, train_examples, val_examples, cfg, out_dir, pad_id, accelerator, fingerprint, on_epoch_end)
    state = run.state
    with StopSignals(run.rundir.checkpoints) as stop, progress_bar(run) as progress, contextlib.closing(run.tracker):
        if state.pending_eval:
            end_epoch(run)
        while state.epoch < cfg.epochs and state.global_step < run.total_steps:
            examples, order = epoch_steps(run, train_examples, epoch_examples)
            while state.step_in_epoch < len(order):
                take_step(run, examples, order[state.step_in_epoch])
                epoch_done = state.step_in_epoch == len(order)
                if epoch_done or state.global_step % cfg.log_every == 0:
                    log_loss(run, progress)
                progress.update(1)
                if epoch_done or state.global_step >= run.total_steps:
                    state.pending_eval = True
                    save(run)
                    end_epoch(run)
                    if stop.received is not None and state.epoch < cfg.epochs and state.global_step < run.total_steps:
                        raise stop.interrupted()
                    break
                if stop.received is not None or (cfg.save_every_steps and state.global_step % cfg.save_every_steps == 0):
                    save(run)
                if stop.received is not None:
                    raise stop.interrupted()
    if run.main and cfg.select == "best":
        selection.restore_best(state.best, model, run.rundir)
    return state

