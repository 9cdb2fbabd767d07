"""Results table: every run folder under a root, flattened into one row per (run, epoch).

Rows come in four kinds: `base` (the untrained model on the test split), `baseline`
(a rules-based tool on the same pairs, for tasks that have one), `epoch` (the
per-epoch evaluation from epochs.jsonl) and `final` (the tuned model on the test
split, from metrics.json). Unfinished and failed runs still contribute the
epochs they completed, so a half-done sweep can already be looked at.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import math
import numbers
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from seqtune.config_sources import flatten
from seqtune.errors import SeqtuneError
from seqtune.io import atomic_write_text, read_jsonl
from seqtune.rundir import NOT_RUNS, NOT_SCORES, NOT_SETTINGS, RunDir

FIXED_COLUMNS = ["model", "n_params", "n_trainable", "method", "format", "train_examples", "epoch",
                 "exact_match", "edit_distance"]
TAIL_COLUMNS = ["train_loss", "eval_loss", "examples_seen", "train_seconds", "examples_per_s"]
ONE_DECIMAL = {"exact_match", "base_exact_match", "baseline_exact_match", "train_min", "examples_per_s"}
SEARCH_DEPTH = 3


def find_runs(root: str | Path) -> list[Path]:
    """Run folders (holding config.yaml): root itself, or folders below it, sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise SeqtuneError(f"{root}: no such folder")
    if RunDir(root).is_run:
        return [root]
    found: list[Path] = []

    def walk(d: Path, depth: int) -> None:
        for child in sorted(d.iterdir()):
            if not child.is_dir() or child.name.startswith(".") or child.name in NOT_RUNS:
                continue
            if RunDir(child).is_run:
                found.append(child)
            elif depth < SEARCH_DEPTH:
                walk(child, depth + 1)

    walk(root, 1)
    return found


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise SeqtuneError(f"{path}: not valid JSON ({err})") from None
    return data if isinstance(data, dict) else None


def tail_lines(path: Path, n: int) -> list[str]:
    """The last n lines of a text file ([] when missing); of each tqdm redraw only its final state."""
    if not path.is_file():
        return []
    with open(path, encoding="utf-8", errors="replace") as fh:
        return [line.rstrip("\n").split("\r")[-1] for line in collections.deque(fh, maxlen=n)]


def error_line(run_dir: Path) -> str:
    """The most telling line of a failed run's error.txt: the last non-empty one (a traceback's exception)."""
    lines = [ln.strip() for ln in tail_lines(RunDir(run_dir).error, 100) if ln.strip()]
    return lines[-1] if lines else "unknown error (no error.txt)"


def load_run(run_dir: str | Path) -> dict[str, Any]:
    """Everything the table needs from one run folder; missing files are None/empty, never errors."""
    run = RunDir(run_dir)
    try:
        config = yaml.safe_load(run.config.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise SeqtuneError(f"{run.config}: not valid YAML ({err})") from None
    epochs: list[dict[str, Any]] = []
    if run.epochs.is_file():
        try:
            epochs = read_jsonl(run.epochs)
        except json.JSONDecodeError:
            # A run killed mid-write can leave a torn last line; keep the complete ones.
            with open(run.epochs, encoding="utf-8") as fh:
                epochs = [json.loads(ln) for ln in fh if ln.strip() and ln.rstrip().endswith("}")]
    metrics = _read_json(run.metrics)
    return {"dir": run.root, "config": flatten(config if isinstance(config, dict) else {}),
            "epochs": epochs, "metrics": metrics, "info": _read_json(run.run_info) or {},
            "status": run.status}


def setting_keys(runs: list[dict[str, Any]], root: Path | None = None) -> list[str]:
    """The swept keys: from the sweep's sweep.json when there is one, else the config keys that differ."""
    summary = _read_json(root / "sweep.json") if root is not None else None
    if summary and isinstance(summary.get("keys"), list):
        return [str(k) for k in summary["keys"]]
    if len(runs) < 2:
        return []
    keys: list[str] = []
    for key in runs[0]["config"]:
        values = {json.dumps(r["config"].get(key), sort_keys=True) for r in runs}
        if len(values) > 1 and key not in NOT_SETTINGS:
            keys.append(key)
    return keys


def scores_from_predictions(path: Path) -> dict[str, float] | None:
    """Exact % and mean edit distance recomputed from a predictions file (for runs that never finished)."""
    if not path.is_file():
        return None
    rows = read_jsonl(path)
    if not rows:
        return None
    out = {"exact_match": 100.0 * sum(bool(r.get("exact")) for r in rows) / len(rows)}
    dists = [r["edit_distance"] for r in rows if isinstance(r.get("edit_distance"), (int, float))]
    if dists:
        out["edit_distance"] = sum(dists) / len(dists)
    return out


def _scores(d: dict[str, Any] | None) -> dict[str, Any]:
    """Numeric scores of a metrics/epoch dict, chemistry keys included whatever their names."""
    if not d:
        return {}
    return {k: v for k, v in d.items()
            if k not in NOT_SCORES and isinstance(v, (int, float)) and not isinstance(v, bool)}


def run_rows(run: dict[str, Any], keys: list[str], name: str) -> list[dict[str, Any]]:
    """Rows (base, each epoch, final) for one loaded run."""
    cfg, metrics, info = run["config"], run["metrics"] or {}, run["info"]
    train = metrics.get("train") or {}
    common: dict[str, Any] = {"run": name, "status": run["status"]}
    common.update({k: cfg.get(k) for k in keys})
    common.update({
        "model": train.get("model") or cfg.get("model.name"),
        "n_params": train.get("n_params") or info.get("n_params"),
        "n_trainable": train.get("n_trainable") or info.get("n_trainable"),
        "method": train.get("method") or cfg.get("model.method"),
        "format": train.get("format") or cfg.get("model.format"),
    })
    last = run["epochs"][-1] if run["epochs"] else {}
    train_examples = train.get("train_examples") or last.get("train_examples")
    rows: list[dict[str, Any]] = []
    base = metrics.get("base") or scores_from_predictions(RunDir(run["dir"]).prediction("base"))
    if base:
        rows.append({**common, "kind": "base", "train_examples": train_examples, "epoch": 0, **_scores(base)})
    if metrics.get("baseline"):  # a rules-based tool (e.g. OPSIN/openclatura) scored on the same test pairs
        rows.append({**common, "kind": "baseline", "train_examples": train_examples, "epoch": 0,
                     **_scores(metrics["baseline"])})
    for ep in run["epochs"]:
        rows.append({**common, "kind": "epoch", "train_examples": ep.get("train_examples", train_examples),
                     "epoch": ep.get("epoch"), **_scores(ep),
                     **{k: ep.get(k) for k in TAIL_COLUMNS if k in ep}})
    if metrics.get("tuned"):
        rows.append({**common, "kind": "final", "train_examples": train_examples,
                     "epoch": train.get("epochs", last.get("epoch")), **_scores(metrics["tuned"]),
                     **{k: train.get(k, last.get(k)) for k in ("train_seconds", "examples_per_s")}})
    elif not rows:
        rows.append({**common, "kind": "final", "train_examples": train_examples})
    return rows


def collect(root: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """The results table of every run under root, and the settings (swept) columns."""
    root = Path(root)
    runs = [load_run(d) for d in find_runs(root)]
    keys = setting_keys(runs, root)
    rows: list[dict[str, Any]] = []
    for run in runs:
        name = run["dir"].name if run["dir"] != root else root.resolve().name
        rows.extend(run_rows(run, keys, name))
    kind_order = {"base": 0, "baseline": 1, "epoch": 2, "final": 3}
    rows.sort(key=lambda r: (*(natural_key(r.get(k)) for k in keys), r["run"], kind_order[r["kind"]],
                             natural_key(r.get("epoch"))))
    df = pd.DataFrame(rows)
    if df.empty:
        return df, keys
    lead = ["run", "kind", "status", *keys, *FIXED_COLUMNS]
    extra = [c for c in df.columns if c not in lead and c not in TAIL_COLUMNS]
    cols = [c for c in [*lead, *extra, *TAIL_COLUMNS] if c in df.columns]
    return df[cols], keys


def natural_key(value: Any) -> tuple[int, float, str]:
    """Sort numbers numerically (250 < 1000), then strings, then missing values."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (2, 0.0, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def display_columns(df: pd.DataFrame, keys: list[str], columns: list[str]) -> list[str]:
    """Columns worth showing to a reader: no run name when settings identify the run, no duplicated settings."""
    twins = {"model.name": "model", "model.format": "format", "model.method": "method",
             "data.train_size": "train_examples"}
    drop = {"run"} if keys else set()
    for key, col in twins.items():
        if key in df and col in df and (df[key].astype(str) == df[col].astype(str)).all():
            drop.add(key)
    # All-empty columns (no chemistry scores, no LoRA counts) only widen the table.
    return [c for c in columns if c in df.columns and c not in drop and df[c].notna().any()]


def score_columns(df: pd.DataFrame, keys: list[str]) -> list[str]:
    """Chemistry and other extra score columns, beyond exact match and edit distance."""
    known = {"run", "kind", "status", *keys, *FIXED_COLUMNS, *TAIL_COLUMNS}
    return [c for c in df.columns if c not in known]


def fmt_cell(value: Any, column: str) -> str:
    """A table cell as text: parameter counts as 135.0M, edit distances to 3 decimals, % to 1."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return str(value)
    if column in ("n_params", "n_trainable"):
        for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
            if value >= scale:
                return f"{value / scale:.{2 if unit == 'B' else 1}f}{unit}"
        return str(int(value))
    if column == "edit_distance" or column.endswith("_loss"):
        return f"{value:.3f}"
    if column in ONE_DECIMAL or column.endswith("_pct"):
        return f"{value:.1f}"
    if float(value).is_integer():  # also ints that pandas turned into floats next to missing values
        return str(int(value))
    return f"{value:.1f}" if abs(value) >= 1 else f"{value:.4g}"


def markdown_table(df: pd.DataFrame, columns: list[str] | None = None) -> str:
    """A GitHub Markdown table (no tabulate dependency); pipes in cells are escaped."""
    columns = [c for c in (columns or list(df.columns)) if c in df.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for _, row in df.iterrows():
        cells = [fmt_cell(row[c], c).replace("|", "\\|") for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def final_table(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per run: final scores, with the base model's exact % beside them."""
    if df.empty:
        return df
    finals = df[df["kind"] == "final"].copy()
    for kind in ("base", "baseline"):  # the untrained model, then the rules-based tool
        other = df[df["kind"] == kind].set_index("run")
        if "exact_match" in other and not other.empty:
            finals.insert(finals.columns.get_loc("exact_match"), f"{kind}_exact_match",
                          finals["run"].map(other["exact_match"]))
    if "train_seconds" in finals:
        finals["train_min"] = finals["train_seconds"] / 60
    finals = finals.rename(columns={"epoch": "epochs"})
    drop = ["kind", "train_loss", "eval_loss", "examples_seen", "train_seconds"]
    return finals.drop(columns=[c for c in drop if c in finals.columns])


def results_markdown(df: pd.DataFrame, keys: list[str], title: str = "Results") -> str:
    parts = [f"# {title}", ""]
    if df.empty:
        return "\n".join([*parts, "No runs found.", ""])
    finals = final_table(df, keys)
    parts += ["Final scores on the test split (`base_exact_match`: the untrained model; `baseline_exact_match`: "
              "the rules-based tool, when the task has one). Exact match in %, "
              "edit distance is the mean normalized Levenshtein distance (0 = identical).", "",
              markdown_table(finals, display_columns(finals, keys, list(finals.columns))), ""]
    epochs = df[df["kind"] == "epoch"]
    if not epochs.empty:
        cols = ["run", *keys, "epoch", "exact_match", "edit_distance", *score_columns(df, keys),
                "train_loss", "eval_loss", "train_seconds"]
        parts += ["<details><summary>Per-epoch scores (held-out split)</summary>", "",
                  markdown_table(epochs, display_columns(epochs, keys, cols)), "", "</details>", ""]
    return "\n".join(parts)


def write_results(root: str | Path, out_dir: str | Path | None = None) -> tuple[Path, Path]:
    """Write results.csv (every row, raw values) and results.md (readable) into out_dir (default: root)."""
    root = Path(root)
    df, keys = collect(root)
    out = Path(out_dir) if out_dir is not None else root
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    csv_path, md_path = out / "results.csv", out / "results.md"
    atomic_write_text(csv_path, buf.getvalue())
    atomic_write_text(md_path, results_markdown(df, keys, f"Results: {root.resolve().name}"))
    return csv_path, md_path


def main(argv: list[str] | None = None) -> int:
    """`seqtune results DIR`: write DIR/results.csv and DIR/results.md."""
    ap = argparse.ArgumentParser(prog="seqtune results", description="Collect run folders into a results table.")
    ap.add_argument("dir", help="a sweep folder or a single run folder")
    args = ap.parse_args(argv)
    for path in write_results(args.dir):
        print(path)
    return 0
