"""Where config values come from, and where each one was written.

A YAML file gives each key with its line, the command line each key with the flag as typed,
so that seqtune.config can point an error at `file:line` or at the flag instead of at the
whole file. Spellings users bring from other tools (Chemprop flags, Hugging Face
TrainingArguments names) are mapped onto config keys here. Values stay raw: seqtune.config
checks them. This module knows nothing of the dataclasses, so seqtune.config can import it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from seqtune.errors import ConfigError

# Other tools' spellings -> config keys; '-' and '_' are the same. An alias also works inside
# its own section (`train: {learning_rate: 1e-4}`), never across sections.
ALIASES: dict[str, str] = {
    # Chemprop
    "data_path": "data.path",
    "save_dir": "out_dir",
    "input_column": "data.input_column",
    "output_column": "data.output_column",
    "smiles_columns": "data.input_column",
    "target_columns": "data.output_column",
    "epochs": "train.epochs",
    "lr": "train.lr",
    "batch_size": "train.batch_size",
    "model": "model.name",
    "format": "model.format",
    "method": "model.method",
    "task": "data.task",
    "seed": "train.seed",
    # Hugging Face TrainingArguments and TRL's SFTConfig. per_device_train_batch_size is the
    # whole step here (seqtune's batch_size counts all devices); equal on one device.
    "output_dir": "out_dir",
    "learning_rate": "train.lr",
    "num_train_epochs": "train.epochs",
    "per_device_train_batch_size": "train.batch_size",
    "per_device_eval_batch_size": "generate.batch_size",
    "warmup_ratio": "train.warmup_ratio",
    "weight_decay": "train.weight_decay",
    "lr_scheduler_type": "train.lr_schedule",
    "max_steps": "train.max_steps",
    "save_steps": "train.save_every_steps",
    "save_total_limit": "train.keep_checkpoints",
    "max_grad_norm": "train.max_grad_norm",
    "torch_compile": "train.compile",
    "gradient_checkpointing": "train.gradient_checkpointing",
    "logging_steps": "train.log_every",
    "metric_for_best_model": "train.select_metric",
    "report_to": "train.logger",
    "model_name_or_path": "model.name",
    "max_length": "data.max_length",
    "max_seq_length": "data.max_length",
    "num_beams": "generate.num_beams",
    "max_new_tokens": "generate.max_new_tokens",
}


class KeyedConfigError(ConfigError):
    """A ConfigError about one key, so the loader can say where that key was written."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def canonical_key(key: str) -> str:
    """The config key an alias or a hyphenated spelling stands for (other keys unchanged)."""
    key = key.replace("-", "_")
    if key in ALIASES:
        return ALIASES[key]
    section, _, leaf = key.rpartition(".")
    target = ALIASES.get(leaf, "")
    return target if section and target.rpartition(".")[0] == section else key


def did_you_mean(key: str, known: Iterable[str]) -> list[str]:
    """The keys (or aliases) the user probably meant by `key`: usually one, none if nothing is close."""
    known = list(known)
    leaf = key.rpartition(".")[2]
    # A right name in the wrong section (`data.lr`) is the commonest slip, then a typo.
    same_leaf = [k for k in known if k.rpartition(".")[2] == leaf]
    if same_leaf:
        return same_leaf
    close = difflib.get_close_matches(key, known + list(ALIASES), n=1, cutoff=0.75)
    names = {k.rpartition(".")[2]: k for k in known} | {a: a for a in ALIASES}
    close_leaf = [names[x] for x in difflib.get_close_matches(leaf, list(names), n=1, cutoff=0.75)]
    return close or close_leaf


def flatten(raw: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested sections -> {dotted canonical key: value}; an empty section stays a leaf."""
    out: dict[str, Any] = {}
    for k, v in raw.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{key}."))
        else:
            out[canonical_key(key)] = v
    return out


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """{dotted key: value} -> nested sections."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = out
        for i, part in enumerate(parents):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                section = ".".join(parents[: i + 1])
                raise KeyedConfigError(section, f"{section}: expected a section (mapping), got {node!r}")
        if value == {} and isinstance(node.get(leaf), dict):
            continue  # an empty section adds nothing; it must not wipe the keys already set
        node[leaf] = value
    return out


def read_yaml(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """A YAML config as ({dotted canonical key: value}, {dotted key: 'path:line'})."""
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    loader = yaml.SafeLoader(path.read_text(encoding="utf-8"))
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    try:
        node = loader.get_single_node()
        if node is not None and not isinstance(node, yaml.MappingNode):
            raise ConfigError(f"{path}: expected a mapping of sections at the top level")
        if node is not None:
            _walk(loader, node, "", path, values, origins)
    except yaml.YAMLError as err:
        raise _yaml_error(path, err) from None
    finally:
        loader.dispose()
    return values, origins


def load_yaml(path: Path) -> Any:
    """A YAML file's content as plain Python values (a sweep file, a sweep's base config)."""
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise _yaml_error(path, err) from None


def _yaml_error(path: Path, err: yaml.YAMLError) -> ConfigError:
    mark = getattr(err, "problem_mark", None)
    where = f":{mark.line + 1}" if mark is not None else ""
    return ConfigError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', err)})")


def _walk(loader: yaml.SafeLoader, node: yaml.MappingNode, prefix: str, path: Path,
          values: dict[str, Any], origins: dict[str, str]) -> None:
    loader.flatten_mapping(node)  # YAML merge keys (`<<: *base`), as the plain loader does
    for key_node, value_node in node.value:
        key = f"{prefix}{loader.construct_object(key_node, deep=True)}"
        where = f"{path}:{key_node.start_mark.line + 1}"
        if isinstance(value_node, yaml.MappingNode) and value_node.value:
            origins.setdefault(key, where)
            _walk(loader, value_node, f"{key}.", path, values, origins)
            continue
        full = canonical_key(key)
        if full in values:
            raise KeyedConfigError(full, f"{where}: {key}: set twice (also at {origins[full]})")
        values[full] = loader.construct_object(value_node, deep=True)
        origins[full] = where


def parse_override_args(args: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """`a.b=v`, `--a.b v`, `--a.b=v`, `--data-path v`, `--learning_rate v` as
    ({dotted canonical key: value}, {dotted key: the option as typed}); the last one wins."""
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--"):
            flag, sep, value = arg.partition("=")
            if not sep:
                # A value that looks like the next option means this one's value was forgotten.
                if i + 1 >= len(args) or (args[i + 1].startswith("--") and len(args[i + 1]) > 2):
                    raise ConfigError(f"option {arg} needs a value")
                value = args[i + 1]
                i += 1
            key, where = flag[2:], f"option {flag}"
        elif "=" in arg:
            key, value = arg.split("=", 1)
            where = f"argument {arg if len(arg) <= 60 else arg[:57] + '...'}"
        else:
            raise ConfigError(f"cannot read override {arg!r}; write key=value or --key value")
        full = canonical_key(key)
        values.pop(full, None)
        values[full] = _value(value)
        origins[full] = where
        i += 1
    return values, origins


def _value(text: str) -> Any:
    """A command-line value read as YAML (numbers, booleans, null, lists), else the text itself:
    `Translate: this` is an instruction, not a mapping."""
    if text == "":
        return ""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if value is None and text.strip() not in ("null", "Null", "NULL", "~"):
        return text  # `# note` is text, not an empty YAML document
    return text if isinstance(value, dict) else value
