import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
from tiny import make_model, make_tokenizer

import seqtune.preflight as preflight_mod
import seqtune.training.step as step_mod
from seqtune.config import load_config
from seqtune.output_vocab import output_head
from seqtune.preflight import preflight
from seqtune.prompts import encode_example, get_format
from seqtune.training.batching import Example, step_order


def test_check_prints_plan_and_estimate(tmp_path, tiny_llama_dir):
    cfg = load_config(None, {
        "out_dir": str(tmp_path / "run"),
        "data": {"path": "data/smiles2iupac_demo", "task": "smiles2iupac", "train_size": 40, "max_length": 500},
        "model": {"name": str(tiny_llama_dir)},
        "train": {"epochs": 2, "batch_size": 8},
    })
    report = preflight(cfg)
    assert "train/val/test = 40/200/200" in report
    assert "plan: 2 epochs x 5 steps = 10 steps of 8 examples" in report
    assert "estimated training time on this machine" in report
    assert "over-long examples (drop):" in report
    assert not (tmp_path / "run").exists()  # a check writes nothing


class _FakeClock:
    """A clock that only a step moves: by the tokens it computes (padded to its longest example),
    plus 1,000 s for the first step, so that an estimate counting the warm-up step shows."""

    def __init__(self) -> None:
        self.now = 0.0
        self.batches: list[list[tuple[int, ...]]] = []

    def perf_counter(self) -> float:
        return self.now

    def step(self, model, optimizer, examples, plan, cfg, **kw):
        self.now += len(examples) * max(len(ex) for ex in examples) + (1000.0 if not self.batches else 0.0)
        self.batches.append([tuple(ex.ids) for ex in examples])


def test_check_times_the_runs_own_first_steps_and_scales_by_their_tokens(monkeypatch):
    tok = make_tokenizer("llama")
    fmt = get_format("plain")
    # Lengths from 6 to ~60 tokens: a random batch pads to far more than a grouped one.
    examples = [Example(*map(tuple, encode_example(tok, fmt, "C" * (1 + (7 * i) % 50), f"name {i}", "")))
                for i in range(40)]
    cfg = load_config(None, {"data": {"path": "data/smiles2iupac_demo"}, "model": {"name": "unused"},
                             "train": {"epochs": 3, "batch_size": 4, "order": "grouped", "seed": 5}})
    clock = _FakeClock()
    monkeypatch.setattr(preflight_mod, "time", types.SimpleNamespace(perf_counter=clock.perf_counter))
    monkeypatch.setattr(step_mod, "train_step", clock.step)
    model = make_model("llama", len(tok))

    est, timed, where = preflight_mod._time_steps(model, examples, cfg, tok.pad_token_id, total_steps=25)

    lengths = [len(ex) for ex in examples]
    order = step_order(len(examples), 4, 5, 0, lengths, "grouped")
    assert clock.batches == [[tuple(examples[i].ids) for i in idx] for idx in order[:5]]
    assert timed == 4 and where.startswith("cpu")
    padded = [len(idx) * max(lengths[i] for i in idx) for idx in order]
    # One second per padded token on the clock: the estimate is the tokens of 25 average steps.
    assert est == pytest.approx(sum(padded) * 25 / len(order))
    random_batches = step_order(len(examples), 4, 5, 0)
    assert sum(padded) < sum(len(idx) * max(lengths[i] for i in idx) for idx in random_batches)


def test_check_times_the_head_a_task_vocabulary_run_trains(tmp_path, tiny_llama_dir, monkeypatch):
    heads = []
    real = step_mod.train_step

    def recording(model, optimizer, examples, plan, cfg, **kw):
        heads.append(output_head(model))
        return real(model, optimizer, examples, plan, cfg, **kw)

    monkeypatch.setattr(step_mod, "train_step", recording)
    for vocab in ("all", "task"):
        cfg = load_config(None, {
            "out_dir": str(tmp_path / "run"),
            "data": {"path": "data/smiles2iupac_demo", "task": "smiles2iupac", "train_size": 16, "max_length": 500},
            "model": {"name": str(tiny_llama_dir), "output_vocab": vocab},
            "train": {"batch_size": 8},
        })
        heads.clear()
        assert "estimated training time" in preflight(cfg)
        assert [h is not None for h in heads] == [vocab == "task"] * 2  # warm-up and timed step


def test_bench_compares_the_estimate_with_a_real_run(tmp_path, tiny_llama_dir):
    config = tmp_path / "tiny.yaml"
    config.write_text(f"data:\n  path: data/smiles2iupac_demo\n  task: smiles2iupac\n  train_size: 24\n"
                      f"model:\n  name: {tiny_llama_dir}\ntrain:\n  batch_size: 4\n  logger: none\n", encoding="utf-8")
    bench = Path(__file__).resolve().parents[1] / "bench" / "check_estimate.py"
    out = subprocess.run([sys.executable, str(bench), str(config), "--steps", "3"], capture_output=True, text=True,
                         check=True).stdout
    ratio = re.search(r", 3 steps: estimated \d+ s \([0-9.]+ s/step\), ran \d+ s \([0-9.]+ s/step\); "
                      r"estimate / actual = ([0-9.]+)$", out.strip())
    assert ratio is not None, out
    assert float(ratio.group(1)) > 0
