"""Throughput of labelling (openclatura) and verification (OPSIN round trip) in molecules/s on 1 and 2 processes.

Usage: python bench/chem_throughput.py [N] [--source moses|pubchem|nci|FILE] [--procs 1,2]

Molecules are the first N valid ones of the source in a seed-0 permutation,
split evenly over the processes. Each process starts its JVM and warms OPSIN's
JIT before timing, as after the first shard of a build. Besides wall-clock
rates the table shows rates per CPU-second (CPU time of all processes,
JVM threads included), which stay meaningful on a machine shared with other jobs.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import time


def _pick(source: str, n: int) -> list[str]:
    from seqtune.chem import molecules
    from seqtune.chem.build import sources

    data = sources.load_source(source)
    order = list(range(len(data)))
    random.Random(0).shuffle(order)
    out: list[str] = []
    for idx in order:
        canonical = molecules.canonical_smiles(data.smiles[idx])
        if canonical:
            out.append(canonical)
        if len(out) == n:
            break
    return out


def _timed(fn, *args):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def _label(chunk: list[str]) -> tuple[list[str | None], float, float]:
    from seqtune.chem import naming

    return _timed(lambda: [naming.name_smiles(s)[0] for s in chunk])


def _verify(job: tuple[list[str | None], list[str]]) -> tuple[int, float, float]:
    from seqtune.chem import naming

    names, targets = job
    warm = max(1, len(names) // 5)
    naming.roundtrip(names[:warm], targets[:warm])
    checks, wall, cpu = _timed(naming.roundtrip, names, targets)
    return sum(c.same_smiles for c in checks), wall, cpu


def _warm() -> None:
    from seqtune.chem import naming, opsin

    opsin.ensure_started()
    naming.name_smiles("CCO")
    naming.roundtrip(["ethanol"], ["CCO"])


def _ready(_: int) -> None:
    time.sleep(0.5)  # every worker must have run its initializer before timing starts


def _run(procs: int, smiles: list[str]) -> dict[str, float]:
    parts = [smiles[i::procs] for i in range(procs)]
    if procs == 1:
        _warm()
        labelled = [_label(parts[0])]
        verified = [_verify((labelled[0][0], parts[0]))]
    else:
        with mp.get_context("spawn").Pool(procs, initializer=_warm) as pool:
            pool.map(_ready, range(procs), chunksize=1)
            labelled = pool.map(_label, parts, chunksize=1)
            verified = pool.map(
                _verify, [(lab[0], part) for lab, part in zip(labelled, parts, strict=True)], chunksize=1
            )
    n = len(smiles)
    return {
        "label_wall": n / max(w for _, w, _ in labelled),
        "label_cpu": n / sum(c for _, _, c in labelled),
        "verify_wall": n / max(w for _, w, _ in verified),
        "verify_cpu": n / sum(c for _, _, c in verified),
        "named": sum(x is not None for names, _, _ in labelled for x in names),
        "verified": sum(ok for ok, _, _ in verified),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=2000, help="number of molecules")
    parser.add_argument("--source", default="moses")
    parser.add_argument("--procs", default="1,2", help="comma-separated process counts")
    args = parser.parse_args(argv)
    smiles = _pick(args.source, args.n)
    print(f"{len(smiles)} molecules from {args.source}; rates in molecules/s (wall) and molecules/CPU-s")
    print(
        f"{'procs':>5} {'label/s':>9} {'label/cpu-s':>12} {'verify/s':>9} {'verify/cpu-s':>13} {'named':>6} {'verified':>9}"
    )
    for procs in (int(p) for p in args.procs.split(",")):
        r = _run(procs, smiles)
        print(
            f"{procs:>5} {r['label_wall']:>9.1f} {r['label_cpu']:>12.1f} {r['verify_wall']:>9.1f} "
            f"{r['verify_cpu']:>13.1f} {r['named']:>6} {r['verified']:>9}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
