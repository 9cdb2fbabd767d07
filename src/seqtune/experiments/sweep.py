"""Running a sweep: each expanded run executed as its own `seqtune run`, resumably.

Each run is a subprocess so that a crash or an out-of-memory kill ends that run only;
the sweep records it and goes on. Finished runs are skipped on the next invocation, so
the same command continues a sweep that was stopped. What the runs are comes from
seqtune.experiments.sweep_spec.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import seqtune
from seqtune.config import save_config
from seqtune.errors import SeqtuneError
from seqtune.experiments.results import error_line, tail_lines, write_results
from seqtune.experiments.sweep_spec import RunSpec, Sweep, check_existing, config_changes, expand, load_sweep
from seqtune.io import atomic_write_json, atomic_write_text
from seqtune.rundir import ERROR, METRICS, RunDir

# Files of the sweep folder (a run folder's own, sweep.log and error.txt included, are RunDir's).
SUMMARY_FILE = "sweep.json"
LOCK_FILE = ".sweep.lock"
ERROR_TAIL_LINES = 60

Runner = Callable[[RunSpec, Path], int]


def run_subprocess(spec: RunSpec, log_path: Path, echo: bool = False) -> int:
    """Run `python -m seqtune run CONFIG` in a child process, copying its output into log_path."""
    cmd = [sys.executable, "-m", "seqtune", "run", str(RunDir(spec.run_dir).config)]
    env = dict(os.environ)
    # The child must import this very seqtune, even when it is used from a source tree.
    src = str(Path(seqtune.__file__).resolve().parents[1])
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
        state = RunDir(spec.run_dir).status
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
        changes = config_changes(spec)
        if changes:
            log(f"{tag}: config changed since the last attempt ({', '.join(changes[:5])})")
        run = RunDir(spec.run_dir)
        run.root.mkdir(parents=True, exist_ok=True)
        run.error.unlink(missing_ok=True)
        save_config(spec.config, run.config)
        log(f"{tag}: running")
        records[spec.name] = {"status": "running", "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
        atomic_write_json(summary_path, _summary(sweep, specs, records))
        start = time.monotonic()
        code = runner(spec, run.sweep_log)
        seconds = round(time.monotonic() - start, 1)
        rec: dict[str, Any] = {"exit_code": code, "seconds": seconds}
        if code == 0 and run.is_complete:
            rec["status"] = "done"
            log(f"{tag}: done in {seconds:.0f} s")
        else:
            reason = f"exit code {code}" if code != 0 else f"exit code 0 but no {METRICS} was written"
            tail = tail_lines(run.sweep_log, ERROR_TAIL_LINES)
            atomic_write_text(run.error, f"{reason}\nlog: {run.sweep_log}\n\n" + "\n".join(tail) + "\n")
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
        state = RunDir(s.run_dir).status
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
        print(f"{len(failed)} of {len(summary['runs'])} runs failed (details in each run's {ERROR}):",
              file=sys.stderr)
        for r in failed:
            print(f"  {r['name']}: {r.get('error', '')}", file=sys.stderr)
        return 1
    return 0
