"""Property-based tests: data readers, prompt encoding and sequence metrics on arbitrary unicode.

Readers: whatever a CSV/TSV/JSONL writer can produce (quotes, delimiters, CRLF, BOM,
unicode line separators, NUL, 100k-character fields, blank or missing fields, extra,
missing or non-text columns, invalid UTF-8) reads back as exactly the pairs written
(text stripped, blank CSV rows skipped) or fails with a DataError naming the file;
never any other exception. Pairs read back also survive the JSONL writer used for a
run's saved splits.
"""

from __future__ import annotations

import csv
import functools
import io
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st
from tiny import make_tokenizer

from seqtune.data import read_pairs
from seqtune.errors import DataError
from seqtune.io import atomic_write_jsonl
from seqtune.metrics import sequence_scores
from seqtune.prompts import encode_example, encode_prompt, get_format

SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# Characters that break naive readers and writers, mixed into otherwise arbitrary text.
TRICKY = [",", "\t", '"', "'", "\r\n", "\n", "\r", "\ufeff", " ", "  ", "\u00a0", "\u2028", "\u2029", "\x85",
          "\x0b", "\x0c", "\x1c", "\x1e", "\x00", "\\", "{", "}", "[", "]", ":", "é", "字", "🧪", "\u200b", "#",
          "<s>", "</s>", "<pad>", "<unk>", "<|endoftext|>", "{{ input }}", "{% if %}"]
SURROGATE = "\ud800"
text = st.lists(st.one_of(st.text(max_size=8), st.sampled_from(TRICKY)), max_size=6).map("".join)
# A field of ~100k characters (under the csv module's 131072 field limit) in about one row in 20.
HUGE = "C(=O)" * 20_000


visible = st.characters(exclude_categories=["Cs", "Zs", "Zl", "Zp", "Cc"])


def rare(draw, n: int) -> bool:
    """True about once in n draws. Shrinking goes towards 0, so the rare case is the high value."""
    return draw(st.integers(0, n - 1)) == n - 1


@st.composite
def fields(draw, surrogates: bool = False) -> str:
    # Mostly text with something visible in it (a blank field makes the whole file an error).
    value = draw(text) if rare(draw, 8) else draw(text) + draw(visible) + draw(text)
    if rare(draw, 20):
        value += HUGE
    if surrogates and rare(draw, 30):
        value += SURROGATE
    return value


def expected_text(value) -> str | None:
    """What the reader makes of a field: the stripped text, or None for a row it must reject."""
    if not isinstance(value, str) or SURROGATE in value:
        return None
    return value.strip() or None


def check_read(path: Path, expected: list[tuple[str, str]] | None) -> None:
    """`expected` None: the file must be rejected with a DataError naming it."""
    try:
        got = [(p.input, p.output) for p in read_pairs(path)]
    except DataError as err:
        event("rejected")
        assert str(path) in str(err), err
        assert expected is None, f"rejected valid file: {err}"
        return
    event("read back")
    assert expected is not None, f"accepted a file it should reject: {got[:3]!r}"
    assert got == expected
    # The run's saved splits are written with this writer; they must read back the same.
    again = path.with_name("again.jsonl")
    atomic_write_jsonl(again, ({"input": a, "output": b} for a, b in got))
    assert [(p.input, p.output) for p in read_pairs(again)] == got


@st.composite
def csv_files(draw):
    """(file text, expected pairs or None) for a CSV/TSV written by the csv module."""
    columns = ["input", "output"]
    if draw(st.booleans()):
        columns.append("note")
    columns = draw(st.permutations(columns))
    if rare(draw, 20):
        columns = [c for c in columns if c != draw(st.sampled_from(["input", "output"]))]
    rows = []
    for _ in range(draw(st.integers(1, 5))):
        row = [draw(fields(surrogates=True)) for _ in columns]
        cut = draw(st.integers(0, 39))
        if cut == 39:  # a short row
            row = row[:draw(st.integers(0, len(row)))]
        elif cut == 38:  # a row with a field the header does not have
            row.append(draw(text))
        rows.append(row)
    return columns, rows


def csv_expected(columns: list[str], rows: list[list[str]]) -> list[tuple[str, str]] | None:
    out = []
    for row in rows:
        if len(row) > len(columns):
            return None
        if all(not v.strip() for v in row):
            continue  # a blank line; skipped, not an error
        record = dict(zip(columns, row))
        pair = tuple(expected_text(record.get(c)) for c in ("input", "output"))
        if any(v is None for v in pair) or any(SURROGATE in v for v in row):
            return None
        out.append(pair)
    return out or None


@SETTINGS
@given(table=csv_files(), delimiter=st.sampled_from([",", "\t"]), bom=st.booleans(),
       newline=st.sampled_from(["\r\n", "\n"]), quote_all=st.booleans())
def test_csv_tsv_read_back_or_data_error(tmp_path_factory, table, delimiter, bom, newline, quote_all):
    columns, rows = table
    if newline == "\n" and not quote_all:
        # Python's writer quotes only the characters of its line terminator, so it would write
        # a CR bare, and a bare CR ends a line in CSV: such a file does not hold the text given.
        rows = [[v.replace("\r", "") for v in row] for row in rows]
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator=newline,
                        quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL)
    writer.writerow(columns)
    writer.writerows(rows)
    path = tmp_path_factory.mktemp("csv") / ("pairs.tsv" if delimiter == "\t" else "pairs.csv")
    # surrogatepass: a lone surrogate becomes the invalid UTF-8 a broken exporter would write.
    path.write_bytes((("\ufeff" if bom else "") + buf.getvalue()).encode("utf-8", "surrogatepass"))
    check_read(path, csv_expected(columns, rows))


values = st.one_of(fields(), fields(surrogates=True), st.none(), st.integers(), st.floats(),
                   st.lists(st.integers(), max_size=2), st.booleans())


@st.composite
def jsonl_rows(draw):
    rows = []
    for _ in range(draw(st.integers(1, 5))):
        row = {"input": draw(fields(surrogates=True)), "output": draw(fields(surrogates=True))}
        shape = draw(st.integers(0, 29))
        if shape == 29:
            del row[draw(st.sampled_from(["input", "output"]))]
        elif shape == 28:
            row[draw(st.sampled_from(["input", "output"]))] = draw(values)
        elif shape >= 25:
            row[draw(st.text(max_size=5))] = draw(values)  # an extra (or replaced) column
        rows.append(row)
    return rows


def jsonl_expected(rows: list[dict]) -> list[tuple[str, str]] | None:
    out = []
    for r in rows:
        pair = tuple(expected_text(r.get(c)) for c in ("input", "output"))
        if any(v is None for v in pair):
            return None
        out.append(pair)
    return out


@SETTINGS
@given(rows=jsonl_rows(), ascii_only=st.booleans(), bom=st.booleans(), newline=st.sampled_from(["\n", "\r\n"]),
       blank_lines=st.booleans())
def test_jsonl_read_back_or_data_error(tmp_path_factory, rows, ascii_only, bom, newline, blank_lines):
    lines = [json.dumps(r, ensure_ascii=ascii_only) for r in rows]
    body = (newline + (" \t" + newline if blank_lines else "")).join(lines) + newline
    path = tmp_path_factory.mktemp("jsonl") / "pairs.jsonl"
    path.write_bytes((("\ufeff" if bom else "") + body).encode("utf-8", "surrogatepass"))
    expected = jsonl_expected(rows)
    if not ascii_only and SURROGATE in body:
        expected = None  # written unescaped, a lone surrogate is invalid UTF-8, in any column
    check_read(path, expected)


@SETTINGS
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".csv", ".tsv", ".jsonl"]))
def test_any_bytes_give_pairs_or_data_error(tmp_path_factory, data, suffix):
    path = tmp_path_factory.mktemp("bytes") / f"junk{suffix}"
    path.write_bytes(data)
    try:
        pairs = read_pairs(path)
    except DataError as err:
        assert str(path) in str(err)
    else:
        assert all(p.input and p.output and p.input == p.input.strip() for p in pairs)


@pytest.mark.parametrize("line", ["[" * 100_000, '{"input": ' * 50_000])
def test_deeply_nested_json_is_a_data_error(tmp_path, line):
    path = tmp_path / "deep.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(DataError, match=rf"{path}:1"):
        read_pairs(path)


# --- prompt encoding ------------------------------------------------------------------------


@functools.cache
def tokenizer(family: str):
    return make_tokenizer(family)


@SETTINGS
@given(family=st.sampled_from(["gpt2", "opt", "llama"]), fmt=st.sampled_from(["plain", "instruct"]),
       input=text, output=text, instruction=text)
@example(family="llama", fmt="plain", input="<s>x</s>", output="a</s>b", instruction="")
@example(family="gpt2", fmt="instruct", input="x", output="<|endoftext|>", instruction="<|endoftext|>")
def test_encode_example_mask_eos_and_prompt(family, fmt, input, output, instruction):
    tok, form = tokenizer(family), get_format(fmt)
    ids, mask = encode_example(tok, form, input, output, instruction)
    assert len(ids) == len(mask)
    n_prompt = mask.index(True)
    assert mask == [False] * n_prompt + [True] * (len(mask) - n_prompt)  # one block, at the end
    assert ids[-1] == tok.eos_token_id
    # The model learns to stop only after the whole output, whatever text the output holds.
    assert ids[n_prompt:].count(tok.eos_token_id) == 1
    # Training sees exactly the prompt that inference feeds the model.
    assert ids[:n_prompt] == encode_prompt(tok, form, input, instruction)


# --- metrics --------------------------------------------------------------------------------

any_text = st.one_of(text, st.text(alphabet=st.characters(exclude_categories=[]), max_size=20))


@SETTINGS
@given(pairs=st.lists(st.tuples(any_text, any_text), max_size=6))
def test_sequence_scores_properties(pairs):
    preds, refs = [p for p, _ in pairs], [r for _, r in pairs]
    summary, rows = sequence_scores(preds, refs)
    _, swapped = sequence_scores(refs, preds)
    assert summary["n"] == len(pairs) and len(rows) == len(pairs)
    for (p, r), row, back in zip(pairs, rows, swapped):
        assert 0.0 <= row["edit_distance"] <= 1.0
        assert row["exact"] == (row["edit_distance"] == 0.0) == (p.strip() == r.strip())
        assert (row["exact"], row["edit_distance"]) == (back["exact"], back["edit_distance"])
    assert 0.0 <= summary["exact_match"] <= 100.0 and 0.0 <= summary["edit_distance"] <= 1.0
    same, _ = sequence_scores(preds, preds)
    assert same["edit_distance"] == 0.0 and same["exact_match"] == (100.0 if pairs else 0.0)


@SETTINGS
@given(a=any_text, b=any_text)
def test_edit_distance_is_normalised_levenshtein(a, b):
    assume(a.strip() != b.strip())
    _, rows = sequence_scores([a], [b])
    longest = max(len(a.strip()), len(b.strip()))
    # At least one edit, at most one per character of the longer string.
    assert 1.0 / longest <= rows[0]["edit_distance"] <= 1.0
