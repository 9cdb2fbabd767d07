"""model.output_vocab: task — a head over the tokens the training outputs use."""

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from tiny import make_model

from seqtune.config import load_config
from seqtune.errors import ConfigError
from seqtune.output_vocab import output_head, restrict_output, stock_head, task_vocabulary
from seqtune.training.step import completion_loss

VOCAB = [0, 2, 5, 7, 11, 13, 40, 99]


def _batch(vocab_size):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab_size, (3, 12), generator=g)
    labels = torch.full_like(ids, -100)
    labels[:, 6:] = torch.tensor(VOCAB)[torch.randint(0, len(VOCAB), (3, 6), generator=g)]
    labels[2, 10:] = -100  # a shorter example
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


@pytest.mark.parametrize("kind", ["llama", "gpt2", "opt"])
@pytest.mark.parametrize("keep_logits", [True, False])
def test_the_loss_is_a_softmax_over_the_task_tokens_only(kind, keep_logits):
    model = make_model(kind, 120).eval()  # no dropout: the two losses see the same network
    batch = _batch(120)
    if kind == "opt":  # OPT's forward has no logits_to_keep
        keep_logits = False
    logits = model(input_ids=batch["input_ids"]).logits
    masked = torch.full_like(logits, float("-inf"))
    masked[..., VOCAB] = logits[..., VOCAB]
    keep = batch["labels"] != -100
    want = F.cross_entropy(masked[keep], batch["labels"][keep], reduction="sum")
    want.backward()
    want_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    stock = completion_loss(model, batch, keep_logits).detach()
    restrict_output(model, VOCAB)
    got = completion_loss(model, batch, keep_logits)
    assert torch.allclose(got, want, rtol=1e-5) and got < stock  # less mass to spread: a lower loss
    got.backward()
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, want_grads[name.replace("head.head", "head")], atol=1e-6), name


def test_decoding_writes_only_task_tokens_and_the_stock_head_comes_back():
    model = make_model("llama", 120).eval()
    restrict_output(model, VOCAB)
    out = model.generate(input_ids=torch.tensor([[3, 4, 5, 6]]), max_new_tokens=12, do_sample=False,
                         eos_token_id=None, pad_token_id=0)
    assert set(out[0, 4:].tolist()) <= set(VOCAB) and out.shape[1] == 16
    logits = model(input_ids=torch.tensor([[3, 4]])).logits[0, -1]
    assert torch.isinf(logits[1]) and torch.isfinite(logits[VOCAB]).all()
    with stock_head(model) as ids:
        assert ids == VOCAB and output_head(model) is None
        assert set(model.state_dict()) == set(make_model("llama", 120).state_dict())
    assert output_head(model) is not None
    with pytest.raises(ValueError, match="token ids"):
        restrict_output(model, [500])


def test_the_vocabulary_is_the_outputs_tokens_and_eos():
    assert task_vocabulary([[5, 3], [3, 9]], eos=2) == [2, 3, 5, 9]


def _restricted_run(tmp_path, model_dir, epochs=1):
    from seqtune.pipeline import run_pipeline

    rows = [{"input": "C" * k, "output": name} for k, name in
            enumerate(["methane", "ethane", "propane", "butane", "pentane", "hexane"] * 3, start=1)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    raw = {"out_dir": str(tmp_path / "run"), "evaluate_base": False,
           "data": {"path": str(tmp_path / "train.jsonl"), "val_fraction": 0.2, "test_size": 3},
           "model": {"name": str(model_dir), "format": "plain", "output_vocab": "task"},
           "train": {"epochs": epochs, "batch_size": 4, "progress": False, "logger": "none", "precision": "fp32"},
           "generate": {"max_new_tokens": 6}}
    cfg = load_config(None, raw)
    run_pipeline(cfg)
    return cfg


def test_a_restricted_run_saves_a_standard_model_and_loads_restricted(tmp_path, tiny_llama_dir):
    from transformers import AutoModelForCausalLM, GenerationConfig

    from seqtune.modeling import load_finetuned

    _restricted_run(tmp_path, tiny_llama_dir)
    folder = tmp_path / "run" / "model"
    vocab = json.loads((folder / "seqtune.json").read_text())["output_vocab"]
    assert 2 < len(vocab) < 120
    model, tok, _ = load_finetuned(folder)
    assert output_head(model).ids.tolist() == vocab
    ids = torch.tensor([tok("C C C\n")["input_ids"]])
    new = model.generate(input_ids=ids, max_new_tokens=6, do_sample=False)[0, ids.shape[1]:]
    assert set(new.tolist()) <= set(vocab)
    # Plain transformers loads the standard weights and suppresses the other tokens itself.
    plain = AutoModelForCausalLM.from_pretrained(folder)
    assert type(plain.get_output_embeddings()) is torch.nn.Linear
    assert set(GenerationConfig.from_pretrained(folder).suppress_tokens) == set(range(len(tok))) - set(vocab)
    with pytest.raises(ConfigError, match="output_vocab"):
        load_config(None, {"model": {"output_vocab": "some"}})


def test_a_restricted_run_resumes_exactly_and_refuses_a_changed_head(tmp_path, tiny_llama_dir):
    import shutil

    from seqtune.errors import SeqtuneError
    from seqtune.pipeline import run_pipeline

    cfg = _restricted_run(tmp_path, tiny_llama_dir, epochs=2)
    run = tmp_path / "run"
    ref = (run / "epochs.jsonl").read_text().splitlines()
    shutil.rmtree(run / "model")
    (run / "metrics.json").unlink()
    ckpts = sorted((run / "checkpoints").iterdir(), key=lambda p: int(p.name.split("-")[1]))
    shutil.rmtree(ckpts[-1])  # back to the end of epoch 1
    with pytest.raises(SeqtuneError, match="output_vocab='task'"):
        run_pipeline(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, output_vocab="all")))
    run_pipeline(cfg)
    resumed = (run / "epochs.jsonl").read_text().splitlines()
    assert [json.loads(r)["train_loss"] for r in resumed] == [json.loads(r)["train_loss"] for r in ref]


def test_a_run_starting_from_a_restricted_model_decodes_with_every_token(tmp_path, tiny_llama_dir):
    """Its generation_config.json forbids the other tokens for plain transformers; a new run
    (another task) must not inherit that, or its own test split decodes with its tokens banned."""
    from seqtune.config import ModelConfig
    from seqtune.inference.generate import generate
    from seqtune.modeling import load_model

    _restricted_run(tmp_path, tiny_llama_dir)
    folder = tmp_path / "run" / "model"
    vocab = set(json.loads((folder / "seqtune.json").read_text())["output_vocab"])
    model, tok = load_model(ModelConfig(name=str(folder)))
    model.eval()

    def by_hand(prompt, steps=4):  # greedy argmax over the whole head, no generation config
        ids = list(prompt)
        for _ in range(steps):
            nxt = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
            if nxt == tok.eos_token_id:
                break
            ids.append(nxt)
        return ids[len(prompt):]

    prompts = [tok(f"{'C ' * k}\n")["input_ids"] for k in range(1, 12)]
    outside = [p for p in prompts if set(by_hand(p)) - vocab]
    assert outside, "the tiny model writes only task tokens: the test cannot tell"
    got = generate(model, tok, outside, max_new_tokens=4, precision="fp32")
    assert [g[0] for g in got] == [tok.decode(by_hand(p), skip_special_tokens=True).strip() for p in outside]
