"""Throughput of labelling (openclatura) and verification (OPSIN) in molecules/s on 1 and 2 processes.

Usage: python bench/chem_throughput.py [N] [--source moses|pubchem|nci|FILE] [--procs 1,2]

Molecules are the first N valid ones of the source in a seed-0 permutation.
Each process starts its own JVM before timing starts, so the figures are
steady-state rates, as in a long build.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import sys
import time


def _pick(source: str, n: int) -> list[str]:
    from seqtune.chem import molecules, sources

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


def _label(chunk: list[str]) -> tuple[list[str | None], float]:
    from seqtune.chem import naming

    start = time.perf_counter()
    names = [naming.name_smiles(s)[0] for s in chunk]
    return names, time.perf_counter() - start


def _verify(job: tuple[list[str | None], list[str]]) -> tuple[int, float]:
    from seqtune.chem import naming

    names, targets = job
    start = time.perf_counter()
    checks = naming.roundtrip(names, targets)
    return sum(c.same_smiles for c in checks), time.perf_counter() - start


def _warm() -> None:
    from seqtune.chem import naming, opsin

    opsin.ensure_started()
    naming.name_smiles("CCO")
    naming.roundtrip(["ethanol"] * 200, ["CCO"] * 200)  # let the JIT compile OPSIN's hot paths


def _split(items: list, k: int) -> list[list]:
    return [items[i::k] for i in range(k)]


def _run(procs: int, smiles: list[str]) -> tuple[float, float, int, int]:
    if procs == 1:
        _warm()
        t0 = time.perf_counter()
        names, _ = _label(smiles)
        t1 = time.perf_counter()
        ok, _ = _verify((names, smiles))
        t2 = time.perf_counter()
        return len(smiles) / (t1 - t0), len(smiles) / (t2 - t1), ok, sum(n is not None for n in names)
    ctx = mp.get_context("spawn")
    with ctx.Pool(procs, initializer=_warm) as pool:
        pool.map(_warm_barrier, range(procs))  # make sure every worker is up before timing
        parts = _split(smiles, procs)
        t0 = time.perf_counter()
        labelled = pool.map(_label, parts)
        t1 = time.perf_counter()
        verified = pool.map(
            _verify, [(names, part) for (names, _), part in zip(labelled, parts, strict=True)]
        )
        t2 = time.perf_counter()
    n_named = sum(n is not None for names, _ in labelled for n in names)
    return len(smiles) / (t1 - t0), len(smiles) / (t2 - t1), sum(ok for ok, _ in verified), n_named


def _warm_barrier(_: int) -> None:
    time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=2000, help="number of molecules")
    parser.add_argument("--source", default="moses")
    parser.add_argument("--procs", default="1,2", help="comma-separated process counts")
    args = parser.parse_args(argv)
    smiles = _pick(args.source, args.n)
    print(f"{len(smiles)} molecules from {args.source}")
    print(f"{'procs':>5} {'label mol/s':>12} {'verify mol/s':>13} {'named':>7} {'verified':>9}")
    for procs in (int(p) for p in args.procs.split(",")):
        label_rate, verify_rate, ok, named = _run(procs, smiles)
        print(f"{procs:>5} {label_rate:>12.1f} {verify_rate:>13.1f} {named:>7} {ok:>9}")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
