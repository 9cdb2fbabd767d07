"""Reading, validating, deduplicating and splitting (input, output) pairs.

Every problem is reported as a DataError naming the file and the line (or row)
at fault, before anything is written.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqtune.config import DataConfig
from seqtune.data_shapes import (
    Columns,
    find_shape,
    json_array_rows,
    json_errors,
    json_record,
    refuse_single_value,
    row_fields,
)
from seqtune.errors import ConfigError, DataError
from seqtune.io import atomic_write_jsonl

SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val", "test": "test"}


@dataclass(frozen=True)
class Pair:
    input: str
    output: str
    where: str = ""  # "file:line", for messages
    # The pair's own instruction (data.instruction_column, a system turn, a task mix); "" = the
    # run's data.instruction.
    instruction: str = ""


@dataclass
class Splits:
    train: list[Pair]
    val: list[Pair]
    test: list[Pair]
    stats: dict[str, Any] = field(default_factory=dict)

    def digest(self) -> str:
        """Hash of the exact split contents, recorded with every run for reproducibility."""
        h = hashlib.sha256()
        for name in ("train", "val", "test"):
            for p in getattr(self, name):
                # Without per-row instructions the hash is what it always was: older runs still resume.
                own = f"\t{p.instruction}" if p.instruction else ""
                h.update(f"{name}\t{p.input}\t{p.output}{own}\n".encode())
        return h.hexdigest()[:16]


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 text (byte 0x{raw[err.start]:02x})") from None


def text_field(value: Any, column: str, where: str) -> str:
    if value is None:
        raise DataError(f"{where}: missing value in column {column!r}")
    if not isinstance(value, str):
        raise DataError(f"{where}: column {column!r} must be text, got {type(value).__name__} {value!r:.40}")
    text = value.strip()
    if not text:
        raise DataError(f"{where}: empty value in column {column!r}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        # JSON can spell a lone surrogate (\ud800); no tokenizer or UTF-8 file can hold one.
        raise DataError(f"{where}: column {column!r} holds a lone surrogate "
                        f"({text[err.start]!r} at character {err.start + 1}), not valid Unicode text") from None
    return text


class _Lines:
    """The lines of a text as the csv module reads them, counted: the line a record starts on
    is then known exactly (csv's own line_num is the line it stopped at, 0 before the first)."""

    def __init__(self, text: str) -> None:
        # newline='' lets the csv module see quoted newlines and CRLF as the format defines them.
        self._lines = io.StringIO(text, newline="")
        self.count = 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.count += 1
        return line


def _rows_csv(path: Path, delimiter: str) -> list[tuple[int, dict[str, Any]]]:
    text = _decode(path)
    if not text.strip():
        raise DataError(f"{path}: file is empty")
    lines = _Lines(text)
    # strict: a quote left open is an error at the end of the file, not a field that swallows the
    # rows after it (which read as one long output, and the file as one row shorter).
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    header: list[str] | None = None
    rows = []
    while True:
        start = lines.count + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            raise _csv_error(path, err, start, lines.count, delimiter) from None
        if not fields:
            continue  # blank line
        if header is None:
            header = fields
            continue
        if len(fields) > len(header):
            raise DataError(f"{path}:{start}: more fields than the header has")
        if not any(v.strip() for v in fields):
            continue
        row: dict[str, Any] = dict(zip(header, fields))
        row.update({k: None for k in header[len(fields):]})  # short rows read as missing values
        rows.append((start, row))
    if header is None:
        raise DataError(f"{path}: file is empty")
    return rows


def _csv_error(path: Path, err: csv.Error, start: int, at: int, delimiter: str) -> DataError:
    message = str(err)
    if "field larger than field limit" in message:
        return DataError(f"{path}:{at}: a field longer than {csv.field_size_limit():,} characters "
                         "(an unclosed quote, or not a pairs file)")
    if "unexpected end of data" in message:
        return DataError(f"{path}:{start}: unterminated quote (the quoted field that starts on this line "
                         "is never closed)")
    if "expected after '\"'" in message:
        if start == at:
            return DataError(f"{path}:{start}: text after a closing quote (quote the whole field and "
                             "double any quote inside it)")
        return DataError(f"{path}:{start}: unterminated quote (the quoted field opened on this line "
                         f"runs on to line {at})")
    return DataError(f"{path}:{start}: malformed {delimiter!r}-separated line ({err})")


def _rows_json(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """JSON Lines, or (a .json file) a JSON array of records."""
    text = _decode(path)
    is_json = path.suffix.lower() == ".json"
    if is_json and text.lstrip(" \t\r\n").startswith("["):
        return json_array_rows(text, str(path))
    try:
        return _rows_jsonl(path, text)
    except DataError:
        if is_json:
            refuse_single_value(text, str(path))
        raise


def _rows_jsonl(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    if not text.strip():
        raise DataError(f"{path}: file is empty")
    rows = []
    # Lines end at \n only: str.splitlines() also splits at U+2028, U+0085, \x1c-\x1e and
    # others, which JSON writers (ours, with ensure_ascii=False) leave unescaped inside strings.
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        with json_errors(str(path), n):
            obj = json.loads(line)
        rows.append((n, json_record(obj, str(path), n, "line")))
    return rows


def _rows_parquet(path: Path) -> list[tuple[int, dict[str, Any]]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several unrelated types for corrupt files
        raise DataError(f"{path}: cannot read Parquet file ({err})") from None
    return [(i + 1, row) for i, row in enumerate(table.to_pylist())]


def read_rows(path: str | Path) -> tuple[list[tuple[str, dict[str, Any]]], str]:
    """Raw rows of a CSV/TSV/JSONL/JSON/Parquet file as ("file:line", row) pairs."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unknown file type {path.suffix!r}; use .csv, .tsv, .jsonl, .json or .parquet")
    if kind == "csv":
        rows = _rows_csv(path, ",")
    elif kind == "tsv":
        rows = _rows_csv(path, "\t")
    elif kind == "jsonl":
        rows = _rows_json(path)
    else:
        rows = _rows_parquet(path)
    if not rows:
        raise DataError(f"{path}: no data rows")
    line_word = "row" if kind == "parquet" else ""
    return [(f"{path}:{line_word}{n}", row) for n, row in rows], kind


def _pairs(rows: list[tuple[str, dict[str, Any]]], columns: list[str], cols: Columns) -> list[Pair]:
    """Validated pairs from raw rows whose column names are `columns` (the shape is found once)."""
    shape = find_shape(columns, cols)
    pairs = []
    for where, row in rows:
        (source, source_col), (output, output_col), instruction = row_fields(row, shape, cols, where)
        pairs.append(Pair(text_field(source, source_col, where), text_field(output, output_col, where), where,
                          text_field(*instruction, where) if instruction else ""))
    return pairs


def read_pairs(path: str | Path, input_column: str = "input", output_column: str = "output",
               instruction_column: str | None = None) -> list[Pair]:
    """Read pairs from one CSV/TSV/JSONL/JSON/Parquet file, validating every row. With the default
    columns absent, TRL's prompt/completion columns or `messages` conversations are read instead."""
    rows, _ = read_rows(path)
    return _pairs(rows, list(rows[0][1]), Columns(input_column, output_column, instruction_column))


def _read_hf(spec: str, cols: Columns) -> dict[str, list[Pair]]:
    """`hf:NAME[:CONFIG]`: every split the dataset has, via the `datasets` library."""
    import datasets

    parts = spec[3:].split(":")
    name, config = parts[0], (parts[1] if len(parts) > 1 else None)
    try:
        ds = datasets.load_dataset(name, config)
    except Exception as err:
        raise DataError(f"{spec}: cannot load dataset ({type(err).__name__}: {err})".splitlines()[0]) from None
    out: dict[str, list[Pair]] = {}
    for split_name, split in ds.items():
        target = SPLIT_NAMES.get(split_name, split_name)
        rows = [(f"{spec}[{split_name}]:row{i + 1}", row) for i, row in enumerate(split)]
        out.setdefault(target, []).extend(_pairs(rows, split.column_names, cols))
    return out


def _read_dir(path: Path, cols: Columns) -> dict[str, list[Pair]]:
    found: dict[str, list[Pair]] = {}
    for f in sorted(path.iterdir()):
        split = SPLIT_NAMES.get(f.stem.lower())
        if split and f.suffix.lower() in SUFFIXES and f.is_file():
            if split in found:
                raise DataError(f"{path}: more than one file for the {split} split")
            found[split] = read_pairs(f, cols.input, cols.output, cols.instruction)
    if "train" not in found:
        raise DataError(f"{path}: folder has no train.csv/.tsv/.jsonl/.parquet file")
    return found


def _read_source(source: str, cols: Columns) -> dict[str, list[Pair]]:
    if source.startswith("hf:"):
        return _read_hf(source, cols)
    if Path(source).is_dir():
        return _read_dir(Path(source), cols)
    return {"all": read_pairs(source, cols.input, cols.output, cols.instruction)}


def dedupe(pairs: list[Pair]) -> tuple[list[Pair], int]:
    """Keep the first pair for each input: a repeated input (even with another output) is dropped."""
    seen: set[str] = set()
    out = []
    for p in pairs:
        if p.input not in seen:
            seen.add(p.input)
            out.append(p)
    return out, len(pairs) - len(out)


def _take(pairs: list[Pair], n: int | None, seed: int) -> list[Pair]:
    """A seeded subsample whose smaller sizes are prefixes of the larger ones (nested data-size sweeps)."""
    if n is None or n >= len(pairs):
        return pairs
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    return [pairs[i] for i in sorted(order[:n])]


def _scaffold_parts(pairs: list[Pair], val_fraction: float, test_fraction: float,
                    seed: int) -> tuple[list[int], list[int], list[int]]:
    """Indices of train/val/test by Bemis–Murcko scaffold: the dataset builder's split, on pairs."""
    from seqtune.chem.build.splits import split_scaffold

    try:
        from seqtune.chem.molecules import mol_from_smiles, murcko_scaffold
    except ModuleNotFoundError as err:
        raise ConfigError(f"data.split: scaffold needs the chemistry extra ({err.name} is not installed)") from None
    rows = []
    for i, p in enumerate(pairs):
        mol = mol_from_smiles(p.input)
        if mol is None:
            raise DataError(f"{p.where}: data.split: scaffold needs SMILES inputs; {p.input[:40]!r} is not one")
        rows.append({"smiles": p.input, "scaffold": murcko_scaffold(mol), "index": i})
    parts = split_scaffold(rows, val_fraction, test_fraction, seed)
    train, val, test = ([row["index"] for row in parts[name]] for name in ("train", "val", "test"))
    return train, val, test


def _split_file(pairs: list[Pair], cfg: DataConfig, test_fraction: float) -> tuple[list[Pair], list[Pair], list[Pair]]:
    """Train, val and test of one file's pairs, each in file order."""
    if cfg.split == "scaffold":
        parts = _scaffold_parts(pairs, cfg.val_fraction, test_fraction, cfg.seed)
    else:
        order = list(range(len(pairs)))
        random.Random(cfg.seed).shuffle(order)
        n_test = round(len(pairs) * test_fraction)
        n_val = round(len(pairs) * cfg.val_fraction)
        parts = order[n_test + n_val:], order[n_test:n_test + n_val], order[:n_test]
    train, val, test = ([pairs[i] for i in sorted(part)] for part in parts)
    return train, val, test


def load_splits(cfg: DataConfig, seen: set[str] | frozenset[str] = frozenset()) -> Splits:
    """Read, dedupe and split the data as the config says; val and test pairs whose input is in
    `seen` (what the starting model trained on: seqtune.lineage) are dropped before sampling."""
    stats: dict[str, Any] = {"source": cfg.path}
    given: dict[str, list[Pair]] = {}
    cols = Columns(cfg.input_column, cfg.output_column, cfg.instruction_column or None)
    # Several sources, comma-separated, are concatenated split by split (e.g. two data sets).
    for source in [s.strip() for s in cfg.path.split(",") if s.strip()]:
        for split, pairs in _read_source(source, cols).items():
            given.setdefault(split, []).extend(pairs)
    stats["rows_read"] = sum(len(v) for v in given.values())
    test_fraction = cfg.test_fraction
    if cfg.test_path:
        # A fixed holdout replaces the test split; dedupe below keeps its inputs out of train/val.
        given["test"] = read_pairs(cfg.test_path, cols.input, cols.output, cols.instruction)
        stats["test_path"] = cfg.test_path
        test_fraction = 0.0
    if any(p.instruction for pairs in given.values() for p in pairs):
        # Named for the check that the prompt format has somewhere to put them.
        stats["instructions"] = "data.instruction_column" if cols.instruction else "the system turns of messages"

    if set(given) - {"test"} in ({"all"}, {"train"}) and (cfg.test_path or "test" not in given):
        pairs = given.get("all") or given["train"]
        dropped = 0
        if cfg.dedupe:
            pairs, dropped = dedupe(pairs)
        train, val, test = _split_file(pairs, cfg, test_fraction)
        if cfg.split != "random":
            stats["split"] = cfg.split
        if cfg.test_path:
            given = {"train": train, "val": val, "test": given["test"]}
    elif cfg.split != "random":
        raise ConfigError(f"data.split: {cfg.split} splits a single file, and {cfg.path} brings its own splits")
    if len(given) > 1 or "test" in given:
        train, val, test = given.get("train", []), given.get("val", []), given.get("test", [])
        dropped = 0
        if cfg.dedupe:
            test, d1 = dedupe(test)
            held = {p.input for p in test}
            val, d2 = dedupe([p for p in val if p.input not in held])
            held |= {p.input for p in val}
            n_train = len(train)
            train, d3 = dedupe([p for p in train if p.input not in held])
            dropped = d1 + d2 + d3
            stats["leaked_from_train"] = n_train - len(train) - d3
    stats["duplicates_dropped"] = dropped
    if seen:
        n_val, n_test = len(val), len(test)
        val, test = [p for p in val if p.input not in seen], [p for p in test if p.input not in seen]
        stats["seen_by_start_model"] = {"val": n_val - len(val), "test": n_test - len(test)}
    stats["available"] = {"train": len(train), "val": len(val), "test": len(test)}
    train = _take(train, cfg.train_size, cfg.seed)
    val = _take(val, cfg.val_size, cfg.seed + 1)
    test = _take(test, cfg.test_size, cfg.seed + 2)
    if not train:
        raise DataError(f"{cfg.path}: no training pairs left after splitting")
    stats["used"] = {"train": len(train), "val": len(val), "test": len(test)}
    return Splits(train, val, test, stats)


def save_splits(splits: Splits, folder: str | Path) -> None:
    folder = Path(folder)
    for name in ("train", "val", "test"):
        atomic_write_jsonl(folder / f"{name}.jsonl",
                           ({"input": p.input, "output": p.output, **({"instruction": p.instruction} if p.instruction else {})}
                            for p in getattr(splits, name)))
