"""Crashes, kills, signals and full disks: a run is resumable from whatever they leave behind,
and the resumed run ends exactly where an uninterrupted one does.

Training runs are subprocesses of `helpers_train_script.py` (tiny llama, 20 pairs, 24 steps,
a checkpoint every 3 steps and at each epoch end), killed at chosen or random moments.
The uninterrupted reference runs in this process; all of them use one thread so that the
kernels, and hence the bits, are the same.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import helpers_train_script as helper
import pytest
import torch

from seqtune.errors import DataError, SeqtuneError
from seqtune.training.checkpoint import latest_checkpoint, load_checkpoint, prune_checkpoints

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
# Checkpoint steps of the helper's run: every 3 steps, and each epoch end (8 steps an epoch, 3 epochs).
SAVE_POINTS = sorted(set(range(3, 25, 3)) | {8, 16, 24})
LAST_STEP = 24
posix_only = pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")


@contextlib.contextmanager
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    # The seqtune under test, not whatever copy the interpreter has installed.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    # Unbuffered: a SIGKILLed child must not take the lines it printed with it.
    env.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               TRANSFORMERS_VERBOSITY="error", TOKENIZERS_PARALLELISM="false")
    return env


class Child:
    """A helper-script subprocess whose output goes to files (a pipe nobody reads could block it)."""

    def __init__(self, args: list[str], logs: Path, name: str):
        logs.mkdir(parents=True, exist_ok=True)
        self.out, self.err = logs / f"{name}.out", logs / f"{name}.err"
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen([sys.executable, str(TESTS / "helpers_train_script.py"), *args],
                                         stdout=out, stderr=err, env=child_env())

    def wait_until(self, cond, timeout: float = 90.0) -> bool:
        """Poll `cond` until it holds (True) or the child exits first (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return True
            if self.proc.poll() is not None:
                return bool(cond())
            time.sleep(0.005)
        self.proc.kill()
        self.proc.wait()
        pytest.fail(f"child made no progress in {timeout} s; stderr:\n{self.err.read_text()[-2000:]}")

    def finish(self, timeout: float = 120.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"child did not finish in {timeout} s; stderr:\n{self.err.read_text()[-2000:]}")

    def send(self, sig: int) -> int:
        self.proc.send_signal(sig)
        return self.finish()

    def stdout(self) -> str:
        return self.out.read_text()

    def stderr(self) -> str:
        return self.err.read_text()


def saved_step(ckpts: Path) -> int:
    latest = latest_checkpoint(ckpts)
    return int(latest.name.split("-")[1]) if latest is not None else 0


def assert_loadable(path: Path, model_dir: Path) -> dict:
    """A checkpoint that latest_checkpoint offers must load into a fresh model and optimizer."""
    from transformers import AutoModelForCausalLM, get_scheduler

    from seqtune.training.loop import make_optimizer

    assert path.name.startswith("step-"), path
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    opt = make_optimizer(model, helper.train_config())
    sched = get_scheduler("linear", opt, num_warmup_steps=2, num_training_steps=LAST_STEP)
    saved = load_checkpoint(path, model, opt, sched)
    assert saved["state"]["global_step"] == int(path.name.split("-")[1])
    return saved


@pytest.fixture(scope="module")
def reference(tiny_llama_dir, tmp_path_factory):
    """The uninterrupted run: per-epoch records and final weights."""
    with one_thread():
        state, weights = helper.run(tiny_llama_dir, tmp_path_factory.mktemp("reference"))
    assert state.global_step == LAST_STEP
    return helper.comparable(state.history), weights


def assert_same_as(reference, history: list[dict], weights: dict[str, torch.Tensor]) -> None:
    ref_history, ref_weights = reference
    assert history == ref_history
    assert weights.keys() == ref_weights.keys()
    for name, w in ref_weights.items():
        assert torch.equal(weights[name], w), name


@posix_only
def test_sigkill_anywhere_then_resume_equals_uninterrupted(tmp_path, tiny_llama_dir, reference):
    """SIGKILL three times (at random moments, and inside a checkpoint save), then let it finish."""
    seed = int(os.environ.get("SEQTUNE_KILL_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    out, logs = tmp_path / "run", tmp_path / "logs"
    ckpts = out / "checkpoints"
    args = [str(tiny_llama_dir), str(out)]
    # A sleep in every forward pass stretches 24 steps over about a second, so a random
    # delay lands at a random place in the loop (a step, a save, an evaluation).
    slow = ["--slow-step", "0.02"]
    done_step, log = 0, []
    for i, kind in enumerate(["random", "in-save", "random"]):
        # Never beyond the next three save points: the run must still be going when the kill comes.
        target = rng.choice([s for s in SAVE_POINTS if done_step < s < LAST_STEP][:3])
        where = f"seed {seed}, kills so far {log}"
        if kind == "in-save":
            child = Child([*args, *slow, "--slow-save-step", str(target)], logs, f"run{i}")
            assert child.wait_until(lambda t=target, c=child: f"saving {t}" in c.stdout()), where
            tmp = ckpts / f".tmp-step-{target:08d}"
            assert (tmp / "model.pt").is_file() and (tmp / "optimizer.pt").is_file(), where
        else:
            child = Child([*args, *slow], logs, f"run{i}")
            assert child.wait_until(lambda t=target: saved_step(ckpts) >= t), where
            time.sleep(rng.uniform(0.0, 0.06))
        rc = child.send(signal.SIGKILL)
        assert rc == -signal.SIGKILL, f"{where}: the run ended by itself (rc {rc}) before the kill"
        if i > 0:
            resumed = [line for line in child.stdout().splitlines() if line.startswith("resuming from")]
            assert resumed and f"{os.sep}step-" in resumed[0], (where, child.stdout())
        latest = latest_checkpoint(ckpts)
        assert latest is not None, where
        assert_loadable(latest, tiny_llama_dir)
        if kind == "in-save":
            # The save was cut short: its folder stays hidden, the run resumes from the one before.
            assert latest.name < f"step-{target:08d}", where
            # Even a temporary folder that looks complete (killed between its last write
            # and its rename) is never taken for a checkpoint.
            shutil.copy(latest / "state.json", tmp / "state.json")
            assert latest_checkpoint(ckpts) == latest, where
        done_step = int(latest.name.split("-")[1])
        assert done_step >= target or kind == "in-save", where
        log.append((kind, target, latest.name))

    child = Child(args, logs, "final")
    assert child.finish() == 0, child.stderr()[-3000:]
    assert f"resuming from {ckpts}{os.sep}step-{done_step:08d}" in child.stdout()
    result = json.loads((out / "result.json").read_text())
    assert result["global_step"] == LAST_STEP
    assert_same_as(reference, result["history"], torch.load(out / "final.pt"))
    # Leftovers of the cut-short save are gone; old checkpoints pruned to keep_checkpoints.
    assert not list(ckpts.glob(".tmp-*")), list(ckpts.iterdir())
    assert len(list(ckpts.glob("step-*"))) <= helper.train_config().keep_checkpoints
    epochs = [json.loads(line) for line in (out / "epochs.jsonl").read_text().splitlines()]
    assert helper.comparable(epochs) == reference[0]


def test_latest_checkpoint_takes_only_complete_folders(tmp_path):
    root = tmp_path / "checkpoints"

    def make(name: str, files=("model.pt", "optimizer.pt", "state.json")) -> Path:
        folder = root / name
        folder.mkdir(parents=True)
        for f in files:
            (folder / f).write_text("{}")
        return folder

    good = make("step-00000003")
    make(".tmp-step-00000009")  # complete-looking, but never renamed into place
    make("step-00000012", files=("optimizer.pt", "state.json"))  # half deleted (killed while being replaced)
    make("step-00000015", files=("model.pt", "optimizer.pt"))  # no state.json
    (root / "step-00000018").write_text("a file, not a folder")
    old_partial = make("step-00000001", files=("model.pt",))
    assert latest_checkpoint(root) == good
    assert latest_checkpoint(tmp_path / "none") is None
    prune_checkpoints(root, 1, keep=good)
    assert good.is_dir() and not old_partial.exists()


def _cli_run(tmp_path: Path, model_dir: Path) -> tuple[Path, Path]:
    """Config and data for `seqtune train` on the helper's pairs (no base scoring, no per-epoch decoding)."""
    data = tmp_path / "data"
    data.mkdir()
    for name, pairs in (("train", helper.PAIRS[:16]), ("val", helper.PAIRS[16:]), ("test", helper.PAIRS[16:18])):
        (data / f"{name}.jsonl").write_text("".join(json.dumps({"input": a, "output": b}) + "\n" for a, b in pairs))
    cfg = {
        "out_dir": str(tmp_path / "run"),
        "data": {"path": str(data), "task": "toy", "dedupe": False},
        "model": {"name": str(model_dir), "format": "plain"},
        "train": {"epochs": 3, "lr": 1e-3, "batch_size": 2, "warmup_ratio": 0.1, "precision": "fp32",
                  "logger": "none", "progress": False, "eval_generate": False, "save_every_steps": 0},
        "generate": {"max_new_tokens": 4},
    }
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path, tmp_path / "run"


def _epochs(run: Path) -> list[dict]:
    return helper.comparable([json.loads(x) for x in (run / "epochs.jsonl").read_text().splitlines()])


def _weights(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(run / "model" / "model.safetensors")


@posix_only
def test_sigterm_saves_exits_with_one_line_and_resumes(tmp_path, tiny_llama_dir):
    cfg, run = _cli_run(tmp_path, tiny_llama_dir)
    ckpts = run / "checkpoints"
    child = Child(["cli", "--slow-step", "0.02", "--", "train", str(cfg)], tmp_path / "logs", "term")
    # After the first epoch's checkpoint, mid-way through the second epoch.
    assert child.wait_until(lambda: saved_step(ckpts) >= 8)
    time.sleep(random.uniform(0.0, 0.05))
    rc = child.send(signal.SIGTERM)
    errors = [line for line in child.stderr().splitlines() if line.startswith("seqtune: error:")]
    assert rc == 130, child.stderr()[-3000:]
    assert len(errors) == 1 and "stopped by SIGTERM" in errors[0] and "run again to resume" in errors[0], errors
    assert "Traceback" not in child.stderr()
    step = saved_step(ckpts)
    assert 8 <= step < 16  # saved where the signal found it (an epoch end if it came during the last step)
    assert json.loads((latest_checkpoint(ckpts) / "state.json").read_text())["global_step"] == step
    assert not (run / "metrics.json").exists()

    again = Child(["cli", "--", "train", str(cfg)], tmp_path / "logs", "again")
    assert again.finish() == 0, again.stderr()[-3000:]
    assert f"resuming from {ckpts}{os.sep}step-{step:08d}" in again.stdout()
    assert (run / "metrics.json").is_file()

    from seqtune.config import load_config
    from seqtune.pipeline import run_pipeline

    ref = tmp_path / "reference"
    with one_thread():
        run_pipeline(load_config(cfg, {"out_dir": str(ref), "evaluate_base": False}))
    got, want = _epochs(run), _epochs(ref)
    assert [r["epoch"] for r in got] == [1, 2, 3]
    for g, w in zip(got, want):
        assert g.pop("train_loss") == pytest.approx(w.pop("train_loss"), rel=1e-12, abs=0)
        assert g == w
    ref_w = _weights(ref)
    for name, w in _weights(run).items():
        assert torch.equal(w, ref_w[name]), name


@posix_only
def test_sigint_in_process_saves_restores_handlers_and_resumes(tmp_path, tiny_llama_dir, reference, monkeypatch):
    """Ctrl-C at step 11 (not a save point): TrainingInterrupted, a checkpoint at step 11, the
    caller's SIGINT handler back in place; the resumed run ends as the uninterrupted one."""
    import seqtune.training.loop as train_mod
    import seqtune.training.step as step_mod

    real, calls = step_mod.completion_loss, {"n": 0}

    def interrupt_at_step_11(model, batch, keep):
        calls["n"] += 1
        if calls["n"] == 12:  # 8 steps, 1 evaluation, then steps 9, 10, 11
            os.kill(os.getpid(), signal.SIGINT)
        return real(model, batch, keep)

    monkeypatch.setattr(step_mod, "completion_loss", interrupt_at_step_11)
    before = signal.getsignal(signal.SIGINT)
    out = tmp_path / "run"
    with one_thread(), pytest.raises(train_mod.TrainingInterrupted, match=r"stopped by SIGINT.*run again to resume"):
        helper.run(tiny_llama_dir, out)
    assert signal.getsignal(signal.SIGINT) is before
    assert latest_checkpoint(out / "checkpoints").name == "step-00000011"
    monkeypatch.setattr(step_mod, "completion_loss", real)
    with one_thread():
        state, weights = helper.run(tiny_llama_dir, out)
    assert_same_as(reference, helper.comparable(state.history), weights)


@pytest.mark.parametrize("how", ["oserror", "dev-full"])
@pytest.mark.parametrize("fail_from_save", [0, 1])
def test_disk_full_during_checkpoint(tmp_path, tiny_llama_dir, reference, monkeypatch, how, fail_from_save):
    """ENOSPC while saving: one clear error naming the folder, the previous checkpoint intact and
    loadable, no temporary folder left, and training resumes from it to the uninterrupted result.

    `oserror`: torch.save raises OSError(ENOSPC). `dev-full`: the checkpoint's files are opened
    on /dev/full, so the real serializer meets a real ENOSPC from the kernel (which torch
    reports as a RuntimeError without errno)."""
    import seqtune.training.checkpoint as ckpt_mod

    saves = {"n": 0}
    if how == "oserror":
        real_save = torch.save

        def save(obj, f, *a, **kw):
            saves["n"] += 1
            if saves["n"] > 2 * fail_from_save:  # two files per checkpoint
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_save(obj, f, *a, **kw)

        monkeypatch.setattr(ckpt_mod.torch, "save", save)
    else:
        if not os.path.exists("/dev/full"):
            pytest.skip("no /dev/full")

        def full_open(path, mode="r", *a, **kw):
            if "w" in mode and Path(path).suffix == ".pt":
                saves["n"] += 1
                if saves["n"] > 2 * fail_from_save:
                    return open("/dev/full", mode, *a, **kw)
            return open(path, mode, *a, **kw)

        monkeypatch.setattr(ckpt_mod, "open", full_open, raising=False)

    out = tmp_path / "run"
    ckpts = out / "checkpoints"
    with one_thread(), pytest.raises(SeqtuneError) as info:
        helper.run(tiny_llama_dir, out)
    msg = str(info.value)
    assert str(ckpts) in msg and "disk full" in msg and "\n" not in msg, msg
    assert not list(ckpts.glob(".tmp-*")), list(ckpts.iterdir())
    if fail_from_save == 0:
        assert latest_checkpoint(ckpts) is None and "None" not in msg, msg
        return
    assert saves["n"] > 2, "the disk never filled up"
    prev = ckpts / "step-00000003"
    assert f"{prev} is intact" in msg, msg
    assert latest_checkpoint(ckpts) == prev
    assert_loadable(prev, tiny_llama_dir)
    monkeypatch.undo()
    with one_thread():
        state, weights = helper.run(tiny_llama_dir, out)
    assert_same_as(reference, helper.comparable(state.history), weights)


# --- atomic writes --------------------------------------------------------------------------


class Boom(Exception):
    pass


def _rows_then_boom(n: int):
    # 200 kB: well past the write buffer, so part of it is on disk when the error comes.
    for i in range(n):
        yield {"i": i, "text": "x" * 1000}
    raise Boom


@pytest.mark.parametrize("exc", [Boom, KeyboardInterrupt])
def test_atomic_writes_keep_old_content_when_the_writer_fails(tmp_path, exc):
    from seqtune import io as sio

    target = tmp_path / "out.jsonl"
    target.write_text("old\n")

    with pytest.raises(Boom):
        sio.atomic_write_jsonl(target, _rows_then_boom(200))
    with pytest.raises(exc):
        with sio.atomic_open(target) as fh:
            fh.write("new" * 10_000)
            raise exc
    with pytest.raises(UnicodeEncodeError):
        sio.atomic_write_text(target, "fine " * 10_000 + "\ud800")
    with pytest.raises(ValueError):
        loop: list = []
        loop.append(loop)
        sio.atomic_write_json(target, {"a": 1, "b": loop})
    assert target.read_text() == "old\n"
    fresh = tmp_path / "new.jsonl"
    with pytest.raises(Boom):
        sio.atomic_write_jsonl(fresh, _rows_then_boom(3))
    assert not fresh.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]  # no temporary files left
    sio.atomic_write_jsonl(target, [{"a": 1}])
    assert sio.read_jsonl(target) == [{"a": 1}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


# --- over-long examples ---------------------------------------------------------------------


def _long_pairs_file(tmp_path: Path) -> Path:
    path = tmp_path / "pairs.jsonl"
    rows = [{"input": f"CCO {i}", "output": "ethanol"} for i in range(6)]
    rows[2]["output"] = "methyl " * 200  # line 3
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_overlength_dropped_and_counted_or_error_names_line(tmp_path):
    from tiny import make_tokenizer

    from seqtune.data import read_pairs
    from seqtune.prompts import get_format
    from seqtune.training.batching import encode_pairs

    path = _long_pairs_file(tmp_path)
    pairs = read_pairs(path)
    tok, fmt = make_tokenizer("llama"), get_format("plain")
    enc = encode_pairs(pairs, tok, fmt, "", 64, "drop", "train")
    assert enc.dropped == 1 and len(enc.examples) == 5
    assert [p.where for p in enc.kept] == [f"{path}:{n}" for n in (1, 2, 4, 5, 6)]
    assert all(len(e) <= 64 for e in enc.examples)
    with pytest.raises(DataError, match=rf"^{path}:3: example is \d+ tokens, over data.max_length=64"):
        encode_pairs(pairs, tok, fmt, "", 64, "error", "train")
    longest = max(len(encode_pairs([p], tok, fmt, "", 10_000, "drop", "x").examples[0]) for p in pairs)
    assert encode_pairs(pairs, tok, fmt, "", longest, "error", "train").dropped == 0  # the limit is inclusive


def test_overlength_in_a_run(tmp_path, tiny_llama_dir):
    from seqtune.config import load_config
    from seqtune.pipeline import run_pipeline

    path = _long_pairs_file(tmp_path)
    base = {
        "evaluate_base": False,
        "data": {"path": str(path), "task": "toy", "val_fraction": 0.0, "test_fraction": 0.2, "max_length": 64},
        "model": {"name": str(tiny_llama_dir), "format": "plain"},
        "train": {"epochs": 1, "max_steps": 1, "batch_size": 2, "precision": "fp32", "logger": "none",
                  "progress": False, "eval_generate": False},
        "generate": {"max_new_tokens": 2},
    }
    bad = tmp_path / "bad"
    with pytest.raises(DataError, match=rf"{path}:3: example is \d+ tokens"):
        run_pipeline(load_config(None, {**base, "out_dir": str(bad),
                                        "data": {**base["data"], "overlength": "error"}}))
    assert not bad.exists()
    good = tmp_path / "good"
    with one_thread():
        run_pipeline(load_config(None, {**base, "out_dir": str(good)}))
    run = json.loads((good / "run.json").read_text())
    assert sum(run["dropped_overlength"].values()) == 1
    kept = sum(len((good / "data" / f"{s}.jsonl").read_text().splitlines()) for s in ("train", "val", "test"))
    assert kept == 6  # the saved splits are the data read; the drop happens at encoding
