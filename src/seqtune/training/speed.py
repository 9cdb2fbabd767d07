"""The "auto" speed settings of a training run, decided for one model, device and process count.

Packing, the shared prompt prefix, the attention kernel and the precision each make a step
faster on some hardware and slower (or wrong) on other: packing needs an architecture that
keeps packed sequences apart, a shared prefix takes two forward passes that DDP cannot
accumulate, eager attention beats SDPA for training on CPUs only, and bf16 is fast only
where the hardware has it (runtime.resolve_precision). `seqtune check`, the bench and the
loop all resolve them here, so they time and run the same steps.
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass
from typing import Any

import torch

from seqtune.config import TrainConfig
from seqtune.modeling import unwrap
from seqtune.runtime import resolve_precision
from seqtune.training.batching import Example
from seqtune.training.prefix import prefix_supported


def supports_logits_to_keep(model: Any) -> bool:
    return "logits_to_keep" in inspect.signature(unwrap(model).forward).parameters


def training_attention(setting: str, device: torch.device) -> str | None:
    """TrainConfig.attention resolved for a device; None keeps the model's own kernel."""
    if setting != "auto":
        return setting
    return "eager" if device.type == "cpu" else None


@contextlib.contextmanager
def attention_kernel(model: Any, kernel: str | None):  # noqa: ANN201
    """Run a block with another attention kernel, then give the model back its own."""
    base = unwrap(model)
    old = base.config._attn_implementation
    if kernel is None or kernel == old:
        yield
        return
    base.set_attn_implementation(kernel)
    try:
        yield
    finally:
        base.set_attn_implementation(old)


def use_packing(setting: bool | str, device: torch.device) -> bool:
    """TrainConfig.packing resolved for a device: auto packs on GPUs only."""
    return device.type == "cuda" if setting == "auto" else bool(setting)


@torch.no_grad()
def packing_supported(model: Any, examples: list[Example], pad_id: int) -> bool:
    """Whether this architecture keeps packed sequences apart (transformers does it from
    `position_ids` for most, not all, models): the second of two packed sequences must get
    the logits it gets alone."""
    if len(examples) < 2:
        return True
    first, second = examples[0], examples[1]
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    ids = torch.tensor([first.ids + second.ids], device=dev)
    pos = torch.tensor([list(range(len(first))) + list(range(len(second)))], device=dev)
    packed = model(input_ids=ids, position_ids=pos, use_cache=False).logits[0, len(first):].float()
    alone = model(input_ids=torch.tensor([second.ids], device=dev), use_cache=False).logits[0].float()
    model.train(was_training)
    return bool(torch.allclose(packed, alone, rtol=1e-3, atol=1e-4 * float(alone.abs().max()) + 1e-6))


@dataclass(frozen=True)
class SpeedPlan:
    """The "auto" speed settings of a run, decided once for its model, device and process
    count. The loop, `seqtune check` and the bench take the same plan into the same step
    (seqtune.training.step), while TrainConfig keeps what the user wrote."""

    packing: bool
    shared_prefix: bool
    attention: str | None  # the attention kernel of training steps; None: the model's own
    keep_logits: bool  # the head sees completion positions only (transformers' logits_to_keep)
    amp: torch.dtype | None  # autocast dtype; None runs in fp32

    @property
    def scaled(self) -> bool:
        """fp16 steps scale the loss (a GradScaler): small gradients underflow in fp16."""
        return self.amp == torch.float16


def resolve_speed_plan(cfg: TrainConfig, model: Any, examples: list[Example], pad_id: int,
                       device: torch.device, world: int = 1, announce: bool = False) -> SpeedPlan:
    """`cfg`'s auto settings decided for this model, device and number of processes."""
    kernel = training_attention(cfg.attention, device)
    packing = use_packing(cfg.packing, device)
    # Checkpointed layers drop the prefix's cache (transformers turns caching off under it).
    shared_prefix = cfg.shared_prefix and not cfg.gradient_checkpointing
    with attention_kernel(model, kernel):
        if packing and not packing_supported(model, examples, pad_id):
            if announce:
                print(f"note: {type(unwrap(model)).__name__} does not separate packed sequences; using padded batches")
            packing = False
        # Two forward passes before one backward would confuse DDP's gradient hooks.
        if shared_prefix and (world > 1 or packing or not prefix_supported(model, examples, pad_id)):
            shared_prefix = False
    precision = resolve_precision(cfg.precision, device)
    if announce:
        print(f"precision: {precision.name} ({precision.reason})")
    return SpeedPlan(packing=packing, shared_prefix=shared_prefix, attention=kernel,
                     keep_logits=supports_logits_to_keep(model), amp=precision.dtype)
