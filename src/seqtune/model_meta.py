"""A trained model folder's seqtune.json: its name, and the settings of the run that made it.

Besides the prompt format, task and instruction (which seqtune.modeling reads and checks), the
file keeps the run's whole config under "config". Prediction, the reranker, export, the server
and the lineage check each want one value of it; `saved_setting` is the one place that walks it,
so that a model saved before a setting existed, or a hand-edited file, reads as "not set" alike.
No torch here: the command-line paths that only read a model's settings stay light.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

FORMAT_FILE = "seqtune.json"


def read_saved(folder: Path) -> dict[str, Any]:
    """A model folder's seqtune.json as read, or {} when it is missing, unreadable or not an object:
    for readers that fall back to a default (seqtune.modeling checks the file where it must load)."""
    try:
        meta = json.loads((folder / FORMAT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def saved_setting(meta: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """The run setting `key` ("data.input_order") kept in a seqtune.json's "config", else `default`."""
    node: Any = meta.get("config")
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node
