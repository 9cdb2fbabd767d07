"""Batched decoding: prompts sorted by length, left padding, KV cache, greedy or beam search."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from seqtune.runtime import autocast_dtype


@torch.inference_mode()
def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[list[int]],
    num_beams: int = 1,
    num_return: int = 1,
    max_new_tokens: int = 128,
    batch_size: int = 32,
    precision: str = "auto",
    progress: bool = False,
    min_new_tokens: int = 0,
    text_of: Callable[[str], str] = str.strip,
    temperature: float = 0.0,
    keep: list[Callable[[str, bool], bool] | None] | None = None,
) -> list[list[str]]:
    """For each prompt (token ids), `num_return` decoded completions, best first, each
    passed through `text_of` (a prompt format's `output_text` undoes its output spelling).
    temperature > 0 samples them instead (from the whole distribution at that temperature,
    torch's global generator), in no order. `keep`, per prompt: a test of a completion's text so
    far (and whether it would end there); a beam that fails it is dropped while the search runs (its
    place goes to the next best; when every beam of a prompt fails, they all end), and one that
    would fail by ending may not end."""
    from transformers import GenerationConfig, LogitsProcessorList

    if not prompts:
        return []
    device = next(model.parameters()).device
    amp = autocast_dtype(precision, device)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    sampling = {"do_sample": True, "temperature": temperature, "top_k": 0} if temperature > 0 else {"do_sample": False}
    gen_cfg = GenerationConfig(
        **sampling, num_beams=num_beams, num_return_sequences=num_return, max_new_tokens=max_new_tokens,
        min_new_tokens=min_new_tokens or None, eos_token_id=tokenizer.eos_token_id, pad_token_id=pad, early_stopping=True if num_beams > 1 else False,
    )
    # Longest first: similar lengths share a batch (little padding) and an out-of-memory
    # error, if any, comes on the first batch rather than after an hour.
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    results: list[list[str]] = [[] for _ in prompts]
    was_training = model.training
    model.eval()
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="decode", unit="batch", dynamic_ncols=True)
    for idx in batches:
        width = max(len(prompts[i]) for i in idx)
        ids = torch.tensor([[pad] * (width - len(prompts[i])) + prompts[i] for i in idx], device=device)
        att = torch.tensor([[0] * (width - len(prompts[i])) + [1] * len(prompts[i]) for i in idx], device=device)
        processors = LogitsProcessorList()
        if keep is not None and any(keep[i] is not None for i in idx):
            processors.append(_Prune(tokenizer, [keep[i] for i in idx], width, text_of))
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            out = model.generate(input_ids=ids, attention_mask=att, generation_config=gen_cfg,
                                 logits_processor=processors)
        texts = tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
        for j, i in enumerate(idx):
            results[i] = [text_of(t) for t in texts[j * num_return:(j + 1) * num_return]]
    if was_training:
        model.train()
    return results


class _Prune:
    """A logits processor that drops the beams whose text so far fails their prompt's test and bars
    the end of text where ending would fail it: transformers' own processors constrain tokens, not
    what a whole beam says."""

    def __init__(self, tokenizer: Any, tests: list[Callable[[str, bool], bool] | None], width: int,
                 text_of: Callable[[str], str]) -> None:
        self.tokenizer, self.tests, self.width, self.text_of = tokenizer, tests, width, text_of

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        per_prompt = input_ids.shape[0] // len(self.tests)
        if input_ids.shape[1] <= self.width:
            return scores
        texts = [self.text_of(t) for t in self.tokenizer.batch_decode(input_ids[:, self.width:],
                                                                      skip_special_tokens=True)]
        for p, test in enumerate(self.tests):
            if test is None:
                continue
            span = range(p * per_prompt, (p + 1) * per_prompt)
            dead = [r for r in span if not test(texts[r], False)]
            scores[dead] = float("-inf")
            if len(dead) == per_prompt:  # nothing left to find: its beams end now rather than at the length limit
                scores[dead, self.tokenizer.eos_token_id] = 0.0
                continue
            unfinished = [r for r in span if r not in dead and not test(texts[r], True)]
            scores[unfinished, self.tokenizer.eos_token_id] = float("-inf")
        return scores
