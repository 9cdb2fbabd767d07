"""The training loop: completion-only loss, padding-free batches, bf16 autocast, exact resume.

One loop for one GPU, several GPUs (`accelerate launch` / `torchrun`, via Accelerate's
DDP set-up) and the CPU. The order of examples depends only on (seed, epoch), and the
RNG state is checkpointed, so a run resumed from any checkpoint replays exactly the
steps an uninterrupted run would have taken.
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
import torch.nn.functional as F

from seqtune.config import TrainConfig
from seqtune.errors import ConfigError, SeqtuneError, TrainingInterrupted
from seqtune.io import atomic_write_json, atomic_write_jsonl
from seqtune.runtime import autocast_dtype
from seqtune.training.batching import Example, collate, micro_batches, step_order, target_count
from seqtune.training.checkpoint import (
    diverged,
    latest_checkpoint,
    nonfinite_weight,
    prune_checkpoints,
    resume,
    save_checkpoint,
)
from seqtune.training.checkpoint import rng_state as _rng_state
from seqtune.training.prefix import common_prefix, prefix_batch, prefix_logits, worth_sharing
from seqtune.training.speed import (
    attention_kernel,
    resolve_speed_settings,
    supports_logits_to_keep,
    use_packing,
)
from seqtune.training.tracking import Tracker


def completion_loss(model: Any, batch: dict[str, torch.Tensor], keep_logits: bool) -> torch.Tensor:
    """Summed cross-entropy over completion tokens. Only those positions go through the
    output head: on a 135M model with a 49k vocabulary the head is a large share of the work."""
    labels = batch["labels"]
    keep = labels != -100
    if "prefix_ids" in batch:
        logits = prefix_logits(model, batch, keep if keep_logits else None)
    else:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        kwargs = {"logits_to_keep": keep} if keep_logits else {}
        logits = model(**inputs, use_cache=False, **kwargs).logits
    if logits.dim() == 3 and logits.shape[:2] == keep.shape:
        logits = logits[keep]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels[keep], reduction="sum")


def make_batch(examples: list[Example], cfg: TrainConfig, pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """One forward pass's inputs: packed, padded, or padded after a shared prompt prefix."""
    n = common_prefix(examples) if cfg.shared_prefix and not cfg.packing and len(examples) > 1 else 0
    if worth_sharing(n, len(examples)):
        return prefix_batch(examples, n, pad_id, device)
    return collate(examples, cfg.packing, pad_id, device)[0]


@dataclass
class TrainState:
    global_step: int = 0
    epoch: int = 0  # epoch in progress (0-based)
    step_in_epoch: int = 0  # next step of that epoch to run
    examples_seen: int = 0
    epoch_loss_sum: float = 0.0
    epoch_tokens: int = 0
    train_seconds: float = 0.0
    pending_eval: bool = False  # epoch's steps done, its evaluation not yet recorded
    history: list | None = None
    # What the run was started with (data hash, settings that shape the steps); a resume
    # with different ones would silently continue another experiment, so it is refused.
    fingerprint: dict | None = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(model: Any, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    except (RuntimeError, TypeError):  # fused kernels need float params on a supported device
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)


@torch.no_grad()
def evaluate_loss(model: Any, examples: list[Example], cfg: TrainConfig, device: torch.device,
                  amp: torch.dtype | None, pad_id: int, keep_logits: bool) -> float:
    """Mean loss per completion token on held-out examples."""
    if not examples:
        return float("nan")
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    tokens = 0
    budget = cfg.micro_batch_tokens or 4096
    packing = use_packing(cfg.packing, device)
    cfg = dataclasses.replace(cfg, packing=packing)
    for idx in micro_batches(list(range(len(examples))), examples, budget, packing):
        chunk = [examples[i] for i in idx]
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            total += completion_loss(model, make_batch(chunk, cfg, pad_id, device), keep_logits).double()
        tokens += target_count(chunk)
    model.train()
    return float(total.item() / max(tokens, 1))


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def forward_backward(model: Any, examples: list[Example], budget: int, cfg: TrainConfig, accelerator: Any,
                     amp: torch.dtype | None, pad_id: int, keep_logits: bool, optimizer: Any,
                     ) -> tuple[torch.Tensor, int, int]:
    """Accumulate the gradients of one optimiser step; returns (summed loss, completion tokens, token budget).

    On out-of-memory the step either fails with the micro-batch size to try, or, with
    `train.oom_halving`, retries with half the tokens per forward pass (the same examples
    and loss normalisation, so the step's result is unchanged up to float rounding)."""
    device = accelerator.device
    world = accelerator.num_processes
    while True:
        idx = list(range(len(examples)))
        mbs = micro_batches(idx, examples, budget, cfg.packing)
        n_tokens = target_count(examples)
        step_loss = torch.zeros((), dtype=torch.float64, device=device)
        try:
            for j, mb in enumerate(mbs):
                batch = make_batch([examples[i] for i in mb], cfg, pad_id, device)
                sync = j == len(mbs) - 1
                ctx = accelerator.no_sync(model) if (world > 1 and not sync) else contextlib.nullcontext()
                with ctx, torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                    loss = completion_loss(model, batch, keep_logits)
                (loss / max(n_tokens, 1)).backward()
                step_loss += loss.detach().double()
            return step_loss, n_tokens, budget
        except (torch.OutOfMemoryError, RuntimeError) as err:
            if not _is_oom(err):
                raise
            largest = max(sum(len(examples[i]) for i in mb) for mb in mbs)
            half = max(largest // 2, 1)
            optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            if not cfg.oom_halving or largest <= max(len(e) for e in examples):
                raise SeqtuneError(
                    f"out of memory with {largest} tokens per forward pass; try train.micro_batch_tokens={half} "
                    f"(or train.oom_halving=true to halve it automatically)"
                ) from None
            print(f"out of memory with {largest} tokens per forward pass; retrying with {half}")
            budget = half


def train(
    model: Any,
    train_examples: list[Example],
    val_examples: list[Example],
    cfg: TrainConfig,
    out_dir: str | Path,
    pad_id: int,
    on_epoch_end: Callable[[int, Any], dict[str, Any]] | None = None,
    accelerator: Any = None,
    fingerprint: dict[str, Any] | None = None,
    epoch_examples: Callable[[int], list[Example]] | None = None,
) -> dict[str, Any]:
    """Train `model` in place. Returns the final train state as a dict (history = per-epoch records).

    `epoch_examples(epoch)`, when given, supplies each epoch's training examples (as many as
    `train_examples`, e.g. with freshly augmented inputs): a function of the epoch alone, so
    a resumed run sees the same examples."""
    from accelerate import Accelerator

    out_dir = Path(out_dir)
    accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available())
    device = accelerator.device
    amp = autocast_dtype(cfg.precision, device)
    keep_logits = supports_logits_to_keep(model)
    ckpt_root = out_dir / "checkpoints"
    main = accelerator.is_main_process
    world, rank = accelerator.num_processes, accelerator.process_index
    cfg, kernel = resolve_speed_settings(cfg, model, train_examples, pad_id, device, world, announce=main)

    if not (math.isfinite(cfg.lr) and cfg.lr > 0):  # AdamW accepts inf and turns every weight into NaN
        raise ConfigError(f"train.lr: must be a finite number > 0, got {cfg.lr}")
    seed_everything(cfg.seed)
    model.to(device)
    model.train()
    optimizer = make_optimizer(model, cfg)
    steps_per_epoch = math.ceil(len(train_examples) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    from transformers import get_scheduler

    scheduler = get_scheduler(cfg.lr_schedule, optimizer, num_warmup_steps=int(cfg.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    fingerprint = {"n_train": len(train_examples), "batch_size": cfg.batch_size, "lr": cfg.lr, "seed": cfg.seed,
                   "lr_schedule": cfg.lr_schedule, "order": cfg.order, **(fingerprint or {})}
    state = TrainState(history=[], fingerprint=fingerprint)
    saved = resume(ckpt_root, model, optimizer, scheduler, fingerprint, announce=main) if cfg.resume else None
    if saved is not None:
        state = TrainState(**saved)
        state.fingerprint = fingerprint
    ddp_model = accelerator.prepare_model(model) if world > 1 else model
    if cfg.compile:
        ddp_model = torch.compile(ddp_model, dynamic=True)

    tracker = Tracker(cfg.logger, out_dir / "logs", enabled=main)
    stop = {"signal": None}

    def _on_signal(signum: int, _frame: Any) -> None:
        stop["signal"] = signum
        # A second Ctrl-C should not wait for the checkpoint: the next one acts as usual.
        signal.signal(signum, old_handlers.get(signum, signal.SIG_DFL))

    def interrupted() -> TrainingInterrupted:
        name = signal.Signals(stop["signal"]).name
        return TrainingInterrupted(f"stopped by {name}; checkpoint saved in {ckpt_root}, run again to resume")

    old_handlers = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    def bank_loss() -> None:
        """Move the device-side running loss into the state; a NaN/inf stops the run here,
        before any checkpoint or model of that state is written."""
        value = float(running.item())
        # Every process must stop at the same step, or the others would wait for it forever.
        seen = float(accelerator.reduce(running.reshape(1).clone(), reduction="sum")[0]) if world > 1 else value
        running.zero_()
        if not math.isfinite(seen):
            raise diverged(ckpt_root, f"training loss became {seen}", state.global_step, state.epoch, cfg.lr)
        state.epoch_loss_sum += value

    def checkpoint() -> None:
        # Weights can go bad while the loss that led there was finite (an infinite step size).
        bad = nonfinite_weight(model)
        if bad is not None:
            raise diverged(ckpt_root, f"weight {bad} became NaN/inf", state.global_step, state.epoch, cfg.lr)
        if main:
            path = save_checkpoint(ckpt_root, state.global_step, model, optimizer, scheduler,
                                   state.__dict__, _rng_state())
            prune_checkpoints(ckpt_root, cfg.keep_checkpoints, keep=path)
        accelerator.wait_for_everyone()

    def finish_epoch() -> None:
        """Evaluate the epoch just trained and record it; the checkpoint then holds the record."""
        loss_sum, tokens = state.epoch_loss_sum, state.epoch_tokens
        if world > 1:  # each process saw its own share of every step
            both = accelerator.reduce(torch.tensor([loss_sum, float(tokens)], dtype=torch.float64, device=device),
                                      reduction="sum")
            loss_sum, tokens = float(both[0]), int(both[1])
        record = {
            "epoch": state.epoch + 1, "step": state.global_step, "examples_seen": state.examples_seen,
            "train_examples": len(train_examples),
            "train_loss": loss_sum / max(tokens, 1),
            "eval_loss": evaluate_loss(model, val_examples, cfg, device, amp, pad_id, keep_logits),
            "train_seconds": round(state.train_seconds, 3),
            "examples_per_s": round(state.examples_seen / max(state.train_seconds, 1e-9), 3),
        }
        if on_epoch_end is not None and main:
            record.update(on_epoch_end(state.epoch + 1, model))
        accelerator.wait_for_everyone()
        state.history.append(record)
        tracker.log({f"epoch/{k}": v for k, v in record.items() if isinstance(v, (int, float))}, state.global_step)
        if main:
            atomic_write_jsonl(out_dir / "epochs.jsonl", state.history)
        state.epoch += 1
        state.step_in_epoch = 0
        state.epoch_loss_sum = 0.0
        state.epoch_tokens = 0
        state.pending_eval = False
        if main:
            latest_path = latest_checkpoint(ckpt_root)
            if latest_path is not None:  # the epoch-end checkpoint now records the evaluation too
                atomic_write_json(latest_path / "state.json", state.__dict__)

    budget = cfg.micro_batch_tokens
    # Summed on the device; read back (a host sync) only at log and save points (bank_loss).
    running = torch.zeros((), dtype=torch.float64, device=device)
    progress = None
    if main and cfg.progress:
        from tqdm.auto import tqdm

        progress = tqdm(total=total_steps, initial=state.global_step, desc="train", unit="step", dynamic_ncols=True)
    try:
        if state.pending_eval:
            finish_epoch()
        while state.epoch < cfg.epochs and state.global_step < total_steps:
            examples = epoch_examples(state.epoch) if epoch_examples is not None else train_examples
            if len(examples) != len(train_examples):
                raise SeqtuneError(f"epoch {state.epoch + 1}: {len(examples)} training examples, expected "
                                   f"{len(train_examples)}")
            order = step_order(len(examples), cfg.batch_size, cfg.seed, state.epoch,
                               [len(ex) for ex in examples], cfg.order)
            while state.step_in_epoch < len(order):
                t0 = time.perf_counter()
                step_idx = order[state.step_in_epoch][rank::world]
                with attention_kernel(model, kernel):
                    step_loss, n_tokens, budget = forward_backward(
                        ddp_model, [examples[i] for i in step_idx], budget, cfg, accelerator, amp, pad_id,
                        keep_logits, optimizer)
                if cfg.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state.train_seconds += time.perf_counter() - t0
                state.global_step += 1
                state.step_in_epoch += 1
                state.examples_seen += len(order[state.step_in_epoch - 1])
                running += step_loss
                state.epoch_tokens += n_tokens
                log_now = state.global_step % 10 == 0 or state.step_in_epoch == len(order)
                if log_now:
                    bank_loss()
                    mean = state.epoch_loss_sum / max(state.epoch_tokens, 1)
                    tracker.log({"train/loss": mean, "train/lr": scheduler.get_last_lr()[0]}, state.global_step)
                    if progress is not None:
                        progress.set_postfix(epoch=state.epoch + 1, loss=f"{mean:.4f}")
                if progress is not None:
                    progress.update(1)
                epoch_done = state.step_in_epoch == len(order)
                out_of_steps = state.global_step >= total_steps
                if epoch_done or out_of_steps:
                    if not log_now:
                        bank_loss()
                    state.pending_eval = True
                    checkpoint()
                    finish_epoch()
                    if stop["signal"] is not None and state.epoch < cfg.epochs and state.global_step < total_steps:
                        raise interrupted()
                    break
                if stop["signal"] is not None or (cfg.save_every_steps and state.global_step % cfg.save_every_steps == 0):
                    bank_loss()
                    checkpoint()
                if stop["signal"] is not None:
                    raise interrupted()
    finally:
        for s, h in old_handlers.items():
            signal.signal(s, h)
        if progress is not None:
            progress.close()
        tracker.close()
    return dict(state.__dict__)
