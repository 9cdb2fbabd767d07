"""The output head restricted to a task's tokens (`model.output_vocab: task`).

A SMILES, formula or InChI is written with a few dozen of a tokenizer's 49k tokens (about 70 for
canonical SMILES spelled atom by atom). Training then spends a share of every step on the
head's other rows: a matrix product over the whole vocabulary and a softmax over it per
completion token. `VocabHead` computes the logits of the task's tokens only. Training
(completion_loss, under `compact_logits`) takes them as they are, a softmax over the task's
tokens; everywhere else (generation, serving) they are spread back over the whole vocabulary
with -inf elsewhere, so that decoding can only write the task's tokens and sees the
distribution training fitted. The model folder stores the stock head and the token ids
(seqtune.json `output_vocab`); `load_finetuned` puts the restriction back.

Written here because neither transformers nor peft has a head over a subset of the
vocabulary: their closest, a logits processor, still computes the full head.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F


class VocabHead(torch.nn.Module):
    """The stock head's rows for `ids` (shared with it: tied embeddings stay tied)."""

    def __init__(self, head: torch.nn.Module, ids: list[int]) -> None:
        super().__init__()
        vocab = head.weight.shape[0]
        self.head = head
        self.register_buffer("ids", torch.tensor(ids, dtype=torch.long, device=head.weight.device), persistent=False)
        # Token id -> its column in the compact logits; -100 (the loss's ignore index) elsewhere.
        index = torch.full((vocab,), -100, dtype=torch.long, device=head.weight.device)
        index[self.ids] = torch.arange(len(ids), device=head.weight.device)
        self.register_buffer("index", index, persistent=False)
        self.compact = False

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        bias = getattr(self.head, "bias", None)
        logits = F.linear(hidden, self.head.weight[self.ids], None if bias is None else bias[self.ids])
        if self.compact:
            return logits
        full = logits.new_full((*logits.shape[:-1], self.index.shape[0]), float("-inf"))
        full[..., self.ids] = logits
        return full


def task_vocabulary(completions: Iterable[list[int]], eos: int) -> list[int]:
    """The token ids the outputs are written with (and end-of-sequence), sorted."""
    seen = {eos}
    for ids in completions:
        seen.update(ids)
    return sorted(seen)


def restrict_to_outputs(model: Any, examples: Iterable[Any], eos: int) -> None:
    """Install a VocabHead over the tokens the examples' completions (mask 1) are written with:
    what a run with `model.output_vocab: task` trains, and what `seqtune check` times."""
    restrict_output(model, task_vocabulary(([i for i, m in zip(ex.ids, ex.mask) if m] for ex in examples), eos))


def _owner(model: Any) -> Any:
    """The transformers model whose output embeddings are the head (inside DDP, torch.compile, PEFT)."""
    from seqtune.modeling import unwrap  # imported here: modeling imports this module

    return unwrap(model)


def restrict_output(model: Any, ids: list[int]) -> None:
    """Install a VocabHead over `ids` (replacing an earlier one)."""
    owner = _owner(model)
    head = owner.get_output_embeddings()
    if isinstance(head, VocabHead):
        head = head.head
    if not ids or max(ids) >= head.weight.shape[0] or min(ids) < 0:
        raise ValueError(f"token ids must lie in [0, {head.weight.shape[0]})")
    owner.set_output_embeddings(VocabHead(head, ids))


def output_head(model: Any) -> VocabHead | None:
    head = _owner(model).get_output_embeddings()
    return head if isinstance(head, VocabHead) else None


@contextlib.contextmanager
def compact_logits(model: Any) -> Iterator[torch.Tensor | None]:
    """Within: the head returns the task's logits only; yields the map from token id to
    column (None for a stock head, which is left alone)."""
    head = output_head(model)
    if head is None:
        yield None
        return
    head.compact = True
    try:
        yield head.index
    finally:
        head.compact = False


@contextlib.contextmanager
def stock_head(model: Any) -> Iterator[list[int] | None]:
    """Within: the stock head is back in place (to save standard weights); yields the
    restricted ids (None if there was no restriction)."""
    head = output_head(model)
    if head is None:
        yield None
        return
    owner = _owner(model)
    owner.set_output_embeddings(head.head)
    try:
        yield head.ids.tolist()
    finally:
        owner.set_output_embeddings(head)
