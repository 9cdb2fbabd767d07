"""Sweep expansion, validation, skip-on-rerun and failure recording (with a stubbed runner)."""

from __future__ import annotations

import json
import math
import os
import stat
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from test_report import write_fake_run  # the run-folder layout helper shared with the report tests

from seqtune.cli import main as cli_main
from seqtune.errors import ConfigError, SeqtuneError
from seqtune.experiments.sweep import run_subprocess, run_sweep
from seqtune.experiments.sweep_spec import RunSpec, expand, load_sweep, parse_sweep, run_name


def write_sweep(tmp_path: Path, body: dict, name: str = "sweep.yaml") -> Path:
    body.setdefault("out_dir", str(tmp_path / "out"))
    path = tmp_path / name
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


class StubRunner:
    """Stands in for `seqtune run`: writes a fake finished run, or fails for the chosen names."""

    def __init__(self, fail: set[str] | None = None, no_metrics: set[str] | None = None) -> None:
        self.fail, self.no_metrics, self.calls = fail or set(), no_metrics or set(), []

    def __call__(self, spec: RunSpec, log_path: Path) -> int:
        self.calls.append(spec.name)
        assert (spec.run_dir / "config.yaml").is_file(), "the sweep writes the resolved config before running"
        if spec.name in self.fail:
            log_path.write_text("loading model\nTraceback (most recent call last):\n"
                                "torch.OutOfMemoryError: CUDA out of memory\n")
            return 1
        c = spec.config
        write_fake_run(spec.run_dir, model=c.model.name, train_size=c.data.train_size or 100,
                       fmt=c.model.format, method=c.model.method, epochs=c.train.epochs,
                       finished=spec.name not in self.no_metrics)
        return 0


def test_grid_times_zip_expansion_and_naming(tmp_path: Path) -> None:
    sweep = parse_sweep({
        "base": {"data": {"test_size": 50}, "train": {"epochs": 2}},
        "out_dir": str(tmp_path / "out"),
        "grid": {"data.train_size": [250, 500, 1000], "model": {"format": ["instruct", "plain"]}},
        "zip": {"model.name": ["smollm2-135m", "gemma3-270m"], "train.lr": [1e-4, 5e-5]},
    }, "inline")
    specs = expand(sweep)
    assert len(specs) == 3 * 2 * 2
    assert sweep.keys == ["data.train_size", "model.format", "model.name", "train.lr"]
    names = [s.name for s in specs]
    assert len(set(names)) == len(names)
    assert names[0] == "data.train_size=250__model.format=instruct__model.name=smollm2-135m__train.lr=0.0001"
    s = specs[-1]
    assert (s.config.data.train_size, s.config.model.format, s.config.model.name, s.config.train.lr) == \
        (1000, "plain", "gemma3-270m", 5e-5)
    assert s.config.data.test_size == 50 and s.config.train.epochs == 2  # base kept
    assert Path(s.config.out_dir) == tmp_path / "out" / s.name == s.run_dir


def test_names_are_filesystem_safe(tmp_path: Path) -> None:
    assert run_name({"model.name": "facebook/opt-125m"}) == "model.name=facebook-opt-125m"
    assert run_name({}) == "base"
    long = run_name({"model.format": "x" * 400})
    assert len(long) <= 150
    sweep = parse_sweep({"out_dir": str(tmp_path), "grid": {"model.name": ["a/b", "a b", "a-b"]}}, "inline")
    specs = expand(sweep)
    names = [s.name for s in specs]
    # three values that sanitise alike: each gets a short hash, none silently shares a folder
    assert len(set(names)) == 3 and all(n.startswith("model.name=a-b-") for n in names)
    assert all("/" not in n and " " not in n for n in names)


def test_base_config_file_with_inline_overrides(tmp_path: Path) -> None:
    (tmp_path / "cfgs").mkdir()
    (tmp_path / "cfgs" / "base.yaml").write_text(yaml.safe_dump({"train": {"epochs": 7, "lr": 0.001},
                                                                 "out_dir": "ignored"}))
    path = write_sweep(tmp_path / "cfgs", {"base_config": "base.yaml", "base": {"train": {"lr": 0.002}},
                                           "grid": {"data.train_size": [10]}})
    [spec] = expand(load_sweep(path))
    assert (spec.config.train.epochs, spec.config.train.lr) == (7, 0.002)
    # `base: path` is shorthand for base_config
    path2 = write_sweep(tmp_path / "cfgs", {"base": "base.yaml"}, "s2.yaml")
    [spec2] = expand(load_sweep(path2))
    assert spec2.name == "base" and spec2.config.train.epochs == 7


@pytest.mark.parametrize("body, message", [
    ({"grid": {"data.trian_size": [1, 2]}}, "'data.trian_size' is not a config key"),
    ({"grid": {"train.epochs": [1, 0]}}, "run train.epochs=0: train.epochs: must be > 0"),
    ({"grid": {"model.method": ["full", "qlora"]}}, "model.method: 'qlora' is not one of full, lora"),
    ({"grid": {"data.train_size": 100}}, "grid.data.train_size: expected a non-empty list"),
    ({"zip": {"data.train_size": [1, 2], "model.format": ["plain"]}}, "zip lists must be equally long"),
    ({"grid": {"train.lr": [1.0]}, "zip": {"train.lr": [2.0]}}, "in both grid and zip"),
    ({"gird": {"train.lr": [1.0]}}, "unknown key 'gird'"),
    ({"grid": {"out_dir": ["a", "b"]}}, "grid.out_dir"),
    ({"base": {"train": {"epochz": 3}}}, "unknown key 'train.epochz'"),
    ({"grid": {"data.train_size": [5, 5]}}, "appears twice"),
])
def test_validation_errors_name_the_key_and_run_nothing(tmp_path: Path, body: dict, message: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = write_sweep(tmp_path, body)
    with pytest.raises(ConfigError, match="sweep.yaml") as err:
        expand(load_sweep(path))
    assert message in str(err.value)
    assert cli_main(["sweep", str(path)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing run, nothing written


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("grid:\n  data.train_size: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: not valid YAML"):
        load_sweep(path)


def test_skip_finished_record_failures_and_retry(tmp_path: Path) -> None:
    path = write_sweep(tmp_path, {"base": {"train": {"epochs": 2}},
                                  "grid": {"data.train_size": [100, 200, 300]}})
    sweep = load_sweep(path)
    bad = "data.train_size=200"
    stub = StubRunner(fail={bad})
    summary = run_sweep(sweep, runner=stub, log=lambda _: None)
    assert stub.calls == ["data.train_size=100", bad, "data.train_size=300"]  # the failure did not stop it
    status = {r["name"]: r["status"] for r in summary["runs"]}
    assert status == {"data.train_size=100": "done", bad: "failed", "data.train_size=300": "done"}
    err = (sweep.out_dir / bad / "error.txt").read_text()
    assert "exit code 1" in err and "CUDA out of memory" in err
    on_disk = json.loads((sweep.out_dir / "sweep.json").read_text())
    assert on_disk["counts"] == {"done": 2, "failed": 1}
    assert next(r for r in on_disk["runs"] if r["name"] == bad)["error"] == \
        "torch.OutOfMemoryError: CUDA out of memory"

    # Re-run: finished runs skipped, the failed one too unless asked.
    stub2 = StubRunner()
    summary = run_sweep(sweep, runner=stub2, log=lambda _: None)
    assert stub2.calls == [] and summary["counts"] == {"done": 2, "failed": 1}
    summary = run_sweep(sweep, runner=stub2, retry_failed=True, log=lambda _: None)
    assert stub2.calls == [bad] and summary["counts"] == {"done": 3}
    assert not (sweep.out_dir / bad / "error.txt").exists()


def test_one_sweep_per_folder(tmp_path: Path) -> None:
    import socket

    path = write_sweep(tmp_path, {"grid": {"data.train_size": [10]}})
    out = tmp_path / "out"
    out.mkdir()
    lock = out / ".sweep.lock"
    lock.write_text(f"{os.getpid()} {socket.gethostname()}")  # a live process holds it
    stub = StubRunner()
    with pytest.raises(SeqtuneError, match="another seqtune sweep"):
        run_sweep(load_sweep(path), runner=stub, log=lambda _: None)
    assert stub.calls == []
    lock.write_text(f"999999999 {socket.gethostname()}")  # left by a killed sweep: taken over
    run_sweep(load_sweep(path), runner=stub, log=lambda _: None)
    assert stub.calls == ["data.train_size=10"] and not lock.exists()


def test_summary_keeps_earlier_timings(tmp_path: Path) -> None:
    path = write_sweep(tmp_path, {"grid": {"data.train_size": [10]}})
    first = run_sweep(load_sweep(path), runner=StubRunner(), log=lambda _: None)
    again = run_sweep(load_sweep(path), runner=StubRunner(), log=lambda _: None)
    assert again["runs"][0]["seconds"] == first["runs"][0]["seconds"]
    assert again["runs"][0]["status"] == "done"


def test_exit_zero_without_metrics_is_a_failure(tmp_path: Path) -> None:
    path = write_sweep(tmp_path, {"grid": {"data.train_size": [100]}})
    summary = run_sweep(load_sweep(path), runner=StubRunner(no_metrics={"data.train_size=100"}),
                        log=lambda _: None)
    [run] = summary["runs"]
    assert run["status"] == "failed" and run["exit_code"] == 0


def test_main_writes_results_and_returns_1_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import seqtune.experiments.sweep as sweep_mod

    stub = StubRunner(fail={"data.train_size=20"})
    monkeypatch.setattr(sweep_mod, "run_subprocess", lambda spec, log_path, echo=False: stub(spec, log_path))
    path = write_sweep(tmp_path, {"grid": {"data.train_size": [10, 20]}, "base": {"train": {"epochs": 2}}})
    assert cli_main(["sweep", str(path)]) == 1
    assert "data.train_size=20: torch.OutOfMemoryError" in capsys.readouterr().err
    out = tmp_path / "out"
    assert (out / "results.csv").is_file() and (out / "results.md").is_file()
    stub.fail = set()  # the cause was fixed
    assert cli_main(["sweep", str(path), "--retry-failed"]) == 0
    assert stub.calls == ["data.train_size=10", "data.train_size=20", "data.train_size=20"]


def test_dry_run_lists_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_sweep(tmp_path, {"grid": {"data.train_size": [10, 20], "model.format": ["plain", "chat"]}})
    assert cli_main(["sweep", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "data.train_size=10__model.format=plain  pending  run" in out and "4 runs, 4 to run" in out
    assert not (tmp_path / "out").exists()


def test_finished_run_with_changed_config_is_refused(tmp_path: Path) -> None:
    path = write_sweep(tmp_path, {"base": {"train": {"epochs": 2}}, "grid": {"data.train_size": [10]}})
    run_sweep(load_sweep(path), runner=StubRunner(), log=lambda _: None)
    path = write_sweep(tmp_path, {"base": {"train": {"epochs": 3}}, "grid": {"data.train_size": [10]}})
    with pytest.raises(ConfigError, match=r"different config \(train.epochs\)"):
        run_sweep(load_sweep(path), runner=StubRunner(), log=lambda _: None)


def test_real_subprocess_success_and_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default runner: each run is a child process; a crash is recorded and the sweep goes on."""
    fake_python = tmp_path / "python"
    fake_python.write_text(f"""#!{sys.executable}
import json, pathlib, sys
print("args:", *sys.argv[1:])
run_dir = pathlib.Path(sys.argv[-1]).parent
if "=20" in run_dir.name:
    print("Traceback (most recent call last):", file=sys.stderr)
    print("RuntimeError: boom", file=sys.stderr)
    sys.exit(3)
(run_dir / "metrics.json").write_text(json.dumps({{"base": None, "tuned": {{"exact_match": 50.0}}}}))
""")
    fake_python.chmod(fake_python.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(sys, "executable", str(fake_python))
    path = write_sweep(tmp_path, {"grid": {"data.train_size": [20, 10]}})
    summary = run_sweep(load_sweep(path), runner=run_subprocess, log=lambda _: None)
    assert [(r["status"], r["exit_code"]) for r in summary["runs"]] == [("failed", 3), ("done", 0)]
    assert summary["runs"][0]["error"] == "RuntimeError: boom"
    run_dir = tmp_path / "out" / "data.train_size=10"
    log = (run_dir / "sweep.log").read_text()
    assert f"-m seqtune run {run_dir / 'config.yaml'}" in log
    summary = run_sweep(load_sweep(path), runner=run_subprocess, log=lambda _: None)
    assert summary["counts"] == {"failed": 1, "done": 1}
    assert (run_dir / "sweep.log").read_text() == log  # nothing re-run


@settings(max_examples=40, deadline=None)
@given(grid=st.lists(st.integers(1, 3), max_size=3), zip_len=st.integers(0, 3))
def test_expansion_count_and_unique_names(grid: list[int], zip_len: int) -> None:
    keys = ["data.train_size", "data.val_size", "data.test_size"]
    body = {"out_dir": "/tmp/never-written", "grid": {k: list(range(1, n + 1)) for k, n in zip(keys[:len(grid)], grid, strict=True)}}
    if zip_len:
        body["zip"] = {"train.epochs": list(range(1, zip_len + 1)), "train.batch_size": [8] * zip_len}
    specs = expand(parse_sweep(body, "inline"))
    assert len(specs) == math.prod(grid) * max(zip_len, 1)
    assert len({s.name for s in specs}) == len(specs)


@pytest.mark.parametrize("name, n_runs", [("paper_opt", 18), ("offline_cpu", 6), ("gemma_cpu", 6)])
def test_shipped_paper_sweeps_are_valid(name: str, n_runs: int) -> None:
    path = Path(__file__).resolve().parent.parent / "configs" / "paper" / f"{name}.yaml"
    specs = expand(load_sweep(path))
    assert len(specs) == n_runs
    assert all(s.run_dir.parent == Path("runs") / name for s in specs)


def _cli_reads_paths_with_equals() -> bool:
    """Whether `seqtune run DIR/key=value/config.yaml` takes the argument as a path (not as an override)."""
    from seqtune import cli

    try:
        cli._config(["x=1/config.yaml"])
    except ConfigError as err:
        return "not found" in str(err)
    return False


@pytest.mark.slow
@pytest.mark.skipif(not _cli_reads_paths_with_equals(),
                    reason="seqtune run reads a config path containing '=' as an override (cli._config)")
def test_end_to_end_tiny_sweep(tmp_path: Path, tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    """3 data sizes x 2 formats of a tiny model through real `seqtune run` subprocesses, then the report."""
    import re

    import pandas as pd

    from seqtune.experiments.report import main as report_main

    words = ["methyl", "ethyl", "propyl", "butyl", "pentyl", "hexyl", "oxy", "amino", "hydroxy", "chloro"]
    pairs = [(f"{w} {i}", f"{words[(i * 7 + 3) % 10]}-{words[(i * 3 + 1) % 10]}") for i, w in enumerate(words * 2)]
    data = tmp_path / "data"
    data.mkdir()
    for split, rows in (("train", pairs), ("val", pairs[:4]), ("test", pairs[:4])):
        (data / f"{split}.jsonl").write_text("".join(json.dumps({"input": a, "output": b}) + "\n" for a, b in rows))
    monkeypatch.chdir(tmp_path)  # relative out_dir and data path, as a user would write them
    path = write_sweep(tmp_path, {
        "out_dir": "out",
        "base": {"data": {"path": "data", "task": "toy", "dedupe": False, "test_size": 4, "val_size": 4},
                 "model": {"name": str(tiny_llama_dir)},
                 "train": {"epochs": 2, "lr": 3e-3, "batch_size": 4, "progress": False, "logger": "none",
                           "precision": "fp32"},
                 "generate": {"max_new_tokens": 8}},
        "grid": {"data.train_size": [4, 8, 16], "model.format": ["instruct", "plain"]},
    })
    assert cli_main(["sweep", str(path)]) == 0, capsys.readouterr()
    out = tmp_path / "out"
    runs = sorted(p.parent for p in out.glob("*/metrics.json"))
    assert len(runs) == 6
    df = pd.read_csv(out / "results.csv")
    assert df["kind"].value_counts().to_dict() == {"epoch": 12, "base": 6, "final": 6}
    assert sorted(df.loc[df["kind"] == "final", "train_examples"]) == [4, 4, 8, 8, 16, 16]
    assert (out / "results.md").read_text().startswith("# Results")

    assert report_main([str(out)]) == 0
    html = (out / "report.html").read_text()
    # data-size curve, epochs curve, format comparison (one model: the model-size plot is skipped)
    assert len(re.findall(r'src="data:image/png;base64,', html)) == 3
    assert "Scores vs model size</b> skipped" in html
    assert len(list((out / "report_plots").glob("*.png"))) == 3 and (out / "report.md").is_file()

    logs = {r: (r / "sweep.log").read_text() for r in runs}
    capsys.readouterr()
    assert cli_main(["sweep", str(path)]) == 0
    assert capsys.readouterr().out.count("done, skipped") == 6
    assert all((r / "sweep.log").read_text() == log for r, log in logs.items())  # nothing re-ran
