"""Training on tiny models built in the test: packing, memorisation, exact resume, LoRA."""

import json

import pytest
import torch
from tiny import make_model, make_tokenizer

from seqtune.config import TrainConfig, load_config
from seqtune.pipeline import run_pipeline
from seqtune.prompts import encode_example, get_format
from seqtune.training.batching import Example, collate
from seqtune.training.loop import train
from seqtune.training.step import completion_loss

WORDS = ["methyl", "ethyl", "propyl", "butyl", "pentyl", "hexyl", "oxy", "amino", "hydroxy", "chloro",
         "bromo", "fluoro", "benzene", "ethanol", "acid", "CCO", "CCN", "c1ccccc1", "CC(C)O", "CC(=O)O"]
# Twenty distinct inputs, each with its own output: a lookup table a tiny model can learn.
PAIRS = [(f"{w} {i}", f"{WORDS[(i * 7 + 3) % 20]}-{WORDS[(i * 3 + 1) % 20]}") for i, w in enumerate(WORDS)]


def _examples(tok, fmt="instruct"):
    out = []
    for a, b in PAIRS:
        ids, mask = encode_example(tok, get_format(fmt), a, b, "name it")
        out.append(Example(tuple(ids), tuple(mask)))
    return out


@pytest.mark.parametrize("family", ["gpt2", "opt", "llama"])
def test_packed_loss_equals_padded(family):
    """Padding-free packing changes nothing but speed: no attention across sequences."""
    tok = make_tokenizer(family)
    model = make_model(family, len(tok)).eval()
    from seqtune.training.speed import packing_supported
    ex = _examples(tok)[:6]
    packed, n1 = collate(ex, True, tok.pad_token_id or 0)
    rows, _ = collate(ex, True, tok.pad_token_id or 0, row_tokens=60)  # several rows, padded tails
    assert rows["input_ids"].shape[0] > 1
    padded, n2 = collate(ex, False, tok.pad_token_id or 0)
    with torch.no_grad():
        a = completion_loss(model, packed, True)
        b = completion_loss(model, padded, True)
        c = completion_loss(model, padded, False)  # full logits path
        one_by_one = sum(completion_loss(model, collate([e], False, 0)[0], False) for e in ex)
    assert n1 == n2 == sum(sum(e.mask[1:]) for e in ex)
    if family == "opt":
        # transformers 5 builds OPT's mask without position_ids, so packing would leak
        # attention across sequences; the trainer detects that and pads instead.
        assert not packing_supported(model, ex, tok.pad_token_id)
        a = b
    else:
        assert packing_supported(model, ex, tok.pad_token_id or 0)
        long_second = Example(ex[1].ids * 12, ex[1].mask * 12)  # longer than a 256-token row
        assert packing_supported(model, [ex[0], long_second], tok.pad_token_id or 0)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b, c, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a, one_by_one, rtol=1e-5, atol=1e-5)
    if family != "opt":
        with torch.no_grad():
            torch.testing.assert_close(completion_loss(model, rows, True), b, rtol=1e-5, atol=1e-5)


def _write_pairs(folder, pairs, splits=("train", "test")):
    folder.mkdir(parents=True, exist_ok=True)
    for s in splits:
        (folder / f"{s}.jsonl").write_text("".join(json.dumps({"input": a, "output": b}) + "\n" for a, b in pairs))
    return folder


def test_memorises_20_pairs(tmp_path, tiny_llama_dir):
    data = _write_pairs(tmp_path / "data", PAIRS)
    cfg = load_config(None, {
        "out_dir": str(tmp_path / "run"), "evaluate_base": True,
        "data": {"path": str(data), "task": "toy", "dedupe": False, "test_size": None},
        "model": {"name": str(tiny_llama_dir), "format": "plain"},
        "train": {"epochs": 60, "lr": 3e-3, "batch_size": 4, "lr_schedule": "constant", "progress": False, "logger": "none",
                  "eval_generate": False, "precision": "fp32"},
        "generate": {"max_new_tokens": 24},
    })
    result = run_pipeline(cfg)
    assert result["tuned"]["exact_match"] == 100.0
    assert result["base"]["exact_match"] == 0.0
    run = tmp_path / "run"
    preds = [json.loads(x) for x in (run / "predictions" / "test.jsonl").read_text().splitlines()]
    assert len(preds) == 20 and all(p["prediction"] == p["reference"] for p in preds)
    assert (run / "model" / "seqtune.json").is_file() and (run / "metrics.json").is_file()
    # the exported folder reloads and predicts the same
    from seqtune.inference.predict import predict

    (tmp_path / "in.txt").write_text("\n".join(a for a, _ in PAIRS[:5]))
    res = predict(str(run / "model"), str(tmp_path / "in.txt"), str(tmp_path / "out.jsonl"), max_new_tokens=24)
    got = [json.loads(x)["prediction"] for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert got == [b for _, b in PAIRS[:5]] and res["n"] == 5


class _Stop(Exception):
    pass


def _train_run(out, tok, model, stop_after_epoch=None, **kw):
    cfg = TrainConfig(epochs=3, lr=1e-3, batch_size=3, progress=False, logger="none", precision="fp32",
                      warmup_ratio=0.1, **kw)
    ex = _examples(tok)

    def on_epoch_end(epoch, _model):
        if stop_after_epoch is not None and epoch == stop_after_epoch:
            raise _Stop
        return {}

    return train(model, ex[:15], ex[15:], cfg, out, tok.pad_token_id or 0, on_epoch_end=on_epoch_end)


@pytest.mark.parametrize("save_every,packing", [(0, True), (4, False)])
def test_resume_reaches_same_loss(tmp_path, save_every, packing):
    tok = make_tokenizer("llama")
    ref_model = make_model("llama", len(tok), seed=1)
    ref = _train_run(tmp_path / "a", tok, ref_model, save_every_steps=save_every, packing=packing)

    model = make_model("llama", len(tok), seed=1)
    with pytest.raises(_Stop):
        _train_run(tmp_path / "b", tok, model, stop_after_epoch=1, save_every_steps=save_every, packing=packing)
    fresh = make_model("llama", len(tok), seed=99)  # resumed weights must come from the checkpoint
    resumed = _train_run(tmp_path / "b", tok, fresh, save_every_steps=save_every, packing=packing)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in ref.history]
    assert [h["eval_loss"] for h in resumed.history] == [h["eval_loss"] for h in ref.history]
    for (n, p), (_, q) in zip(ref_model.named_parameters(), fresh.named_parameters()):
        assert torch.equal(p, q), n


def test_lora_trains_adapters_only(tmp_path, tiny_llama_dir):
    data = _write_pairs(tmp_path / "data", PAIRS)
    cfg = load_config(None, {
        "out_dir": str(tmp_path / "run"), "evaluate_base": False,
        "data": {"path": str(data), "task": "toy", "dedupe": False},
        "model": {"name": str(tiny_llama_dir), "format": "instruct", "method": "lora", "lora_r": 4},
        "train": {"epochs": 1, "lr": 1e-3, "batch_size": 8, "progress": False, "logger": "none"},
        "generate": {"max_new_tokens": 4},
    })
    result = run_pipeline(cfg)
    assert 0 < result["train"]["n_trainable"] < result["train"]["n_params"] / 2
    from seqtune.modeling import load_finetuned

    model, _, info = load_finetuned(tmp_path / "run" / "model")  # merged: a plain transformers model
    assert not any("lora" in n for n, _ in model.named_parameters())
    assert info.format.name == "instruct" and info.task == "toy"


def _oom_above(limit):
    """completion_loss that fails like a GPU out of memory above `limit` tokens per pass."""
    def fake(model, batch, keep):
        # attention_mask spans a shared prefix's tokens too; packed batches have none
        if torch.is_grad_enabled() and batch.get("attention_mask", batch["input_ids"]).numel() > limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return completion_loss(model, batch, keep)
    return fake


def test_oom_message_names_batch_to_try(tmp_path, monkeypatch):
    import seqtune.training.step as tr
    from seqtune.errors import SeqtuneError

    tok = make_tokenizer("llama")
    monkeypatch.setattr(tr, "completion_loss", _oom_above(60))
    with pytest.raises(SeqtuneError, match=r"out of memory with \d+ tokens per forward pass; try train.micro_batch_tokens=\d+"):
        _train_run(tmp_path / "a", tok, make_model("llama", len(tok)))


def test_oom_halving_gives_same_result(tmp_path, monkeypatch):
    import seqtune.training.step as tr

    tok = make_tokenizer("llama")
    ref_model = make_model("llama", len(tok), seed=3)
    ref = _train_run(tmp_path / "a", tok, ref_model)
    monkeypatch.setattr(tr, "completion_loss", _oom_above(60))
    model = make_model("llama", len(tok), seed=3)
    got = _train_run(tmp_path / "b", tok, model, oom_halving=True)
    for a, b in zip(ref.history, got.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
    for p, q in zip(ref_model.parameters(), model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def test_resume_with_other_settings_is_refused(tmp_path):
    from seqtune.errors import SeqtuneError

    tok = make_tokenizer("llama")
    with pytest.raises(_Stop):
        _train_run(tmp_path / "a", tok, make_model("llama", len(tok)), stop_after_epoch=1)
    cfg = TrainConfig(epochs=3, lr=5e-4, batch_size=3, progress=False, logger="none", precision="fp32")
    with pytest.raises(SeqtuneError, match=r"checkpoint was made with lr=0.001, this run has 0.0005"):
        train(make_model("llama", len(tok)), _examples(tok)[:15], [], cfg, tmp_path / "a", 0)


def test_auto_settings_follow_the_device():
    from seqtune.training.speed import attention_kernel, training_attention, use_packing

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert use_packing("auto", cpu) is False and use_packing("auto", gpu) is True
    assert use_packing(True, cpu) is True and use_packing(False, gpu) is False
    assert training_attention("auto", cpu) == "eager" and training_attention("auto", gpu) is None
    assert training_attention("sdpa", cpu) == "sdpa"
    tok = make_tokenizer("llama")
    model = make_model("llama", len(tok))
    own = model.config._attn_implementation
    with attention_kernel(model, "eager"):
        assert model.config._attn_implementation == "eager"
    assert model.config._attn_implementation == own  # decoding gets the model's own kernel back


class _Planted:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_planted_pickle_in_a_checkpoint_is_refused(tmp_path):
    """Resume reads optimizer.pt from a run folder: it must load data, never run code."""
    from seqtune.errors import SeqtuneError
    from seqtune.training.checkpoint import load_checkpoint, save_checkpoint

    tok = make_tokenizer("llama")
    model = make_model("llama", len(tok))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    from seqtune.training.loop import _rng_state

    path = save_checkpoint(tmp_path / "ck", 1, model, opt, sched, {"epoch": 0}, _rng_state())
    assert load_checkpoint(path, model, opt, sched)["state"] == {"epoch": 0}  # a real one loads
    marker = tmp_path / "pwned"
    torch.save({"optimizer": _Planted(marker)}, path / "optimizer.pt")
    with pytest.raises(SeqtuneError, match="optimizer.pt"):
        load_checkpoint(path, model, opt, sched)
    assert not marker.exists()
