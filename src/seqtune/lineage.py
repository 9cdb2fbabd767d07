"""Held out from the whole chain. A run may start from a model seqtune trained (model.name is
another run's model folder, e.g. iupac2smiles from the SMILES -> IUPAC model). A test pair that
model, or one it started from, trained on is not held out, in either direction: the SMILES ->
IUPAC model saw 91 of the iupac2smiles task's 300 test molecules with their names. Such val and
test pairs are dropped before anything is scored, and the run records how many.

A pair counts as seen when its input is any input or output of a training pair of the chain
(string equality: names and canonical SMILES as the data builders write them), so a reversed
pair is caught as well as a repeated one. A reranker (generate.rerank_model) is part of the chain
too: it scores every beam, so a pair it, or a model it started from, trained on is not held out.
Models whose run folder is not at hand (a hub model, a model folder copied elsewhere) cannot be
checked; the chain stops there."""

from __future__ import annotations

from pathlib import Path

from seqtune.config import RunConfig
from seqtune.data import Splits, load_splits
from seqtune.errors import DataError
from seqtune.io import read_jsonl
from seqtune.model_meta import read_saved, saved_setting
from seqtune.rundir import RunDir

# A guard against a chain that loops (a run folder edited by hand to start from itself).
_MAX_LINKS = 32


def _start_of(folder: Path) -> str | None:
    """The model.name the run that wrote `folder` started from, if its seqtune.json says."""
    name = saved_setting(read_saved(folder), "model.name")
    return name if isinstance(name, str) else None


def chain_training_texts(model_name: str) -> tuple[list[str], set[str]]:
    """The seqtune-trained models the chain from `model_name` passes through (whose run folder
    is at hand), and every input and output of their training splits."""
    models: list[str] = []
    texts: set[str] = set()
    name: str | None = model_name
    while name and len(models) < _MAX_LINKS:
        folder = Path(name)
        run = RunDir(folder.parent)
        train_file = run.data / "train.jsonl"
        if not folder.is_dir() or folder.resolve() != run.model.resolve() or not train_file.is_file():
            break
        if str(folder) in models:
            break
        models.append(str(folder))
        for row in read_jsonl(train_file):
            texts.update(str(row[key]) for key in ("input", "output") if key in row)
        name = _start_of(folder)
    return models, texts


def decoding_chain(model_name: str, rerank_model: str = "") -> tuple[list[str], set[str]]:
    """`chain_training_texts` of the model that decodes and of the reranker that picks among its
    beams, together: the models (each once, the decoder's chain first) and every text they trained on."""
    models, seen = chain_training_texts(model_name)
    if rerank_model:
        more, texts = chain_training_texts(rerank_model)
        models += [m for m in more if m not in models]
        seen |= texts
    return models, seen


def run_splits(cfg: RunConfig) -> Splits:
    """The splits a run trains and scores on: the data's, less what the starting model's chain
    (and the reranker's, with generate.rerank_model) trained on."""
    models, seen = decoding_chain(cfg.model.name, cfg.generate.rerank_model)
    splits = load_splits(cfg.data, seen)
    if models:
        reranker = {"reranker": cfg.generate.rerank_model} if cfg.generate.rerank_model else {}
        splits.stats["seen_by_start_model"] = {"models": models, **reranker,
                                               **splits.stats.get("seen_by_start_model", {})}
    if splits.stats.get("seen_by_start_model", {}).get("test") and not splits.test:
        raise DataError(f"{cfg.model.name}: every test pair is one the starting model (or one it started from, "
                        "or the reranker's chain) trained on; nothing held out is left to score")
    return splits


def seen_note(splits: Splits) -> str:
    """One line on the held-out pairs dropped as seen by the starting model, or ""."""
    record = splits.stats.get("seen_by_start_model")
    if not record or not (record["val"] or record["test"]):
        return ""
    dropped = f"held out: dropped {record['test']} test and {record['val']} val pairs that the starting model "
    if record.get("reranker"):
        return (dropped + f"{record['models'][0]}, the reranker {record['reranker']} or a model either "
                "started from trained on")
    return (dropped + f"{record['models'][0]}" + (" (or one it started from)" if len(record["models"]) > 1 else "")
            + " trained on")
