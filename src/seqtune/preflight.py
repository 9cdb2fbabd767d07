"""`seqtune check`: everything a run would trip over, found in seconds, plus the plan and a time estimate."""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

import torch

from seqtune import runtime
from seqtune.config import RunConfig
from seqtune.lineage import run_splits, seen_note
from seqtune.modeling import count_params, load_model
from seqtune.output_vocab import restrict_to_outputs
from seqtune.prompts import eos_id, model_format, require_instruction_slot
from seqtune.training_pairs import training_pairs

TIMED_STEPS = 4


def _padded_tokens(lengths: list[int], idx: list[int], packing: bool) -> int:
    """The tokens a step's forward passes compute: each row padded to the batch's longest, or
    the examples' own tokens when packed."""
    return sum(lengths[i] for i in idx) if packing else len(idx) * max(lengths[i] for i in idx)


def _time_steps(model: Any, examples: list, cfg: RunConfig, pad_id: int, total_steps: int,
                n: int = TIMED_STEPS) -> tuple[float, int, str]:
    """(estimated seconds of the run's `total_steps` steps, steps timed, where).

    The first n + 1 steps of the first epoch, in the run's own order, run with the step `train`
    runs, on the device and in the precision training will use; the first is warm-up. Grouped
    batches (train.order) pad far less than random ones, and a run's steps take up to twice as
    long as each other, so the estimate is the timed steps' seconds per padded token times the
    padded tokens of a whole epoch, not one step's time times the step count: the old estimate,
    from one random batch, said 67.9-104.9 min for a 35.0-minute run (bench/RESULTS.md)."""
    from seqtune.modeling import enable_gradient_checkpointing
    from seqtune.training import step
    from seqtune.training.batching import step_order
    from seqtune.training.speed import resolve_speed_plan

    device = runtime.training_device()
    model.to(device)
    if cfg.train.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    plan = resolve_speed_plan(cfg.train, model, examples, pad_id, device)
    opt = step.make_optimizer(model, cfg.train)
    scaler = step.make_scaler(plan, device)
    lengths = [len(ex) for ex in examples]
    order = step_order(len(examples), cfg.train.batch_size, cfg.train.seed, 0, lengths, cfg.train.order)
    model.train()  # dropout on, as in training
    timed, times = order[: n + 1], []
    for idx in timed:
        t0 = time.perf_counter()
        step.train_step(model, opt, [examples[i] for i in idx], plan, cfg.train, pad_id=pad_id, device=device,
                        scaler=scaler)
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # the step returns once its kernels are queued
        times.append(time.perf_counter() - t0)
    if len(timed) > 1:  # the first step is warm-up
        timed, times = timed[1:], times[1:]
    per_token = sum(times) / sum(_padded_tokens(lengths, idx, plan.packing) for idx in timed)
    epoch_tokens = sum(_padded_tokens(lengths, idx, plan.packing) for idx in order)
    precision = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(plan.amp, "fp32")
    return per_token * epoch_tokens * total_steps / len(order), len(timed), f"{device.type}, {precision}"


def preflight(cfg: RunConfig, time_steps: bool = True) -> str:
    from seqtune.training.batching import encode_pairs

    t0 = time.perf_counter()
    lines = ["config: ok"]
    splits = run_splits(cfg)
    st = splits.stats
    lines.append(f"data: {st['rows_read']} rows read from {cfg.data.path}; {st['duplicates_dropped']} duplicates dropped; "
                 f"train/val/test = {len(splits.train)}/{len(splits.val)}/{len(splits.test)}")
    if note := seen_note(splits):
        lines.append(note)
    fmt = model_format(cfg.model)
    require_instruction_slot(fmt, splits.stats.get("instructions"))
    model, tok = load_model(cfg.model)
    total, trainable = count_params(model)
    lines.append(f"model: {cfg.model.name} ({total / 1e6:.1f}M parameters, {trainable / 1e6:.2f}M trainable, "
                 f"{cfg.model.method}); format {fmt.name}")
    # The pairs the run trains on: its split with data.output_order/input_order and data.mix applied.
    pairs = {"train": training_pairs(cfg, splits.train, fmt), "val": splits.val, "test": splits.test}
    enc = {name: encode_pairs(pairs[name], tok, fmt, cfg.data.instruction, cfg.data.max_length, cfg.data.overlength,
                              name) for name in ("train", "val", "test")}
    lengths = [len(e) for e in enc["train"].examples]
    if lengths:
        comp = [sum(e.mask) for e in enc["train"].examples]
        lines.append(f"tokens per example: mean {statistics.mean(lengths):.1f}, max {max(lengths)} "
                     f"(completion mean {statistics.mean(comp):.1f}); limit {cfg.data.max_length}")
    dropped = {k: v.dropped for k, v in enc.items() if v.dropped}
    lines.append(f"over-long examples ({cfg.data.overlength}): {dropped or 'none'}")
    n_train = len(enc["train"].examples)
    steps_epoch = math.ceil(n_train / cfg.train.batch_size)
    total_steps = steps_epoch * cfg.train.epochs
    if cfg.train.max_steps:
        total_steps = min(total_steps, cfg.train.max_steps)
    lines.append(f"plan: {cfg.train.epochs} epochs x {steps_epoch} steps = {total_steps} steps of "
                 f"{cfg.train.batch_size} examples; {sum(lengths) * cfg.train.epochs} training tokens; "
                 f"packing {cfg.train.packing}; precision {cfg.train.precision}; "
                 f"gradient checkpointing {'on' if cfg.train.gradient_checkpointing else 'off'}")
    if time_steps and n_train:
        if cfg.model.output_vocab == "task":  # the head the run trains, a fraction of the full one's cost
            restrict_to_outputs(model, [*enc["train"].examples, *enc["val"].examples], eos_id(tok))
        est, timed, where = _time_steps(model, enc["train"].examples, cfg, tok.pad_token_id, total_steps)
        sec = est / total_steps
        lines.append(f"estimated training time on this machine: {est / 60:.1f} min "
                     f"({sec:.2f} s/step, {cfg.train.batch_size / sec:.1f} examples/s; {timed} steps of the run's "
                     f"order timed on {where})")
    lines.append(f"checked in {time.perf_counter() - t0:.1f} s; output folder {cfg.out_dir}")
    return "\n".join(lines)
