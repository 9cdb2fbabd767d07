"""Tables, learning curves and kept run summaries of the learning-efficiency study.

    .venv/bin/python scripts/study_report.py [--runs runs] [--out docs/results/learning_efficiency]

Reads the run folders the study's commands wrote (runs/study/small/*, runs/smiles2iupac_cpu,
runs/tasks/*, runs/demo) and writes, under --out: screen.md (one row per run), curve_small.png
(scores against training CPU-minutes, paper recipe vs seqtune's, small molecules), and runs/NAME/ with each
run's config.yaml, metrics.json, epochs.jsonl and holdout scores, so the figures outlive the
run folders. Written for this study only; `seqtune results` is the general tool.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from seqtune.rundir import CONFIG, EPOCHS, METRICS, RUN_INFO, RunDir  # noqa: E402

KEEP = (CONFIG, METRICS, EPOCHS, RUN_INFO)


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _last_epoch(run: Path) -> dict:
    epochs = RunDir(run).epochs
    lines = epochs.read_text().splitlines() if epochs.is_file() else []
    return json.loads(lines[-1]) if lines else {}


def row(run: Path) -> dict | None:
    metrics = _json(RunDir(run).metrics)
    if metrics is None:
        return None
    tuned, train = metrics["tuned"], metrics["train"]
    # Other tasks have no name to parse: their "same molecule" is the InChIKey match of a SMILES
    # output, their "parsable" the share of well-formed outputs (SMILES, formula or InChI).
    valid = next((v for k, v in tuned.items() if k.startswith("valid_")), None)
    return {
        "run": run.name, "same_molecule": tuned.get("same_molecule_pct", tuned.get("same_inchikey_pct")),
        "exact": tuned.get("exact_match"), "edit": tuned.get("edit_distance"),
        "parsable": tuned.get("opsin_parsable_pct", valid),
        "eval_loss": _last_epoch(run).get("eval_loss"), "examples": train["train_examples"] * train["epochs"],
        "ex_per_s": train["examples_per_s"], "train_min": train["train_seconds"] / 60,
    }


def table(rows: list[dict]) -> str:
    head = ("| run | same molecule % | exact % | edit | parsable % | eval loss | examples | examples/s | "
            "train min |\n|---|---|---|---|---|---|---|---|---|\n")

    def cell(v: object, fmt: str) -> str:
        return format(v, fmt) if isinstance(v, (int, float)) else "-"

    return head + "".join(
        f"| {r['run']} | {cell(r['same_molecule'], '.1f')} | {cell(r['exact'], '.1f')} | {cell(r['edit'], '.3f')} | "
        f"{cell(r['parsable'], '.1f')} | {cell(r['eval_loss'], '.3f')} | {r['examples']} | {cell(r['ex_per_s'], '.2f')} | "
        f"{cell(r['train_min'], '.1f')} |\n" for r in rows)


def screen_curve(runs: list[Path]) -> list[tuple[float, float, float]]:
    out = []
    for run in runs:
        r = row(run)
        if r:
            out.append((r["train_min"], r["same_molecule"], r["edit"]))
    return sorted(out)


def plot(curves: dict[str, list[tuple[float, float, float]]], path: Path, title: str) -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for label, pts in curves.items():
        if not pts:
            continue
        xs = [p[0] for p in pts]
        style = "--o" if "paper" in label else "-o"
        # The untrained model names nothing (0 % at 0 minutes, measured on the demo's test split).
        a.plot([0.0] + xs, [0.0] + [p[1] for p in pts], style, label=label)
        b.plot(xs, [p[2] for p in pts], style, label=label)
    a.set(xlabel="training CPU-minutes (one core)", ylabel="same molecule % (OPSIN round trip)", title=title)
    b.set(xlabel="training CPU-minutes (one core)", ylabel="mean normalised edit distance", title=title)
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def keep(run: Path, out: Path, prefix: str = "") -> None:
    dest = out / "runs" / f"{prefix}{run.name}"
    dest.mkdir(parents=True, exist_ok=True)
    for name in KEEP:
        if (run / name).is_file():
            shutil.copy2(run / name, dest / name)
    holdouts = RunDir(run).holdouts
    for f in holdouts.rglob("*.json") if holdouts.is_dir() else []:
        target = RunDir(dest).holdouts / f.relative_to(holdouts)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, target)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default="runs")
    ap.add_argument("--out", default="docs/results/learning_efficiency")
    a = ap.parse_args()
    runs, out = Path(a.runs), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    small = sorted(p for p in (runs / "study" / "small").glob("*") if p.is_dir())
    tasks = sorted(p for p in (runs / "tasks").glob("*") if p.is_dir())
    # The first 4,000-pair task runs (moved aside when the 20-minute runs took runs/tasks) and
    # the 2,000-pair representation screen of scripts/study_tasks.sh.
    tasks_4k = sorted(p for p in (runs / "tasks_4k").glob("*") if p.is_dir())
    task_screen = sorted(p for p in (runs / "screen_tasks").glob("*_2k") if p.is_dir())
    singles = [p for p in (runs / "smiles2iupac_cpu", runs / "demo") if p.is_dir()]
    sections = [("Lever screen (small molecules, NCI holdout)", small), ("Other chemistry tasks", tasks),
                ("Other chemistry tasks, first runs (4,000 pairs or fewer, one core)", tasks_4k),
                ("Other chemistry tasks, representation screen (2,000 pairs, one core)", task_screen),
                ("Shipped configs", singles)]
    text = "".join(f"## {title}\n\n{table([r for r in map(row, group) if r])}\n" for title, group in sections)
    (out / "screen.md").write_text(text)
    for run in small + tasks + task_screen + singles:
        keep(run, out)
    for run in tasks_4k:
        keep(run, out, prefix="first_")
    by_name = {p.name: p for p in small}
    plot({"seqtune recipe (plain, lr 5e-4 cosine, batch 16)":
              screen_curve([by_name[n] for n in ("base_2k", "base") if n in by_name]),
          "paper recipe (instruct, lr 2e-5 linear, batch 4)":
              screen_curve([by_name[n] for n in ("paper_2k", "paper") if n in by_name])},
         out / "curve_small.png", "NCI small-molecule holdout")
    print(text)


if __name__ == "__main__":
    main()
