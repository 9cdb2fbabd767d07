"""One optimiser step: the one `train` runs, `seqtune check` times and bench/train_throughput.py
measures, so that the latter two time what training does rather than a copy of it.

A step is: forward passes of at most a token budget each (completion-only loss, summed; plus
the prompt tokens' loss times train.prompt_loss_weight where that is set), backward of that sum
over the step's completion-token count (every example weighs by its
tokens, however the step is cut into micro-batches), gradient clipping, the optimiser's step.
In fp16 the loss is scaled before backward and the gradients unscaled before clipping (a
GradScaler, which skips a step whose gradients overflowed and lowers its scale).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from seqtune.config import TrainConfig
from seqtune.errors import SeqtuneError
from seqtune.output_vocab import compact_logits
from seqtune.training.batching import Example, collate, micro_batches, target_count
from seqtune.training.prefix import common_prefix, prefix_batch, prefix_logits, worth_sharing
from seqtune.training.speed import SpeedPlan, attention_kernel

# (model, batch, keep_logits) -> summed loss; the bench swaps in the stock recipe's full-logits loss.
LossFn = Callable[[Any, dict[str, torch.Tensor], bool], torch.Tensor]


def completion_loss(model: Any, batch: dict[str, torch.Tensor], keep_logits: bool,
                    prompt_weight: float = 0.0) -> torch.Tensor:
    """Summed cross-entropy over completion tokens. Only those positions go through the
    output head: on a 135M model with a 49k vocabulary the head is a large share of the work.
    With `prompt_weight` and the batch's `prompt_labels`, the prompt tokens' summed
    cross-entropy times that weight is added (train.prompt_loss_weight)."""
    labels = batch["labels"]
    prompt = batch.get("prompt_labels") if prompt_weight else None
    keep = labels != -100 if prompt is None else (labels != -100) | (prompt != -100)
    # A head restricted to the task's tokens (model.output_vocab) gives their logits only.
    with compact_logits(model) as column:
        if "prefix_ids" in batch:
            logits = prefix_logits(model, batch, keep if keep_logits else None)
        else:
            inputs = {k: v for k, v in batch.items() if k not in ("labels", "prompt_labels")}
            kwargs = {"logits_to_keep": keep} if keep_logits else {}
            logits = model(**inputs, use_cache=False, **kwargs).logits
    if logits.dim() == 3 and logits.shape[:2] == keep.shape:
        logits = logits[keep]
    logits = logits.reshape(-1, logits.shape[-1]).float()

    def targets(ids: torch.Tensor) -> torch.Tensor:
        # A token outside a restricted head's columns is no target (a prompt token may be one).
        return ids if column is None else torch.where(ids == -100, ids, column[ids.clamp(min=0)])

    loss = F.cross_entropy(logits, targets(labels[keep]), reduction="sum")
    if prompt is not None:
        loss = loss + prompt_weight * F.cross_entropy(logits, targets(prompt[keep]), reduction="sum")
    return loss


def make_batch(examples: list[Example], plan: SpeedPlan, pad_id: int, device: torch.device,
               prompt_labels: bool = False) -> dict[str, torch.Tensor]:
    """One forward pass's inputs: packed, padded, or padded after a shared prompt prefix; with
    `prompt_labels` the prompt's targets as well (never a shared prefix, whose logits are not kept)."""
    n = common_prefix(examples) if plan.shared_prefix and not plan.packing and len(examples) > 1 else 0
    if worth_sharing(n, len(examples)) and not prompt_labels:
        return prefix_batch(examples, n, pad_id, device)
    return collate(examples, plan.packing, pad_id, device, prompt_labels=prompt_labels)[0]


def make_optimizer(model: Any, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    except (RuntimeError, TypeError):  # fused kernels need float params on a supported device
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)


def make_scaler(plan: SpeedPlan, device: torch.device) -> torch.amp.GradScaler | None:
    """The loss scaler of fp16 steps, None for others. It carries its scale from step to step,
    so whoever runs steps keeps one for the run (and the loop checkpoints it)."""
    return torch.amp.GradScaler(device.type) if plan.scaled else None


@dataclass(frozen=True)
class StepResult:
    loss_sum: torch.Tensor  # summed over the step's completion tokens, float64, on the device
    tokens: int  # completion tokens of the step (this process's share)
    budget: int  # tokens per forward pass that fit; the next step starts from it


def train_step(model: Any, optimizer: torch.optim.Optimizer, examples: list[Example], plan: SpeedPlan,
               cfg: TrainConfig, *, pad_id: int, device: torch.device, budget: int | None = None,
               accelerator: Any = None, loss_fn: LossFn | None = None,
               scaler: torch.amp.GradScaler | None = None) -> StepResult:
    """Run one optimiser step on `examples` and leave the gradients zeroed.

    `budget` (default cfg.micro_batch_tokens) caps the tokens of one forward pass; `accelerator`
    is Accelerate's, when several processes share the step; `loss_fn` replaces completion_loss
    (the bench's stock recipe); `scaler` (make_scaler) is required by an fp16 plan. The
    learning-rate schedule is the caller's."""
    if plan.scaled and scaler is None:
        raise ValueError("an fp16 step needs the run's GradScaler (step.make_scaler)")
    budget = cfg.micro_batch_tokens if budget is None else budget
    with attention_kernel(model, plan.attention):
        loss_sum, tokens, budget = forward_backward(model, examples, budget, plan, cfg, pad_id, device,
                                                    optimizer, accelerator, loss_fn, scaler)
    if scaler is not None:
        scaler.unscale_(optimizer)  # clipping acts on the true gradients
    if cfg.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return StepResult(loss_sum, tokens, budget)


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def forward_backward(model: Any, examples: list[Example], budget: int, plan: SpeedPlan, cfg: TrainConfig,
                     pad_id: int, device: torch.device, optimizer: Any, accelerator: Any = None,
                     loss_fn: LossFn | None = None, scaler: torch.amp.GradScaler | None = None,
                     ) -> tuple[torch.Tensor, int, int]:
    """Accumulate the gradients of one optimiser step; returns (summed loss, completion tokens, token budget).

    On out-of-memory the step either fails with the micro-batch size to try, or, with
    `train.oom_halving`, retries with half the tokens per forward pass (the same examples
    and loss normalisation, so the step's result is unchanged up to float rounding)."""
    # Looked up per call, not bound as a default: tests wrap completion_loss to inject faults.
    weight = cfg.prompt_loss_weight
    loss_fn = loss_fn or (functools.partial(completion_loss, prompt_weight=weight) if weight else completion_loss)
    world = accelerator.num_processes if accelerator is not None else 1
    while True:
        idx = list(range(len(examples)))
        mbs = micro_batches(idx, examples, budget, plan.packing)
        n_tokens = target_count(examples)
        step_loss = torch.zeros((), dtype=torch.float64, device=device)
        try:
            for j, mb in enumerate(mbs):
                batch = make_batch([examples[i] for i in mb], plan, pad_id, device, prompt_labels=weight > 0)
                sync = j == len(mbs) - 1
                ctx = accelerator.no_sync(model) if (world > 1 and not sync) else contextlib.nullcontext()
                with ctx, torch.autocast(device.type, dtype=plan.amp or torch.float32, enabled=plan.amp is not None):
                    loss = loss_fn(model, batch, plan.keep_logits)
                scaled = loss / max(n_tokens, 1)
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
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


@torch.no_grad()
def evaluate_loss(model: Any, examples: list[Example], plan: SpeedPlan, pad_id: int, device: torch.device,
                  budget: int = 0) -> float:
    """Mean loss per completion token on held-out examples, at most `budget` tokens (0: 4096) per
    forward pass, with the model's own attention kernel (the plan's is for training steps)."""
    if not examples:
        return float("nan")
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    tokens = 0
    for idx in micro_batches(list(range(len(examples))), examples, budget or 4096, plan.packing):
        chunk = [examples[i] for i in idx]
        with torch.autocast(device.type, dtype=plan.amp or torch.float32, enabled=plan.amp is not None):
            total += completion_loss(model, make_batch(chunk, plan, pad_id, device), plan.keep_logits).double()
        tokens += target_count(chunk)
    model.train()
    return float(total.item() / max(tokens, 1))
