"""`seqtune run`: data -> base-model scores -> training (scored each epoch) -> export -> final scores.

Run folder (the contract with sweeps and reports):
  config.yaml, run.json          resolved config; versions, data hash, parameter count
  data/{train,val,test}.jsonl     the exact splits used
  epochs.jsonl                    one record per finished epoch (losses, scores, timing)
  predictions/{base,epoch-K,test}.jsonl   per-example outputs and scores
  model/                          merged weights + tokenizer + prompt format + model card
  metrics.json                    written last: its presence means the run finished
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqtune import __version__
from seqtune.batching import Example
from seqtune.config import RunConfig, config_to_dict, save_config
from seqtune.data import Pair, Splits, load_splits, save_splits
from seqtune.errors import DataError
from seqtune.formats import PromptFormat, encode_example, encode_prompt, get_format
from seqtune.generate import generate
from seqtune.io import atomic_write_json, atomic_write_jsonl, atomic_write_text
from seqtune.metrics import score
from seqtune.modeling import ModelInfo, count_params, load_model, save_model


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"seqtune": __version__, "python": platform.python_version()}
    for pkg in ("torch", "transformers", "peft", "accelerate", "datasets", "rdkit", "openclatura"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


@dataclass
class Encoded:
    examples: list[Example]
    kept: list[Pair]
    dropped: int


def encode_pairs(pairs: list[Pair], tokenizer: Any, fmt: PromptFormat, instruction: str, max_length: int,
                 overlength: str, split: str) -> Encoded:
    """Tokenise pairs; over-long ones are dropped (and counted) or reported, never cut."""
    examples, kept, dropped = [], [], 0
    for p in pairs:
        ids, mask = encode_example(tokenizer, fmt, p.input, p.output, instruction)
        if len(ids) > max_length:
            if overlength == "error":
                raise DataError(f"{p.where or split}: example is {len(ids)} tokens, over data.max_length={max_length}")
            dropped += 1
            continue
        examples.append(Example(tuple(ids), tuple(mask)))
        kept.append(p)
    return Encoded(examples, kept, dropped)


def predict_pairs(model: Any, tokenizer: Any, fmt: PromptFormat, instruction: str, pairs: list[Pair],
                  cfg: RunConfig, task: str, progress: bool = True) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Decode the inputs of `pairs` and score the outputs against their references."""
    prompts = [encode_prompt(tokenizer, fmt, p.input, instruction) for p in pairs]
    g = cfg.generate
    preds = [c[0] if c else "" for c in generate(
        model, tokenizer, prompts, num_beams=g.num_beams, num_return=1, max_new_tokens=g.max_new_tokens,
        batch_size=g.batch_size, precision=cfg.train.precision, progress=progress)]
    inputs, refs = [p.input for p in pairs], [p.output for p in pairs]
    summary, rows = score(task, inputs, preds, refs)
    per_example = [{"input": i, "reference": r, "prediction": p, **row} for i, r, p, row in zip(inputs, refs, preds, rows)]
    return summary, per_example


def _table(base: dict[str, Any] | None, tuned: dict[str, Any]) -> str:
    keys = [k for k in tuned if k != "n" and isinstance(tuned[k], (int, float))]
    lines = [f"{'metric':<24}{'base':>12}{'tuned':>12}"]
    for k in keys:
        b = f"{base[k]:.4g}" if base and isinstance(base.get(k), (int, float)) else "-"
        lines.append(f"{k:<24}{b:>12}{tuned[k]:>12.4g}")
    return "\n".join(lines)


def model_card(cfg: RunConfig, n_params: int, tuned: dict[str, Any], splits: Splits) -> str:
    scores = "\n".join(f"| {k} | {v:.4g} |" for k, v in tuned.items() if isinstance(v, (int, float)))
    return f"""# seqtune model: {cfg.data.task}

Fine-tuned from `{cfg.model.name}` ({n_params / 1e6:.1f}M parameters, {cfg.model.method} fine-tuning)
with the `{cfg.model.format}` prompt format on {len(splits.train)} training pairs for {cfg.train.epochs} epochs
(lr {cfg.train.lr}, batch {cfg.train.batch_size}).

Load it with `seqtune predict --model THIS_FOLDER --input FILE` or `seqtune serve --model THIS_FOLDER`.

## Test scores ({len(splits.test)} held-out pairs)

| metric | value |
|---|---|
{scores}
"""


def run_pipeline(cfg: RunConfig) -> dict[str, Any]:
    """Run everything into cfg.out_dir; returns the contents of metrics.json."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    splits = load_splits(cfg.data)
    save_splits(splits, out / "data")
    fmt = get_format(cfg.model.format)
    model, tok = load_model(cfg.model)
    n_params, n_trainable = count_params(model)
    instruction = cfg.data.instruction
    enc = {name: encode_pairs(getattr(splits, name), tok, fmt, instruction, cfg.data.max_length,
                              cfg.data.overlength, name) for name in ("train", "val", "test")}
    if not enc["train"].examples:
        raise DataError(f"{cfg.data.path}: every training pair is longer than data.max_length={cfg.data.max_length}")
    test_pairs = enc["test"].kept
    atomic_write_json(out / "run.json", {
        "versions": versions(), "data_hash": splits.digest(), "data": splits.stats,
        "dropped_overlength": {k: v.dropped for k, v in enc.items()},
        "n_params": n_params, "n_trainable": n_trainable, "model": cfg.model.name,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })
    task = cfg.data.task
    base = None
    base_file = out / "predictions" / "base.jsonl"
    if cfg.evaluate_base and test_pairs:
        cached = out / "predictions" / "base.json"
        if cached.is_file() and base_file.is_file():
            base = json.loads(cached.read_text())
        else:
            print(f"scoring the base model on {len(test_pairs)} test pairs")
            base, rows = predict_pairs(model, tok, fmt, instruction, test_pairs, cfg, task, cfg.train.progress)
            atomic_write_jsonl(base_file, rows)
            atomic_write_json(cached, base)

    def on_epoch_end(epoch: int, trained: Any) -> dict[str, Any]:
        if not (cfg.train.eval_generate and test_pairs):
            return {}
        summary, rows = predict_pairs(trained, tok, fmt, instruction, test_pairs, cfg, task, cfg.train.progress)
        atomic_write_jsonl(out / "predictions" / f"epoch-{epoch}.jsonl", rows)
        return {k: v for k, v in summary.items() if k != "n"}

    from seqtune.train import train

    state = train(model, enc["train"].examples, enc["val"].examples, cfg.train, out, tok.pad_token_id,
                  on_epoch_end=on_epoch_end)
    history = state["history"]
    last_epoch = history[-1]["epoch"] if history else 0
    last_preds = out / "predictions" / f"epoch-{last_epoch}.jsonl"
    if cfg.train.eval_generate and last_preds.is_file():
        tuned = {k: v for k, v in history[-1].items()
                 if k not in ("epoch", "step", "examples_seen", "train_examples", "train_seconds", "examples_per_s")}
        atomic_write_text(out / "predictions" / "test.jsonl", last_preds.read_text(encoding="utf-8"))
    else:
        summary, rows = predict_pairs(model, tok, fmt, instruction, test_pairs, cfg, task, cfg.train.progress)
        atomic_write_jsonl(out / "predictions" / "test.jsonl", rows)
        tuned = {k: v for k, v in summary.items() if k != "n"}
    train_info = {
        "epochs": last_epoch, "train_examples": len(enc["train"].examples),
        "train_seconds": state["train_seconds"],
        "examples_per_s": state["examples_seen"] / max(state["train_seconds"], 1e-9),
        "n_params": n_params, "n_trainable": n_trainable, "model": cfg.model.name, "method": cfg.model.method,
        "format": cfg.model.format,
    }
    info = ModelInfo(fmt, task, instruction, cfg.model.name, {"config": config_to_dict(cfg)})
    save_model(model, tok, out / "model", info, card=model_card(cfg, n_params, tuned, splits))
    result = {"base": base, "tuned": tuned, "train": train_info}
    atomic_write_json(out / "metrics.json", result)
    print(_table(base, tuned))
    return result
