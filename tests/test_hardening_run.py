"""Hardening of the run side (issue 14): one run per folder, a NaN stops the run and keeps the
last good checkpoint, outputs checked writable before any work, strict JSON, same-seed LoRA
runs equal, damaged checkpoints passed over, a full disk at the final save reported in one line.

Runs use the tiny llama and the 20 pairs of helpers_train_script (via test_reliability's
`_cli_run` config: 8 steps an epoch, 3 epochs), on one thread so that results compare bit for bit.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import helpers_train_script as helper
import pytest
import torch
import yaml
from test_reliability import Child, _cli_run, _epochs, _weights, one_thread

from seqtune.cli import main
from seqtune.errors import SeqtuneError
from seqtune.io import LOCK_FILE, atomic_write_json, atomic_write_jsonl, run_folder_lock
from seqtune.training.checkpoint import (
    intact_checkpoint,
    latest_checkpoint,
    save_checkpoint,
    verify_checkpoint,
)

posix_only = pytest.mark.skipif(os.name != "posix", reason="needs flock and POSIX permissions")


def strict_json(text: str):
    """json.loads that refuses NaN / Infinity, as every other JSON reader does."""
    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def cli(capsys, *args) -> tuple[int, list[str]]:
    with one_thread():
        code = main([str(a) for a in args])
    err = capsys.readouterr().err.strip()
    return code, err.splitlines()


def one_error_line(lines: list[str]) -> str:
    """The one error line (library progress bars such as transformers' weight loading may share stderr)."""
    errors = [x for x in lines if x.startswith("seqtune:")]
    assert len(errors) == 1 and errors[0].startswith("seqtune: error:"), lines
    assert not any("Traceback" in x for x in lines), lines
    return errors[0]


# --- run-folder lock ------------------------------------------------------------------------


@posix_only
def test_lock_refuses_a_second_holder_and_takes_over_a_stale_one(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_FILE).write_text("999999999 some-host\n")  # left by a process that died
    with run_folder_lock(out):
        assert (out / LOCK_FILE).read_text().split()[0] == str(os.getpid())
        # flock is per open file: a second open in this very process is refused like another process.
        with pytest.raises(SeqtuneError, match=rf"another seqtune run \(pid {os.getpid()}\)"), run_folder_lock(out):
            pass
    with run_folder_lock(out):  # released on exit
        pass


@posix_only
def test_a_failed_run_removes_only_the_folder_it_created(tmp_path):
    fresh = tmp_path / "a" / "b" / "run"
    with pytest.raises(RuntimeError), run_folder_lock(fresh):
        raise RuntimeError("model failed to load")
    assert not (tmp_path / "a").exists()
    kept = tmp_path / "existing"
    kept.mkdir()
    with pytest.raises(RuntimeError), run_folder_lock(kept):
        raise RuntimeError("model failed to load")
    assert kept.is_dir()


@posix_only
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_run_outputs_get_the_mode_the_umask_gives(tmp_path, umask, mode):
    """Atomic writes go through a 0600 temporary file; the result must be readable as a plain
    open() would leave it (0644 under the usual umask). The umask is read once, at import,
    so each case runs in a fresh process."""
    code = ("import os, sys\n"
            "os.umask(int(sys.argv[2], 8))\n"
            "from pathlib import Path\n"
            "from seqtune.io import atomic_write_bytes, atomic_write_json, atomic_write_jsonl\n"
            "run = Path(sys.argv[1])\n"
            "atomic_write_json(run / 'metrics.json', {'exact_match': 1.0})\n"
            "atomic_write_jsonl(run / 'predictions' / 'test.jsonl', [{'prediction': 'x'}])\n"
            "atomic_write_bytes(run / 'report.png', b'png')\n")
    run = tmp_path / "run"
    subprocess.run([sys.executable, "-c", code, str(run), oct(umask)], check=True, timeout=60)
    for name in ("metrics.json", "predictions/test.jsonl", "report.png"):
        assert oct((run / name).stat().st_mode & 0o777) == oct(mode), name


@posix_only
def test_concurrent_runs_second_exits_2_naming_the_holder_first_finishes(tmp_path, tiny_llama_dir):
    cfg, run = _cli_run(tmp_path, tiny_llama_dir)
    # Slow steps keep the first run busy for well over the second's start-up time.
    first = Child(["cli", "--slow-step", "1.0", "--", "train", str(cfg)], tmp_path / "logs", "first")
    assert first.wait_until(lambda: (run / "run.json").is_file(), timeout=180)
    holder = (run / LOCK_FILE).read_text().split()[0]
    assert holder == str(first.proc.pid)
    t0 = time.monotonic()
    second = Child(["cli", "--", "train", str(cfg), "train.lr=5e-4"], tmp_path / "logs", "second")
    rc = second.finish(timeout=120)
    took = time.monotonic() - t0
    assert rc == 2, second.stderr()[-3000:]
    line = one_error_line(second.stderr().strip().splitlines())
    assert f"pid {first.proc.pid}" in line and str(run) in line, line
    assert first.proc.poll() is None, "the first run ended before the second was refused"
    assert took < 60, took
    assert first.finish(timeout=300) == 0, first.stderr()[-3000:]
    # The folder is the first run's alone: its config, three epochs, a model and metrics.
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["lr"] == pytest.approx(1e-3)
    assert [r["epoch"] for r in _epochs(run)] == [1, 2, 3]
    assert strict_json((run / "metrics.json").read_text())["train"]["epochs"] == 3
    assert (run / "model" / "model.safetensors").is_file()


# --- outputs checked before any work ----------------------------------------------------------


@pytest.fixture
def readonly_dir(tmp_path):
    """A folder this process cannot write into: chmod where that binds (not root), else a
    read-only tmpfs where mounting is allowed; skipped where neither is possible."""
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with contextlib.suppress(OSError):
            (folder / "probe").touch()
        if not (folder / "probe").exists():
            yield folder
            return
        (folder / "probe").unlink()
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                            capture_output=True).returncode == 0
        if not ok:
            pytest.skip("cannot make a read-only folder (root without mount rights)")
        try:
            yield folder
        finally:
            subprocess.run(["umount", str(folder)], check=False)
    finally:
        folder.chmod(0o755)


@posix_only
@pytest.mark.parametrize("case", ["existing file", "inside a file", "read-only folder", "inside a read-only folder"])
def test_unwritable_out_dir_exits_2_before_the_model_loads(tmp_path, tiny_llama_dir, capsys, monkeypatch, case,
                                                           request):
    import seqtune.pipeline as pipeline

    loads = []
    monkeypatch.setattr(pipeline, "load_model", lambda *a, **k: loads.append(a) or _raise(RuntimeError("loaded"))())
    cfg, _ = _cli_run(tmp_path, tiny_llama_dir)
    a_file = tmp_path / "taken.txt"
    a_file.write_text("precious\n")
    if "read-only" in case:
        ro = request.getfixturevalue("readonly_dir")
        out = ro if case == "read-only folder" else ro / "run"
    else:
        out = a_file if case == "existing file" else a_file / "run"
    code, lines = cli(capsys, "train", cfg, f"out_dir={out}")
    assert code == 2
    line = one_error_line(lines)
    assert str(out) in line or str(out.parent) in line, line
    assert loads == []
    assert a_file.read_text() == "precious\n"


@pytest.fixture(scope="module")
def model_folder(tiny_llama_dir, tmp_path_factory) -> Path:
    """A seqtune model folder (untrained tiny llama) for predict."""
    from transformers import AutoModelForCausalLM

    from seqtune.modeling import ModelInfo, load_tokenizer, save_model
    from seqtune.prompts import get_format

    folder = tmp_path_factory.mktemp("model") / "model"
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    save_model(model, load_tokenizer(str(tiny_llama_dir)), folder, ModelInfo(get_format("plain"), "toy", "", "tiny", {}))
    return folder


@posix_only
@pytest.mark.parametrize("case", ["a folder", "inside a file", "read-only folder"])
def test_predict_output_checked_before_decoding(tmp_path, model_folder, capsys, monkeypatch, case, request):
    import seqtune.inference.decode as decode

    decoded = []
    monkeypatch.setattr(decode, "generate", lambda *a, **k: decoded.append(a) or _raise(RuntimeError("decoded"))())
    inputs = tmp_path / "in.txt"
    inputs.write_text("CCO\nCCN\n")
    if case == "a folder":
        output = tmp_path
    elif case == "inside a file":
        output = inputs / "out.jsonl"
    else:
        output = request.getfixturevalue("readonly_dir") / "out.jsonl"
    code, lines = cli(capsys, "predict", "--model", model_folder, "--input", inputs, "--output", output,
                      "--max-new-tokens", "2")
    assert code == 2
    assert str(output.parent) in one_error_line(lines) or str(output) in one_error_line(lines)
    assert decoded == []


def test_predict_to_a_writable_output_still_works(tmp_path, model_folder, capsys):
    inputs = tmp_path / "in.txt"
    inputs.write_text("CCO\nCCN\n")
    out = tmp_path / "new" / "out.jsonl"
    code, lines = cli(capsys, "predict", "--model", model_folder, "--input", inputs, "--output", out,
                      "--max-new-tokens", "2")
    assert code == 0, lines
    assert [strict_json(x)["input"] for x in out.read_text().splitlines()] == ["CCO", "CCN"]
    assert not list(out.parent.glob(".seqtune-probe-*"))


# --- NaN / inf ------------------------------------------------------------------------------


def _nan_loss_from_call(n: int, value: float):
    import seqtune.training.step as train_mod

    real, calls = train_mod.completion_loss, {"n": 0}

    def loss(model, batch, keep):
        calls["n"] += 1
        out = real(model, batch, keep)
        return out * value if calls["n"] >= n else out

    return loss


def _inf_grads_at_step(k: int):
    """clip_grad_norm_ that turns every gradient infinite at optimiser step k: the loss of that
    step is finite, the weights after it are NaN."""
    real, calls = torch.nn.utils.clip_grad_norm_, {"n": 0}

    def clip(params, *a, **kw):
        params = list(params)
        calls["n"] += 1
        if calls["n"] == k:
            for p in params:
                if p.grad is not None:
                    p.grad.fill_(float("inf"))
        return real(params, *a, **kw)

    return clip


NAN_CASES = {
    # name: (overrides, patch, text in the message, last good checkpoint step or None)
    "lr=inf": (["train.lr=.inf"], None, "lr", None),
    "lr=nan": (["train.lr=.nan"], None, "lr", None),
    "lr=1e30 (overflows)": (["train.lr=1e30", "train.save_every_steps=1"], None, "became", "any"),
    "nan loss at step 5": (["train.save_every_steps=2"], ("loss", 5, float("nan")), "training loss became nan", 4),
    "inf loss at step 5": (["train.save_every_steps=1"], ("loss", 5, float("inf")), "training loss became inf", 4),
    "inf gradients at step 4": (["train.save_every_steps=2"], ("grads", 4, None), "became NaN/inf", 2),
}


@pytest.mark.parametrize("name", list(NAN_CASES))
def test_nan_or_inf_stops_with_one_line_and_keeps_the_last_good_checkpoint(tmp_path, tiny_llama_dir, capsys,
                                                                          monkeypatch, name):
    import seqtune.training.step as train_mod

    overrides, patch, text, good_step = NAN_CASES[name]
    if patch and patch[0] == "loss":
        monkeypatch.setattr(train_mod, "completion_loss", _nan_loss_from_call(patch[1], patch[2]))
    elif patch:
        monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", _inf_grads_at_step(patch[1]))
    cfg, run = _cli_run(tmp_path, tiny_llama_dir)
    code, lines = cli(capsys, "train", cfg, *overrides)
    assert code == 2
    line = one_error_line(lines)
    assert text in line, line
    assert not (run / "model").exists() and not (run / "metrics.json").exists()
    for f in [run / "epochs.jsonl", run / "run.json"]:
        if f.is_file():
            strict_json(f.read_text()) if f.suffix == ".json" else [strict_json(x) for x in f.read_text().splitlines()]
    ckpts = run / "checkpoints"
    for path in ckpts.glob("step-*"):  # nothing of the NaN state was saved
        weights = torch.load(path / "model.pt", weights_only=True)
        assert all(torch.isfinite(w).all() for w in weights.values()), path
        assert verify_checkpoint(path) is None
    if good_step is None:
        assert latest_checkpoint(ckpts) is None
    elif good_step == "any":
        assert latest_checkpoint(ckpts) is not None and str(latest_checkpoint(ckpts)) in line
    else:
        assert latest_checkpoint(ckpts).name == f"step-{good_step:08d}"
        assert f"last good checkpoint, {latest_checkpoint(ckpts)}" in line


def test_json_is_strict_everywhere_a_run_writes_it(tmp_path, tiny_llama_dir):
    """No validation split: the eval loss is undefined. It must read as null, not a bare NaN."""
    from seqtune.config import load_config
    from seqtune.pipeline import run_pipeline

    data = tmp_path / "data"
    data.mkdir()
    for name, pairs in (("train", helper.PAIRS[:8]), ("test", helper.PAIRS[16:18])):
        (data / f"{name}.jsonl").write_text("".join(json.dumps({"input": a, "output": b}) + "\n" for a, b in pairs))
    run = tmp_path / "run"
    cfg = load_config(None, {
        "out_dir": str(run), "evaluate_base": False,
        "data": {"path": str(data), "task": "toy", "dedupe": False},
        "model": {"name": str(tiny_llama_dir), "format": "plain"},
        "train": {"epochs": 1, "batch_size": 4, "precision": "fp32", "logger": "none", "progress": False},
        "generate": {"max_new_tokens": 2},
    })
    with one_thread():
        result = run_pipeline(cfg)
    assert result["tuned"]["eval_loss"] != result["tuned"]["eval_loss"]  # NaN in memory: no val split
    metrics = strict_json((run / "metrics.json").read_text())
    assert metrics["tuned"]["eval_loss"] is None
    assert [strict_json(x)["eval_loss"] for x in (run / "epochs.jsonl").read_text().splitlines()] == [None]
    for f in (latest_checkpoint(run / "checkpoints") / "state.json", run / "run.json", run / "model" / "seqtune.json"):
        strict_json(f.read_text())
    atomic_write_json(tmp_path / "x.json", {"a": [float("inf"), 1.5, {"b": float("-inf")}]})
    atomic_write_jsonl(tmp_path / "x.jsonl", [{"a": float("nan")}])
    assert strict_json((tmp_path / "x.json").read_text()) == {"a": [None, 1.5, {"b": None}]}
    assert strict_json((tmp_path / "x.jsonl").read_text()) == {"a": None}


# --- LoRA seeding ---------------------------------------------------------------------------


def test_same_seed_lora_runs_give_equal_losses(tmp_path, tiny_llama_dir):
    from seqtune.config import load_config
    from seqtune.pipeline import run_pipeline

    cfg_path, _ = _cli_run(tmp_path, tiny_llama_dir)

    def lora_run(name: str, seed: int) -> list[float]:
        cfg = load_config(cfg_path, {"out_dir": str(tmp_path / name), "evaluate_base": False,
                                     "model": {"method": "lora", "lora_r": 4},
                                     "train": {"epochs": 1, "seed": seed}})
        with one_thread():
            run_pipeline(cfg)
        return [(r["train_loss"], r["eval_loss"]) for r in _epochs(tmp_path / name)]

    # In one process: the second run starts from whatever RNG state the first left behind.
    a, b, other = lora_run("a", 7), lora_run("b", 7), lora_run("c", 8)
    assert a == b
    assert a != other


def test_changed_lora_setting_on_resume_is_one_line_exit_2(tmp_path, tiny_llama_dir, capsys):
    from seqtune.cli import main

    cfg_path, _ = _cli_run(tmp_path, tiny_llama_dir)
    args = ["run", str(cfg_path), f"out_dir={tmp_path / 'lora'}", "evaluate_base=false", "model.method=lora",
            "train.epochs=1"]
    with one_thread():
        assert main([*args, "model.lora_r=4"]) == 0
        capsys.readouterr()
        assert main([*args, "model.lora_r=8"]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "error" in line]
    assert len(err) == 1 and "lora_r=4" in err[0] and "8" in err[0], err


# --- damaged checkpoints --------------------------------------------------------------------


@pytest.fixture(scope="module")
def uninterrupted(tiny_llama_dir, tmp_path_factory):
    with one_thread():
        state, weights = helper.run(tiny_llama_dir, tmp_path_factory.mktemp("uninterrupted"))
    return helper.comparable(state.history), weights


class _Stop(Exception):
    pass


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage,file", [(_truncate, "model.pt"), (_flip_a_byte, "optimizer.pt"),
                                         (_truncate, "state.json")])
def test_damaged_latest_checkpoint_resumes_from_the_previous_to_the_same_result(
        tmp_path, tiny_llama_dir, uninterrupted, monkeypatch, capsys, damage, file):
    import seqtune.training.step as train_mod

    real, calls = train_mod.completion_loss, {"n": 0}

    def stop_at_step_12(model, batch, keep):
        calls["n"] += 1
        if calls["n"] == 13:  # 8 steps, 1 evaluation, then steps 9, 10, 11 and the 12th
            raise _Stop
        return real(model, batch, keep)

    monkeypatch.setattr(train_mod, "completion_loss", stop_at_step_12)
    out = tmp_path / "run"
    ckpts = out / "checkpoints"
    with one_thread(), pytest.raises(_Stop):
        helper.run(tiny_llama_dir, out)
    latest = latest_checkpoint(ckpts)
    assert latest.name == "step-00000009" and (ckpts / "step-00000008").is_dir()
    damage(latest / file)
    assert verify_checkpoint(latest) is not None
    monkeypatch.setattr(train_mod, "completion_loss", real)
    capsys.readouterr()
    with one_thread():
        state, weights = helper.run(tiny_llama_dir, out)
    printed = capsys.readouterr().out.splitlines()
    said = [x for x in printed if "passed over" in x]
    assert len(said) == 1 and "step-00000009" in said[0] and "step-00000008" in said[0], printed
    assert any(x.startswith(f"resuming from {ckpts / 'step-00000008'}") for x in printed), printed
    ref_history, ref_weights = uninterrupted
    assert helper.comparable(state.history) == ref_history
    for n, w in ref_weights.items():
        assert torch.equal(weights[n], w), n


def test_every_checkpoint_damaged_is_an_error_and_old_ones_without_manifest_pass(tmp_path):
    from tiny import make_model, make_tokenizer

    from seqtune.training.loop import _rng_state

    model = make_model("llama", len(make_tokenizer("llama")))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    root = tmp_path / "ck"
    paths = [save_checkpoint(root, step, model, opt, sched, {"epoch": 0}, _rng_state()) for step in (1, 2)]
    assert intact_checkpoint(root) == paths[1]
    for p in paths:
        _truncate(p / "model.pt")
    with pytest.raises(SeqtuneError, match="every checkpoint is damaged.*train.resume=false"):
        intact_checkpoint(root)
    (paths[0] / "manifest.json").unlink()  # as written before manifests existed: nothing to check
    assert verify_checkpoint(paths[0]) is None


# --- disk full at the final save --------------------------------------------------------------


def _fail_metrics(real):
    def write(path, obj):
        if Path(path).name == "metrics.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, obj)

    return write


def _raise(exc):
    def fail(*a, **kw):
        raise exc

    return fail


def _safetensor_error():
    from safetensors import SafetensorError

    return SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")


FINAL_SAVE_FAILURES = {
    "model: OSError ENOSPC": ("save_model", lambda real: _raise(OSError(errno.ENOSPC, "No space left on device"))),
    "model: safetensors error": ("save_model", lambda real: _raise(_safetensor_error())),
    "metrics.json: ENOSPC": ("atomic_write_json", _fail_metrics),
}


@pytest.mark.parametrize("name", list(FINAL_SAVE_FAILURES))
def test_disk_full_at_the_final_save_is_one_line_and_a_rerun_finishes(tmp_path, tiny_llama_dir, capsys,
                                                                      monkeypatch, name):
    import seqtune.pipeline as pipeline

    attr, make = FINAL_SAVE_FAILURES[name]
    monkeypatch.setattr(pipeline, attr, make(getattr(pipeline, attr)))
    cfg, run = _cli_run(tmp_path, tiny_llama_dir)
    code, lines = cli(capsys, "train", cfg)
    assert code == 2
    line = one_error_line(lines)
    assert "No space left on device" in line and str(run) in line and "run again" in line, line
    assert not (run / "metrics.json").exists()
    assert latest_checkpoint(run / "checkpoints").name == "step-00000024"
    monkeypatch.undo()
    code, lines = cli(capsys, "train", cfg)
    assert code == 0, lines
    assert strict_json((run / "metrics.json").read_text())["train"]["epochs"] == 3
    assert _weights(run).keys()
