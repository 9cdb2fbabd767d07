"""Build a verified chemistry dataset: ``seqtune data chem --task smiles2iupac --source moses --n 100000 --out DIR``.

The source is permuted with the seed and cut into shards; workers name and
verify each shard (see :mod:`.shards`) and the parent then walks the shards
in order, deduplicates, stops at ``n`` pairs and splits. Because the walk is in
shard order, the output depends only on the seed and settings, never on the
number of workers or on which shards were cached.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from seqtune.io import atomic_write_text
from seqtune.runtime import package_versions

from .. import CHEM_TASKS, molecules, naming, opsin
from ..tasks import check_task, make_example
from . import sources
from .shards import (
    PIPELINE_VERSION,
    Record,
    Settings,
    exit_on_sigterm,
    process_shard,
    read_shard,
    remove_created,
    start_pool,
    stop_pool,
)
from .splits import SPLITS, split_random, split_scaffold


@dataclass
class BuildResult:
    out_dir: Path
    counts: dict[str, int]
    rejects: dict[str, int]
    shards_computed: int = 0
    shards_reused: int = 0
    seconds: float = 0.0
    provenance: dict = field(default_factory=dict)


@dataclass
class _Walk:
    """State of the in-order walk over shard results."""

    n: int
    # InChIKeys of molecules that must not appear (a holdout set), see ``sources.exclusion_keys``.
    excluded: frozenset[str] = frozenset()
    seen: set[str] = field(default_factory=set)
    accepted: list[dict] = field(default_factory=list)
    rejects: Counter = field(default_factory=Counter)
    considered: int = 0

    @property
    def done(self) -> bool:
        return len(self.accepted) >= self.n

    def take(self, rows: list[dict], task: str, seed: int) -> None:
        for row in rows:
            if self.done:
                return
            self.considered += 1
            if row["status"] != "ok":
                self.rejects[row["status"]] += 1
                continue
            if row["smiles"] in self.seen:
                self.rejects["duplicate"] += 1
                continue
            if self.excluded and molecules.inchikey_from_smiles(row["smiles"]) in self.excluded:
                self.rejects["excluded"] += 1
                continue
            example = make_example(task, row["smiles"], row["name"], seed)
            if example is None:
                self.rejects["task_output_failed"] += 1
                continue
            self.seen.add(row["smiles"])
            self.accepted.append({**row, "input": example[0], "output": example[1]})


def _walk_shards(
    walk: _Walk,
    n_shards: int,
    shard_path: Callable[[int], Path],
    shard_job: Callable[[int], tuple[str, list[Record], dict]],
    task: str,
    seed: int,
    workers: int,
    progress: bool,
) -> tuple[int, int]:
    """Feed shards to ``walk`` in order until it has ``n`` pairs; returns (computed, reused).

    Shards are submitted ahead only while the pairs expected from the shards in
    flight (at the yield seen so far) still fall short of ``n``, so at the end
    we rarely name molecules we will not use, while both workers stay busy.
    """
    computed = reused = 0
    pending: deque[tuple[int, object, tuple[str, list[Record], dict]]] = deque()
    next_shard = 0
    pool = None
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=walk.n, unit="pair", desc=f"name+verify ({workers} proc)", file=sys.stderr)
    try:
        while not walk.done:
            rate = len(walk.accepted) / walk.considered if walk.considered else 0.9
            while next_shard < n_shards and len(pending) < 2 * workers:
                expected = len(walk.accepted) + rate * sum(len(job[1]) for _, _, job in pending)
                if pending and expected >= walk.n:
                    break
                path = shard_path(next_shard)
                job = shard_job(next_shard)
                if path.is_file():
                    pending.append((next_shard, None, job))
                elif workers > 1:
                    if pool is None:
                        pool = start_pool(workers)
                    pending.append((next_shard, pool.submit(process_shard, job), job))
                else:
                    pending.append((next_shard, "inline", job))
                next_shard += 1
            if not pending:
                break
            k, handle, job = pending.popleft()
            if handle is None:
                reused += 1
            else:
                if handle == "inline":
                    process_shard(job)
                else:
                    try:
                        handle.result()
                    except BrokenProcessPool as exc:
                        raise RuntimeError(
                            "a worker process died (out of memory or a crash in RDKit/Java); "
                            "re-run the same command to resume from the finished shards"
                        ) from exc
                computed += 1
            before = len(walk.accepted)
            walk.take(read_shard(shard_path(k)), task, seed)
            if bar is not None:
                bar.update(len(walk.accepted) - before)
    finally:
        if bar is not None:
            bar.close()
        if pool is not None:
            stop_pool(pool)
    return computed, reused


def _shard_key(source_meta: dict, seed: int, shard_size: int, settings: Settings) -> str:
    blob = json.dumps(
        {
            "source": source_meta,
            "seed": seed,
            "shard_size": shard_size,
            "settings": settings.to_dict(),
            "pipeline": PIPELINE_VERSION,
            "openclatura": naming.openclatura_version(),
            "opsin": opsin.opsin_version(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _versions() -> dict[str, str]:
    return {"opsin": opsin.opsin_version(), "openclatura": naming.openclatura_version(),
            **package_versions(("rdkit", "pyopsin", "py2opsin", "jpype1", "chemicals"), missing="not installed")}


def build_dataset(
    task: str,
    source: str,
    n: int,
    out_dir: str | Path,
    seed: int = 0,
    split: str = "random",
    val_frac: float = 0.05,
    test_frac: float = 0.05,
    min_heavy_atoms: int = 1,
    max_heavy_atoms: int = 50,
    fragments: str = "largest",
    namer: str = "openclatura",
    workers: int = 2,
    shard_size: int = 1000,
    keep_shards: bool = True,
    progress: bool = True,
    naming_timeout_s: float = 20.0,
    exclude: list[str | Path] | None = None,
) -> BuildResult:
    """Build ``out_dir/{train,val,test}.jsonl`` and ``provenance.json`` with up to ``n`` verified pairs.

    ``source``: ``moses``, ``pubchem``, ``nci`` or a SMILES/CSV file. ``n`` counts
    pairs over all splits; ``val_frac``/``test_frac`` are fractions, or counts
    when >= 1. Molecules are reduced to their largest fragment (or rejected as
    mixtures with ``fragments="skip"``), filtered by heavy-atom count,
    deduplicated by canonical SMILES, named (openclatura, or the source's own
    names with ``namer="source"``) and kept only if OPSIN parses the name back
    to the same canonical SMILES. Finished shards are cached under
    ``out_dir/.shards`` (keyed by source, seed and filters, not by task or
    split), so an interrupted build resumes and other tasks or splits of the
    same molecules are cheap. Output is byte-identical for the same inputs,
    whatever ``workers`` is.
    """
    check_task(task)
    if split not in ("random", "scaffold"):
        raise ValueError(f"split must be 'random' or 'scaffold', not {split!r}")
    if fragments not in ("largest", "skip") or namer not in ("openclatura", "source"):
        raise ValueError("fragments must be 'largest'/'skip' and namer 'openclatura'/'source'")
    fractions = sum(x for x in (val_frac, test_frac) if x < 1)
    absolute = [x for x in (val_frac, test_frac) if x >= 1]
    if (
        n < 1
        or shard_size < 1
        or workers < 1
        or min(val_frac, test_frac) < 0
        or fractions >= 1
        or any(x != int(x) for x in absolute)
    ):
        raise ValueError(
            "need n, shard_size and workers >= 1, and val/test sizes as fractions summing below 1 or whole counts"
        )
    started = time.monotonic()
    out = Path(out_dir)
    data = sources.load_source(source)
    if len(data) == 0:
        raise ValueError(f"source {source!r} holds no molecules; nothing written")
    if namer == "source" and data.names is None:
        raise ValueError(f"source {source!r} has no names; use namer='openclatura'")
    settings = Settings(min_heavy_atoms, max_heavy_atoms, fragments, namer, naming_timeout_s)
    shard_dir = out / ".shards" / _shard_key(data.meta, seed, shard_size, settings)
    for stale in shard_dir.glob(".*.tmp"):  # left by a worker killed mid-write
        stale.unlink(missing_ok=True)
    order = list(range(len(data)))
    random.Random(seed).shuffle(order)
    n_shards = math.ceil(len(order) / shard_size)

    def shard_path(k: int) -> Path:
        return shard_dir / f"shard_{k:06d}.jsonl"

    def shard_job(k: int) -> tuple[str, list[Record], dict]:
        records: list[Record] = []
        for idx in order[k * shard_size : (k + 1) * shard_size]:
            src_name = data.names[idx] if data.names is not None else None
            records.append((idx, data.record_id(idx), data.smiles[idx], src_name))
        return str(shard_path(k)), records, settings.to_dict()

    excluded = sources.exclusion_keys(exclude or [])
    walk = _Walk(n, excluded)
    created = [d for d in (out, out / ".shards", shard_dir) if not d.exists()]
    with exit_on_sigterm():
        computed, reused = _walk_shards(walk, n_shards, shard_path, shard_job, task, seed, workers, progress)
    if not walk.accepted:
        remove_created(created)
        raise ValueError(f"source {source!r}: no valid molecule among its {len(data)} records "
                         f"(rejects: {dict(sorted(walk.rejects.items()))}); nothing written")

    splitter = split_scaffold if split == "scaffold" else split_random
    parts = splitter(walk.accepted, val_frac, test_frac, seed)
    counts = {s: len(parts[s]) for s in SPLITS}
    for name in SPLITS:
        lines = [
            json.dumps(
                {"input": r["input"], "output": r["output"], "smiles": r["smiles"], "id": r["id"]},
                ensure_ascii=False,
            )
            + "\n"
            for r in parts[name]
        ]
        atomic_write_text(out / f"{name}.jsonl", "".join(lines))
    provenance = {
        "task": task,
        "source": data.meta,
        "source_records": len(data),
        "n_requested": n,
        "seed": seed,
        "split": split,
        "val_frac": val_frac,
        "test_frac": test_frac,
        "settings": settings.to_dict(),
        "verification": "name kept only if OPSIN parses it to the same RDKit canonical SMILES",
        "versions": _versions(),
        "considered": walk.considered,
        "counts": counts,
        "total": sum(counts.values()),
        "rejects": dict(sorted(walk.rejects.items())),
        "excluded_from": [str(p) for p in exclude or []],
        "scaffolds": {s: len({r.get("scaffold", "") for r in parts[s]}) for s in SPLITS},
    }
    atomic_write_text(out / "provenance.json", json.dumps(provenance, indent=2, sort_keys=True) + "\n")
    if not keep_shards:
        import shutil

        shutil.rmtree(out / ".shards", ignore_errors=True)
    if len(walk.accepted) < n:
        print(
            f"warning: source exhausted; built {len(walk.accepted)} of {n} requested pairs", file=sys.stderr
        )
    return BuildResult(
        out, counts, provenance["rejects"], computed, reused, time.monotonic() - started, provenance
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="seqtune data chem", description=__doc__.splitlines()[0])
    p.add_argument("--task", choices=sorted(CHEM_TASKS), default="smiles2iupac")
    p.add_argument("--source", default="moses", help="moses, pubchem, nci, or a path to a SMILES/CSV file")
    p.add_argument("--n", type=int, required=True, help="number of pairs over all splits")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", choices=("random", "scaffold"), default="random")
    p.add_argument("--val-frac", type=float, default=0.05, help="fraction of pairs, or a count if >= 1")
    p.add_argument("--test-frac", type=float, default=0.05, help="fraction of pairs, or a count if >= 1")
    p.add_argument("--min-heavy-atoms", type=int, default=1)
    p.add_argument("--max-heavy-atoms", type=int, default=50)
    p.add_argument(
        "--fragments",
        choices=("largest", "skip"),
        default="largest",
        help="largest fragment, or skip mixtures",
    )
    p.add_argument(
        "--namer",
        choices=("openclatura", "source"),
        default="openclatura",
        help="'source' uses PubChem's names",
    )
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--shard-size", type=int, default=1000)
    p.add_argument("--clean-shards", action="store_true", help="delete OUT/.shards after a successful build")
    p.add_argument(
        "--naming-timeout", type=float, default=20.0, help="seconds openclatura may spend on one molecule"
    )
    p.add_argument("--exclude", action="append", default=[], metavar="FILE",
                   help="leave out every molecule of FILE (JSONL/CSV with a smiles column, or .smi), by InChIKey; "
                        "repeatable")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        result = build_dataset(
            args.task,
            args.source,
            args.n,
            args.out,
            seed=args.seed,
            split=args.split,
            val_frac=args.val_frac,
            test_frac=args.test_frac,
            min_heavy_atoms=args.min_heavy_atoms,
            max_heavy_atoms=args.max_heavy_atoms,
            fragments=args.fragments,
            namer=args.namer,
            workers=args.workers,
            shard_size=args.shard_size,
            keep_shards=not args.clean_shards,
            progress=not args.no_progress,
            naming_timeout_s=args.naming_timeout,
            exclude=args.exclude,
        )
    except (ValueError, RuntimeError, OSError, opsin.OpsinUnavailable) as exc:
        print(f"seqtune: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {result.out_dir}: "
        + ", ".join(f"{k}={v}" for k, v in result.counts.items())
        + f"; rejects {sum(result.rejects.values())} {result.rejects}; shards computed {result.shards_computed}, "
        f"reused {result.shards_reused}; {result.seconds:.1f}s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
