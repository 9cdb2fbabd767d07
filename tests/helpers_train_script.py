"""A small, deterministic training run that tests start as a subprocess and then kill.

    python helpers_train_script.py MODEL_DIR OUT_DIR [--slow-step S] [--slow-save-step N]
    python helpers_train_script.py cli [--slow-step S] -- SEQTUNE_ARGS...

It trains the tiny model in MODEL_DIR on twenty pairs with frequent checkpoints, and
on success writes OUT_DIR/result.json (per-epoch records) and OUT_DIR/final.pt (the
weights). The `cli` form runs the `seqtune` command itself. `run()` is also imported by the tests to make the uninterrupted reference
in-process. The two slow-down options only stretch time, so a test can kill at a
chosen moment; they change no number the run computes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

WORDS = ["methyl", "ethyl", "propyl", "butyl", "pentyl", "hexyl", "oxy", "amino", "hydroxy", "chloro",
         "bromo", "fluoro", "benzene", "ethanol", "acid", "CCO", "CCN", "c1ccccc1", "CC(C)O", "CC(=O)O"]
PAIRS = [(f"{w} {i}", f"{WORDS[(i * 7 + 3) % 20]}-{WORDS[(i * 3 + 1) % 20]}") for i, w in enumerate(WORDS)]
# Fields of an epoch record that measure time, not the computation.
TIMING = ("train_seconds", "examples_per_s")


def train_config(**overrides):
    from seqtune.config import TrainConfig

    # 16 training pairs in steps of 2: 8 steps an epoch, a checkpoint every 3 steps and at each epoch end.
    kw = dict(epochs=3, lr=1e-3, batch_size=2, save_every_steps=3, keep_checkpoints=2, precision="fp32",
              logger="none", progress=False, warmup_ratio=0.1, eval_generate=False)
    kw.update(overrides)
    return TrainConfig(**kw)


def run(model_dir: str | Path, out_dir: str | Path, **overrides) -> tuple[Any, dict[str, torch.Tensor]]:
    """Train (resuming from OUT_DIR's checkpoints if any); returns (train state, final weights)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from seqtune.prompts import encode_example, get_format
    from seqtune.training.batching import Example
    from seqtune.training.loop import train

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    fmt = get_format("plain")
    examples = [Example(*map(tuple, encode_example(tok, fmt, a, b, ""))) for a, b in PAIRS]
    state = train(model, examples[:16], examples[16:], train_config(**overrides), out_dir, tok.pad_token_id or 0)
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    return state, weights


def comparable(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in rec.items() if k not in TIMING} for rec in history]


def _slow_steps(seconds: float) -> None:
    import seqtune.training.step as train_mod

    real = train_mod.completion_loss

    def slow(*args, **kwargs):
        time.sleep(seconds)
        return real(*args, **kwargs)

    train_mod.completion_loss = slow


def _slow_save(step: int) -> None:
    """Pause for a long time inside the save of checkpoint `step`, after its weights and
    optimizer state are written to the temporary folder and before it is complete."""
    import seqtune.training.checkpoint as ckpt_mod

    real = ckpt_mod.atomic_write_json

    def slow(path, obj):
        if Path(path).parent.name == f".tmp-step-{step:08d}":
            print(f"saving {step}", flush=True)
            time.sleep(60)
        return real(path, obj)

    ckpt_mod.atomic_write_json = slow


def main(argv: list[str]) -> int:
    # One thread: the same kernels, hence the same bits, as the in-process reference; and light on a busy CPU.
    torch.set_num_threads(1)
    if argv[:1] == ["cli"]:
        split = argv.index("--")
        opts = argparse.ArgumentParser()
        opts.add_argument("--slow-step", type=float, default=0.0)
        slow = opts.parse_args(argv[1:split]).slow_step
        if slow:
            _slow_steps(slow)
        from seqtune.cli import main as cli_main

        return cli_main(argv[split + 1:])
    p = argparse.ArgumentParser()
    p.add_argument("model_dir")
    p.add_argument("out_dir")
    p.add_argument("--slow-step", type=float, default=0.0)
    p.add_argument("--slow-save-step", type=int, default=0)
    a = p.parse_args(argv)
    if a.slow_step:
        _slow_steps(a.slow_step)
    if a.slow_save_step:
        _slow_save(a.slow_save_step)
    state, weights = run(a.model_dir, a.out_dir)
    out = Path(a.out_dir)
    torch.save(weights, out / "final.pt")
    (out / "result.json").write_text(json.dumps({"history": comparable(state.history),
                                                 "global_step": state.global_step}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
