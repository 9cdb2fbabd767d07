"""`seqtune predict` and `seqtune evaluate`: decode with an exported model, score predictions."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from seqtune.data import SUFFIXES, read_rows, text_field
from seqtune.errors import DataError, SeqtuneError
from seqtune.inference.decode import DecodeSettings, decode_rows
from seqtune.io import (
    atomic_open,
    atomic_write_json,
    atomic_write_jsonl,
    check_writable_dir,
    check_writable_file,
    dumps,
    read_jsonl,
    write_error,
)
from seqtune.metrics import score
from seqtune.model_meta import read_saved, saved_setting
from seqtune.rundir import RunDir


def read_inputs(source: str, input_column: str, output_column: str) -> tuple[list[str], list[str] | None]:
    """Inputs (and references when the file has them) from a pairs file, a text file, or '-' (stdin)."""
    inputs, refs, _ = read_table(source, input_column, output_column)
    return inputs, refs


def read_table(source: str, input_column: str,
               output_column: str) -> tuple[list[str], list[str] | None, list[dict[str, Any]] | None]:
    """read_inputs plus every row's columns (None for text inputs), kept in the predictions."""
    if source == "-":
        lines = [ln.strip() for ln in sys.stdin.read().splitlines()]
        return [ln for ln in lines if ln], None, None
    path = Path(source)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.suffix.lower() in (".txt", ".smi", ""):
        try:
            lines = [ln.strip() for ln in path.read_text(encoding="utf-8-sig").splitlines()]
        except UnicodeDecodeError:
            raise DataError(f"{path}: not valid UTF-8 text") from None
        return [ln.split()[0] if path.suffix == ".smi" else ln for ln in lines if ln], None, None
    rows, _ = read_rows(path)
    has_refs = output_column in rows[0][1]
    inputs, refs = [], []
    for where, row in rows:
        if input_column not in row:
            raise DataError(f"{where}: missing column {input_column!r} (columns: {', '.join(map(str, row))})")
        inputs.append(text_field(row[input_column], input_column, where))
        if has_refs:
            refs.append(text_field(row.get(output_column), output_column, where))
    return inputs, (refs if has_refs else None), [row for _, row in rows]


def trained_input_column(model_dir: str) -> str | None:
    """The input column of the model's training data, as recorded in its seqtune.json."""
    column = saved_setting(read_saved(Path(model_dir)), "data.input_column")
    return column if isinstance(column, str) and column else None


def _trained_max_new_tokens(model_dir: str) -> int:
    try:
        value = json.loads((Path(model_dir) / "generation_config.json").read_text(encoding="utf-8"))["max_new_tokens"]
    except (OSError, ValueError, KeyError, TypeError):
        return 128
    return value if isinstance(value, int) and value > 0 else 128


def _input_column(source: str, model_dir: str) -> str:
    # The training column when this file has it ("smiles" in both), else the usual "input".
    trained = trained_input_column(model_dir)
    if trained and trained != "input" and source != "-" and Path(source).suffix.lower() in SUFFIXES:
        try:
            rows, _ = read_rows(source)
        except DataError:
            return "input"
        if trained in rows[0][1]:
            return trained
    return "input"

def predict(model_dir: str, source: str, output: str | None, num_beams: int = 1, candidates: int = 1,
            verify: str = "none", batch_size: int = 32, max_new_tokens: int | None = None,
            input_column: str | None = None, output_column: str = "output", precision: str = "auto",
            spellings: int = 1, rerank_model: str = "", canonical: bool = False, guide: bool = False,
            retry_beams: int = 0, retry_rounds: int = 1) -> dict[str, Any]:
    """Decode every input; write the input rows with prediction columns added (CSV/TSV/JSONL/Parquet
    by the output's suffix); score when references exist. `input_column` defaults to the
    training data's input column when the file has it, else "input"; `max_new_tokens` to the
    model's generation_config.json (the length it was scored with), else 128."""
    from seqtune.modeling import load_finetuned

    input_column = input_column or _input_column(source, model_dir)
    max_new_tokens = max_new_tokens or _trained_max_new_tokens(model_dir)
    inputs, refs, columns = read_table(source, input_column, output_column)
    if not inputs:
        raise DataError(f"{source}: no inputs")
    if output and output != "-":  # before the model loads and every input is decoded for nothing
        check_writable_file(output, "--output")
    loaded = load_finetuned(model_dir)
    return decode_and_score(loaded, inputs, refs, output, num_beams, candidates, verify, batch_size,
                            max_new_tokens, precision, columns=columns, spellings=spellings,
                            rerank_model=rerank_model, canonical=canonical, guide=guide, retry_beams=retry_beams,
                            retry_rounds=retry_rounds)


def decode_and_score(loaded: tuple[Any, Any, Any], inputs: list[str], refs: list[str] | None, output: str | None,
                     num_beams: int = 1, candidates: int = 1, verify: str = "none", batch_size: int = 32,
                     max_new_tokens: int = 128, precision: str = "auto",
                     columns: list[dict[str, Any]] | None = None, spellings: int = 1,
                     rerank_model: str = "", canonical: bool = False, guide: bool = False,
                     retry_beams: int = 0, retry_rounds: int = 1) -> dict[str, Any]:
    """Decode `inputs` with a loaded (model, tokenizer, info); write rows (each input row's `columns`
    first, then the rows of decode_rows, the same as `seqtune run` writes); score against `refs`
    if given. Returns the summary."""
    model, tok, info = loaded
    if output and output != "-":
        check_writable_file(output)
    settings = DecodeSettings(num_beams, candidates, verify, max_new_tokens, batch_size, precision, spellings,
                              rerank_model, canonical, guide, retry_beams, retry_rounds)
    result, decoded = decode_rows(model, tok, info.format, info.task, inputs, [info.instruction] * len(inputs), refs,
                                  settings, progress=sys.stderr.isatty())
    rows = [{**(columns[i] if columns else {}), **row} for i, row in enumerate(decoded)]
    if output and output != "-":
        try:
            write_rows(output, rows)
        except OSError as err:
            mapped = write_error(err, output, "the predictions")
            if mapped is None:
                raise
            raise mapped from None
    else:
        for row in rows:
            print(dumps(row))
    return result


def write_rows(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Rows as CSV, TSV, Parquet or (any other suffix) JSONL, chosen by the suffix of `path`."""
    kind = SUFFIXES.get(Path(path).suffix.lower(), "jsonl")
    if kind == "jsonl":
        atomic_write_jsonl(path, rows)
        return
    import pandas as pd

    # A cell holding a list or dict (a JSONL input column) is written as its JSON text.
    flat = [{k: dumps(v) if isinstance(v, (list, dict)) else v for k, v in row.items()} for row in rows]
    frame = pd.DataFrame(flat)
    with atomic_open(path, "wb") as fh:
        if kind == "parquet":
            frame.to_parquet(fh, index=False)
        else:
            fh.write(frame.to_csv(index=False, sep="," if kind == "csv" else "\t").encode("utf-8"))


def evaluate_file(predictions: str, task: str, out: str | None) -> dict[str, Any]:
    """Score a JSONL of {input, reference, prediction} rows."""
    path = Path(predictions)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        rows = read_jsonl(path)
    except ValueError as err:
        raise DataError(f"{path}: not valid JSONL ({err})") from None
    if out:
        check_writable_file(out)
    for n, row in enumerate(rows, start=1):
        for key in ("reference", "prediction"):
            if not isinstance(row.get(key), str):
                raise SeqtuneError(f"{path}:{n}: needs a text {key!r} field")
    summary, per = score(task, [r.get("input", "") for r in rows], [r["prediction"] for r in rows],
                         [r["reference"] for r in rows])
    if out:
        atomic_write_json(out, {"summary": summary, "per_example": per})
    return summary


# The development holdouts shipped in data/holdouts (scripts/build_study_data.sh): molecules
# that no shipped training set contains, named and OPSIN-verified by the builder.
HOLDOUTS = {"moses_scaffold": "data/holdouts/moses_scaffold/test.jsonl",
            "nci_small": "data/holdouts/nci_small/test.jsonl"}


def evaluate_model(model_dir: str, holdouts: list[str], out_dir: str | None = None, checkpoint: str | None = None,
                   **decode: Any) -> dict[str, Any]:
    """Score a model folder on holdouts (names in HOLDOUTS, or pair files): per holdout,
    predictions in OUT/NAME.jsonl and scores in OUT/NAME.json (OUT defaults to the run
    folder's holdouts/ beside the model: RunDir.holdouts). `checkpoint`: a training checkpoint of the same
    run (RUN/checkpoints/step-N) whose weights replace the final ones, for learning curves.
    Returns {name: scores}; a holdout some of whose inputs the model (or a model it started from, or the
    reranker's chain) trained on says how many under `seen_in_training`, with a warning: those are not
    held out."""
    from seqtune.lineage import decoding_chain
    from seqtune.modeling import load_finetuned
    from seqtune.training.checkpoint import load_weights

    files = {name: Path(HOLDOUTS.get(name, name)) for name in holdouts}
    for name, path in files.items():
        if not path.is_file():
            raise DataError(f"{path}: holdout {name!r} not found (known: {', '.join(HOLDOUTS)}, or a pairs file)")
    read = {name: read_inputs(str(path), "input", "output") for name, path in files.items()}
    out = RunDir(Path(model_dir).resolve().parent).holdouts
    if checkpoint:
        out = out / Path(checkpoint).name
    out = Path(out_dir) if out_dir else out
    check_writable_dir(out, "--output")  # before the model loads and the holdouts are decoded
    loaded = load_finetuned(model_dir)
    if checkpoint:
        load_weights(Path(checkpoint), loaded[0], every_trainable=False)
    _, seen = decoding_chain(model_dir, decode.get("rerank_model", ""))
    results = {}
    for name, (inputs, refs) in read.items():
        stem = Path(name).stem if name not in HOLDOUTS else name
        scores = decode_and_score(loaded, inputs, refs, str(out / f"{stem}.jsonl"), **decode)
        if n_seen := sum(x in seen for x in inputs):
            scores["seen_in_training"] = n_seen
            print(f"seqtune: warning: {n_seen} of the {len(inputs)} {stem} inputs are ones {model_dir} (or a model "
                  "it started from, or the reranker's chain) trained on; its scores there are not held out",
                  file=sys.stderr)
        atomic_write_json(out / f"{stem}.json", scores)
        results[stem] = scores
    return results

