"""Train/val/test splits of the verified molecules: random, or Bemis–Murcko scaffold."""

from __future__ import annotations

import random

SPLITS = ("train", "val", "test")


def split_sizes(total: int, val_frac: float, test_frac: float) -> tuple[int, int, int]:
    # Like scikit-learn's test_size: a value >= 1 is a count of pairs, below 1 a fraction.
    def size(x: float) -> int:
        return int(x) if x >= 1 else round(total * x)

    n_test = min(size(test_frac), total)
    n_val = min(size(val_frac), total - n_test)
    return total - n_val - n_test, n_val, n_test


def split_random(rows: list[dict], val_frac: float, test_frac: float, seed: int) -> dict[str, list[dict]]:
    order = sorted(rows, key=lambda r: r["smiles"])
    random.Random(seed).shuffle(order)
    n_train, n_val, _ = split_sizes(len(order), val_frac, test_frac)
    return {
        "train": order[:n_train],
        "val": order[n_train : n_train + n_val],
        "test": order[n_train + n_val :],
    }


def split_scaffold(rows: list[dict], val_frac: float, test_frac: float, seed: int) -> dict[str, list[dict]]:
    """Bemis–Murcko split: every scaffold lives in exactly one split.

    Scaffold groups too big for val/test go to train first (as in chemprop's
    balanced scaffold split); the rest are shuffled and filled greedily.
    """
    groups: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: r["smiles"]):
        groups.setdefault(row.get("scaffold", ""), []).append(row)
    n_train, n_val, n_test = split_sizes(len(rows), val_frac, test_frac)
    rng = random.Random(seed)
    keys = sorted(groups)
    big = [k for k in keys if len(groups[k]) > max(n_val, n_test) / 2]
    small = [k for k in keys if k not in set(big)]
    rng.shuffle(small)
    out: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for key in big + small:
        group = groups[key]
        if len(out["train"]) + len(group) <= n_train:
            out["train"].extend(group)
        elif len(out["val"]) + len(group) <= n_val:
            out["val"].extend(group)
        elif len(out["test"]) + len(group) <= n_test:
            out["test"].extend(group)
        else:
            out["train"].extend(group)
    for name in SPLITS:
        rng.shuffle(out[name])
    return out
