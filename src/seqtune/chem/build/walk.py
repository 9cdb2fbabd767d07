"""The parent's side of a build: the source cut into shards in a seeded order, shards handed
to worker processes (see :mod:`.shards`) and their results taken strictly in shard order, so
the pairs kept depend only on the seed and settings, never on the number of workers or on
which shards were cached.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import sys
from collections import Counter, deque
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from .. import molecules, naming, opsin
from ..tasks import ChemTask
from . import sources
from .shards import PIPELINE_VERSION, Record, Settings, process_shard, read_shard, start_pool, stop_pool


@dataclass
class Walk:
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

    def take(self, rows: list[dict], task: ChemTask, seed: int) -> None:
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
            example = task.make_example(row["smiles"], row["name"], seed)
            if example is None:
                self.rejects["task_output_failed"] += 1
                continue
            self.seen.add(row["smiles"])
            self.accepted.append({**row, "input": example[0], "output": example[1]})


@dataclass(frozen=True)
class ShardPlan:
    """The source permuted with the seed and cut into shards of ``size`` records, cached in ``dir``."""

    dir: Path
    data: sources.SourceData
    order: list[int]
    size: int
    settings: Settings

    @property
    def count(self) -> int:
        return math.ceil(len(self.order) / self.size)

    def path(self, k: int) -> Path:
        return self.dir / f"shard_{k:06d}.jsonl"

    def job(self, k: int) -> tuple[str, list[Record], dict]:
        """What a worker needs to name and verify shard ``k``."""
        records: list[Record] = []
        for idx in self.order[k * self.size : (k + 1) * self.size]:
            src_name = self.data.names[idx] if self.data.names is not None else None
            records.append((idx, self.data.record_id(idx), self.data.smiles[idx], src_name))
        return str(self.path(k)), records, self.settings.to_dict()


def plan_shards(data: sources.SourceData, out: Path, seed: int, shard_size: int, settings: Settings) -> ShardPlan:
    shard_dir = out / ".shards" / shard_key(data.meta, seed, shard_size, settings)
    for stale in shard_dir.glob(".*.tmp"):  # left by a worker killed mid-write
        stale.unlink(missing_ok=True)
    order = list(range(len(data)))
    random.Random(seed).shuffle(order)
    return ShardPlan(shard_dir, data, order, shard_size, settings)


def walk_shards(
    walk: Walk,
    plan: ShardPlan,
    task: ChemTask,
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
            while next_shard < plan.count and len(pending) < 2 * workers:
                expected = len(walk.accepted) + rate * sum(len(job[1]) for _, _, job in pending)
                if pending and expected >= walk.n:
                    break
                path = plan.path(next_shard)
                job = plan.job(next_shard)
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
            walk.take(read_shard(plan.path(k)), task, seed)
            if bar is not None:
                bar.update(len(walk.accepted) - before)
    finally:
        if bar is not None:
            bar.close()
        if pool is not None:
            stop_pool(pool)
    return computed, reused


def shard_key(source_meta: dict, seed: int, shard_size: int, settings: Settings) -> str:
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
