"""Precision and memory: train.precision auto/fp16 (a gradient scaler), gradient checkpointing,
and `seqtune check` timing on the device training uses."""

from __future__ import annotations

import json

import pytest
import torch
from tiny import make_model, make_tokenizer

import seqtune.runtime as runtime
from seqtune.config import TrainConfig, load_config
from seqtune.prompts import encode_example, get_format
from seqtune.training import step
from seqtune.training.batching import Example, collate
from seqtune.training.loop import train
from seqtune.training.speed import SpeedPlan, resolve_speed_plan

PAIRS = [(f"C{'C' * i}O {i}", f"name {i}") for i in range(15)]
CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def _examples(tok) -> list[Example]:
    fmt = get_format("instruct")
    return [Example(*map(tuple, encode_example(tok, fmt, a, b, "name it"))) for a, b in PAIRS]


def _cfg(**kw) -> TrainConfig:
    base = {"epochs": 2, "lr": 1e-3, "batch_size": 3, "progress": False, "logger": "none", "precision": "fp32"}
    return TrainConfig(**{**base, **kw})


@pytest.fixture
def fp16_on_cpu():
    """Skip where this torch build cannot run fp16 autocast and a GradScaler on the CPU."""
    try:
        with torch.autocast("cpu", dtype=torch.float16):
            y = torch.nn.Linear(4, 4)(torch.ones(2, 4))
        torch.amp.GradScaler("cpu").scale(y.float().sum()).backward()
    except (RuntimeError, TypeError, ValueError) as err:
        pytest.skip(f"fp16 on CPU is not supported by torch {torch.__version__}: {err}")


def _probes(monkeypatch, cpu_bf16: bool, cuda_bf16: bool | None) -> None:
    """cuda_bf16: None = no CUDA; False = a GPU with emulated bf16 only (T4, V100)."""
    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: cpu_bf16)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda_bf16 is not None)
    # torch counts emulated bf16 as support unless asked not to; auto must not pick it.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: bool(cuda_bf16) or including_emulation)


@pytest.mark.parametrize("device,cpu_bf16,cuda_bf16,want", [
    (CPU, True, None, "bf16"),  # AMX / AVX512-BF16
    (CPU, False, None, "fp32"),
    (CUDA, False, True, "bf16"),  # Ampere and later
    (CUDA, False, False, "fp16"),  # T4, V100: fp16 with a scaler, not silent fp32
    (CUDA, True, False, "fp16"),
])
def test_auto_precision_follows_the_hardware(monkeypatch, device, cpu_bf16, cuda_bf16, want):
    _probes(monkeypatch, cpu_bf16, cuda_bf16)
    got = runtime.resolve_precision("auto", device)
    assert got.name == want and got.reason.startswith("auto: ")
    assert got.scaled == (want == "fp16")
    assert runtime.autocast_dtype("auto", device) == {"bf16": torch.bfloat16, "fp16": torch.float16}.get(want)
    for setting in ("bf16", "fp16", "fp32"):  # an explicit choice is taken as written
        assert runtime.resolve_precision(setting, device).name == setting


def test_speed_plan_takes_the_resolved_precision_and_says_it_once(monkeypatch, capsys):
    _probes(monkeypatch, cpu_bf16=True, cuda_bf16=None)
    tok = make_tokenizer("llama")
    model = make_model("llama", len(tok))
    plan = resolve_speed_plan(_cfg(precision="auto"), model, _examples(tok), 0, CPU, announce=True)
    assert plan.amp == torch.bfloat16 and not plan.scaled
    assert capsys.readouterr().out.count("precision: bf16 (auto: the CPU has AMX/AVX512-BF16)") == 1
    fp16 = resolve_speed_plan(_cfg(precision="fp16"), model, _examples(tok), 0, CPU)
    assert fp16.amp == torch.float16 and fp16.scaled


def _write_pairs(folder, pairs):
    folder.mkdir(parents=True, exist_ok=True)
    for s in ("train", "test"):
        (folder / f"{s}.jsonl").write_text("".join(json.dumps({"input": a, "output": b}) + "\n" for a, b in pairs))
    return folder


def test_run_json_records_the_resolved_precision(tmp_path, tiny_llama_dir, monkeypatch, capsys):
    from seqtune.pipeline import run_pipeline

    _probes(monkeypatch, cpu_bf16=False, cuda_bf16=None)
    cfg = load_config(None, {
        "out_dir": str(tmp_path / "run"), "evaluate_base": False,
        "data": {"path": str(_write_pairs(tmp_path / "data", PAIRS[:6])), "task": "toy", "dedupe": False},
        "model": {"name": str(tiny_llama_dir), "format": "plain"},
        "train": {"epochs": 1, "batch_size": 4, "progress": False, "logger": "none", "eval_generate": False},
        "generate": {"max_new_tokens": 2},
    })
    run_pipeline(cfg)
    info = json.loads((tmp_path / "run" / "run.json").read_text())["runtime"]
    assert info["precision"] == "fp32"
    assert info["precision_reason"] == "auto: the CPU has no fast bf16 (AMX/AVX512-BF16)"
    assert capsys.readouterr().out.count("precision: fp32") == 1


def test_an_fp16_step_runs_on_cpu_with_a_scaler(fp16_on_cpu):
    tok = make_tokenizer("llama")
    model = make_model("llama", len(tok))
    plan = SpeedPlan(packing=False, shared_prefix=False, attention=None, keep_logits=True, amp=torch.float16)
    cfg, opt = _cfg(), step.make_optimizer(model, _cfg())
    with pytest.raises(ValueError, match="GradScaler"):
        step.train_step(model, opt, _examples(tok)[:3], plan, cfg, pad_id=0, device=CPU)
    scaler = step.make_scaler(plan, CPU)
    before = [p.detach().clone() for p in model.parameters()]
    for i in range(3):
        result = step.train_step(model, opt, _examples(tok)[3 * i:3 * i + 3], plan, cfg, pad_id=0, device=CPU,
                                 scaler=scaler)
        assert torch.isfinite(result.loss_sum) and result.tokens > 0
    assert 0 < scaler.get_scale() <= 2.0 ** 16
    assert any(not torch.equal(p, q) for p, q in zip(before, model.parameters()))  # not every step skipped
    assert step.make_scaler(SpeedPlan(False, False, None, True, torch.bfloat16), CPU) is None


class _Stop(Exception):
    pass


def _fp16_run(out, tok, seed, stop_after_epoch=None):
    def on_epoch_end(epoch, _model):
        if epoch == stop_after_epoch:
            raise _Stop
        return {}

    model = make_model("llama", len(tok), seed=seed)
    cfg = _cfg(epochs=3, precision="fp16", save_every_steps=2)
    ex = _examples(tok)
    return model, train(model, ex[:12], ex[12:], cfg, out, 0, on_epoch_end=on_epoch_end)


def test_fp16_resume_is_exact_and_the_scaler_is_checkpointed(tmp_path, fp16_on_cpu, monkeypatch):
    import seqtune.training.loop as loop
    from seqtune.training.checkpoint import latest_checkpoint, load_checkpoint

    # Growing the scale every 2 steps makes it overflow and back off within this short run, so
    # the scale at the checkpoint differs from a fresh scaler's and a resume depends on it.
    monkeypatch.setattr(loop, "make_scaler", lambda plan, device: torch.amp.GradScaler(device.type, growth_interval=2))
    tok = make_tokenizer("llama")
    ref_model, ref = _fp16_run(tmp_path / "a", tok, seed=1)
    with pytest.raises(_Stop):
        _fp16_run(tmp_path / "b", tok, seed=1, stop_after_epoch=1)
    fresh, resumed = _fp16_run(tmp_path / "b", tok, seed=99)  # weights and scale come from the checkpoint
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in ref.history]
    for (n, p), (_, q) in zip(ref_model.named_parameters(), fresh.named_parameters()):
        assert torch.equal(p, q), n

    last = latest_checkpoint(tmp_path / "a" / "checkpoints")
    saved = torch.load(last / "optimizer.pt", weights_only=True)["scaler"]
    assert saved["scale"] != 2.0 ** 16  # the scale moved off its default
    scaler = torch.amp.GradScaler("cpu")
    model = make_model("llama", len(tok))
    opt = step.make_optimizer(model, _cfg())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    load_checkpoint(last, model, opt, sched, scaler)
    assert scaler.state_dict() == saved


def _saved_tensors(model, batch) -> int:
    """Tensors autograd keeps from the forward pass; checkpointed blocks keep almost none."""
    n = 0

    def pack(t):
        nonlocal n
        n += 1
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = step.completion_loss(model, batch, True)
    return loss, n


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(tmp_path):
    from seqtune.modeling import enable_gradient_checkpointing

    tok = make_tokenizer("llama")
    batch = collate(_examples(tok)[:4], False, 0)[0]
    results = []
    for checkpointing in (False, True):
        model = make_model("llama", len(tok), seed=2, layers=3).train()
        if checkpointing:
            enable_gradient_checkpointing(model)
            assert model.is_activation_checkpointing
        loss, kept = _saved_tensors(model, batch)
        loss.backward()
        results.append((loss.detach(), kept, {n: p.grad for n, p in model.named_parameters()}))
    (loss_a, kept_a, grads_a), (loss_b, kept_b, grads_b) = results
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-6, atol=1e-6)
    for n, g in grads_a.items():
        torch.testing.assert_close(g, grads_b[n], rtol=1e-5, atol=1e-6, msg=n)
    assert kept_b < kept_a / 2  # activations really are recomputed, not kept


def test_gradient_checkpointing_in_training_with_lora(tmp_path, tiny_llama_dir):
    from seqtune.config import ModelConfig
    from seqtune.modeling import load_model, unwrap

    tok = make_tokenizer("llama")
    ex = _examples(tok)
    histories = []
    for checkpointing in (False, True):
        model, _ = load_model(ModelConfig(name=str(tiny_llama_dir), method="lora", lora_r=4), seed=0)
        adapters = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        cfg = _cfg(epochs=1, gradient_checkpointing=checkpointing)
        state = train(model, ex[:9], ex[9:], cfg, tmp_path / str(checkpointing), 0)
        assert unwrap(model).is_activation_checkpointing == checkpointing
        assert any(not torch.equal(p, adapters[n]) for n, p in model.named_parameters() if p.requires_grad)
        histories.append(state.history)
    for a, b in zip(*histories):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["eval_loss"] == pytest.approx(b["eval_loss"], rel=1e-5)
    plan = resolve_speed_plan(_cfg(gradient_checkpointing=True), model, ex, 0, CPU)
    assert not plan.shared_prefix  # checkpointed layers would drop the prefix's cache


def test_check_and_training_ask_the_same_device_resolver(tmp_path, tiny_llama_dir, monkeypatch,
                                                         fresh_accelerator_state):
    from seqtune.preflight import preflight

    asked = []

    def resolver() -> torch.device:
        asked.append(1)
        return CPU

    monkeypatch.setattr(runtime, "training_device", resolver)
    cfg = load_config(None, {
        "out_dir": str(tmp_path / "check"),
        "data": {"path": "data/smiles2iupac_demo", "task": "smiles2iupac", "train_size": 8, "max_length": 500},
        "model": {"name": str(tiny_llama_dir)},
        "train": {"epochs": 1, "batch_size": 4, "precision": "fp32"},
    })
    assert "timed on cpu, fp32" in preflight(cfg)
    assert asked
    asked.clear()
    tok = make_tokenizer("llama")
    train(make_model("llama", len(tok)), _examples(tok)[:3], [], _cfg(epochs=1), tmp_path / "train", 0)
    assert asked
