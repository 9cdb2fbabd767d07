"""The command line: every bad input exits non-zero with one line naming file/line or key, and writes nothing."""

import json
import subprocess
import sys

import pytest

from seqtune.cli import main


def _run_cli(capsys, *args):
    code = main(list(args))
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize("args,message", [
    (["run", "--train.epochs", "0"], "train.epochs: must be > 0"),
    (["run", "train.lrr=1"], "argument train.lrr=1: unknown key 'train.lrr'; did you mean 'train.lr'?"),
    (["run", "--learning_rate", "0"], "option --learning_rate: train.lr: must be > 0, got 0"),
    (["run", "--num_beams", "2.7"], "option --num_beams: generate.num_beams: expected an integer, got 2.7"),
    (["run", "--lr=nan"], "option --lr: train.lr: must be a finite number"),
    (["run", "--lr"], "option --lr needs a value"),
    (["run", "{tmp}/bad.yaml"], "bad.yaml:3: train.epochs: expected an integer, got 1.5"),
    (["run", "{tmp}/bad.yaml", "train.epochs=1"], "bad.yaml:4: unknown key 'train.lrr'; did you mean 'train.lr'?"),
    (["check", "--train.epochs", "0"], "option --train.epochs: train.epochs: must be > 0"),
    (["train", "--per_device_train_batch_size", "0"], "option --per_device_train_batch_size: train.batch_size"),
    (["run", "missing.yaml"], "missing.yaml: config file not found"),
    (["run", "--data-path", "{tmp}/none.csv"], "none.csv: file not found"),
    (["run", "--data-path", "{tmp}/bad.csv"], "bad.csv:3: empty value in column 'output'"),
    (["run", "--data-path", "{tmp}/bad.csv", "--model", "{tmp}/nomodel"], "bad.csv:3"),
    (["run", "--data-path", "{tmp}/good.csv", "--model", "{tmp}/nomodel.gguf"], "GGUF file"),
    (["run", "--data-path", "{tmp}/good.csv", "--model", "{tmp}/good.csv"], "is a file but not a .gguf"),
    (["run", "--data-path", "{tmp}/good.csv", "--format", "{tmp}/t.jinja"], "t.jinja: template never uses"),
    (["evaluate", "--predictions", "{tmp}/none.jsonl"], "none.jsonl: file not found"),
    (["predict", "--model", "{tmp}", "--input", "{tmp}/good.csv"], "not a seqtune model folder"),
    (["data", "nope"], "usage: seqtune data chem"),
])
def test_bad_input_one_line_nonzero_nothing_written(tmp_path, capsys, args, message):
    (tmp_path / "bad.csv").write_text("input,output\nCCO,ethanol\nC,\n")
    (tmp_path / "good.csv").write_text("input,output\nCCO,ethanol\nC,methane\n")
    (tmp_path / "t.jinja").write_text("no variables")
    (tmp_path / "bad.yaml").write_text("out_dir: x\ntrain:\n  epochs: 1.5\n  lrr: 1\n")
    out = tmp_path / "out"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if args[0] in ("run", "train", "check") and args[-1] != "--lr":
        args += ["--output-dir", str(out)]
    code, err = _run_cli(capsys, *args)
    assert code == 2
    assert err.startswith("seqtune: error:") and message in err and "\n" not in err
    assert not out.exists()


def test_evaluate_scores_file(tmp_path, capsys):
    p = tmp_path / "p.jsonl"
    p.write_text(json.dumps({"reference": "ethanol", "prediction": "ethanol"}) + "\n"
                 + json.dumps({"reference": "abcd", "prediction": "abce"}) + "\n")
    assert main(["evaluate", "--predictions", str(p), "--output", str(tmp_path / "m.json")]) == 0
    summary = json.loads((tmp_path / "m.json").read_text())["summary"]
    assert summary["exact_match"] == 50.0 and summary["edit_distance"] == pytest.approx(0.125)


def test_help_and_unknown_command(capsys):
    assert main(["--help"]) == 0 and "seqtune <command>" in capsys.readouterr().out
    assert main(["frobnicate"]) == 2


def test_console_script_runs_as_module():
    r = subprocess.run([sys.executable, "-m", "seqtune", "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip()
