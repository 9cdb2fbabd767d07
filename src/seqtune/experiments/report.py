"""`seqtune report DIR`: one HTML file and one Markdown file describing a sweep or a run.

The HTML embeds its plots as base64 PNG data URIs and uses no external CSS or
scripts, so it can be mailed or archived as a single file and still open
offline. The Markdown links PNG files written beside it, for GitHub and notes.
"""

from __future__ import annotations

import argparse
import base64
import time
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
import pandas as pd

from seqtune.errors import SeqtuneError
from seqtune.experiments.plots import Plot, make_plots
from seqtune.experiments.results import (
    EPOCH_CAPTION,
    FINAL_CAPTION,
    collect,
    display_columns,
    epoch_columns,
    error_line,
    final_table,
    find_runs,
    results_markdown,
    score_cell,
    write_results,
)
from seqtune.io import atomic_write_bytes, atomic_write_text, read_jsonl
from seqtune.rundir import REPORT_PLOTS, RunDir

WORST_N = 10

HTML_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;
     padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em} h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
.meta{color:#666;font-size:.9em}
figure{margin:1em 0} figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#555;font-size:.9em}
.skip{color:#8a6d3b;background:#fcf8e3;padding:.3em .6em;border-radius:4px;font-size:.9em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0;display:block;overflow-x:auto}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f5f5f5} tr:nth-child(even) td{background:#fafafa}
td.mono{font-family:ui-monospace,Menlo,Consolas,monospace;word-break:break-all;max-width:28em}
.fail{color:#a94442}
</style></head><body>
<h1>{{ title }}</h1>
<p class="meta">{{ summary }} &middot; generated {{ generated }}</p>
{% if failed %}<h2>Failed runs</h2><ul>
{% for name, err in failed %}<li class="fail"><b>{{ name }}</b>: {{ err }}</li>{% endfor %}</ul>{% endif %}
<h2>Plots</h2>
{% for p in plots %}{% if p.skipped %}<p class="skip"><b>{{ p.title }}</b> skipped: {{ p.skipped }}</p>
{% else %}<figure><img alt="{{ p.title }}" src="data:image/png;base64,{{ p.b64 }}">
<figcaption>{{ p.caption }}</figcaption></figure>{% endif %}{% endfor %}
<h2>Worst predictions of the best run</h2>
{% if worst %}<p>{{ worst_note }}</p>
<table><tr><th>#</th><th>Input</th><th>Truth</th><th>Prediction</th><th>Edit distance</th></tr>
{% for r in worst %}<tr><td>{{ loop.index }}</td><td class="mono">{{ r.input }}</td><td class="mono">{{ r.reference }}</td>
<td class="mono">{{ r.prediction }}</td><td>{{ r.edit_distance }}</td></tr>{% endfor %}</table>
{% else %}<p class="skip">{{ worst_note }}</p>{% endif %}
<h2>Results</h2>
<p>{{ final_caption }}</p>
{{ final_table }}
{% if epoch_table %}<details><summary>{{ epoch_caption }}</summary>{{ epoch_table }}</details>{% endif %}
</body></html>
"""


def _html_table(df: pd.DataFrame, columns: list[str]) -> str:
    cols = [c for c in columns if c in df.columns]
    esc = markupsafe.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{esc(score_cell(row, c))}</td>" for c in cols) + "</tr>"
                   for _, row in df.iterrows())
    return f"<table><tr>{head}</tr>{body}</table>"


def _run_dirs(root: Path) -> dict[str, Path]:
    """Run name (as in the results table) -> folder."""
    return {(d.name if d != root else root.resolve().name): d for d in find_runs(root)}


def best_run(df: pd.DataFrame) -> str | None:
    """The finished run with the highest final exact match (ties: lowest edit distance)."""
    if "exact_match" not in df:
        return None
    finals = df[(df["kind"] == "final") & df["exact_match"].notna()]
    if finals.empty:
        return None
    ranked = finals.assign(_ed=finals["edit_distance"] if "edit_distance" in finals else 0.0).sort_values(
        ["exact_match", "_ed"], ascending=[False, True])
    return str(ranked.iloc[0]["run"])


def worst_predictions(run_dir: Path, n: int = WORST_N) -> tuple[list[dict[str, Any]], str]:
    """The n test predictions with the highest edit distance, and which file they came from (an
    unfinished run's latest epoch: validation predictions, which the file name says)."""
    run = RunDir(run_dir)
    path = run.prediction("test")
    if not path.is_file():  # an unfinished run: fall back to its latest epoch's predictions
        epoch_files = run.epoch_prediction_files()
        if not epoch_files:
            return [], ""
        path = epoch_files[-1]
    rows = read_jsonl(path)
    rows.sort(key=lambda r: float(r.get("edit_distance") or 0.0), reverse=True)
    out = [{"input": r.get("input", ""), "reference": r.get("reference", ""),
            "prediction": r.get("prediction", ""), "edit_distance": f"{float(r.get('edit_distance') or 0):.3f}"}
           for r in rows[:n]]
    return out, f"{path.relative_to(run_dir)} ({len(rows)} examples)"


def _md_code(text: str) -> str:
    # Code spans keep SMILES characters ([, ], *, _) from turning into Markdown links or emphasis.
    return "`" + str(text).replace("`", "'").replace("|", "\\|") + "`" if text else ""


def _failed(root: Path, df: pd.DataFrame) -> list[tuple[str, str]]:
    dirs = _run_dirs(root)
    return [(str(name), error_line(dirs.get(name, root)))
            for name in df.loc[df["status"] == "failed", "run"].drop_duplicates()]


def build_report(root: str | Path, out_dir: str | Path | None = None, worst_n: int = WORST_N) -> tuple[Path, Path]:
    """Write report.html, report.md (+ report_plots/*.png) and results.csv/md; return the two report paths."""
    root = Path(root)
    out = Path(out_dir) if out_dir is not None else root
    df, keys = collect(root)
    if df.empty:
        raise SeqtuneError(f"{root}: no run folders (with config.yaml) found")
    write_results(root, out)
    plots = make_plots(df, keys)

    runs = df["run"].drop_duplicates()
    statuses = df.drop_duplicates("run")["status"].value_counts().to_dict()
    summary = f"{len(runs)} run(s): " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
    if keys:
        summary += f"; swept: {', '.join(keys)}"
    best = best_run(df)
    worst: list[dict[str, Any]] = []
    worst_note = "No finished run with predictions yet."
    if best is not None:
        worst, source = worst_predictions(_run_dirs(root)[best], worst_n)
        worst_note = (f"Run {best}, {source}: the {len(worst)} predictions farthest from the truth."
                      if worst else f"Run {best} has no predictions files.")
    failed = _failed(root, df)
    title = f"seqtune report: {root.resolve().name}"

    finals = final_table(df, keys)
    final_cols = display_columns(finals, keys, list(finals.columns))
    epoch_rows = df[df["kind"] == "epoch"]
    epoch_cols = display_columns(epoch_rows, keys, epoch_columns(df, keys))

    for p in plots:
        if p.png is not None:
            atomic_write_bytes(out / REPORT_PLOTS / f"{p.slug}.png", p.png)
    html = jinja2.Environment(autoescape=True).from_string(HTML_TEMPLATE).render(
        title=title, summary=summary, generated=time.strftime("%Y-%m-%d %H:%M"), failed=failed,
        plots=[{"title": p.title, "caption": p.caption, "skipped": p.skipped,
                "b64": base64.b64encode(p.png).decode("ascii") if p.png else ""} for p in plots],
        worst=worst, worst_note=worst_note,
        final_table=markupsafe.Markup(_html_table(finals, final_cols)),
        epoch_table=markupsafe.Markup(_html_table(epoch_rows, epoch_cols)) if len(epoch_rows) else "",
        final_caption=FINAL_CAPTION.replace("`", ""), epoch_caption=EPOCH_CAPTION.replace("`", ""),
    )
    html_path, md_path = out / "report.html", out / "report.md"
    atomic_write_text(html_path, html)
    atomic_write_text(md_path, _markdown(title, summary, failed, plots, worst, worst_note, df, keys))
    return html_path, md_path


def _markdown(title: str, summary: str, failed: list[tuple[str, str]], plots: list[Plot],
              worst: list[dict[str, Any]], worst_note: str, df: pd.DataFrame, keys: list[str]) -> str:
    parts = [f"# {title}", "", summary, ""]
    if failed:
        parts += ["## Failed runs", "", *[f"- **{n}**: {e}" for n, e in failed], ""]
    parts += ["## Plots", ""]
    for p in plots:
        if p.skipped:
            parts += [f"*{p.title} skipped: {p.skipped}*", ""]
        else:
            parts += [f"![{p.title}]({REPORT_PLOTS}/{p.slug}.png)", "", p.caption, ""]
    parts += ["## Worst predictions of the best run", "", worst_note, ""]
    if worst:
        parts += ["| # | Input | Truth | Prediction | Edit distance |", "|---|---|---|---|---|"]
        parts += [f"| {i} | {_md_code(r['input'])} | {_md_code(r['reference'])} | {_md_code(r['prediction'])} "
                  f"| {r['edit_distance']} |" for i, r in enumerate(worst, 1)]
        parts.append("")
    body = results_markdown(df, keys, "Results").replace("# Results", "## Results", 1)
    return "\n".join(parts) + "\n" + body


def main(argv: list[str] | None = None) -> int:
    """`seqtune report DIR [--out OUT] [--worst N]`."""
    ap = argparse.ArgumentParser(prog="seqtune report",
                                 description="Write report.html and report.md (with plots) for a sweep or run folder.")
    ap.add_argument("dir", help="a sweep folder or a single run folder")
    ap.add_argument("--out", help="where to write the report (default: DIR)")
    ap.add_argument("--worst", type=int, default=WORST_N, help="how many worst predictions to list")
    args = ap.parse_args(argv)
    html_path, md_path = build_report(args.dir, args.out, args.worst)
    print(f"{html_path}\n{md_path}")
    return 0
