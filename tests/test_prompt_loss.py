"""train.prompt_loss_weight: the prompt tokens' loss, weighted, beside the completion's."""

import json

import pytest
import torch
import torch.nn.functional as F
from tiny import make_model, make_tokenizer

from seqtune.config import TrainConfig, load_config
from seqtune.errors import ConfigError, SeqtuneError
from seqtune.output_vocab import restrict_output
from seqtune.prompts import encode_example, get_format
from seqtune.training.batching import Example, collate
from seqtune.training.speed import SpeedPlan
from seqtune.training.step import completion_loss, make_batch

PAIRS = [("CCO", "ethanol"), ("CC(=O)O", "acetic acid"), ("c1ccccc1", "benzene"), ("CCN", "ethanamine")]
PLAN = SpeedPlan(packing=False, shared_prefix=True, attention=None, keep_logits=True, amp=None)


def _examples() -> list[Example]:
    tok, fmt = make_tokenizer("llama"), get_format("instruct")
    return [Example(*map(tuple, encode_example(tok, fmt, a, b, "name it"))) for a, b in PAIRS]


@pytest.mark.parametrize("packing", [False, True])
def test_prompt_and_completion_targets_split_every_next_token(packing):
    examples = _examples()
    batch, _ = collate(examples, packing, pad_id=0, prompt_labels=True)
    labels, prompt = batch["labels"], batch["prompt_labels"]
    assert not ((labels != -100) & (prompt != -100)).any()  # no token is both
    targets = torch.where(labels != -100, labels, prompt)
    # Together they are every next token of every example, and nothing across examples or padding.
    assert int((targets != -100).sum()) == sum(len(ex) - 1 for ex in examples)
    assert int((labels != -100).sum()) == sum(sum(ex.mask[1:]) for ex in examples)
    assert "prompt_labels" not in collate(examples, packing, pad_id=0)[0]


@pytest.mark.parametrize("restricted", [False, True])
@pytest.mark.parametrize("keep_logits", [True, False])
def test_the_loss_adds_the_weighted_prompt_loss(restricted, keep_logits):
    model = make_model("llama", len(make_tokenizer("llama"))).eval()  # no dropout: every loss sees the same network
    batch = make_batch(_examples(), PLAN, pad_id=0, device=torch.device("cpu"), prompt_labels=True)
    assert "prefix_ids" not in batch  # a shared prefix would drop the prompt's own logits
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels, prompt = batch["labels"], batch["prompt_labels"]
    prompt_tokens = sorted(set(prompt[prompt != -100].tolist()))
    vocab = sorted(set(labels[labels != -100].tolist()) | set(prompt_tokens[:3]))
    if restricted:  # the completions' tokens and a few of the prompt's: the others fall outside the head
        assert set(prompt_tokens) - set(vocab)
        masked = torch.full_like(logits, float("-inf"))
        masked[..., vocab] = logits[..., vocab]
        logits = masked
        restrict_output(model, vocab)
        prompt = torch.where(torch.isin(prompt, torch.tensor(vocab)), prompt, -100)
    want_completion = F.cross_entropy(logits[labels != -100], labels[labels != -100], reduction="sum")
    want_prompt = F.cross_entropy(logits[prompt != -100], prompt[prompt != -100], reduction="sum")
    only = completion_loss(model, batch, keep_logits)
    assert torch.allclose(only, want_completion, rtol=1e-5)
    assert torch.allclose(completion_loss(model, batch, keep_logits, prompt_weight=0.0), only)
    got = completion_loss(model, batch, keep_logits, prompt_weight=0.25)
    assert torch.allclose(got, want_completion + 0.25 * want_prompt, rtol=1e-5)
    assert got > only


def test_weight_is_checked_and_in_the_resume_fingerprint(tmp_path, tiny_llama_dir):
    from seqtune.pipeline import run_pipeline

    with pytest.raises(ConfigError, match=r"train.prompt_loss_weight: must be in \[0, 1\], got 1.5"):
        load_config(None, ["train.prompt_loss_weight=1.5"])
    assert TrainConfig().prompt_loss_weight == 0.0
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"input": f"C{'C' * i}O", "output": f"name {i}"}) + "\n" for i in range(40)))

    def run(weight: float, epochs: int) -> dict:
        return run_pipeline(load_config(None, [
            f"out_dir={tmp_path / 'run'}", f"data.path={data}", f"model.name={tiny_llama_dir}", "evaluate_base=false",
            "data.task=generic", "train.batch_size=4", f"train.epochs={epochs}", "train.eval_generate=false",
            "train.logger=none", "train.progress=false", "generate.max_new_tokens=4",
            f"train.prompt_loss_weight={weight}"]))

    run(0.5, 1)
    epochs = [json.loads(x) for x in (tmp_path / "run" / "epochs.jsonl").read_text().splitlines()]
    assert len(epochs) == 1 and epochs[0]["train_loss"] > 0
    with pytest.raises(SeqtuneError, match="prompt_loss_weight=0.5, this run has 0.0"):
        run(0.0, 2)  # a checkpoint trained with one weight is not resumed with another
