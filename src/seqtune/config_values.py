"""One raw config value checked against its field's type.

YAML and the command line hand over strings, numbers and booleans as written; each is checked
(and a CLI string converted) here, field by field, so that seqtune.config only walks the
dataclasses. This module knows nothing of them. Also the one value checked against the
environment: the trackers train.logger names, each installed.
"""

from __future__ import annotations

import importlib.util
import math
import types
import typing
from typing import Any, Literal

from seqtune.config_sources import KeyedConfigError
from seqtune.errors import ConfigError


def coerce(key: str, value: Any, tp: Any) -> Any:
    """Check `value` against type `tp` and return it, converting strings from the CLI: one
    ConfigError naming `key` for anything else (a float for an int, inf, an unknown literal)."""
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
                return coerce(key, value, arg)
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
        # A float is refused, not truncated: `num_beams: 2.7` must not quietly run 2 beams.
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        # inf or nan trains a NaN model that is exported as if it were fine.
        if not math.isfinite(number):
            raise ConfigError(f"{key}: must be a finite number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported type {tp}")


# train.logger's names -> (module imported, pip package that provides it).
LOGGERS = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow-skinny"),
           "wandb": ("wandb", "wandb"), "trackio": ("trackio", "trackio")}


def logger_names(value: str) -> list[str]:
    """The trackers `train.logger` names, each known and installed: checked on load, before any work."""
    names = list(dict.fromkeys(n for n in (s.strip() for s in value.split(",")) if n and n != "none"))
    for name in names:
        module, package = LOGGERS.get(name, ("", ""))
        if not module:
            raise KeyedConfigError("train.logger", f"train.logger: {name!r} is not one of none, {', '.join(LOGGERS)}")
        if importlib.util.find_spec(module) is None:
            raise KeyedConfigError("train.logger", f"train.logger: {name} is not installed (pip install {package})")
    return names
