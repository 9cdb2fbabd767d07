"""95 % bootstrap intervals of the study's committed predictions, and an independent namer beside them.

    .venv/bin/python scripts/prediction_intervals.py [--predictions DIR] [--out DIR]

Reads every *.jsonl under DIR (default docs/results/learning_efficiency/predictions: per-example
rows as `seqtune run` / `seqtune evaluate` write them), recomputes each score from its rows and
its interval with seqtune.stats (the intervals `seqtune run` now writes into metrics.json), and
writes under --out intervals.md and intervals.png (the headline score of each file with its
interval as an error bar). For SMILES -> IUPAC files it also scores PubChem's IUPAC names, looked
up by InChIKey, on the molecules PubChem covers, next to the model on those same molecules: the
rules namer (openclatura) made the references, so only this comparison is not circular.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from seqtune.stats import METHOD, intervals  # noqa: E402

HEADLINE = ("same_molecule_pct", "formula_match_pct", "exact_match")


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Each per-example score column as the summary score seqtune names it: booleans as X_pct
    (exact as exact_match), edit_distance as is, other numbers as mean_X (missing values skipped)."""
    out: dict[str, float] = {}
    for key, first in rows[0].items():
        values = [r[key] for r in rows if r.get(key) is not None]
        if isinstance(first, bool) or key == "exact":
            name = "exact_match" if key == "exact" else f"{key}_pct"
            out[name] = 100.0 * sum(map(bool, values)) / len(rows)
        elif isinstance(first, (int, float)) and values:
            out[key if key == "edit_distance" else f"mean_{key}"] = sum(values) / len(values)
    return out


def cell(value: float, ci: list[float] | None, pct: bool) -> str:
    f = "{:.1f}" if pct else "{:.3f}"
    return f.format(value) + (f" [{f.format(ci[0])}, {f.format(ci[1])}]" if ci else "")


def score_table(files: dict[str, list[dict[str, Any]]]) -> tuple[str, dict[str, tuple[str, float, list[float]]]]:
    lines = ["| predictions | n | score | value [95 % interval] |", "|---|---|---|---|"]
    headline = {}
    for name, rows in files.items():
        s = summary(rows)
        cis = intervals(s, rows)
        for key, value in s.items():
            pct = key.endswith("_pct") or key == "exact_match"
            lines.append(f"| {name} | {len(rows)} | {key} | {cell(value, cis.get(key), pct)} |")
        key = next(k for k in HEADLINE if k in s)
        headline[name] = (key, s[key], cis.get(key, [s[key], s[key]]))
    return "\n".join(lines), headline


def lookup_table(files: dict[str, list[dict[str, Any]]]) -> str:
    """PubChem's names vs the model on the SMILES -> IUPAC molecules PubChem covers."""
    from seqtune.chem.pubchem import SOURCE, iupac_names
    from seqtune.metrics import score

    lines = [f"Independent namer: {SOURCE}, scored like the model (OPSIN round trip) on the test molecules it "
             "covers; the model's scores are recomputed on the same molecules.", "",
             "| predictions | covered | PubChem same molecule % | PubChem exact % | model same molecule % "
             "(same molecules) | model exact % (same molecules) |", "|---|---|---|---|---|---|"]
    for name, rows in files.items():
        if "opsin_parsable" not in rows[0]:
            continue
        names = iupac_names([r["input"] for r in rows])
        covered = [(r, n) for r, n in zip(rows, names) if n is not None]
        if not covered:
            lines.append(f"| {name} | 0 of {len(rows)} | – | – | – | – |")
            continue
        s, per = score("smiles2iupac", [r["input"] for r, _ in covered], [n for _, n in covered],
                       [r["reference"] for r, _ in covered])
        ours = [r for r, _ in covered]
        mine = summary(ours)
        ci, my_ci = intervals(s, per), intervals(mine, ours)
        lines.append(f"| {name} | {len(covered)} of {len(rows)} ({100 * len(covered) / len(rows):.1f} %) | "
                     f"{cell(s['same_molecule_pct'], ci.get('same_molecule_pct'), True)} | "
                     f"{cell(s['exact_match'], ci.get('exact_match'), True)} | "
                     f"{cell(mine['same_molecule_pct'], my_ci.get('same_molecule_pct'), True)} | "
                     f"{cell(mine['exact_match'], my_ci.get('exact_match'), True)} |")
    return "\n".join(lines)


def plot(headline: dict[str, tuple[str, float, list[float]]], path: Path) -> None:
    names = list(headline)
    values = [headline[n][1] for n in names]
    below = [v - headline[n][2][0] for n, v in zip(names, values)]
    above = [headline[n][2][1] - v for n, v in zip(names, values)]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    bars = ax.bar(range(len(names)), values, yerr=[below, above], capsize=4, color="#4c78a8")
    ax.bar_label(bars, labels=[f"{v:.1f}" for v in values], padding=2, fontsize=8)
    ax.set_xticks(range(len(names)), [f"{n}\n({headline[n][0]})" for n in names], rotation=30, ha="right",
                  fontsize=8)
    ax.set_ylabel("% of the test molecules")
    ax.set_ylim(0, 100)
    ax.set_title("Committed predictions: headline score with its 95 % bootstrap interval")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--predictions", default="docs/results/learning_efficiency/predictions")
    ap.add_argument("--out", default="docs/results/learning_efficiency")
    a = ap.parse_args()
    root, out = Path(a.predictions), Path(a.out)
    files = {str(p.relative_to(root).with_suffix("")): read(p) for p in sorted(root.rglob("*.jsonl"))}
    scores, headline = score_table(files)
    text = (f"# 95 % intervals of the committed predictions\n\nMade by `scripts/prediction_intervals.py` from "
            f"`{root}`: {METHOD['method']}, {METHOD['resamples']} resamples, seed {METHOD['seed']}.\n\n"
            f"![headline scores with intervals](intervals.png)\n\n{scores}\n\n## Independent namer\n\n"
            f"{lookup_table(files)}\n")
    (out / "intervals.md").write_text(text, encoding="utf-8")
    plot(headline, out / "intervals.png")
    print(text)


if __name__ == "__main__":
    main()
