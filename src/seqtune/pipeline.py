"""`seqtune run`: data -> base-model scores -> training (scored on validation each epoch) ->
selected model -> export -> test scores, decoded once.

Run folder (the contract with sweeps and reports; paths from seqtune.rundir.RunDir):
  config.yaml, run.json          resolved config; versions, data hash, parameter count
  data/{train,val,test}.jsonl     the exact splits used
  epochs.jsonl                    one record per finished epoch (losses, val_<score>, timing)
  predictions/base.jsonl, test.jsonl     the untrained and the selected model on the test split
  predictions/epoch-K.jsonl       epoch K's model on the validation split
  predictions/{baseline,lookup}.jsonl    the rules baseline and an independent one on test
  model/                          merged weights + tokenizer + prompt format + model card
  metrics.json                    written last: its presence means the run finished

Nothing chosen during training (epochs, train.select: best) sees the test split: it is
decoded before training (the base model) and once after. Every score in metrics.json has
its 95 % bootstrap interval beside it (`ci95`, seqtune.stats).
"""

from __future__ import annotations

import contextlib
import json
import platform
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from seqtune import __version__
from seqtune.config import RunConfig, config_to_dict, save_config
from seqtune.data import Pair, Splits, save_splits
from seqtune.errors import ConfigError, DataError, SeqtuneError
from seqtune.export import finish_model_folder
from seqtune.inference.decode import DecodeSettings, decode_rows
from seqtune.io import atomic_write_json, atomic_write_jsonl, run_folder_lock, write_error
from seqtune.lineage import run_splits, seen_note
from seqtune.metrics import score, selection_metric
from seqtune.modeling import ModelInfo, count_params, load_model, read_model_info, save_model
from seqtune.output_vocab import restrict_to_outputs
from seqtune.prompts import PromptFormat, encode_example, eos_id, model_format, require_instruction_slot
from seqtune.rundir import RunDir
from seqtune.runtime import loaded_allocator, package_versions, resolve_precision
from seqtune.stats import METHOD, with_intervals
from seqtune.training.batching import Encoded, Example, encode_pairs
from seqtune.training_pairs import training_pairs

if TYPE_CHECKING:
    from seqtune.training.loop import TrainState


def versions() -> dict[str, str]:
    return {"seqtune": __version__, "python": platform.python_version(),
            **package_versions(("torch", "transformers", "peft", "accelerate", "datasets", "rdkit", "openclatura"))}


def augmented_epochs(cfg: RunConfig, enc: Encoded, tok: Any, fmt: PromptFormat) -> Callable[[int], list[Example]] | None:
    """`data.augment`: each epoch's training examples, with a fresh random SMILES per input
    molecule from the second epoch on. An augmented example longer than data.max_length keeps
    its original spelling, so every epoch has the same examples in the same places."""
    if cfg.data.augment == "none":
        return None
    from seqtune.chem.tasks import random_smiles_inputs

    instruction = cfg.data.instruction
    # The run's task, not data.mix pairs (its own pairs may carry instructions of their own).
    own = [i for i, p in enumerate(enc.kept) if not p.where.startswith("data.mix:")]

    def examples(epoch: int) -> list[Example]:
        if epoch == 0:
            return enc.examples
        out = list(enc.examples)
        fresh = random_smiles_inputs([enc.kept[i].input for i in own], epoch, cfg.data.seed)
        for i, smiles in zip(own, fresh):
            ids, mask = encode_example(tok, fmt, smiles, enc.kept[i].output, enc.kept[i].instruction or instruction)
            if len(ids) <= cfg.data.max_length:
                out[i] = Example(tuple(ids), tuple(mask))
        return out

    return examples


def predict_pairs(model: Any, tokenizer: Any, fmt: PromptFormat, instruction: str, pairs: list[Pair],
                  cfg: RunConfig, task: str, progress: bool = True) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Decode the inputs of `pairs` and score the outputs against their references (the path
    `seqtune predict` takes too: inference.decode)."""
    g = cfg.generate
    settings = DecodeSettings(g.num_beams, g.candidates, g.verify, g.max_new_tokens, g.batch_size, cfg.train.precision,
                              g.spellings, g.rerank_model, g.canonical, g.guide, g.retry_beams,
                              g.retry_rounds)
    return decode_rows(model, tokenizer, fmt, task, [p.input for p in pairs],
                       [p.instruction or instruction for p in pairs], [p.output for p in pairs], settings, progress)


def score_baseline(task: str, pairs: list[Pair]) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The rules-based tool (openclatura, OPSIN, RDKit) scored as a 'model' on the same pairs. It
    made (or verified) the labels of seqtune's chemistry data, which its summary says (`role`)."""
    from seqtune.chem import CHEM_TASKS

    if task not in CHEM_TASKS or not pairs:
        return None
    try:
        from seqtune.chem.baseline import LABEL_SOURCE
        from seqtune.chem.baseline import predict as baseline_predict
    except ModuleNotFoundError:
        return None
    inputs, refs = [p.input for p in pairs], [p.output for p in pairs]
    preds = baseline_predict(task, inputs)
    summary, rows = score(task, inputs, preds, refs)
    return ({**with_intervals(summary, rows), "role": LABEL_SOURCE},
            [{"input": i, "reference": r, "prediction": p, **row} for i, r, p, row in zip(inputs, refs, preds, rows)])


def score_lookup(task: str, pairs: list[Pair]) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """A baseline independent of the labels (chem.baseline.lookup), scored on the pairs it
    answers; `coverage_pct` says how many that is. None for tasks without one."""
    from seqtune.chem import CHEM_TASKS

    if task not in CHEM_TASKS or not pairs:
        return None
    try:
        from seqtune.chem.baseline import lookup
        found = lookup(task, [p.input for p in pairs])
    except ModuleNotFoundError:
        return None
    if found is None:
        return None
    source, answers = found
    covered = [(p, a) for p, a in zip(pairs, answers) if a is not None]
    summary, scored = score(task, [p.input for p, _ in covered], [a for _, a in covered],
                            [p.output for p, _ in covered]) if covered else ({"n": 0}, [])
    per = iter(scored)
    rows = [{"input": p.input, "reference": p.output, "prediction": a, "covered": a is not None,
             **(next(per) if a is not None else {})} for p, a in zip(pairs, answers)]
    summary = {**with_intervals(summary, scored), "n": len(covered),
               "coverage_pct": 100.0 * len(covered) / len(pairs), "source": source}
    return summary, rows


def _table(columns: dict[str, dict[str, Any] | None]) -> str:
    """Scores side by side: base model, tuned model, rules-based baselines."""
    tuned = columns["tuned"] or {}
    keys = [k for k in tuned if k != "n" and isinstance(tuned[k], (int, float)) and not k.startswith("top_beam_")]
    widths = [max(12, len(name) + 2) for name in columns]
    lines = [f"{'metric':<24}" + "".join(f"{name:>{w}}" for name, w in zip(columns, widths))]
    for k in keys:
        cells = []
        for col, w in zip(columns.values(), widths):
            v = (col or {}).get(k)
            cells.append(f"{v:>{w}.4g}" if isinstance(v, (int, float)) else f"{'-':>{w}}")
        lines.append(f"{k:<24}" + "".join(cells))
    return "\n".join(lines)


def _fingerprint(cfg: RunConfig, splits: Splits) -> dict[str, Any]:
    m, d = cfg.model, cfg.data
    return {"data_hash": splits.digest(), "model": m.name, "method": m.method, "format": m.format,
            "input_split": m.input_split, "output_split": m.output_split, "freeze_layers": m.freeze_layers,
            "keep_layers": m.keep_layers, "freeze_embeddings": m.freeze_embeddings, "mix": d.mix, "augment": d.augment,
            "output_vocab": m.output_vocab, **({"answer_marker": m.answer_marker} if m.answer_marker else {}),
            **({"output_prefix": m.output_prefix} if m.output_prefix else {}),
            **({"output_order": d.output_order} if d.output_order != "as_is" else {}),
            **({"input_order": d.input_order} if d.input_order != "as_is" else {}),
            **({"init": m.init, "config_overrides": m.config_overrides} if m.init == "scratch" else {}),
            # A LoRA checkpoint's adapters only fit the settings they were made with.
            **({"lora_r": m.lora_r, "lora_alpha": m.lora_alpha, "lora_dropout": m.lora_dropout,
                "lora_target_modules": m.lora_target_modules} if m.method == "lora" else {})}


def _train_only(cfg: RunConfig, model: Any, enc: dict[str, Encoded], tok: Any, out: Path,
                splits: Splits, fmt: PromptFormat) -> dict[str, Any]:
    from seqtune.training.loop import train

    train(model, enc["train"].examples, enc["val"].examples, cfg.train, out, tok.pad_token_id,
          fingerprint=_fingerprint(cfg, splits), epoch_examples=augmented_epochs(cfg, enc["train"], tok, fmt))
    return {}


def run_pipeline(cfg: RunConfig) -> dict[str, Any]:
    """Run everything into cfg.out_dir; returns the contents of metrics.json."""
    # Everything that can fail on bad input (data, format, model) happens before the
    # first file is written, so a bad run leaves no half-made run folder behind.
    splits = run_splits(cfg)
    if cfg.generate.rerank_model:  # before training, not after it
        try:
            read_model_info(Path(cfg.generate.rerank_model))
        except SeqtuneError as err:
            raise ConfigError(f"generate.rerank_model: {err}") from None
    fmt = model_format(cfg.model)
    require_instruction_slot(fmt, splits.stats.get("instructions"))
    from accelerate import PartialState

    # Under `accelerate launch` / `torchrun` every process trains; one writes files and scores.
    # cpu=True is what lets torchrun / accelerate launch start gloo process groups on CPU-only machines.
    dist = PartialState(cpu=not torch.cuda.is_available())
    if not dist.is_main_process:
        return _run(cfg, splits, fmt, dist)
    if note := seen_note(splits):
        print(f"seqtune: {note}", file=sys.stderr)
    # Before the model loads: a folder that cannot be written, or that another run is using,
    # stops the run at once rather than after minutes of loading (or, worse, mixes two runs).
    with run_folder_lock(Path(cfg.out_dir)):
        return _run(cfg, splits, fmt, dist)


@contextlib.contextmanager
def _write_errors(out: Path, what: str, hint: str = "") -> Iterator[None]:
    """A full disk or an unwritable file while writing `what`: one line instead of a traceback."""
    try:
        yield
    except OSError as err:
        mapped = write_error(err, out, what)
        if mapped is None:
            raise
        raise SeqtuneError(f"{mapped}{hint}") from None
    except Exception as err:
        # safetensors reports a failed write (ENOSPC included) as its own type, not OSError.
        if type(err).__name__ != "SafetensorError":
            raise
        raise SeqtuneError(f"{out}: cannot write {what}: {str(err).splitlines()[0]}{hint}") from None


def _run(cfg: RunConfig, splits: Splits, fmt: PromptFormat, dist: Any) -> dict[str, Any]:
    out = Path(cfg.out_dir)
    model, tok = load_model(cfg.model, seed=cfg.train.seed)
    n_params, n_trainable = count_params(model)
    instruction = cfg.data.instruction
    pairs = {"train": training_pairs(cfg, splits.train, fmt), "val": splits.val, "test": splits.test}
    enc = {name: encode_pairs(pairs[name], tok, fmt, instruction, cfg.data.max_length,
                              cfg.data.overlength, name) for name in ("train", "val", "test")}
    if not enc["train"].examples:
        raise DataError(f"{cfg.data.path}: every training pair is longer than data.max_length={cfg.data.max_length}")
    if cfg.model.output_vocab == "task":
        restrict_to_outputs(model, [*enc["train"].examples, *enc["val"].examples], eos_id(tok))
    model.to(dist.device)
    if not dist.is_main_process:
        return _train_only(cfg, model, enc, tok, out, splits, fmt)
    run = RunDir(out)
    with _write_errors(out, "the run folder"):
        save_config(cfg, run.config)
        save_splits(splits, run.data)
        atomic_write_json(run.run_info, {
            "versions": versions(), "data_hash": splits.digest(), "data": splits.stats,
            "dropped_overlength": {k: v.dropped for k, v in enc.items()},
            "n_params": n_params, "n_trainable": n_trainable, "model": cfg.model.name,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "runtime": {"device": str(dist.device), "threads": torch.get_num_threads(),
                        "allocator": loaded_allocator(),
                        **resolve_precision(cfg.train.precision, dist.device).record()},
        })
    test_pairs, val_pairs = enc["test"].kept, enc["val"].kept
    _check_select(cfg, val_pairs)
    with _write_errors(out, "predictions"):
        base = _score_base(cfg, model, tok, fmt, test_pairs, out)

    def on_epoch_end(epoch: int, trained: Any) -> dict[str, Any]:
        # The validation split, never the test split: epochs are compared (and train.select
        # picks one) by these scores, which would otherwise tune the run on its test set.
        if not (cfg.train.eval_generate and val_pairs):
            return {}
        summary, rows = predict_pairs(trained, tok, fmt, instruction, val_pairs, cfg, cfg.data.task,
                                      cfg.train.progress)
        atomic_write_jsonl(run.epoch_predictions(epoch), rows)
        return {f"val_{k}": v for k, v in summary.items() if k != "n"}

    from seqtune.training.loop import train

    with _write_errors(out, "training records"):
        state = train(model, enc["train"].examples, enc["val"].examples, cfg.train, out, tok.pad_token_id,
                      on_epoch_end=on_epoch_end, fingerprint=_fingerprint(cfg, splits),
                      epoch_examples=augmented_epochs(cfg, enc["train"], tok, fmt))
    # The last checkpoint holds the finished training: a rerun after a failed final save
    # (a full disk) resumes there and only redoes the saving.
    with _write_errors(out, "the final model and scores", "; the last checkpoint is intact: free space and run again"):
        return _finish(cfg, model, tok, fmt, splits, enc, state, base, (n_params, n_trainable))


def _score_base(cfg: RunConfig, model: Any, tok: Any, fmt: PromptFormat, test_pairs: list[Pair],
                out: Path) -> dict[str, Any] | None:
    """The untrained model's test scores (cached in the run folder for a resumed run)."""
    if not (cfg.evaluate_base and test_pairs):
        return None
    run = RunDir(out)
    base_file, cached = run.prediction("base"), run.base_scores
    if cached.is_file() and base_file.is_file():
        return json.loads(cached.read_text())
    print(f"scoring the base model on {len(test_pairs)} test pairs")
    base, rows = predict_pairs(model, tok, fmt, cfg.data.instruction, test_pairs, cfg, cfg.data.task,
                               cfg.train.progress)
    atomic_write_jsonl(base_file, rows)
    atomic_write_json(cached, base)
    return base


def _check_select(cfg: RunConfig, val_pairs: list[Pair]) -> None:
    """train.select: best needs validation scores to rank epochs by; said before any training."""
    t = cfg.train
    if t.select != "best":
        return
    metric = selection_metric(t.select_metric, t.eval_generate)
    if not val_pairs:
        raise ConfigError(f"train.select: best ranks epochs by validation {metric}, and {cfg.data.path} has no "
                          "validation split (data.val_fraction, data.val_size); use train.select: last")
    if metric == "eval_loss":
        return
    # The score names a task has: those of scoring one validation pair against itself.
    p = val_pairs[0]
    scored, _ = score(cfg.data.task, [p.input], [p.output], [p.output])
    known = [k for k in scored if k != "n"] + ["verified_pct"] * (cfg.generate.verify != "none")
    if metric not in known and not (metric.startswith("top_beam_") and metric[9:] in known):
        raise ConfigError(f"train.select_metric: {metric!r} is not a score of {cfg.data.task} "
                          f"(eval_loss, {', '.join(known)})")


def _selection(cfg: RunConfig, state: TrainState) -> dict[str, Any]:
    """Which epoch's weights the run ended with, and by what (metrics.json `selection`)."""
    history = state.history or []
    if cfg.train.select == "best" and state.best is not None:
        return {"select": "best", **state.best}
    return {"select": "last", "epoch": history[-1]["epoch"] if history else 0}


def _reference_scores(task: str, test_pairs: list[Pair], run: RunDir) -> dict[str, dict[str, Any] | None]:
    """The rules baseline (label source) and the independent lookup on the test pairs."""
    out: dict[str, dict[str, Any] | None] = {}
    for name, scorer in (("baseline", score_baseline), ("lookup", score_lookup)):
        scored = scorer(task, test_pairs)
        out[name] = scored[0] if scored is not None else None
        if scored is not None:
            atomic_write_jsonl(run.prediction(name), scored[1])
    return out


def _finish(cfg: RunConfig, model: Any, tok: Any, fmt: PromptFormat, splits: Splits, enc: dict[str, Encoded],
            state: TrainState, base: dict[str, Any] | None, params: tuple[int, int]) -> dict[str, Any]:
    """Test scores of the selected model (the one decode of the test split after training), the
    exported model, and metrics.json (written last: the run is done)."""
    run, task, instruction = RunDir(cfg.out_dir), cfg.data.task, cfg.data.instruction
    test_pairs = enc["test"].kept
    history = state.history or []
    selection = _selection(cfg, state)
    summary, rows = predict_pairs(model, tok, fmt, instruction, test_pairs, cfg, task, cfg.train.progress)
    atomic_write_jsonl(run.prediction("test"), rows)
    # The chosen epoch's losses lead, as they did when the last epoch's record was the final one.
    chosen = next((r for r in history if r["epoch"] == selection["epoch"]), {})
    losses = {k: chosen[k] for k in ("train_loss", "eval_loss") if k in chosen} if cfg.train.eval_generate else {}
    tuned = {**losses, **{k: v for k, v in summary.items() if k != "n"}}
    n_params, n_trainable = params
    train_info = {
        "epochs": history[-1]["epoch"] if history else 0, "train_examples": len(enc["train"].examples),
        "train_seconds": state.train_seconds,
        "examples_per_s": state.examples_seen / max(state.train_seconds, 1e-9),
        "n_params": n_params, "n_trainable": n_trainable, "model": cfg.model.name, "method": cfg.model.method,
        "format": cfg.model.format,
    }
    info = ModelInfo(fmt, task, instruction, cfg.model.name, {"config": config_to_dict(cfg)})
    save_model(model, tok, run.model, info)
    finish_model_folder(run.model, tuned=tuned, run_dir=run.root)  # chat template, generation config, Hub card
    refs = _reference_scores(task, [replace(p, output=fmt.answer(p.output)) for p in test_pairs], run)
    result = {"base": base, "tuned": tuned, **refs, "selection": selection, "intervals": METHOD, "train": train_info}
    atomic_write_json(run.metrics, result)
    print(_table({"base": base, "tuned": tuned, "rules (label source)": refs["baseline"], "lookup": refs["lookup"]}))
    if refs["lookup"] is not None:
        print(f"lookup: {refs['lookup']['source']}; covers {refs['lookup']['coverage_pct']:.1f} % of the test pairs, "
              "scored on those")
    return result
