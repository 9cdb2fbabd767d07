"""Sweeps: one YAML file expands into many runs, each executed as its own `seqtune run`.

A sweep file holds a base config (a path, an inline mapping, or both), a `grid:`
of dotted config keys whose value lists are crossed, and an optional `zip:` of
equally long lists that advance together. Every expanded config is validated
before anything runs, so a typo costs seconds rather than the hours of the runs
before it. Each run is a subprocess so that a crash or an out-of-memory kill
ends that run only; the sweep records it and goes on.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import hashlib
import itertools
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from seqtune.config import RunConfig, config_from_dict, config_to_dict, load_config, save_config
from seqtune.errors import ConfigError, SeqtuneError
from seqtune.io import atomic_write_json, atomic_write_text
from seqtune.results import (
    ERROR_FILE,
    METRICS_FILE,
    NOT_SETTINGS,
    error_line,
    flatten,
    run_status,
    tail_lines,
    write_results,
)

SWEEP_KEYS = ("description", "base_config", "base", "out_dir", "grid", "zip")
# Files the sweep writes into a run folder; the run pipeline owns all others.
LOG_FILE = "sweep.log"
SUMMARY_FILE = "sweep.json"
LOCK_FILE = ".sweep.lock"
ERROR_TAIL_LINES = 60
NAME_MAX = 150  # well under the 255-byte limit of common filesystems, leaving room for suffixes

Runner = Callable[["RunSpec", Path], int]


@dataclass
class Sweep:
    """A parsed sweep file: the raw base config plus the axes to vary."""

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


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', err)})") from None


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _nest(dotted: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in dotted.items():
        *parents, leaf = key.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


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

    base: dict[str, Any] = {}
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
        loaded = _read_yaml(p)
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{p}: expected a mapping of config sections")
        base = loaded or {}
    if base_value is not None:
        if not isinstance(base_value, dict):
            raise ConfigError(f"{source}: base: expected a config path or a mapping, got {base_value!r}")
        base = _deep_merge(base, base_value)

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
    return parse_sweep(_read_yaml(p), str(p), p.parent)


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
        raw = _deep_merge(sweep.base, _nest(settings))
        raw["out_dir"] = str(run_dir)
        try:
            cfg = config_from_dict(raw)
        except ConfigError as err:
            raise ConfigError(f"{sweep.source}: run {name}: {err}") from None
        specs.append(RunSpec(name=name, settings=settings, run_dir=run_dir, config=cfg))
    return specs


def _config_changes(spec: RunSpec) -> list[str]:
    """Keys whose value differs between the spec and a config.yaml already in the run folder."""
    existing = spec.run_dir / "config.yaml"
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
        if run_status(spec.run_dir) == "done":
            changes = _config_changes(spec)
            if changes:
                raise ConfigError(
                    f"{spec.run_dir}: holds a finished run with a different config ({', '.join(changes[:5])}); "
                    "delete that folder to re-run it, or give the sweep another out_dir"
                )


def run_subprocess(spec: RunSpec, log_path: Path, echo: bool = False) -> int:
    """Run `python -m seqtune run CONFIG` in a child process, copying its output into log_path."""
    cmd = [sys.executable, "-m", "seqtune", "run", str(spec.run_dir / "config.yaml")]
    env = dict(os.environ)
    # The child must import this very seqtune, even when it is used from a source tree.
    src = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    # Progress bars redraw many times a second; in a log file one line per 30 s is plenty.
    env.setdefault("TQDM_MININTERVAL", "30")
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                text=True, errors="replace", bufsize=1)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                if echo:
                    sys.stdout.write(line)
            return proc.wait()
        except BaseException:
            # Ctrl-C: stop the child too, or it would keep the CPU/GPU after the sweep is gone.
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise


def _summary(sweep: Sweep, specs: list[RunSpec], records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    runs = [{"name": s.name, "dir": str(s.run_dir), "settings": s.settings, **records[s.name]} for s in specs]
    counts = collections.Counter(r["status"] for r in runs)
    return {"source": sweep.source, "description": sweep.description, "out_dir": str(sweep.out_dir),
            "keys": sweep.keys, "updated": time.strftime("%Y-%m-%dT%H:%M:%S"), "counts": dict(counts),
            "runs": runs}


def run_sweep(sweep: Sweep, *, retry_failed: bool = False, runner: Runner | None = None,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every unfinished run of a sweep; returns (and writes to sweep.json) the summary."""
    specs = expand(sweep)
    check_existing(specs)
    runner = runner or run_subprocess
    with _sweep_lock(sweep.out_dir):
        return _run_all(sweep, specs, retry_failed, runner, log)


def _run_all(sweep: Sweep, specs: list[RunSpec], retry_failed: bool, runner: Runner,
             log: Callable[[str], None]) -> dict[str, Any]:
    summary_path = sweep.out_dir / SUMMARY_FILE
    # Keep the timings and exit codes of earlier invocations for the runs this one skips.
    previous = {}
    if summary_path.is_file():
        with contextlib.suppress(ValueError, OSError, KeyError, TypeError):
            previous = {r["name"]: r for r in json.loads(summary_path.read_text(encoding="utf-8"))["runs"]}
    records: dict[str, dict[str, Any]] = {}
    for spec in specs:
        state = run_status(spec.run_dir)
        old = previous.get(spec.name, {})
        records[spec.name] = {k: v for k, v in old.items() if k in ("exit_code", "seconds")} \
            if old.get("status") == state else {}
        records[spec.name]["status"] = state
        if state == "failed":
            records[spec.name]["error"] = error_line(spec.run_dir)
    atomic_write_json(summary_path, _summary(sweep, specs, records))

    for i, spec in enumerate(specs, 1):
        state = records[spec.name]["status"]
        tag = f"[{i}/{len(specs)}] {spec.name}"
        if state == "done" or (state == "failed" and not retry_failed):
            note = "" if state == "done" else " (use --retry-failed to run it again)"
            log(f"{tag}: {state}, skipped{note}")
            continue
        changes = _config_changes(spec)
        if changes:
            log(f"{tag}: config changed since the last attempt ({', '.join(changes[:5])})")
        spec.run_dir.mkdir(parents=True, exist_ok=True)
        (spec.run_dir / ERROR_FILE).unlink(missing_ok=True)
        save_config(spec.config, spec.run_dir / "config.yaml")
        log(f"{tag}: running")
        records[spec.name] = {"status": "running", "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
        atomic_write_json(summary_path, _summary(sweep, specs, records))
        start = time.monotonic()
        code = runner(spec, spec.run_dir / LOG_FILE)
        seconds = round(time.monotonic() - start, 1)
        rec: dict[str, Any] = {"exit_code": code, "seconds": seconds}
        if code == 0 and run_status(spec.run_dir) == "done":
            rec["status"] = "done"
            log(f"{tag}: done in {seconds:.0f} s")
        else:
            reason = f"exit code {code}" if code != 0 else f"exit code 0 but no {METRICS_FILE} was written"
            tail = tail_lines(spec.run_dir / LOG_FILE, ERROR_TAIL_LINES)
            atomic_write_text(spec.run_dir / ERROR_FILE,
                              f"{reason}\nlog: {spec.run_dir / LOG_FILE}\n\n" + "\n".join(tail) + "\n")
            rec.update(status="failed", error=error_line(spec.run_dir))
            log(f"{tag}: FAILED ({reason}): {rec['error']}")
        records[spec.name] = rec
        atomic_write_json(summary_path, _summary(sweep, specs, records))
    return _summary(sweep, specs, records)


@contextlib.contextmanager
def _sweep_lock(out_dir: Path) -> Iterator[None]:
    """One sweep per folder: two would train the same runs into the same files at once."""
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = out_dir / LOCK_FILE
    me = f"{os.getpid()} {socket.gethostname()}"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            owner = lock.read_text(encoding="utf-8", errors="replace").split() if lock.is_file() else []
            pid = int(owner[0]) if owner and owner[0].isdigit() else None
            host = owner[1] if len(owner) > 1 else socket.gethostname()
            if pid is not None and (host != socket.gethostname() or _alive(pid)):
                raise SeqtuneError(f"{out_dir}: another seqtune sweep (pid {pid} on {host}) is running here; "
                                   f"wait for it, or delete {lock} if it is gone") from None
            lock.unlink(missing_ok=True)  # left behind by a sweep that was killed
    else:
        raise SeqtuneError(f"{lock}: cannot take the sweep lock")
    with os.fdopen(fd, "w") as fh:
        fh.write(me)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    return True


def _print_plan(specs: list[RunSpec], retry_failed: bool) -> None:
    width, n_run = max(len(s.name) for s in specs), 0
    for s in specs:
        state = run_status(s.run_dir)
        will_run = state in ("pending", "incomplete") or (state == "failed" and retry_failed)
        n_run += will_run
        print(f"{s.name:<{width}}  {state:<8} {'run' if will_run else 'skip'}")
    print(f"{len(specs)} runs, {n_run} to run, out_dir {specs[0].run_dir.parent}")


def main(argv: list[str] | None = None) -> int:
    """`seqtune sweep SWEEP.yaml [--retry-failed] [--dry-run] [--verbose]`."""
    ap = argparse.ArgumentParser(prog="seqtune sweep", description="Run every configuration of a sweep file.")
    ap.add_argument("sweep", help="sweep YAML file (base/base_config, out_dir, grid, zip)")
    ap.add_argument("--retry-failed", action="store_true", help="run again the runs that failed before")
    ap.add_argument("--dry-run", action="store_true", help="validate and list the runs; run nothing")
    ap.add_argument("--out-dir", help="sweep root folder (overrides the file's out_dir)")
    ap.add_argument("-v", "--verbose", action="store_true", help="echo each run's output to the terminal")
    args = ap.parse_args(argv)
    sweep = load_sweep(args.sweep)
    if args.out_dir:
        sweep.out_dir = Path(args.out_dir)
    specs = expand(sweep)
    check_existing(specs)
    if args.dry_run:
        _print_plan(specs, args.retry_failed)
        return 0
    runner = functools.partial(run_subprocess, echo=args.verbose)
    try:
        summary = run_sweep(sweep, retry_failed=args.retry_failed, runner=runner)
        csv_path, md_path = write_results(sweep.out_dir)
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to continue where it stopped", file=sys.stderr)
        return 130
    print(f"results: {csv_path} and {md_path}; plots: seqtune report {sweep.out_dir}")
    failed = [r for r in summary["runs"] if r["status"] == "failed"]
    if failed:
        print(f"{len(failed)} of {len(summary['runs'])} runs failed (details in each run's {ERROR_FILE}):",
              file=sys.stderr)
        for r in failed:
            print(f"  {r['name']}: {r.get('error', '')}", file=sys.stderr)
        return 1
    return 0
