"""Paper-style plots (Fauber 2024, Figs. 2-5) from a results table, as PNG bytes.

Each figure shows the two headline scores side by side: mean normalized edit
distance (lower is better) and exact match %. A sweep varies several settings
at once, so each figure takes the *slice* of runs in which its own axes vary
most and every other swept setting is held fixed; the fixed values are named
in the caption so a reader knows what the curve compares. A figure whose axis
has a single value in the data is skipped with a note instead of drawing a dot.
Error bars are the scores' 95 % bootstrap intervals (X_ci_low / X_ci_high in the table),
drawn where a point is one run's score.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede any pyplot import anywhere

import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator, NullFormatter, NullLocator  # noqa: E402

from seqtune.experiments.results import CI_HIGH, CI_LOW  # noqa: E402
from seqtune.rundir import NOT_MODEL_SETTINGS  # noqa: E402

# Results-table column -> the config key that sets it, to know which swept key an axis consumes.
SETTING_OF = {"train_examples": "data.train_size", "model": "model.name", "n_params": "model.name",
              "format": "model.format", "method": "model.method"}
METRICS = (("edit_distance", "Mean normalized edit distance (lower is better)"),
           ("exact_match", "Exact match (%)"))
DPI = 110
ERROR_BARS = " Error bars: 95 % bootstrap intervals over the scored examples."
RULES_LABEL = "rules (label source)"


@dataclass
class Plot:
    """One figure: PNG bytes, or the reason it was skipped."""

    slug: str
    title: str
    caption: str = ""
    png: bytes | None = None
    skipped: str | None = None


def pick_slice(rows: pd.DataFrame, vary: list[str], keys: list[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The rows where `vary` columns take the most distinct values with all other settings fixed.

    Ties go to the slice with the most training examples: the best-trained models make the fairest comparison.
    """
    consumed = {SETTING_OF.get(v, v) for v in vary}
    fixed = [k for k in keys if k not in consumed and k not in NOT_MODEL_SETTINGS and k in rows.columns]
    if "method" in vary:  # LoRA and full fine-tuning each get their own step size, by design
        fixed = [k for k in fixed if k != "train.lr"]
    # Model, format, method and data size are held fixed even when the sweep did not list them as axes
    # (e.g. run folders gathered by hand), so a LoRA run never joins a full fine-tuning curve.
    fixed += [c for c in ("model", "format", "method", "train_examples")
              if c not in vary and SETTING_OF[c] not in keys and c in rows.columns]
    vary = [v for v in vary if v in rows.columns]
    if not fixed or rows.empty:
        return rows, {}
    # Values go through str so that None/NaN settings group together instead of vanishing.
    groups = rows.groupby([rows[k].astype(str) for k in fixed], sort=False)
    chosen, best = rows, (-1, -1.0)
    for _, grp in groups:
        n = len(grp[vary].astype(str).drop_duplicates()) if vary else len(grp)
        size = float(grp["train_examples"].max()) if "train_examples" in grp and grp["train_examples"].notna().any() else 0.0
        if (n, size) > best:
            chosen, best = grp, (n, size)
    first = chosen.iloc[0]
    return chosen, {k: first[k] for k in fixed if chosen[k].astype(str).nunique() == 1}


def _fixed_text(fixed: dict[str, Any]) -> str:
    return ("At " + ", ".join(f"{k} = {v}" for k, v in fixed.items()) + ".") if fixed else ""


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def _log_ticks(ax: Any, values: list[float], labels: list[str] | None = None) -> None:
    """Log axis ticked at the data's own values (250, 500, 1000...) instead of bare powers of ten."""
    ax.set_xscale("log")
    ax.set_xticks(values, labels or [_count(v) for v in values])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())


def _count(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e9:.3g}B" if v >= 1e9 else f"{v / 1e6:.3g}M"
    if v >= 1e4:
        return f"{v / 1e3:.3g}k"
    return f"{v:g}"


def _style(ax: Any, xlabel: str, ylabel: str, metric: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.set_ylim(bottom=0)  # both scores are bounded below by 0; an auto axis would exaggerate small gaps
    if metric == "exact_match" and ax.get_ylim()[1] < 1:  # all-zero exact match: show "0 of 0-1 %", not a 0-0.05 axis
        ax.set_ylim(0, 1)


def _lines(rows: pd.DataFrame, x: str, line_by: str, title: str, xlabel: str, slug: str, caption: str,
           log_x: bool, label_fmt: Any = str, tick_names: dict[float, str] | None = None,
           group_by: str | None = None, reference: dict[str, float] | None = None) -> Plot:
    """Two panels (edit distance, exact %) with one line per `group_by` (default `line_by`) value."""
    fig = Figure(figsize=(11, 4.2))
    axes = fig.subplots(1, 2)
    xs = sorted({float(v) for v in rows[x].dropna()})
    groups = sorted(rows.groupby(group_by or line_by, sort=False), key=lambda kv: _sort_key(kv[1][line_by].iloc[0]))
    for ax, (metric, ylabel) in zip(axes, METRICS, strict=True):
        if metric not in rows:
            ax.set_axis_off()
            continue
        for _, grp in groups:
            # Repeated x within one line (e.g. seeds) are averaged rather than drawn as a zigzag.
            pts = grp.dropna(subset=[x, metric])
            g = pts.groupby(x)[metric].mean()
            if not g.empty:
                ax.errorbar(g.index, g.values, yerr=error_bars(pts, x, metric, g), marker="o", capsize=3,
                            label=label_fmt(grp[line_by].iloc[0]))
        if reference and metric in reference:
            ax.axhline(reference[metric], color="grey", linestyle="--", linewidth=1, label=RULES_LABEL)
        if log_x:
            labels = [f"{tick_names[v]}\n{_count(v)}" for v in xs] if tick_names else None
            _log_ticks(ax, xs, labels)
            if tick_names:
                ax.tick_params(axis="x", labelrotation=30)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _style(ax, xlabel, ylabel, metric)
        ax.set_title(ylabel.split(" (")[0])
    axes[-1].legend(title=line_by.replace("_", " "), fontsize="small")
    fig.suptitle(title)
    if reference:
        caption += (" Dashed: the rules-based tool on the same test pairs, which made the labels (~100 % by "
                    "construction).")
    return Plot(slug, title, caption.rstrip() + ERROR_BARS, _png(fig))


def _offsets(rows: pd.DataFrame, metric: str, mean: float) -> tuple[float, float]:
    """Distances below and above `mean` to its interval, when `rows` is one row holding one; else
    none (0, 0): a mean of several runs has no interval of its own."""
    low, high = metric + CI_LOW, metric + CI_HIGH
    if len(rows) != 1 or low not in rows or high not in rows or rows[[low, high]].isna().to_numpy().any():
        return 0.0, 0.0
    return max(0.0, mean - float(rows[low].iloc[0])), max(0.0, float(rows[high].iloc[0]) - mean)


def error_bars(rows: pd.DataFrame, x: str, metric: str, means: pd.Series) -> list[list[float]] | None:
    """Matplotlib's yerr ([below], [above]) for the points `means` (indexed by x), or None when no
    point has an interval."""
    pairs = [_offsets(rows[rows[x] == xv], metric, float(mean)) for xv, mean in means.items()]
    return [[b for b, _ in pairs], [a for _, a in pairs]] if any(b or a for b, a in pairs) else None


def _sort_key(v: Any) -> tuple[int, float, str]:
    try:
        return (0, float(v), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(v))


def _enough(rows: pd.DataFrame, x: str, line_by: str) -> bool:
    return bool((rows.dropna(subset=[x]).groupby(line_by)[x].nunique() >= 2).any()) if not rows.empty else False


def baseline_scores(df: pd.DataFrame) -> dict[str, float]:
    """The rules-based tool's scores, when every run measured the same ones (same test pairs)."""
    rows = df[df["kind"] == "baseline"] if "kind" in df else df.iloc[0:0]
    out = {}
    for metric, _ in METRICS:
        if metric in rows and rows[metric].notna().any() and rows[metric].round(9).nunique() == 1:
            out[metric] = float(rows[metric].dropna().iloc[0])
    return out


def plot_data_size(finals: pd.DataFrame, keys: list[str], reference: dict[str, float] | None = None) -> Plot:
    """Paper Fig. 2: scores vs number of training examples, one line per model."""
    slug, title = "data_size", "Scores vs number of training examples"
    rows, fixed = pick_slice(finals, ["train_examples", "model"], keys)
    if not _enough(rows, "train_examples", "model"):
        sizes = sorted(finals["train_examples"].dropna().unique()) if "train_examples" in finals else []
        return Plot(slug, title, skipped=f"needs at least two data sizes for one model (found {len(sizes)}).")
    caption = f"Final test-set scores after training; one line per base model. {_fixed_text(fixed)}"
    return _lines(rows, "train_examples", "model", title, "Training examples (log scale)", slug, caption, True,
                  reference=reference)


def plot_epochs(epochs: pd.DataFrame, keys: list[str]) -> list[Plot]:
    """Paper Figs. 3-4: scores vs epochs, one line per data size, one figure per model."""
    slug, title = "epochs", "Scores vs training epochs"
    scored = [m for m, _ in METRICS if m in epochs]
    # With train.eval_generate off, epochs carry losses only: nothing to draw in the paper's terms.
    epochs = epochs.dropna(subset=scored, how="all") if scored else epochs.iloc[0:0]
    if epochs.empty:
        return [Plot(slug, title, skipped="no per-epoch scores (runs with train.eval_generate: false record "
                                          "losses only).")]
    rows, fixed = pick_slice(epochs, ["train_examples", "model", "epoch"], keys)
    if not _enough(rows, "epoch", "run"):
        return [Plot(slug, title, skipped="needs a run with at least two evaluated epochs.")]
    plots = []
    models = list(dict.fromkeys(rows["model"].astype(str)))
    for model in models:
        sub = rows[rows["model"].astype(str) == model]
        if not _enough(sub, "epoch", "run"):
            continue
        name = f"{title}: {model}" if len(models) > 1 else title
        split = "Validation-split" if set(sub.get("split", pd.Series(dtype=str)).dropna()) == {"val"} else "Held-out"
        caption = (f"{split} scores after each epoch of {model}; one line per number of training examples. "
                   f"{_fixed_text(fixed)}")
        s = f"{slug}_{model}" if len(models) > 1 else slug
        s = "".join(c if c.isalnum() or c in "._-" else "-" for c in s)
        plots.append(_lines(sub, "epoch", "train_examples", name, "Epoch", s, caption, False,
                            label_fmt=lambda v: _count(float(v)), group_by="run"))
    return plots


def plot_model_size(finals: pd.DataFrame, keys: list[str], reference: dict[str, float] | None = None) -> Plot:
    """Paper Fig. 5: scores vs model size, one line per data size."""
    slug, title = "model_size", "Scores vs model size"
    if "n_params" not in finals or finals["n_params"].dropna().empty:
        return Plot(slug, title, skipped="no parameter counts recorded (n_params).")
    rows, fixed = pick_slice(finals, ["model", "train_examples"], keys)
    if not _enough(rows, "n_params", "train_examples"):
        n = finals["n_params"].dropna().nunique()
        return Plot(slug, title, skipped=f"needs at least two model sizes at one data size (found {n}).")
    caption = f"Final test-set scores; one line per number of training examples. {_fixed_text(fixed)}"
    names = {float(n): str(m) for n, m in zip(rows["n_params"], rows["model"], strict=True) if pd.notna(n)}
    return _lines(rows, "n_params", "train_examples", title, "Parameters (log scale)", slug, caption, True,
                  label_fmt=lambda v: _count(float(v)), tick_names=names, reference=reference)


def plot_compare(finals: pd.DataFrame, keys: list[str], axis: str) -> Plot:
    """Bar chart of final scores across the values of one setting (prompt format, full vs LoRA)."""
    slug = f"{axis}_comparison"
    title = {"format": "Prompt format comparison", "method": "Full fine-tuning vs LoRA"}.get(axis, axis)
    if axis not in finals:
        return Plot(slug, title, skipped=f"no {axis} column.")
    rows, fixed = pick_slice(finals, [axis, "model"], keys)
    values = list(dict.fromkeys(rows[axis].astype(str)))
    if len(values) < 2:
        return Plot(slug, title, skipped=f"only one {axis} in the results ({', '.join(values) or 'none'}).")
    # Only models tried with at least two values compare anything; a lone bar would read as a zero.
    per_model = rows.groupby(rows["model"].astype(str), sort=False)[axis].nunique()
    models = [m for m, n in per_model.items() if n >= 2]
    if not models:
        return Plot(slug, title, skipped=f"no model was run with two {axis} values under the same settings.")
    rows = rows[rows["model"].astype(str).isin(models)]
    fig = Figure(figsize=(11, 4.2))
    axes = fig.subplots(1, 2)
    width = 0.8 / len(values)
    for ax, (metric, ylabel) in zip(axes, METRICS, strict=True):
        for i, value in enumerate(values):
            pos, heights, errs = [], [], []
            for j, model in enumerate(models):
                m = rows[(rows[axis].astype(str) == value) & (rows["model"].astype(str) == model)]
                if metric in m and not m[metric].dropna().empty:
                    pos.append(j + (i - (len(values) - 1) / 2) * width)
                    heights.append(float(m[metric].mean()))
                    errs.append(_offsets(m, metric, heights[-1]))
            yerr = [[b for b, _ in errs], [a for _, a in errs]] if any(b or a for b, a in errs) else None
            bars = ax.bar(pos, heights, width, label=value, yerr=yerr, capsize=3)
            ax.bar_label(bars, fmt="%.3f" if metric == "edit_distance" else "%.1f", fontsize="small")
        ax.set_xticks(range(len(models)), models)
        _style(ax, "Base model", ylabel, metric)
        ax.set_title(ylabel.split(" (")[0])
    axes[-1].legend(title=axis, fontsize="small")
    fig.suptitle(title)
    caption = f"Final test-set scores for each {axis}. {_fixed_text(fixed)}".rstrip() + ERROR_BARS
    return Plot(slug, title, caption, _png(fig))


def make_plots(df: pd.DataFrame, keys: list[str]) -> list[Plot]:
    """Every paper-style figure the results support; the rest come back skipped with a reason."""
    if df.empty or "kind" not in df:
        return [Plot("all", "Plots", skipped="no results yet.")]
    finals = df[df["kind"] == "final"]
    epochs = df[df["kind"] == "epoch"]
    reference = baseline_scores(df)
    plots = [plot_data_size(finals, keys, reference), *plot_epochs(epochs, keys),
             plot_model_size(finals, keys, reference),
             plot_compare(finals, keys, "format")]
    method = plot_compare(finals, keys, "method")
    # Full vs LoRA is shown "when present": a sweep that never tried LoRA gets no note about it.
    if method.skipped is None:
        plots.append(method)
    return plots
