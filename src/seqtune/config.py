"""Run configuration: dataclasses that are at once the YAML schema and the CLI.

One YAML file per run (sections `data`, `model`, `train`, `generate`) plus
`section.key=value` or `--section.key value` overrides. Every value is checked
against the dataclass field's type on load, so a typo or an impossible value
fails before any work starts, with a message naming the key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from seqtune.errors import ConfigError
from seqtune.io import atomic_write_text


@dataclass
class DataConfig:
    """Where the pairs come from and how they are split."""

    # A CSV/TSV/JSONL/Parquet file, a folder holding train/val/test files, or `hf:NAME[:CONFIG]`;
    # several, comma-separated, are concatenated split by split.
    path: str = "data/smiles2iupac_demo"
    input_column: str = "input"
    output_column: str = "output"
    # Task name; chemistry tasks (smiles2iupac, iupac2smiles, ...) add chemistry scores.
    task: str = "smiles2iupac"
    instruction: str = "Translate the SMILES string of a molecule into its IUPAC name."
    val_fraction: float = 0.05
    test_fraction: float = 0.05
    # Subsample the training split to this many pairs (the paper's data-size axis).
    train_size: int | None = None
    # Caps on the held-out splits, to keep per-epoch evaluation cheap.
    val_size: int | None = 200
    test_size: int | None = 200
    dedupe: bool = True
    seed: int = 42
    # Examples longer than this many tokens (prompt + completion + EOS) are
    # dropped or reported as an error; never cut silently.
    max_length: int = 256
    overlength: Literal["drop", "error"] = "drop"
    # A file of pairs scored as the test split instead of a split of `path` (a fixed holdout
    # such as data/holdouts/moses_scaffold/test.jsonl); its inputs are removed from train/val.
    test_path: str | None = None
    # Chemistry tasks learnt beside `task` from the same training molecules, comma-separated
    # (iupac2smiles, smiles2formula, smiles2inchi, randomsmiles2canonical): one extra pair per
    # molecule and task, each with its own instruction. Scores stay on `task`.
    mix: str = ""
    # random_smiles: from the second epoch on, every training SMILES input is a fresh random
    # SMILES of the same molecule (seeded by seed, epoch and example: resumable, reproducible).
    augment: Literal["none", "random_smiles"] = "none"


@dataclass
class ModelConfig:
    """Which base model, how it is adapted, and how prompts look."""

    # Hub id, local folder, a .gguf file, or a bundled alias (smollm2-135m, gemma3-270m).
    name: str = "smollm2-135m"
    method: Literal["full", "lora"] = "full"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str = "all-linear"
    # Prompt format: plain | instruct | chat, or a path to a Jinja template file.
    format: str = "instruct"
    # How inputs / outputs are spelled inside the prompt (undone on predictions):
    # none | smiles (a space between SMILES tokens: atoms, bonds, ring digits) | chars.
    input_split: Literal["none", "smiles", "chars"] = "none"
    output_split: Literal["none", "smiles", "chars"] = "none"
    # Full fine-tuning with the lowest layers fixed: less compute per example (no backward
    # below the first trained layer). freeze_layers > 0 also freezes the input embeddings
    # (and an output head tied to them).
    freeze_embeddings: bool = False
    freeze_layers: int = 0


@dataclass
class TrainConfig:
    """Optimisation. Defaults: the learning-efficiency study's winner on 2 CPU cores
    (docs/results/learning_efficiency): lr 5e-4 with 3 % warm-up and cosine decay, batch 16.
    The paper's recipe (lr 2e-5 linear, batch 4) learnt nothing in the same CPU time there;
    configs/paper_recipe.yaml keeps it."""

    epochs: int = 3
    lr: float = 5e-4
    # Examples per optimiser step, summed over devices.
    batch_size: int = 16
    # Token budget of one forward pass; a step larger than this is split into
    # micro-batches with gradient accumulation. 0 = the whole step at once.
    micro_batch_tokens: int = 0
    # Padding-free batches: sequences concatenated, positions restarting per sequence.
    # auto = on GPUs; off on CPUs, where attention under the dense block mask costs more
    # than the padding it saves (bench/RESULTS.md).
    packing: bool | Literal["auto"] = "auto"
    # Attention kernel while training (transformers' attn_implementation: eager, sdpa,
    # flash_attention_2, ...). auto = eager on CPUs, whose bf16 matmuls train ~10% faster
    # than SDPA's CPU kernel at these lengths; the model's own (sdpa) elsewhere. Decoding
    # always uses the model's own: on CPUs SDPA decodes 1.6x faster than eager.
    attention: str = "auto"
    # Padded batches: the prompt tokens all examples start with (an instruction template)
    # are computed once per forward pass instead of once per example, where that saves
    # enough work (larger batches; seqtune.prefix).
    shared_prefix: bool = True
    # Order of examples: random batches; grouped = random batches of similar length (less
    # padding, as transformers' group_by_length); curriculum = first epoch shortest first.
    order: Literal["random", "grouped", "curriculum"] = "random"
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    lr_schedule: Literal["linear", "cosine", "constant"] = "cosine"
    max_grad_norm: float = 1.0
    # auto = bf16 autocast where the hardware runs it fast (CUDA, or a CPU with AMX/AVX512-BF16).
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    seed: int = 42
    # Save a checkpoint every N optimiser steps as well as at each epoch end (0 = epoch ends only).
    save_every_steps: int = 0
    keep_checkpoints: int = 2
    resume: bool = True
    # Decode the validation split after every epoch for exact match / edit distance.
    eval_generate: bool = True
    logger: Literal["none", "tensorboard", "mlflow"] = "tensorboard"
    compile: bool = False
    # Stop after this many optimiser steps (0 = run all epochs); for smoke tests and benchmarks.
    max_steps: int = 0
    # On out-of-memory, halve the tokens per forward pass and retry the step instead of stopping.
    oom_halving: bool = False
    progress: bool = True


@dataclass
class GenerateConfig:
    """Decoding for evaluation and predict."""

    num_beams: int = 1
    max_new_tokens: int = 128
    batch_size: int = 64
    # Verified decoding for chemistry tasks: take this many beams, keep the first that round-trips.
    verify: Literal["none", "opsin"] = "none"
    candidates: int = 1


@dataclass
class RunConfig:
    """A whole run: data -> train -> predict -> evaluate."""

    out_dir: str = "runs/demo"
    evaluate_base: bool = True
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)


# Chemprop-style flags a chemist would type, mapped onto config keys.
ALIASES = {
    "data-path": "data.path",
    "output-dir": "out_dir",
    "save-dir": "out_dir",
    "input-column": "data.input_column",
    "output-column": "data.output_column",
    "smiles-columns": "data.input_column",
    "target-columns": "data.output_column",
    "epochs": "train.epochs",
    "lr": "train.lr",
    "batch-size": "train.batch_size",
    "model": "model.name",
    "format": "model.format",
    "method": "model.method",
    "task": "data.task",
    "seed": "train.seed",
}


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check (and, for strings from the CLI, convert) `value` against type `tp`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, value, arg)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, allowed))}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported type {tp}")


def _check_ranges(cfg: RunConfig) -> None:
    positive = {
        "train.epochs": cfg.train.epochs,
        "train.batch_size": cfg.train.batch_size,
        "generate.num_beams": cfg.generate.num_beams,
        "generate.max_new_tokens": cfg.generate.max_new_tokens,
        "generate.batch_size": cfg.generate.batch_size,
        "generate.candidates": cfg.generate.candidates,
        "data.max_length": cfg.data.max_length,
        "model.lora_r": cfg.model.lora_r,
    }
    for key, v in positive.items():
        if v <= 0:
            raise ConfigError(f"{key}: must be > 0, got {v}")
    if not cfg.train.lr > 0:
        raise ConfigError(f"train.lr: must be > 0, got {cfg.train.lr}")
    for key, v in (("data.val_fraction", cfg.data.val_fraction), ("data.test_fraction", cfg.data.test_fraction)):
        if not 0 <= v < 1:
            raise ConfigError(f"{key}: must be in [0, 1), got {v}")
    if cfg.data.val_fraction + cfg.data.test_fraction >= 1:
        raise ConfigError("data.val_fraction + data.test_fraction: must leave some training data (< 1)")
    for key, v in (("data.train_size", cfg.data.train_size), ("data.val_size", cfg.data.val_size),
                   ("data.test_size", cfg.data.test_size)):
        if v is not None and v <= 0:
            raise ConfigError(f"{key}: must be > 0 or null, got {v}")
    for key, v in (("train.warmup_ratio", cfg.train.warmup_ratio),):
        if not 0 <= v < 1:
            raise ConfigError(f"{key}: must be in [0, 1), got {v}")
    for key, v in (("train.micro_batch_tokens", cfg.train.micro_batch_tokens),
                   ("train.save_every_steps", cfg.train.save_every_steps),
                   ("train.max_steps", cfg.train.max_steps), ("train.weight_decay", cfg.train.weight_decay),
                   ("model.freeze_layers", cfg.model.freeze_layers)):
        if v < 0:
            raise ConfigError(f"{key}: must be >= 0, got {v}")
    if cfg.generate.candidates > cfg.generate.num_beams and cfg.generate.candidates > 1:
        raise ConfigError(
            f"generate.candidates: {cfg.generate.candidates} needs generate.num_beams >= that number "
            f"(got {cfg.generate.num_beams})"
        )


def _build(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    types_ = _field_types(cls)
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        full = f"{prefix}{key}"
        if key not in types_:
            raise ConfigError(f"unknown key {full!r}; allowed: {', '.join(prefix + k for k in types_)}")
        tp = types_[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"{full}: expected a section (mapping), got {value!r}")
            kwargs[key] = _build(tp, value, f"{full}.")
        else:
            kwargs[key] = _coerce(full, value, tp)
    return cls(**kwargs)


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """Turn `a.b=v`, `--a.b v`, `--a.b=v` and Chemprop-style `--data-path v` into a nested dict."""
    nested: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--"):
            body = arg[2:]
            if "=" in body:
                key, value = body.split("=", 1)
            else:
                if i + 1 >= len(args):
                    raise ConfigError(f"option {arg} needs a value")
                key, value = body, args[i + 1]
                i += 1
        elif "=" in arg:
            key, value = arg.split("=", 1)
        else:
            raise ConfigError(f"cannot read override {arg!r}; write key=value or --key value")
        key = ALIASES.get(key, key).replace("-", "_")
        parts = key.split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r} conflicts with an earlier one")
        node[parts[-1]] = yaml.safe_load(value) if value not in ("",) else ""
        i += 1
    return nested


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def config_from_dict(raw: dict[str, Any]) -> RunConfig:
    cfg = _build(RunConfig, raw, "")
    _check_ranges(cfg)
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None) -> RunConfig:
    """Load a YAML config (or the defaults when `path` is None) and apply overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f":{mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{p}{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: expected a mapping of sections at the top level")
        raw = loaded
    if overrides:
        extra = overrides if isinstance(overrides, dict) else parse_overrides(overrides)
        raw = _merge(raw, extra)
    try:
        return config_from_dict(raw)
    except ConfigError as err:
        if path is not None:
            raise ConfigError(f"{path}: {err}") from None
        raise


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(cfg: RunConfig, path: str | Path) -> None:
    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
