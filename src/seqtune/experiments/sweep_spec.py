"""Sweep files: one YAML file that expands into many validated run configs.

A sweep file holds a base config (a path, an inline mapping, or both), a `grid:`
of dotted config keys whose value lists are crossed, and an optional `zip:` of
equally long lists that advance together. Every expanded config is validated
before anything runs, so a typo costs seconds rather than the hours of the runs
before it. Running them is seqtune.experiments.sweep's job.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqtune.config import RunConfig, config_from_dict, config_to_dict, load_config
from seqtune.config_sources import flatten, load_yaml, nest
from seqtune.errors import ConfigError, SeqtuneError
from seqtune.rundir import NOT_SETTINGS, RunDir

SWEEP_KEYS = ("description", "base_config", "base", "out_dir", "grid", "zip")
NAME_MAX = 150  # well under the 255-byte limit of common filesystems, leaving room for suffixes


@dataclass
class Sweep:
    """A parsed sweep file: the base config ({dotted key: value}) plus the axes to vary."""

    source: str
    out_dir: Path
    base: dict[str, Any]
    grid: dict[str, list[Any]] = field(default_factory=dict)
    zip: dict[str, list[Any]] = field(default_factory=dict)
    description: str = ""

    @property
    def keys(self) -> list[str]:
        return [*self.grid, *self.zip]


@dataclass
class RunSpec:
    """One expanded run: its swept settings, folder and validated config."""

    name: str
    settings: dict[str, Any]
    run_dir: Path
    config: RunConfig


def _flatten_axes(raw: Any, where: str, prefix: str = "") -> dict[str, list[Any]]:
    """Accept both `data.train_size: [...]` and nested `data: {train_size: [...]}`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of config keys to lists of values")
    flat: dict[str, list[Any]] = {}
    for key, value in raw.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten_axes(value, where, f"{full}."))
        elif isinstance(value, list) and value:
            flat[full] = value
        else:
            raise ConfigError(f"{where}.{full}: expected a non-empty list of values, got {value!r}")
    return flat


def parse_sweep(raw: Any, source: str, base_dir: Path | None = None) -> Sweep:
    """Check a sweep mapping's shape (not yet the expanded configs) and build a Sweep."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping with keys {', '.join(SWEEP_KEYS)}")
    unknown = [k for k in raw if k not in SWEEP_KEYS]
    if unknown:
        raise ConfigError(f"{source}: unknown key {unknown[0]!r}; allowed: {', '.join(SWEEP_KEYS)}")
    base_dir = base_dir or Path.cwd()

    base: dict[str, Any] = {}  # {dotted key: value}, merged as load_config merges overrides
    base_value = raw.get("base")
    config_path = raw.get("base_config")
    if isinstance(base_value, str):  # `base: path` is shorthand for `base_config: path`
        if config_path is not None:
            raise ConfigError(f"{source}: base is a path and base_config is set too; use one")
        config_path, base_value = base_value, None
    if config_path is not None:
        # Relative to the sweep file, like an include, so a sweep and its base travel together.
        p = Path(config_path)
        p = p if p.is_absolute() or not (base_dir / p).is_file() else base_dir / p
        loaded = load_yaml(p)
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{p}: expected a mapping of config sections")
        base = flatten(loaded or {})
    if base_value is not None:
        if not isinstance(base_value, dict):
            raise ConfigError(f"{source}: base: expected a config path or a mapping, got {base_value!r}")
        base.update(flatten(base_value))

    grid = _flatten_axes(raw.get("grid") or {}, f"{source}: grid")
    zipped = _flatten_axes(raw.get("zip") or {}, f"{source}: zip")
    known = set(flatten(config_to_dict(RunConfig())))
    for section, axes in (("grid", grid), ("zip", zipped)):
        for key in axes:
            if key == "out_dir":
                raise ConfigError(f"{source}: {section}.out_dir: the sweep sets each run's out_dir; vary other keys")
            if key not in known:
                raise ConfigError(f"{source}: {section}: {key!r} is not a config key; "
                                  f"known keys: {', '.join(sorted(known))}")
    both = set(grid) & set(zipped)
    if both:
        raise ConfigError(f"{source}: {sorted(both)[0]!r} is in both grid and zip; put it in one")
    lengths = {k: len(v) for k, v in zipped.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{k} has {n}" for k, n in lengths.items())
        raise ConfigError(f"{source}: zip lists must be equally long ({detail})")

    out_dir = raw.get("out_dir")
    if out_dir is None:
        out_dir = f"runs/{Path(source).stem}"
    if not isinstance(out_dir, str) or not out_dir.strip():
        raise ConfigError(f"{source}: out_dir: expected a folder path, got {out_dir!r}")
    return Sweep(source=source, out_dir=Path(out_dir), base=base, grid=grid, zip=zipped,
                 description=str(raw.get("description") or ""))


def load_sweep(path: str | Path) -> Sweep:
    """Read and shape-check a sweep file."""
    p = Path(path)
    return parse_sweep(load_yaml(p), str(p), p.parent)


def _value_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def run_name(settings: dict[str, Any]) -> str:
    """Readable, filesystem-safe folder name: `key=value__key=value`."""
    if not settings:
        return "base"
    parts = [f"{k}={_value_text(v)}" for k, v in settings.items()]
    # Slashes (hub ids, template paths) and shell-hostile characters become '-'.
    name = re.sub(r"[^A-Za-z0-9._=+-]+", "-", "__".join(parts)).strip("-.") or "run"
    if len(name) > NAME_MAX:
        digest = hashlib.sha1(repr(sorted(settings.items())).encode()).hexdigest()[:8]
        name = f"{name[:NAME_MAX - 9]}-{digest}"
    return name


def expand(sweep: Sweep) -> list[RunSpec]:
    """All runs of a sweep, each config validated; raises ConfigError naming the run on the first bad one."""
    grid_rows = [dict(zip(sweep.grid, combo, strict=True)) for combo in itertools.product(*sweep.grid.values())]
    n_zip = len(next(iter(sweep.zip.values()))) if sweep.zip else 1
    zip_rows = [{k: v[i] for k, v in sweep.zip.items()} for i in range(n_zip)] if sweep.zip else [{}]

    all_settings = [{**g, **z} for g in grid_rows for z in zip_rows]
    names = [run_name(s) for s in all_settings]
    counts = collections.Counter(names)
    specs: list[RunSpec] = []
    seen: set[str] = set()
    for settings, name in zip(all_settings, names, strict=True):
        if counts[name] > 1:
            # Distinct values that sanitise alike ('a/b' vs 'a b') must not share a folder.
            name = f"{name}-{hashlib.sha1(repr(settings).encode()).hexdigest()[:8]}"
            if name in seen:
                raise ConfigError(f"{sweep.source}: the run {run_name(settings)} appears twice; "
                                  "remove the duplicate values")
        seen.add(name)
        run_dir = sweep.out_dir / name
        try:
            cfg = config_from_dict(nest({**sweep.base, **settings, "out_dir": str(run_dir)}))
        except ConfigError as err:
            raise ConfigError(f"{sweep.source}: run {name}: {err}") from None
        specs.append(RunSpec(name=name, settings=settings, run_dir=run_dir, config=cfg))
    return specs


def config_changes(spec: RunSpec) -> list[str]:
    """Keys whose value differs between the spec and a config.yaml already in the run folder."""
    existing = RunDir(spec.run_dir).config
    if not existing.is_file():
        return []
    try:
        old = config_to_dict(load_config(existing))
    except SeqtuneError:
        return ["(unreadable config.yaml)"]
    new = flatten(config_to_dict(spec.config))
    old_flat = flatten(old)
    # Keys that change how a run is logged but not its results (progress bars, loggers) do not count.
    return [k for k in new if k not in NOT_SETTINGS and old_flat.get(k) != new[k]]


def check_existing(specs: list[RunSpec]) -> None:
    """Refuse to skip a finished run whose config no longer matches the sweep: its results would lie."""
    for spec in specs:
        if RunDir(spec.run_dir).is_complete:
            changes = config_changes(spec)
            if changes:
                raise ConfigError(
                    f"{spec.run_dir}: holds a finished run with a different config ({', '.join(changes[:5])}); "
                    "delete that folder to re-run it, or give the sweep another out_dir"
                )
