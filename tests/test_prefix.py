"""A shared prompt prefix computed once gives the loss and gradients of the full batch."""

import pytest
import torch
from tiny import make_model, make_tokenizer

from seqtune.prompts import encode_example, get_format
from seqtune.training.batching import Example, collate
from seqtune.training.prefix import common_prefix, prefix_batch, prefix_supported
from seqtune.training.step import completion_loss

PAIRS = [("CCO", "ethanol"), ("CCCCN", "butan-1-amine"), ("c1ccccc1O", "phenol"), ("CC(=O)O", "acetic acid")]
INSTRUCTION = "Translate the SMILES string of a molecule into its IUPAC name."


def _examples(tok):
    fmt = get_format("instruct")
    return [Example(*map(tuple, encode_example(tok, fmt, a, b, INSTRUCTION))) for a, b in PAIRS]


def test_common_prefix_stops_inside_the_prompt():
    a = Example((1, 2, 3, 4, 5), (False, False, False, True, True))
    b = Example((1, 2, 3, 9, 5, 6), (False, False, False, False, True, True))
    # a's first completion token (index 3) must stay predictable from a prompt token of its own
    assert common_prefix([a, b]) == 2
    assert common_prefix([a, Example((7, 2, 3, 4), (False, False, True, True))]) == 0
    assert common_prefix([b, b]) == 3


@pytest.mark.parametrize("family", ["gpt2", "opt", "llama"])
def test_prefix_loss_and_gradients_equal_padded(family):
    tok = make_tokenizer(family)
    ex = _examples(tok)
    n = common_prefix(ex)
    assert n >= 8  # the instruction template's tokens
    model = make_model(family, len(tok), seed=3).eval()  # no dropout: both passes see the same function
    pad = tok.pad_token_id or 0
    if not prefix_supported(model, ex, pad):
        pytest.skip(f"{family}: prefix sharing unsupported; train falls back to padded batches")

    def loss_and_grads(batch):
        model.zero_grad(set_to_none=True)
        loss = completion_loss(model, batch, keep_logits=True)
        loss.backward()
        return loss.detach(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    padded, g_padded = loss_and_grads(collate(ex, False, pad)[0])
    shared, g_shared = loss_and_grads(prefix_batch(ex, n, pad, "cpu"))
    assert torch.allclose(padded, shared, rtol=1e-5)
    assert g_padded.keys() == g_shared.keys()
    for k in g_padded:
        assert torch.allclose(g_padded[k], g_shared[k], rtol=1e-4, atol=1e-6), k


def test_llama_supports_prefix_sharing():
    tok = make_tokenizer("llama")
    assert prefix_supported(make_model("llama", len(tok)), _examples(tok), tok.pad_token_id or 0)


def test_training_with_shared_prefix_matches_padded(tmp_path, monkeypatch):
    import seqtune.training.step as tr
    from seqtune.config import TrainConfig
    from seqtune.training.loop import train
    from seqtune.training.prefix import worth_sharing

    calls = []
    real = tr.prefix_logits
    monkeypatch.setattr(tr, "prefix_logits", lambda *a, **k: calls.append(1) or real(*a, **k))

    tok = make_tokenizer("llama")
    fmt = get_format("instruct")
    pairs = [(f"C{'C' * i}O", f"name {i}") for i in range(24)]
    ex = [Example(*map(tuple, encode_example(tok, fmt, a, b, INSTRUCTION))) for a, b in pairs]
    assert worth_sharing(common_prefix(ex[:16]), 16)  # the path under test is taken
    runs = []
    for shared in (False, True):
        model = make_model("llama", len(tok), seed=5)
        cfg = TrainConfig(epochs=2, lr=1e-3, batch_size=16, packing=False, shared_prefix=shared, precision="fp32",
                          progress=False, logger="none")
        runs.append((train(model, ex[:20], ex[20:], cfg, tmp_path / str(shared), tok.pad_token_id or 0), model))
    (a, ma), (b, mb) = runs
    assert len(calls) >= 2  # two epochs of one 16-example step each went through the prefix path
    for ha, hb in zip(a.history, b.history):
        assert ha["train_loss"] == pytest.approx(hb["train_loss"], rel=1e-4)
        assert ha["eval_loss"] == pytest.approx(hb["eval_loss"], rel=1e-4)
    for p, q in zip(ma.parameters(), mb.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-5)
