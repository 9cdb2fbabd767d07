"""The shapes pairs arrive in besides input/output columns: a JSON array of records, TRL's
`prompt`/`completion` columns, and chat `messages` conversations.

This module only finds the fields of a row; seqtune.data checks their text. Every problem
is a DataError naming the file and line, as there.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from seqtune.errors import DataError

DEFAULT_COLUMNS = ("input", "output")
# A raw value and the name it is reported under ("output", "messages[2].content").
Field = tuple[Any, str]


@dataclass(frozen=True)
class Columns:
    """The columns a config names; auto-detection only applies while input/output are the defaults."""

    input: str = "input"
    output: str = "output"
    instruction: str | None = None


def _skip(text: str, pos: int) -> int:
    # JSON's own whitespace: str.isspace() would also skip U+2028 and others, which are data.
    while pos < len(text) and text[pos] in " \t\n\r":
        pos += 1
    return pos


def json_type(value: Any) -> str:
    """A value's type as JSON names it."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


@contextlib.contextmanager
def json_errors(where: str, line: int) -> Iterator[None]:
    """JSON that does not parse, as a DataError at `where`:`line` (the line its record starts on)."""
    try:
        yield
    except json.JSONDecodeError as err:
        raise DataError(f"{where}:{line}: not valid JSON ({err.msg})") from None
    except RecursionError:
        raise DataError(f"{where}:{line}: JSON nested too deeply") from None


def json_record(value: Any, where: str, line: int, per: str) -> dict[str, Any]:
    """`value` if it is a JSON object (a record), else a DataError: one record `per` line or array item."""
    if not isinstance(value, dict):
        raise DataError(f"{where}:{line}: expected a JSON object per {per}, got {json_type(value)}")
    return value


def json_array_rows(text: str, where: str) -> list[tuple[int, dict[str, Any]]]:
    """The objects of a JSON array (the whole of `text`), each with the line it starts on.

    The array is walked item by item rather than loaded at once, because json.loads keeps no
    positions and a message must name the line of the bad record (where it starts, as in CSV)."""
    decoder = json.JSONDecoder()
    rows: list[tuple[int, dict[str, Any]]] = []
    line, counted = 1, 0

    def line_at(pos: int) -> int:
        nonlocal line, counted  # positions only grow: count each newline once
        line += text.count("\n", counted, pos)
        counted = pos
        return line

    pos = _skip(text, _skip(text, 0) + 1)  # past the "["
    more = not text.startswith("]", pos)  # an item follows "[" (unless it closes at once) and every ","
    while more:
        with json_errors(where, line_at(pos)):
            obj, end = decoder.raw_decode(text, pos)
        rows.append((line_at(pos), json_record(obj, where, line_at(pos), "array item")))
        pos = _skip(text, end)
        more = text.startswith(",", pos)
        if more:
            pos = _skip(text, pos + 1)
        elif pos == len(text):  # named at its last item: the end of the file may be lines further on
            raise DataError(f"{where}:{line_at(end)}: not valid JSON (the array is never closed: no ']')")
        elif not text.startswith("]", pos):
            raise DataError(f"{where}:{line_at(pos)}: not valid JSON (expected ',' or ']' after an item)")
    if _skip(text, pos + 1) != len(text):
        raise DataError(f"{where}:{line_at(_skip(text, pos + 1))}: not valid JSON (text after the array's closing ']')")
    return rows


def refuse_single_value(text: str, where: str) -> None:
    """A .json file that is one JSON value but not records (an object spread over lines, a
    number): say so, rather than report the line-by-line parse error it also causes."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return
    raise DataError(f"{where}:1: the file is one JSON {json_type(value)}, not records; expected an array of "
                    "objects ([{...}, ...]) or one object per line (JSON Lines)")


def find_shape(columns: list[str], cols: Columns) -> str:
    """How a file's rows hold their pairs: "columns" (as configured), "prompt" (TRL's
    prompt/completion) or "messages". Configured columns, and input/output, come first."""
    have = set(columns)
    if {cols.input, cols.output} <= have or (cols.input, cols.output) != DEFAULT_COLUMNS:
        return "columns"
    if {"prompt", "completion"} <= have:
        return "prompt"
    if "messages" in have:
        return "messages"
    return "columns"


def _column(row: dict[str, Any], column: str, where: str, auto: bool = False) -> Field:
    if column not in row:
        have = ", ".join(map(str, row.keys()))
        # Only when nothing matched is the hint useful: a file with input/output never gets it.
        hint = "; or prompt/completion, or messages" if auto else ""
        raise DataError(f"{where}: missing column {column!r} (columns: {have}{hint})")
    return row[column], column


def row_fields(row: dict[str, Any], shape: str, cols: Columns, where: str) -> tuple[Field, Field, Field | None]:
    """(input, output, instruction or None) of one row, as raw values with their names."""
    instruction: Field | None = None
    if shape == "messages":
        source, output, instruction = conversation_fields(row.get("messages"), "messages", where)
    elif shape == "prompt":
        prompt, completion = row.get("prompt"), row.get("completion")
        if isinstance(prompt, list) and isinstance(completion, list):
            # TRL's conversational prompt-completion: the two halves of one conversation.
            source, output, instruction = conversation_fields(prompt + completion, "prompt+completion", where)
        else:
            source, output = _column(row, "prompt", where), _column(row, "completion", where)
    else:
        auto = (cols.input, cols.output) == DEFAULT_COLUMNS
        source, output = _column(row, cols.input, where, auto), _column(row, cols.output, where, auto)
    if cols.instruction:
        instruction = _column(row, cols.instruction, where)
    return source, output, instruction


def conversation_fields(turns: Any, column: str, where: str) -> tuple[Field, Field, Field | None]:
    """The last user turn (input), the assistant turn after it (output) and the system turn
    before it (the row's instruction, or None)."""
    if isinstance(turns, str):  # a CSV/TSV cell holds the list as JSON text
        try:
            turns = json.loads(turns)
        except (ValueError, RecursionError):
            pass
    if not isinstance(turns, list):
        raise DataError(f"{where}: column {column!r} must be a list of {{role, content}} turns, "
                        f"got {json_type(turns)}")
    for n, turn in enumerate(turns):
        if not (isinstance(turn, dict) and isinstance(turn.get("role"), str) and "content" in turn):
            raise DataError(f"{where}: {column}[{n}] must be an object with 'role' and 'content', got {turn!r:.60}")
    users = [n for n, turn in enumerate(turns) if turn["role"] == "user"]
    if not users:
        raise DataError(f"{where}: {column} has no user turn followed by an assistant turn")
    n = users[-1]
    if n + 1 == len(turns) or turns[n + 1]["role"] != "assistant":
        raise DataError(f"{where}: {column}: the last user turn ({column}[{n}]) is not followed by an assistant turn")
    systems = [m for m in range(n) if turns[m]["role"] == "system"]
    instruction = (turns[systems[-1]]["content"], f"{column}[{systems[-1]}].content") if systems else None
    return (turns[n]["content"], f"{column}[{n}].content"), (turns[n + 1]["content"], f"{column}[{n + 1}].content"), \
        instruction
