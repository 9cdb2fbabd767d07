"""From (input, output) pairs to token examples, and from examples to steps, micro-batches and tensors.

Packed (padding-free) batches put every sequence of a micro-batch in one row with
`position_ids` restarting at 0 for each; transformers then masks attention per
sequence, so packing changes no result, only removes the padding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from seqtune.data import Pair
from seqtune.errors import DataError
from seqtune.prompts import PromptFormat, encode_example


@dataclass(frozen=True)
class Example:
    """Token ids and, aligned with them, True where the token is part of the completion (EOS included)."""

    ids: tuple[int, ...]
    mask: tuple[bool, ...]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Encoded:
    """A split's examples; `kept[i]` is the pair `examples[i]` was made from."""

    examples: list[Example]
    kept: list[Pair]
    dropped: int


def encode_pairs(pairs: list[Pair], tokenizer: Any, fmt: PromptFormat, instruction: str, max_length: int,
                 overlength: str, split: str) -> Encoded:
    """Tokenise pairs; over-long ones are dropped (and counted) or reported, never cut."""
    examples, kept, dropped = [], [], 0
    for p in pairs:
        ids, mask = encode_example(tokenizer, fmt, p.input, p.output, p.instruction or instruction)
        if len(ids) > max_length:
            if overlength == "error":
                raise DataError(f"{p.where or split}: example is {len(ids)} tokens, over data.max_length={max_length}")
            dropped += 1
            continue
        examples.append(Example(tuple(ids), tuple(mask)))
        kept.append(p)
    return Encoded(examples, kept, dropped)


def step_order(n: int, batch_size: int, seed: int, epoch: int, lengths: list[int] | None = None,
               order: str = "random") -> list[list[int]]:
    """The examples of each optimiser step of one epoch: a function of (seed, epoch, lengths)
    alone, so a resumed run replays the same order without saving it.

    order: `random`; `grouped`, random batches of similar length (transformers'
    LengthGroupedSampler: windows of 64 batches sorted by length, then the batches shuffled),
    which cuts the padding of a padded batch; `curriculum`, the first epoch from the shortest
    example to the longest (random ties), later epochs grouped."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g).tolist()
    if order != "random" and lengths is None:
        raise ValueError(f"order={order!r} needs the example lengths")
    if order == "curriculum" and epoch == 0:
        perm.sort(key=lambda i: lengths[i])  # stable: random among equal lengths
        return [perm[i:i + batch_size] for i in range(0, n, batch_size)]
    if order in ("grouped", "curriculum"):
        window = 64 * batch_size
        steps: list[list[int]] = []
        for w in range(0, n, window):
            chunk = sorted(perm[w:w + window], key=lambda i: lengths[i])
            steps.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
        shuffle = torch.randperm(len(steps), generator=g).tolist()
        return [steps[i] for i in shuffle]
    return [perm[i:i + batch_size] for i in range(0, n, batch_size)]


def micro_batches(idx: list[int], examples: list[Example], token_budget: int, packing: bool) -> list[list[int]]:
    """Split one step into forward passes of at most `token_budget` tokens (padding counted
    when not packing). A single example longer than the budget gets a pass of its own."""
    if not token_budget:
        return [idx] if idx else []
    out: list[list[int]] = []
    cur: list[int] = []
    cur_max = 0
    for i in sorted(idx, key=lambda i: len(examples[i])):
        n = len(examples[i])
        cost = (sum(len(examples[j]) for j in cur) + n) if packing else max(cur_max, n) * (len(cur) + 1)
        if cur and cost > token_budget:
            out.append(cur)
            cur, cur_max = [], 0
        cur.append(i)
        cur_max = max(cur_max, n)
    if cur:
        out.append(cur)
    return out


def target_count(batch: list[Example]) -> int:
    """Completion tokens scored in a batch (the first token is never a target)."""
    return sum(sum(ex.mask[1:]) for ex in batch)


def labels_of(ex: Example, prompt: bool = False) -> list[int]:
    # Position t predicts token t+1; the completion's tokens are targets, or with `prompt` the prompt's.
    return [tok if m != prompt else -100 for tok, m in zip(ex.ids[1:], ex.mask[1:])] + [-100]


def pack_rows(batch: list[Example], row_tokens: int) -> list[list[Example]]:
    """Greedy first-fit of sequences into rows of at most `row_tokens` tokens (or one
    over-long sequence alone). Rows, not one endless row: attention inside a row is
    computed densely under a block mask, so its cost grows with the row length squared."""
    rows: list[list[Example]] = []
    sizes: list[int] = []
    for ex in sorted(batch, key=len, reverse=True):
        for r, size in enumerate(sizes):
            if size + len(ex) <= row_tokens:
                rows[r].append(ex)
                sizes[r] += len(ex)
                break
        else:
            rows.append([ex])
            sizes.append(len(ex))
    return rows


def collate(batch: list[Example], packing: bool, pad_id: int, device: torch.device | str = "cpu",
            row_tokens: int = 256, prompt_labels: bool = False) -> tuple[dict[str, torch.Tensor], int]:
    """Tensors for one forward pass, and the number of completion tokens it scores; with
    `prompt_labels`, also the prompt tokens' targets (`prompt_labels`, for train.prompt_loss_weight)."""
    n_targets = target_count(batch)
    if packing:
        rows = pack_rows(batch, row_tokens)
        width = max(sum(len(ex) for ex in row) for row in rows)
        fills = [width - sum(len(ex) for ex in row) for row in rows]
        # The tail is padding: its own "sequence" (positions from 0), never a target.
        tensors = {
            "input_ids": torch.tensor([[t for ex in row for t in ex.ids] + [pad_id] * fill
                                       for row, fill in zip(rows, fills, strict=True)], dtype=torch.long),
            "position_ids": torch.tensor([[p for ex in row for p in range(len(ex))] + list(range(fill))
                                          for row, fill in zip(rows, fills, strict=True)], dtype=torch.long),
        }

        def targets(prompt: bool) -> list[list[int]]:
            return [[t for ex in row for t in labels_of(ex, prompt)] + [-100] * fill
                    for row, fill in zip(rows, fills, strict=True)]
    else:
        width = max(len(ex) for ex in batch)
        tensors = {
            "input_ids": torch.tensor([list(ex.ids) + [pad_id] * (width - len(ex)) for ex in batch], dtype=torch.long),
            "attention_mask": torch.tensor([[1] * len(ex) + [0] * (width - len(ex)) for ex in batch], dtype=torch.long),
        }

        def targets(prompt: bool) -> list[list[int]]:
            return [labels_of(ex, prompt) + [-100] * (width - len(ex)) for ex in batch]
    tensors["labels"] = torch.tensor(targets(False), dtype=torch.long)
    if prompt_labels:  # built only when asked: this runs once per forward pass
        tensors["prompt_labels"] = torch.tensor(targets(True), dtype=torch.long)
    return {k: v.to(device, non_blocking=True) for k, v in tensors.items()}, n_targets
