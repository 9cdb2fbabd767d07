"""Results table: every run folder under a root, flattened into one row per (run, epoch).

Rows come in five kinds: `base` (the untrained model on the test split), `baseline` (the
rules-based tool that made the labels, on the same pairs: ~100 % by construction),
`lookup` (a source independent of the labels, on the test pairs it covers), `epoch` (the
per-epoch evaluation from epochs.jsonl, on the validation split; runs from before that
change decoded the test split, which their `split` column says) and `final` (the selected
model on the test split, from metrics.json). Each score X has its 95 % bootstrap interval in
X_ci_low / X_ci_high where the run recorded one. Unfinished and failed runs still contribute
the epochs they completed, so a half-done sweep can already be looked at.
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
from seqtune.stats import CI_KEY, intervals

# Bookkeeping columns that are not scores: which split a row was scored on, the epoch train.select kept.
INFO_COLUMNS = ["split", "selected_epoch"]
FIXED_COLUMNS = ["model", "n_params", "n_trainable", "method", "format", "train_examples", "epoch", *INFO_COLUMNS,
                 "exact_match", "edit_distance"]
TAIL_COLUMNS = ["train_loss", "eval_loss", "examples_seen", "train_seconds", "examples_per_s"]
ONE_DECIMAL = {"exact_match", "base_exact_match", "baseline_exact_match", "lookup_exact_match", "train_min",
               "examples_per_s"}
# A score's interval, beside it: X_ci_low and X_ci_high (shown as "X [low, high]").
CI_LOW, CI_HIGH = "_ci_low", "_ci_high"
# The reference rows' scores set beside the tuned model's in the one-row-per-run table.
REFERENCE_SCORES = {"base": ("exact_match",), "baseline": ("exact_match",),
                    "lookup": ("exact_match", "same_molecule_pct", "coverage_pct")}
KIND_ORDER = {"base": 0, "baseline": 1, "lookup": 2, "epoch": 3, "final": 4}
FINAL_CAPTION = (
    "Final scores of the selected model on the test split, each with its 95 % bootstrap interval over the test "
    "examples in brackets. `base_*`: the untrained model. `baseline_*`: rules (label source): the tool that "
    "made or verified the reference labels (openclatura names, OPSIN, RDKit), so ~100 % by construction: a check "
    "of the data, not a rival. `lookup_*`: an independent source (PubChem's IUPAC names by InChIKey, for "
    "smiles2iupac), scored on the test molecules it covers (`lookup_coverage_pct`). Exact match in %, edit "
    "distance is the mean normalized Levenshtein distance (0 = identical).")
EPOCH_CAPTION = ("Per-epoch scores (`split`: val = the validation split; test in runs made before per-epoch "
                 "decoding moved off the test split)")
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


def scores_from_predictions(path: Path) -> dict[str, Any] | None:
    """Exact % and mean edit distance, with their intervals, recomputed from a predictions file
    (for runs that never finished)."""
    if not path.is_file():
        return None
    rows = read_jsonl(path)
    if not rows:
        return None
    out: dict[str, Any] = {"exact_match": 100.0 * sum(bool(r.get("exact")) for r in rows) / len(rows)}
    dists = [r["edit_distance"] for r in rows if isinstance(r.get("edit_distance"), (int, float))]
    if dists:
        out["edit_distance"] = sum(dists) / len(dists)
    return {**out, CI_KEY: intervals(out, rows)}


def _scores(d: dict[str, Any] | None) -> dict[str, Any]:
    """Numeric scores of a metrics/epoch dict, chemistry keys included whatever their names,
    and their intervals (X_ci_low, X_ci_high)."""
    if not d:
        return {}
    out = {k: v for k, v in d.items()
           if k not in NOT_SCORES and isinstance(v, (int, float)) and not isinstance(v, bool)}
    cis = d.get(CI_KEY)
    for k, ci in (cis.items() if isinstance(cis, dict) else ()):
        if k in out and isinstance(ci, list) and len(ci) == 2:
            out[k + CI_LOW], out[k + CI_HIGH] = ci
    return out


def _epoch_scores(ep: dict[str, Any]) -> dict[str, Any]:
    """An epoch record's decoded scores and the split they were decoded on: val_<score> keys
    (validation), or, in records from before per-epoch decoding moved there, bare keys (test)."""
    val = {k.removeprefix("val_"): v for k, v in ep.items() if k.startswith("val_")}
    scores = _scores(val) if val else _scores(ep)
    return {**scores, "split": "val" if val else "test"} if scores else {}


def run_rows(run: dict[str, Any], keys: list[str], name: str) -> list[dict[str, Any]]:
    """Rows (base, baselines, each epoch, final) for one loaded run."""
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
        rows.append({**common, "kind": "base", "split": "test", "train_examples": train_examples, "epoch": 0,
                     **_scores(base)})
    for kind in ("baseline", "lookup"):  # the rules tool that made the labels; an independent source
        if metrics.get(kind):
            rows.append({**common, "kind": kind, "split": "test", "train_examples": train_examples, "epoch": 0,
                         **_scores(metrics[kind])})
    for ep in run["epochs"]:
        rows.append({**common, "kind": "epoch", "train_examples": ep.get("train_examples", train_examples),
                     "epoch": ep.get("epoch"), **_epoch_scores(ep),
                     **{k: ep.get(k) for k in TAIL_COLUMNS if k in ep}})
    selection = metrics.get("selection") or {}
    if metrics.get("tuned"):
        rows.append({**common, "kind": "final", "split": "test", "train_examples": train_examples,
                     "epoch": train.get("epochs", last.get("epoch")), **_scores(metrics["tuned"]),
                     **({"selected_epoch": selection.get("epoch")} if selection.get("select") == "best" else {}),
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
    rows.sort(key=lambda r: (*(natural_key(r.get(k)) for k in keys), r["run"], KIND_ORDER[r["kind"]],
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
    # All-empty columns (no chemistry scores, no LoRA counts) only widen the table; intervals
    # are shown in their score's cell.
    return [c for c in columns if c in df.columns and c not in drop and df[c].notna().any() and not is_ci_column(c)]


def score_columns(df: pd.DataFrame, keys: list[str]) -> list[str]:
    """Chemistry and other extra score columns, beyond exact match and edit distance (their
    intervals are shown inside their cells, not as columns of their own)."""
    known = {"run", "kind", "status", *keys, *FIXED_COLUMNS, *TAIL_COLUMNS}
    return [c for c in df.columns if c not in known and not is_ci_column(c)]


def is_ci_column(column: str) -> bool:
    return column.endswith((CI_LOW, CI_HIGH))


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


def score_cell(row: pd.Series, column: str) -> str:
    """A cell as fmt_cell writes it, followed by its 95 % interval where the row has one: 12.0 [7.5, 16.5]."""
    text = fmt_cell(row[column], column)
    low, high = row.get(column + CI_LOW), row.get(column + CI_HIGH)
    if text and all(isinstance(v, numbers.Real) and math.isfinite(v) for v in (low, high)):
        text += f" [{fmt_cell(low, column)}, {fmt_cell(high, column)}]"
    return text


def markdown_table(df: pd.DataFrame, columns: list[str] | None = None) -> str:
    """A GitHub Markdown table (no tabulate dependency); pipes in cells are escaped."""
    columns = [c for c in (columns or list(df.columns)) if c in df.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for _, row in df.iterrows():
        cells = [score_cell(row, c).replace("|", "\\|") for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def final_table(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per run: final scores, with the reference rows' (REFERENCE_SCORES) beside them."""
    if df.empty:
        return df
    finals = df[df["kind"] == "final"].copy()
    for kind, scores in REFERENCE_SCORES.items():  # untrained model, rules tool, independent source
        other = df[df["kind"] == kind].set_index("run")
        if "exact_match" not in finals or other.empty:
            continue
        for col in (f"{m}{end}" for m in scores for end in ("", CI_LOW, CI_HIGH)):
            if col in other:
                finals.insert(finals.columns.get_loc("exact_match"), f"{kind}_{col}", finals["run"].map(other[col]))
    if "train_seconds" in finals:
        finals["train_min"] = finals["train_seconds"] / 60
    finals = finals.rename(columns={"epoch": "epochs"})
    drop = ["kind", "split", "train_loss", "eval_loss", "examples_seen", "train_seconds"]
    return finals.drop(columns=[c for c in drop if c in finals.columns])


def epoch_columns(df: pd.DataFrame, keys: list[str]) -> list[str]:
    """The per-epoch table's columns: settings, epoch, the split it was scored on, scores, losses."""
    return ["run", *keys, "epoch", "split", "exact_match", "edit_distance", *score_columns(df, keys),
            "train_loss", "eval_loss", "train_seconds"]


def results_markdown(df: pd.DataFrame, keys: list[str], title: str = "Results") -> str:
    parts = [f"# {title}", ""]
    if df.empty:
        return "\n".join([*parts, "No runs found.", ""])
    finals = final_table(df, keys)
    parts += [FINAL_CAPTION, "", markdown_table(finals, display_columns(finals, keys, list(finals.columns))), ""]
    epochs = df[df["kind"] == "epoch"]
    if not epochs.empty:
        parts += [f"<details><summary>{EPOCH_CAPTION}</summary>", "",
                  markdown_table(epochs, display_columns(epochs, keys, epoch_columns(df, keys))), "",
                  "</details>", ""]
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
