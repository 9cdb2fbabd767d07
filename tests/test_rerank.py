"""Noisy-channel reranking (generate.rerank_model, --rerank-model): candidates scored by
log P(y | x) + log P(x | y), the second under a model of the reverse task."""

import json

import pytest
import torch

from seqtune.cli import main
from seqtune.config import load_config
from seqtune.errors import ConfigError
from seqtune.inference import rerank
from seqtune.inference.decode import DecodeSettings
from seqtune.modeling import ModelInfo
from seqtune.prompts import encode_example, get_format
from seqtune.rundir import RunDir


def _tiny(folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)


@pytest.mark.parametrize("family", ["gpt2", "llama"])  # learnt absolute positions; rotary ones
def test_completion_logprobs_are_each_outputs_log_likelihood_whatever_the_batch(family, request):
    model, tok = _tiny(request.getfixturevalue(f"tiny_{family}_dir"))
    fmt = get_format("instruct")
    pairs = [("CCO", "ethanol", "Name it."), ("c1ccccc1", "benzene", "Name it."), ("C", "methane and more", "Say.")]
    batched = rerank.completion_logprobs(model, tok, fmt, pairs, batch_size=3, precision="fp32")
    for (x, y, instruction), got in zip(pairs, batched):
        ids, mask = encode_example(tok, fmt, x, y, instruction)
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0], dim=-1)
        expected = sum(float(logp[t - 1, ids[t]]) for t in range(1, len(ids)) if mask[t])
        assert got == pytest.approx(expected, abs=1e-4)
        assert got < 0


def test_completion_logprobs_under_a_head_over_the_outputs_tokens_are_finite(tiny_llama_dir):
    # The prompt's tokens lie outside such a head: their -inf must not reach the sums (it made
    # them NaN, and the reranker then kept the beams' order).
    from seqtune.output_vocab import restrict_output, task_vocabulary

    model, tok = _tiny(tiny_llama_dir)
    fmt = get_format("plain")
    pairs = [("ethanol", "CCO", ""), ("2-methylpropan-1-ol and a much longer name", "CC(C)CO", "")]
    encoded = [encode_example(tok, fmt, x, y, i) for x, y, i in pairs]
    outputs = [[t for t, m in zip(ids, mask) if m] for ids, mask in encoded]
    vocab = task_vocabulary(outputs, tok.eos_token_id)
    restrict_output(model, vocab)
    assert any(t not in vocab for t in encoded[1][0])
    got = rerank.completion_logprobs(model, tok, fmt, pairs, batch_size=2, precision="fp32")
    alone = [rerank.completion_logprobs(model, tok, fmt, [pair], precision="fp32")[0] for pair in pairs]
    assert all(torch.isfinite(torch.tensor(got))) and all(v < 0 for v in got)
    assert got == pytest.approx(alone, abs=1e-4)


def test_rerank_orders_the_distinct_candidates_by_both_directions(tiny_gpt2_dir):
    from tiny import make_model

    model, tok = _tiny(tiny_gpt2_dir)
    reverse = make_model("gpt2", len(tok), seed=7)  # another model: the reverse direction's scores differ
    fmt = get_format("plain")
    candidates = [["ethanol", "methanol", "ethanol", "propanol"], ["benzene"]]
    triple = (reverse, tok, ModelInfo(fmt, "", "", "tiny", {}))
    ranked = rerank.channel_rerank(model, tok, fmt, ["CCO", "c1ccccc1"], ["", ""], candidates, triple, 2, "fp32")
    distinct = ["ethanol", "methanol", "propanol"]
    forward = rerank.completion_logprobs(model, tok, fmt, [("CCO", y, "") for y in distinct], precision="fp32")
    backward = rerank.completion_logprobs(reverse, tok, fmt, [(y, "CCO", "") for y in distinct], precision="fp32")
    total = {y: f + b for y, f, b in zip(distinct, forward, backward)}
    assert ranked == [sorted(distinct, key=lambda y: -total[y]), ["benzene"]]


def test_rerank_needs_beams_and_a_model_folder(tmp_path):
    with pytest.raises(ConfigError, match="rerank_model: needs beams"):
        DecodeSettings(num_beams=1, rerank_model="somewhere")
    with pytest.raises(ConfigError, match="generate.rerank_model: needs beams"):
        load_config(None, {"generate": {"rerank_model": str(tmp_path)}})
    from seqtune.pipeline import run_pipeline

    missing = load_config(None, {"out_dir": str(tmp_path / "run"), "generate": {"rerank_model": str(tmp_path / "nope"),
                                                                                "num_beams": 3}})
    with pytest.raises(ConfigError, match="generate.rerank_model: .*nope: model folder does not exist"):
        run_pipeline(missing)  # before any training
    assert not (tmp_path / "run").exists()


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_and_predict_rerank_alike(tmp_path, tiny_gpt2_dir, capsys):
    common = ["evaluate_base=false", "data.path=data/smiles2iupac_demo", "data.task=smiles2iupac",
              "data.train_size=16", "data.test_size=5", "model.format=plain", "train.epochs=1",
              "train.batch_size=8", "train.progress=false", "train.logger=none", "train.eval_generate=false",
              "generate.max_new_tokens=6"]
    first = RunDir(tmp_path / "first")
    assert main(["run", f"out_dir={first.root}", f"model.name={tiny_gpt2_dir}", *common]) == 0
    # the first run's model stands in for a reverse model (any seqtune model folder serves)
    run = RunDir(tmp_path / "run")
    assert main(["run", f"out_dir={run.root}", f"model.name={tiny_gpt2_dir}", "generate.num_beams=3",
                 f"generate.rerank_model={first.model}", *common]) == 0
    tuned = json.loads(run.metrics.read_text())["tuned"]
    from_run = _jsonl(run.prediction("test"))
    assert {"top_beam", "prediction"} <= set(from_run[0]) and "verified" not in from_run[0]
    assert "top_beam_exact_match" in tuned and "verified_pct" not in tuned
    capsys.readouterr()
    out = tmp_path / "predicted.jsonl"
    assert main(["predict", "--model", str(run.model), "--input", str(run.split("test")), "--output", str(out),
                 "--beams", "3", "--rerank-model", str(first.model)]) == 0
    assert [{k: v for k, v in row.items() if k != "output"} for row in _jsonl(out)] == from_run


def test_a_wrong_rerank_folder_fails_before_any_decoding(tmp_path, tiny_gpt2_dir, monkeypatch):
    import seqtune.inference.decode as decode
    from seqtune.errors import ModelError

    model, tok = _tiny(tiny_gpt2_dir)
    decoded = []
    monkeypatch.setattr(decode, "generate", lambda *a, **kw: decoded.append(a) or [])
    with pytest.raises(ModelError, match="nope: model folder does not exist"):
        decode.decode_rows(model, tok, get_format("plain"), "t", ["CCO"], [""], None,
                           DecodeSettings(num_beams=2, rerank_model=str(tmp_path / "nope")))
    assert decoded == []
