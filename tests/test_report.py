"""Results table and report from hand-made run folders that follow the `seqtune run` layout."""

from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest

from seqtune.cli import main as cli_main
from seqtune.config import load_config, save_config
from seqtune.experiments.report import best_run, build_report, worst_predictions
from seqtune.experiments.results import collect, find_runs, write_results
from seqtune.io import atomic_write_json, atomic_write_jsonl, atomic_write_text

PARAMS = {"smollm2-135m": 134_515_008, "gemma3-270m": 268_098_176, "opt-350m": 331_196_416}


def write_fake_run(run_dir: Path, *, model: str = "smollm2-135m", train_size: int = 1000, fmt: str = "instruct",
                   method: str = "full", epochs: int = 2, finished: bool = True, chem: bool = False,
                   overrides: dict | None = None, n_test: int = 12, baseline: dict | None = None) -> Path:
    """A run folder as `seqtune run` leaves it, with scores that improve with data, epochs and size."""
    cfg = load_config(None, {"out_dir": str(run_dir), "data": {"train_size": train_size},
                             "model": {"name": model, "format": fmt, "method": method},
                             "train": {"epochs": epochs}, **(overrides or {})})
    save_config(cfg, run_dir / "config.yaml")
    n_params = PARAMS.get(model, 100_000_000)
    atomic_write_json(run_dir / "run.json", {"seqtune": "0.1.0", "torch": "2.13", "n_params": n_params,
                                            "device": "cpu", "data_hash": "abc"})

    def scores(epoch: int) -> dict:
        skill = math.log10(train_size) * (1 + epoch) / (2 + epoch) * n_params / 1e8
        skill *= 1.0 if fmt == "instruct" else 0.8
        skill *= 1.0 if method == "full" else 0.7
        exact = min(99.0, 10.0 * skill)
        out = {"exact_match": round(exact, 2), "edit_distance": round(max(0.01, 0.9 - exact / 110), 4)}
        if chem:
            out.update(same_molecule_pct=round(exact + 3, 2), opsin_parsable_pct=round(min(100, exact + 20), 2))
        return out

    def predictions(name: str, epoch: int) -> None:
        s = scores(epoch)
        rows = []
        for i in range(n_test):
            exact = i < round(n_test * s["exact_match"] / 100)
            dist = 0.0 if exact else round(0.05 + 0.9 * i / n_test, 3)
            rows.append({"input": f"C{'C' * i}[N+](=O)[O-]", "reference": f"{i}-nitroalkane",
                         "prediction": f"{i}-nitroalkane" if exact else f"{i}-nitro|wrong",
                         "exact": exact, "edit_distance": dist})
        atomic_write_jsonl(run_dir / "predictions" / f"{name}.jsonl", rows)

    predictions("base", 0)
    rows = []
    steps_per_epoch = math.ceil(train_size / cfg.train.batch_size)
    for ep in range(1, epochs + 1):
        rows.append({"epoch": ep, "step": ep * steps_per_epoch, "train_examples": train_size,
                     "examples_seen": ep * train_size, "train_loss": 2.0 / ep, "eval_loss": 2.2 / ep,
                     **scores(ep), "train_seconds": 10.0 * ep, "examples_per_s": train_size / 10.0})
        predictions(f"epoch-{ep}", ep)
    atomic_write_jsonl(run_dir / "epochs.jsonl", rows)
    if finished:
        predictions("test", epochs)
        atomic_write_json(run_dir / "metrics.json", {
            "base": {"exact_match": 0.0, "edit_distance": 0.95},
            "tuned": scores(epochs),
            "baseline": baseline,
            "train": {"epochs": epochs, "train_examples": train_size, "train_seconds": 10.0 * epochs,
                      "examples_per_s": train_size / 10.0, "n_params": n_params, "model": model,
                      "method": method, "format": fmt},
        })
    return run_dir


def fake_sweep(root: Path, sizes=(250, 500, 1000), models=("smollm2-135m", "gemma3-270m"),
               fmts=("instruct", "plain"), chem: bool = False, baseline: dict | None = None) -> Path:
    keys = ["data.train_size", "model.name", "model.format"]
    for n in sizes:
        for m in models:
            for f in fmts:
                write_fake_run(root / f"data.train_size={n}__model.name={m}__model.format={f}",
                               model=m, train_size=n, fmt=f, chem=chem, baseline=baseline)
    atomic_write_json(root / "sweep.json", {"keys": keys, "runs": []})
    return root


def test_results_table_rows_and_columns(tmp_path: Path) -> None:
    root = fake_sweep(tmp_path / "sw", chem=True)
    df, keys = collect(root)
    assert keys == ["data.train_size", "model.name", "model.format"]
    assert len(find_runs(root)) == 12
    # per run: base + 2 epochs + final
    assert len(df) == 12 * 4
    assert df["kind"].value_counts().to_dict() == {"epoch": 24, "base": 12, "final": 12}
    for col in ["run", "kind", "status", *keys, "model", "n_params", "method", "format", "train_examples",
                "epoch", "exact_match", "edit_distance", "same_molecule_pct", "opsin_parsable_pct",
                "train_seconds", "examples_per_s"]:
        assert col in df.columns, col
    final = df[(df["kind"] == "final") & (df["data.train_size"] == 1000) & (df["model"] == "gemma3-270m")
               & (df["format"] == "instruct")].iloc[0]
    assert final["n_params"] == PARAMS["gemma3-270m"] and final["epoch"] == 2
    assert final["train_seconds"] == 20.0


def test_write_results_csv_and_markdown(tmp_path: Path) -> None:
    root = fake_sweep(tmp_path / "sw", sizes=(250, 500), models=("smollm2-135m",), fmts=("instruct",))
    csv_path, md_path = write_results(root)
    back = pd.read_csv(csv_path)
    assert len(back) == 2 * 4 and set(back["kind"]) == {"base", "epoch", "final"}
    md = md_path.read_text()
    assert md.startswith("# Results") and "| status | model |" in md and "134.5M" in md
    assert "Per-epoch scores" in md
    assert not list(root.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_unfinished_and_failed_runs_still_listed(tmp_path: Path) -> None:
    root = tmp_path / "sw"
    write_fake_run(root / "a", train_size=250)
    write_fake_run(root / "b", train_size=500, finished=False)
    write_fake_run(root / "c", train_size=1000, finished=False)
    atomic_write_text(root / "c" / "error.txt", "exit code 1\n\nRuntimeError: out of memory\n")
    df, keys = collect(root)
    assert keys == ["data.train_size"]  # inferred from the configs that differ (no sweep.json)
    status = df.drop_duplicates("run").set_index("run")["status"].to_dict()
    assert status == {"a": "done", "b": "incomplete", "c": "failed"}
    # the unfinished run's base score is recomputed from predictions/base.jsonl
    assert (df[(df["run"] == "b")]["kind"] == "base").any()
    html, md = build_report(root)
    assert "RuntimeError: out of memory" in html.read_text() and "Failed runs" in md.read_text()


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def test_report_full_sweep_is_self_contained(tmp_path: Path) -> None:
    root = fake_sweep(tmp_path / "sw", models=("smollm2-135m", "gemma3-270m", "opt-350m"))
    html_path, md_path = build_report(root)
    html = html_path.read_text()
    images = _images(html)
    # data size, epochs (one per model), model size, format comparison
    assert len(images) == 1 + 3 + 1 + 1
    assert all(img.startswith(b"\x89PNG\r\n\x1a\n") for img in images)
    # nothing fetched from elsewhere: no http(s) URLs in src/href attributes, no <script>, no <link>
    assert not re.search(r'(src|href)="(https?:)?//', html) and "<script" not in html and "<link" not in html
    md = md_path.read_text()
    linked = re.findall(r"!\[[^\]]*\]\((report_plots/[^)]+\.png)\)", md)
    assert len(linked) == 6 and all((root / p).is_file() for p in linked)
    assert "Worst predictions" in md and "| 1 |" in md
    # a '|' inside a prediction must not break the Markdown table
    assert "nitro\\|wrong" in md
    assert (root / "results.csv").is_file() and (root / "results.md").is_file()


def test_plots_skipped_with_note_for_one_data_size(tmp_path: Path) -> None:
    root = fake_sweep(tmp_path / "sw", sizes=(1000,), models=("smollm2-135m",))
    html_path, md_path = build_report(root)
    html, md = html_path.read_text(), md_path.read_text()
    assert "Scores vs number of training examples</b> skipped" in html
    assert "*Scores vs model size skipped" in md
    # epochs curve and format comparison still drawn
    assert len(_images(html)) == 2


def test_single_run_folder(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path / "one", epochs=3, chem=True)
    assert cli_main(["report", str(run)]) == 0
    html = (run / "report.html").read_text()
    assert len(_images(html)) == 1  # the epochs curve
    assert "same_molecule_pct" in html


def test_lora_comparison_when_present(tmp_path: Path) -> None:
    root = tmp_path / "sw"
    for n, f, m in [(250, "instruct", "full"), (500, "instruct", "full"), (1000, "instruct", "full"),
                    (1000, "plain", "full"), (1000, "instruct", "lora")]:
        write_fake_run(root / f"{n}-{f}-{m}", train_size=n, fmt=f, method=m)
    html_path, _ = build_report(root)
    html = html_path.read_text()
    assert "Full fine-tuning vs LoRA" in html and "Prompt format comparison" in html
    # the format bars are drawn at the slice where formats differ: 1000 pairs, full fine-tuning
    assert "At data.train_size = 1000, model.method = full." in html


def test_best_run_and_worst_predictions(tmp_path: Path) -> None:
    root = fake_sweep(tmp_path / "sw", sizes=(250, 1000), models=("smollm2-135m",), fmts=("instruct",))
    df, _ = collect(root)
    best = best_run(df)
    assert best == "data.train_size=1000__model.name=smollm2-135m__model.format=instruct"
    rows, source = worst_predictions(root / best, n=3)
    assert source.startswith("predictions/test.jsonl")
    dists = [float(r["edit_distance"]) for r in rows]
    assert dists == sorted(dists, reverse=True) and len(rows) == 3


def test_report_errors_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert cli_main(["report", str(tmp_path / "empty")]) == 2
    assert "no run folders" in capsys.readouterr().err
    assert cli_main(["report", str(tmp_path / "missing")]) == 2


def test_metrics_json_is_truth_for_finished(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path / "r")
    metrics = json.loads((run / "metrics.json").read_text())
    df, _ = collect(run)
    final = df[df["kind"] == "final"].iloc[0]
    assert final["exact_match"] == metrics["tuned"]["exact_match"]


def test_epochs_without_scores_are_skipped_not_drawn(tmp_path: Path) -> None:
    """train.eval_generate: false leaves losses only in epochs.jsonl."""
    run = write_fake_run(tmp_path / "r", epochs=3)
    rows = [{k: v for k, v in r.items() if k not in ("exact_match", "edit_distance")}
            for r in map(json.loads, (run / "epochs.jsonl").read_text().splitlines())]
    atomic_write_jsonl(run / "epochs.jsonl", rows)
    html_path, _ = build_report(run)
    assert "no per-epoch scores" in html_path.read_text()


def test_rules_baseline_in_table_and_plots(tmp_path: Path) -> None:
    root = fake_sweep(tmp_path / "sw", models=("smollm2-135m",), fmts=("instruct",),
                      baseline={"n": 12, "exact_match": 41.0, "edit_distance": 0.2})
    df, keys = collect(root)
    assert (df["kind"] == "baseline").sum() == 3 and "n" not in df.columns
    html_path, md_path = build_report(root)
    assert "baseline_exact_match" in md_path.read_text()
    assert "Dashed: the rules-based tool" in html_path.read_text()


def test_results_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_fake_run(tmp_path / "one", epochs=2)
    assert cli_main(["results", str(run)]) == 0
    assert (run / "results.csv").is_file() and (run / "results.md").is_file()
    capsys.readouterr()
    assert cli_main(["results", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("seqtune: error:") and "missing" in err
