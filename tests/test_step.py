"""One training step (seqtune.training.step.train_step) for `train`, `seqtune check` and the bench."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from tiny import make_model, make_tokenizer

import seqtune.training.step as step_mod
from seqtune.config import TrainConfig, load_config
from seqtune.errors import ConfigError
from seqtune.prompts import encode_example, get_format
from seqtune.training.batching import Example
from seqtune.training.speed import SpeedPlan

BENCH = Path(__file__).resolve().parents[1] / "bench" / "train_throughput.py"
PAIRS = [(f"C{'C' * i}O", f"name {i}") for i in range(12)]


def _bench():
    spec = importlib.util.spec_from_file_location("train_throughput_under_test", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _examples(tok) -> list[Example]:
    fmt = get_format("instruct")
    return [Example(*map(tuple, encode_example(tok, fmt, a, b, "name it"))) for a, b in PAIRS]


@pytest.fixture
def step_calls(monkeypatch):
    """Every call of train_step, as (plan, loss_fn): whoever runs a step must come through here."""
    calls: list[tuple[SpeedPlan, object]] = []
    real = step_mod.train_step

    def counting(model, optimizer, examples, plan, cfg, **kw):
        calls.append((plan, kw.get("loss_fn")))
        return real(model, optimizer, examples, plan, cfg, **kw)

    monkeypatch.setattr(step_mod, "train_step", counting)
    return calls


def test_check_bench_and_train_run_the_same_step(tmp_path, tiny_llama_dir, step_calls):
    from seqtune.preflight import preflight
    from seqtune.training.loop import train

    cfg = load_config(None, {
        "out_dir": str(tmp_path / "check"),
        "data": {"path": "data/smiles2iupac_demo", "task": "smiles2iupac", "train_size": 16, "max_length": 500},
        "model": {"name": str(tiny_llama_dir)},
        "train": {"epochs": 1, "batch_size": 8},
    })
    assert "estimated training time" in preflight(cfg)
    assert len(step_calls) == 2  # a warm-up step and a timed one

    step_calls.clear()
    bench = _bench()
    tok = make_tokenizer("llama")
    model = make_model("llama", len(tok))
    ex = _examples(tok)
    for paper in (False, True):
        row = bench.run_recipe("r", model, ex, 4, 1, 1, torch.device("cpu"), paper, 1e-3)
        assert row["examples_per_s"] > 0
    assert len(step_calls) == 4
    assert [loss for _, loss in step_calls] == [None, None, bench.paper_loss, bench.paper_loss]
    assert step_calls[-1][0] == bench.PAPER_PLAN

    step_calls.clear()
    cfg = TrainConfig(epochs=2, lr=1e-3, batch_size=4, progress=False, logger="none", precision="fp32")
    state = train(make_model("llama", len(tok)), ex[:8], ex[8:], cfg, tmp_path / "train", tok.pad_token_id or 0)
    assert state.global_step == len(step_calls) == 4
    assert len({plan for plan, _ in step_calls}) == 1  # resolved once, before the first step
    assert [h["epoch"] for h in state.history] == [1, 2]


def test_peak_probe_takes_the_best_timing_and_mfu_never_exceeds_100():
    bench = _bench()
    peak = bench.bf16_peak(torch.device("cpu"), sizes=(32, 64), repeats=2, seconds=0.001)
    assert peak > 0
    assert bench.mfu_pct(1000, 1.0, peak=6000 * 2) == pytest.approx(50.0)
    assert bench.mfu_pct(1000, 1.0, peak=6000) == pytest.approx(100.0)
    assert bench.mfu_pct(1000, 1.0, peak=3000) is None  # 200 %: the peak or the FLOP count is wrong
    assert bench._mfu_cell(None).strip() == "n/a"


def test_log_every_must_be_positive():
    assert load_config(None, {"train": {"log_every": 3}}).train.log_every == 3
    with pytest.raises(ConfigError, match="train.log_every"):
        load_config(None, {"train": {"log_every": 0}})
