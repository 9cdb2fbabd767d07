"""Per-molecule work of a build: clean, filter, name, verify. Runs inside worker processes.

Each shard's results are written to their own file atomically, so a build that
is interrupted keeps every finished shard and resumes from there.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing as mp
import os
import signal
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from seqtune.io import atomic_write_text

from .. import molecules, naming, opsin

# Bump when per-molecule processing changes, so cached shards from older code are not reused.
PIPELINE_VERSION = 1


@dataclass(frozen=True)
class Settings:
    """Everything that changes per-molecule results; it keys the shard cache."""

    min_heavy_atoms: int = 1
    max_heavy_atoms: int = 50
    fragments: str = "largest"  # "largest": keep the largest fragment; "skip": reject mixtures
    namer: str = "openclatura"  # "openclatura", or "source" for names shipped with the source (PubChem)
    naming_timeout_s: float = 20.0

    def to_dict(self) -> dict:
        return asdict(self)


# A record is (index in the source, record id, raw SMILES, name from the source or None).
Record = tuple[int, str, str, "str | None"]


def _prepare(raw: str, source_name: str | None, settings: Settings) -> tuple[dict | None, str | None]:
    if not raw or not raw.strip():
        return None, "empty_line"
    mol = molecules.mol_from_smiles(raw)
    if mol is None:
        return None, "invalid_smiles"
    if molecules.n_fragments(mol) > 1:
        # A source name describes the whole mixture, so it can never match one fragment.
        if settings.fragments == "skip" or settings.namer == "source":
            return None, "mixture"
        mol = molecules.largest_fragment(mol)
    heavy = mol.GetNumHeavyAtoms()
    if heavy < settings.min_heavy_atoms:
        return None, "too_few_atoms"
    if heavy > settings.max_heavy_atoms:
        return None, "too_many_atoms"
    canonical = molecules.canonical_from_mol(mol)
    if canonical is None:
        return None, "invalid_smiles"
    if settings.namer == "source":
        name = (source_name or "").strip()
        if not name:
            return None, "no_source_name"
    else:
        name, reason = naming.name_smiles(canonical, timeout_s=settings.naming_timeout_s)
        if name is None:
            return None, reason
    return {"smiles": canonical, "name": name, "scaffold": molecules.murcko_scaffold(mol)}, None


def process_records(records: list[Record], settings: Settings) -> list[dict]:
    """One result dict per record: ``status`` is ``"ok"`` or the reject reason."""
    results: list[dict] = []
    pending: list[int] = []
    for index, rid, raw, source_name in records:
        item, reason = _prepare(raw, source_name, settings)
        row = {"i": index, "id": rid, "status": reason or "ok"}
        if item is not None:
            row.update(item)
            pending.append(len(results))
        results.append(row)
    checks = naming.roundtrip([results[k]["name"] for k in pending], [results[k]["smiles"] for k in pending])
    for k, check in zip(pending, checks, strict=True):
        row = results[k]
        if not check.parsable:
            row["status"] = "opsin_unparsable"
        elif not check.same_smiles:
            # Same InChIKey but different SMILES is usually a tautomer or charge
            # form; the pair would still teach the wrong structure, so reject it.
            row["status"] = "opsin_mismatch_same_inchikey" if check.same_inchikey else "opsin_mismatch"
            row["opsin_smiles"] = check.canonical
    return results


def process_shard(job: tuple[str, list[Record], dict]) -> tuple[str, int]:
    """Worker entry point: process one shard and write it to ``job[0]``."""
    path, records, settings = job
    results = process_records(records, Settings(**settings))
    text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in results)
    atomic_write_text(path, text)
    return path, len(records)


def read_shard(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def init_worker(parent_pid: int | None = None) -> None:
    """Pool initializer: tie this worker's life to the build's, then start its JVM once."""
    if parent_pid is not None:
        _die_with_parent(parent_pid)
    opsin.ensure_started()


# prctl(2) option: the signal this process gets when its parent dies.
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    # A killed build (even SIGKILL, which runs no clean-up in the parent) must not leave workers
    # naming molecules and writing shards for minutes. On Linux the kernel kills us with the parent.
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the request above took effect
        os._exit(1)


def start_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes for shards; they die with this process (see ``stop_pool`` for an orderly end)."""
    # spawn, not fork: the parent may already run a JVM, which does not survive fork. An
    # executor (unlike mp.Pool) reports a worker that died instead of waiting forever for its shard.
    return ProcessPoolExecutor(workers, mp.get_context("spawn"), initializer=init_worker,
                               initargs=(os.getpid(),))


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """End the workers now, running shards included."""
    # Shards still running when the walk is done are not needed; waiting for them could cost a
    # whole shard's time, so their workers are killed (a shard file is complete or absent).
    # SIGKILL, not SIGTERM: a worker's JVM owns SIGTERM and sometimes sits on it (seen here: a
    # worker slept on for a minute after SIGTERM), which left it alive past a Ctrl-C'd build.
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        if proc.is_alive():
            proc.kill()
    for proc in processes:
        proc.join(timeout=5)


@contextmanager
def exit_on_sigterm() -> Iterator[None]:
    """SIGTERM raises SystemExit here, so clean-up (``stop_pool``) runs; by default it ends the
    process on the spot (on Linux the workers still die with it, see ``_die_with_parent``)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def remove_created(paths: list[Path]) -> None:
    """Remove folders a failed build created (deepest first), leaving any that existed before."""
    import shutil

    for path in sorted(paths, key=lambda p: len(p.parts), reverse=True):
        shutil.rmtree(path, ignore_errors=True)
