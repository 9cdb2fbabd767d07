"""Run configuration: dataclasses that are at once the YAML schema and the CLI.

One YAML file per run (sections `data`, `model`, `train`, `generate`) plus
`section.key=value` or `--section.key value` overrides. Every value is checked
against the dataclass field's type on load, so a typo or an impossible value
fails before any work starts, with a message naming the key.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from seqtune.config_checks import check_ranges
from seqtune.config_sources import (
    KeyedConfigError,
    did_you_mean,
    flatten,
    nest,
    parse_override_args,
    read_yaml,
)
from seqtune.config_values import coerce, logger_names
from seqtune.errors import ConfigError
from seqtune.io import atomic_write_text

# generate.verify, also the choices of `seqtune predict/evaluate --verify` (chem.verify.PICKERS).
VerifyMode = Literal["none", "opsin", "round_trip", "well_formed", "vote"]


@dataclass
class DataConfig:
    """Where the pairs come from and how they are split."""

    # A CSV/TSV/JSONL/Parquet file, a .json file (an array of records, or JSON Lines), a folder
    # holding train/val/test files, or `hf:NAME[:CONFIG]`; several, comma-separated, are
    # concatenated split by split.
    path: str = "data/smiles2iupac_demo"
    # Column holding the inputs. While input/output are the defaults and the data has neither,
    # TRL's prompt/completion columns are read, or else `messages` conversations (the last user
    # turn is the input, the assistant turn after it the output, a system turn the row's instruction).
    input_column: str = "input"
    output_column: str = "output"  # Column holding the reference outputs.
    # Column holding each row's own instruction, shown in its prompt in place of `instruction`
    # (needs a format with an instruction slot: instruct, chat, or a template using it).
    instruction_column: str | None = None
    # Task name; chemistry tasks (smiles2iupac, iupac2smiles, smiles2formula, randomsmiles2canonical,
    # smiles2inchi) add chemistry scores.
    task: str = "smiles2iupac"
    # The instruction text of the instruct and chat formats.
    instruction: str = "Translate the SMILES string of a molecule into its IUPAC name."
    val_fraction: float = 0.05  # Share of a single file held out for validation (seeded, by unique input).
    test_fraction: float = 0.05  # Share of a single file held out for testing (seeded, by unique input).
    # How a single file is split into train/val/test: random, or scaffold (Bemis–Murcko scaffolds,
    # Chemprop's habit: no val/test molecule shares its scaffold with a training one; SMILES inputs).
    split: Literal["random", "scaffold"] = "random"
    # Subsample the training split to this many pairs (the paper's data-size axis; nested:
    # smaller sizes are subsets of larger ones).
    train_size: int | None = None
    # Cap on the validation split, to keep per-epoch evaluation cheap.
    val_size: int | None = 200
    test_size: int | None = 200  # Cap on the test split.
    dedupe: bool = True  # Keep the first pair per input; held-out inputs are removed from train.
    seed: int = 42  # Split and subsample seed.
    # Examples longer than this many tokens (prompt + completion + EOS) are
    # dropped or reported as an error; never cut silently.
    max_length: int = 256
    overlength: Literal["drop", "error"] = "drop"  # What happens to an example over max_length.
    # A file of pairs scored as the test split instead of a split of `path` (a fixed holdout
    # such as data/holdouts/moses_scaffold/test.jsonl); its inputs are removed from train/val.
    test_path: str | None = None
    # Chemistry tasks learnt beside `task` from the same training molecules, comma-separated
    # (iupac2smiles, smiles2formula, smiles2inchi, randomsmiles2canonical): one extra pair per
    # molecule and task, each with its own instruction. Scores stay on `task`.
    mix: str = ""
    # random_smiles: from the second epoch on, every training SMILES input is a fresh random
    # SMILES of the same molecule (seeded by seed, epoch and example: resumable, reproducible).
    augment: Literal["none", "random_smiles"] = "none"
    # name (iupac2smiles): every training output SMILES is written in the atom order OPSIN builds
    # its molecule from the input name, so the SMILES reads in the name's order; validation and test
    # references stay as they are. Needs generate.canonical, which turns predictions canonical again.
    output_order: Literal["as_is", "name"] = "as_is"
    # name (smiles2iupac): every training input SMILES is written in the atom order OPSIN builds it
    # from its output name; for a reranker of a name -> SMILES model taught output_order: name, which
    # reads that model's beams as they are written (inference.rerank).
    input_order: Literal["as_is", "name"] = "as_is"


@dataclass
class ModelConfig:
    """Which base model, how it is adapted, and how prompts look."""

    # Hub id, local folder, a .gguf file, or a bundled alias (smollm2-135m, gemma3-270m).
    name: str = "smollm2-135m"
    # full fine-tuning, or LoRA adapters (peft) merged into the weights on export.
    method: Literal["full", "lora"] = "full"
    lora_r: int = 16  # LoRA rank.
    lora_alpha: int = 32  # LoRA scaling numerator (the update is scaled by lora_alpha / lora_r).
    lora_dropout: float = 0.05  # Dropout on the LoRA branch, in [0, 1).
    lora_target_modules: str = "all-linear"  # Modules given adapters: all-linear or comma-separated names.
    # Prompt format: plain | instruct | chat, or a path to a Jinja template file.
    format: str = "instruct"
    # How inputs / outputs are spelled inside the prompt (undone on predictions):
    # none | smiles (a space between SMILES tokens: atoms, bonds, ring digits) | chars |
    # morphemes (IUPAC names, the text unchanged: each morpheme tokenised on its own) |
    # numbers (each whole number 10-31 as one Greek letter, one token: InChI atom numbers, counts).
    input_split: Literal["none", "smiles", "chars", "morphemes", "numbers"] = "none"
    output_split: Literal["none", "smiles", "chars", "morphemes", "numbers"] = "none"  # As input_split, for the outputs.
    # Outputs that show their working first ("working<marker>answer"): the model learns to write
    # both, and only what follows the last marker is its answer (predicted, scored, served);
    # references are read the same way. "" = outputs are answers only.
    answer_marker: str = ""
    # Text every output's answer starts with ("InChI=1S/"): taken off what the model is taught and
    # put back on every prediction, so no minute of training or decoding goes on it. "" = none.
    output_prefix: str = ""
    # Full fine-tuning with the lowest layers fixed: less compute per example (no backward below
    # the first trained layer); freeze_layers > 0 also freezes the embeddings (and a tied head).
    freeze_embeddings: bool = False
    freeze_layers: int = 0  # Number of lowest transformer blocks kept fixed (implies freeze_embeddings).
    # Only the lowest this-many blocks are kept (0: all): less compute per example; saved so.
    keep_layers: int = 0
    # task: the head computes only the tokens the training outputs use (saved so; decoding writes no other).
    output_vocab: Literal["all", "task"] = "all"
    # scratch: `name`'s architecture and tokenizer with random weights (seeded by train.seed).
    init: Literal["pretrained", "scratch"] = "pretrained"
    config_overrides: str = ""  # With init: scratch, as run_clm's --config_overrides: "hidden_size=384,...".


@dataclass
class TrainConfig:
    """Optimisation. Defaults: the learning-efficiency study's winner on 2 CPU cores
    (docs/results/learning_efficiency): lr 5e-4 with 3 % warm-up and cosine decay, batch 16.
    The paper's recipe (lr 2e-5 linear, batch 4) learnt nothing in the same CPU time there;
    configs/paper_recipe.yaml keeps it."""

    epochs: int = 3  # Passes over the training split.
    lr: float = 5e-4  # Peak learning rate of AdamW (the paper's recipe: 2e-5).
    # Examples per optimiser step, summed over devices.
    batch_size: int = 16
    # Token budget of one forward pass; a step larger than this is split into
    # micro-batches with gradient accumulation. 0 = the whole step at once.
    micro_batch_tokens: int = 0
    # Padding-free batches: sequences concatenated, positions restarting per sequence.
    # auto = on GPUs; off on CPUs, where attention under the dense block mask costs more
    # than the padding it saves (bench/RESULTS.md).
    packing: bool | Literal["auto"] = "auto"
    # Attention kernel while training (transformers' attn_implementation: eager, sdpa,
    # flash_attention_2, ...). auto = eager on CPUs, whose bf16 matmuls train ~10% faster
    # than SDPA's CPU kernel at these lengths; the model's own (sdpa) elsewhere. Decoding
    # always uses the model's own: on CPUs SDPA decodes 1.6x faster than eager.
    attention: str = "auto"
    # Padded batches: the prompt tokens all examples start with (an instruction template)
    # are computed once per forward pass instead of once per example, where that saves
    # enough work (larger batches; seqtune.training.prefix).
    shared_prefix: bool = True
    # Order of examples: random batches; grouped = random batches of similar length (less
    # padding, as transformers' group_by_length); curriculum = first epoch shortest first.
    order: Literal["random", "grouped", "curriculum"] = "random"
    weight_decay: float = 0.0  # AdamW (fused) weight decay.
    warmup_ratio: float = 0.03  # Share of the steps spent warming the learning rate up from 0, in [0, 1).
    lr_schedule: Literal["linear", "cosine", "constant"] = "cosine"  # Decay after the warm-up.
    max_grad_norm: float = 1.0  # Gradient-norm clipping (0 = none).
    # Weight in [0, 1] of the prompt tokens' loss added to the completion's: 0 = completion only
    # (TRL's default), 1 = every token (TRL's completion_only_loss: false). Eval loss: completion only.
    prompt_loss_weight: float = 0.0
    # Autocast (weights stay fp32). auto = bf16 where fast (CUDA with bf16, CPUs with AMX/AVX512-BF16),
    # else fp16 with a gradient scaler on CUDA (T4, V100), else fp32; run.json says which and why.
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    seed: int = 42  # Model initialisation and batch-order seed.
    # Log the running training loss every N optimiser steps, and at each epoch end. Each log
    # reads the loss back from the device (a sync that stalls a GPU's queue of work).
    log_every: int = 10
    # Save a checkpoint every N optimiser steps as well as at each epoch end (0 = epoch ends only).
    save_every_steps: int = 0
    keep_checkpoints: int = 2  # Complete checkpoints kept (0 = all).
    resume: bool = True  # Resume from the last complete checkpoint in out_dir.
    # Decode the validation split after every epoch for exact match / edit distance (and
    # chemistry scores), recorded as val_<score> in epochs.jsonl. The test split is decoded
    # once, at the end, on the model train.select keeps.
    eval_generate: bool = True
    # The weights the run ends with (model/, scored on test): the last epoch's, or the best
    # epoch's by train.select_metric on the validation split (kept in checkpoints/best).
    select: Literal["last", "best"] = "last"
    # What select: best ranks epochs by: eval_loss, or a decoded validation score (exact_match,
    # edit_distance, same_molecule_pct, ...; needs eval_generate). auto = exact_match with
    # eval_generate, else eval_loss. Lower is better for losses, edit distance and error counts.
    select_metric: str = "auto"
    # Metrics loggers (Accelerate's trackers), comma-separated: tensorboard, mlflow, wandb, trackio or
    # none. Offline into out_dir/logs, with the config as hyper-parameters and the run folder's name as
    # run name. Packages (dev extra): mlflow-skinny, wandb, trackio. A user's MLFLOW_TRACKING_URI,
    # WANDB_MODE or TRACKIO_DIR wins.
    logger: str = "tensorboard"
    compile: bool = False  # torch.compile the model (+20% on CPUs after ~4 min of compiling).
    # Stop after this many optimiser steps (0 = run all epochs); for smoke tests and benchmarks.
    max_steps: int = 0
    # On out-of-memory, halve the tokens per forward pass and retry the step instead of stopping.
    oom_halving: bool = False
    # Recompute activations in backward: ~1/3 more compute, far less memory. Turns shared_prefix off.
    gradient_checkpointing: bool = False
    progress: bool = True  # Progress bars on a terminal.


@dataclass
class GenerateConfig:
    """Decoding for evaluation and predict."""

    num_beams: int = 1  # Beam search width (1 = greedy).
    max_new_tokens: int = 128  # Longest output decoded, in tokens.
    batch_size: int = 64  # Inputs decoded together.
    # Verified decoding for chemistry tasks over max(num_beams, candidates) beams, else the top beam:
    # opsin keeps the first whose output round-trips (OPSIN, RDKit) to the input molecule;
    # round_trip the first that a rules tool reads back to the input itself (OPSIN a name,
    # openclatura a SMILES, RDKit an InChI; not the tasks whose way back passes through the answer);
    # well_formed the first that is a well-formed output; vote a well-formed spelling of the answer
    # the beams agree on most (each weighs 1/rank). The last two never read the input (chem.verify).
    verify: VerifyMode = "none"
    candidates: int = 1  # Beams verify tries: max(num_beams, candidates), all decoded (needs num_beams >= candidates).
    # Test-time augmentation for tasks that read SMILES: decode the input and up to spellings - 1
    # other random SMILES of its molecule (seeded by the input; never the canonical SMILES), and let
    # verify choose among all their beams (vote pools them, each weighing 1/rank within its spelling).
    spellings: int = 1
    # Noisy-channel reranking: a seqtune model folder trained on the reverse task (this task's
    # outputs -> its inputs, e.g. the SMILES -> IUPAC model for iupac2smiles). Each beam is scored
    # log P(beam | input) + log P(input | beam) under that model, best first, before verify picks.
    rerank_model: str = ""
    # Tasks that write SMILES: every beam rewritten in RDKit's canonical form before verify picks and
    # scores (reranking scores the beam as the model wrote it, the reverse model reads it canonical),
    # for a model taught another spelling (data.output_order: name).
    canonical: bool = False
    # smiles2inchi: drop each beam, while the search runs, once what it has written cannot be the
    # input molecule's InChI (other atoms, a bond or hydrogens the molecule lacks, an atom number
    # against InChI's rule that fewer heavy neighbours come first), so its place goes to one that
    # still can be. InChI's canonical numbering, what the model learns, is never computed
    # (chem.inchi_prefix).
    guide: bool = False
    # Inputs none of whose beams verify are decoded again with this many beams, checked the same way
    # (0: never): the wider search is paid for only where the first found nothing.
    retry_beams: int = 0
    # How many retries (retry_beams), each twice as wide as the last, for the inputs still without a verified beam.
    retry_rounds: int = 1


@dataclass
class RunConfig:
    """A whole run: data -> train -> predict -> evaluate."""

    out_dir: str = "runs/demo"  # Run folder: splits, checkpoints, predictions, model, metrics.
    evaluate_base: bool = True  # Score the untrained model on the test split first.
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def config_keys(cls: type | None = None, prefix: str = "") -> list[str]:
    """Every dotted config key, in declaration order."""
    keys: list[str] = []
    for name, tp in _field_types(cls or RunConfig).items():
        sub = dataclasses.is_dataclass(tp)
        keys += config_keys(tp, f"{prefix}{name}.") if sub else [f"{prefix}{name}"]
    return keys


def _build(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    types_ = _field_types(cls)
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        full = f"{prefix}{key}"
        if key not in types_:
            guesses = did_you_mean(full, config_keys())
            hint = (f"did you mean {' or '.join(map(repr, guesses))}?" if guesses
                    else f"allowed: {', '.join(prefix + k for k in types_)}")
            raise KeyedConfigError(full, f"unknown key {full!r}; {hint}")
        tp = types_[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise KeyedConfigError(full, f"{full}: expected a section (mapping), got {value!r}")
            kwargs[key] = _build(tp, value, f"{full}.")
        else:
            try:
                kwargs[key] = coerce(full, value, tp)
            except ConfigError as err:
                raise KeyedConfigError(full, str(err)) from None
    return cls(**kwargs)


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """Turn `a.b=v`, `--a.b v`, `--a.b=v`, Chemprop- and HF-style flags into a nested dict."""
    return nest(parse_override_args(args)[0])


def config_from_dict(raw: dict[str, Any]) -> RunConfig:
    """Build and check a config from nested sections (aliases such as `learning_rate` accepted)."""
    cfg = _build(RunConfig, nest(flatten(raw)), "")
    check_ranges(cfg)
    logger_names(cfg.train.logger)
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None) -> RunConfig:
    """Load a YAML config (or the defaults when `path` is None) and apply overrides.

    An error names where the bad key was written: `file:line`, or the command-line option."""
    values, origins = read_yaml(Path(path)) if path is not None else ({}, {})
    if overrides:
        if isinstance(overrides, dict):
            extra = flatten(overrides)
            where = dict.fromkeys(extra, "")  # set by code: no place to point at
        else:
            extra, where = parse_override_args(overrides)
        for key in extra:
            values.pop(key, None)
        values.update(extra)
        origins.update(where)
    try:
        return config_from_dict(nest(values))
    except ConfigError as err:
        key = getattr(err, "key", "")
        while key and key not in origins:
            key = key.rpartition(".")[0]
        where = origins[key] if key else (str(path) if path is not None else "")
        raise ConfigError(f"{where}: {err}" if where else str(err)) from None


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(cfg: RunConfig, path: str | Path) -> None:
    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
