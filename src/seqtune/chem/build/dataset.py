"""Build a verified chemistry dataset: ``seqtune data chem --task smiles2iupac --source moses --n 100000 --out DIR``.

The source is permuted with the seed and cut into shards; workers name and
verify each shard (see :mod:`.shards`) and the parent then walks the shards
in order (see :mod:`.walk`), deduplicates, stops at ``n`` pairs and splits. Because the walk is in
shard order, the output depends only on the seed and settings, never on the
number of workers or on which shards were cached.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from seqtune.io import atomic_write_text
from seqtune.runtime import package_versions

from .. import CHEM_TASKS, naming, opsin
from ..tasks import get_task
from . import sources
from .shards import Settings, exit_on_sigterm, remove_created
from .splits import SPLITS, split_random, split_scaffold
from .walk import Walk, plan_shards, walk_shards


@dataclass
class BuildResult:
    out_dir: Path
    counts: dict[str, int]
    rejects: dict[str, int]
    shards_computed: int = 0
    shards_reused: int = 0
    seconds: float = 0.0
    provenance: dict = field(default_factory=dict)


def _versions() -> dict[str, str]:
    return {"opsin": opsin.opsin_version(), "openclatura": naming.openclatura_version(),
            **package_versions(("rdkit", "pyopsin", "py2opsin", "jpype1", "chemicals"), missing="not installed")}


def _check_settings(n: int, split: str, val_frac: float, test_frac: float, fragments: str, namer: str,
                    workers: int, shard_size: int) -> None:
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


def _load_source(source: str, namer: str) -> sources.SourceData:
    data = sources.load_source(source)
    if len(data) == 0:
        raise ValueError(f"source {source!r} holds no molecules; nothing written")
    if namer == "source" and data.names is None:
        raise ValueError(f"source {source!r} has no names; use namer='openclatura'")
    return data


def _write_splits(out: Path, parts: dict[str, list[dict]]) -> dict[str, int]:
    """``out/{train,val,test}.jsonl``; returns the row count of each."""
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
    return {s: len(parts[s]) for s in SPLITS}


def _provenance(task: str, data: sources.SourceData, walk: Walk, parts: dict[str, list[dict]],
                counts: dict[str, int], settings: Settings, request: dict) -> dict:
    """What was asked (``request``: n_requested, seed, split, fractions, exclusions), from what,
    with which tools, and what came out."""
    return {
        "task": task,
        "source": data.meta,
        "source_records": len(data),
        "n_requested": request["n_requested"],
        "seed": request["seed"],
        "split": request["split"],
        "val_frac": request["val_frac"],
        "test_frac": request["test_frac"],
        "settings": settings.to_dict(),
        "verification": "name kept only if OPSIN parses it to the same RDKit canonical SMILES",
        "versions": _versions(),
        "considered": walk.considered,
        "counts": counts,
        "total": sum(counts.values()),
        "rejects": dict(sorted(walk.rejects.items())),
        "excluded_from": request["excluded_from"],
        "scaffolds": {s: len({r.get("scaffold", "") for r in parts[s]}) for s in SPLITS},
    }


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
    chem_task = get_task(task)
    _check_settings(n, split, val_frac, test_frac, fragments, namer, workers, shard_size)
    started = time.monotonic()
    out = Path(out_dir)
    data = _load_source(source, namer)
    settings = Settings(min_heavy_atoms, max_heavy_atoms, fragments, namer, naming_timeout_s)
    plan = plan_shards(data, out, seed, shard_size, settings)
    walk = Walk(n, sources.exclusion_keys(exclude or []))
    created = [d for d in (out, out / ".shards", plan.dir) if not d.exists()]
    with exit_on_sigterm():
        computed, reused = walk_shards(walk, plan, chem_task, seed, workers, progress)
    if not walk.accepted:
        remove_created(created)
        raise ValueError(f"source {source!r}: no valid molecule among its {len(data)} records "
                         f"(rejects: {dict(sorted(walk.rejects.items()))}); nothing written")

    splitter = split_scaffold if split == "scaffold" else split_random
    parts = splitter(walk.accepted, val_frac, test_frac, seed)
    counts = _write_splits(out, parts)
    request = {"n_requested": n, "seed": seed, "split": split, "val_frac": val_frac, "test_frac": test_frac,
               "excluded_from": [str(p) for p in exclude or []]}
    provenance = _provenance(task, data, walk, parts, counts, settings, request)
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
