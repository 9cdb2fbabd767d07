"""The checks a run config passes before anything runs: each refusal names its key (one line)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from seqtune.config_sources import KeyedConfigError

if TYPE_CHECKING:
    from seqtune.config import DataConfig, GenerateConfig, RunConfig


def check_ranges(cfg: RunConfig) -> None:
    """Refuse, naming the key, a config whose values are out of range or do not fit together."""
    _check_numbers(cfg)
    _check_decoding(cfg)


def _check_numbers(cfg: RunConfig) -> None:
    d, m, t, g = cfg.data, cfg.model, cfg.train, cfg.generate
    positive = {
        "train.epochs": t.epochs, "train.batch_size": t.batch_size, "train.lr": t.lr, "train.log_every": t.log_every,
        "generate.num_beams": g.num_beams, "generate.max_new_tokens": g.max_new_tokens,
        "generate.batch_size": g.batch_size, "generate.candidates": g.candidates, "generate.spellings": g.spellings,
        "data.max_length": d.max_length, "model.lora_r": m.lora_r, "model.lora_alpha": m.lora_alpha,
        "data.train_size": d.train_size, "data.val_size": d.val_size, "data.test_size": d.test_size,
        "generate.retry_rounds": g.retry_rounds,
    }
    for key, v in positive.items():
        if v is not None and not v > 0:
            raise KeyedConfigError(key, f"{key}: must be > 0{' or null' if key.startswith('data.') else ''}, got {v}")
    non_negative = {
        "train.micro_batch_tokens": t.micro_batch_tokens, "train.save_every_steps": t.save_every_steps,
        "train.max_steps": t.max_steps, "train.weight_decay": t.weight_decay,
        "train.max_grad_norm": t.max_grad_norm, "train.keep_checkpoints": t.keep_checkpoints,
        "model.freeze_layers": m.freeze_layers, "model.keep_layers": m.keep_layers,
        "generate.retry_beams": g.retry_beams,
    }
    for key, v in non_negative.items():
        if v < 0:
            raise KeyedConfigError(key, f"{key}: must be >= 0, got {v}")
    for key, v in (("data.val_fraction", d.val_fraction), ("data.test_fraction", d.test_fraction),
                   ("train.warmup_ratio", t.warmup_ratio), ("model.lora_dropout", m.lora_dropout)):
        if not 0 <= v < 1:
            raise KeyedConfigError(key, f"{key}: must be in [0, 1), got {v}")
    if not 0 <= t.prompt_loss_weight <= 1:
        raise KeyedConfigError("train.prompt_loss_weight",
                               f"train.prompt_loss_weight: must be in [0, 1], got {t.prompt_loss_weight}")
    if d.val_fraction + d.test_fraction >= 1:
        raise KeyedConfigError("data.test_fraction",
                               "data.val_fraction + data.test_fraction: must leave some training data (< 1)")
    if t.select == "best" and t.select_metric not in ("auto", "eval_loss") and not t.eval_generate:
        raise KeyedConfigError("train.select_metric", f"train.select_metric: {t.select_metric} is a decoded "
                               "score, which needs train.eval_generate: true (or use eval_loss)")
    if m.config_overrides and m.init != "scratch":
        raise KeyedConfigError("model.config_overrides", "model.config_overrides: needs model.init: scratch "
                               "(pretrained weights would not fit a changed architecture)")


def _check_decoding(cfg: RunConfig) -> None:
    d, m, g = cfg.data, cfg.model, cfg.generate
    if g.candidates > g.num_beams and g.candidates > 1:
        raise KeyedConfigError("generate.candidates", f"generate.candidates: {g.candidates} needs "
                               f"generate.num_beams >= that number (got {g.num_beams})")
    if g.rerank_model:
        if max(g.num_beams, g.candidates) < 2:
            raise KeyedConfigError("generate.rerank_model", "generate.rerank_model: needs beams to rerank "
                                   "(generate.num_beams of 2 or more)")
        if m.answer_marker:  # here, not after training: decoding refuses it (inference.decode)
            raise KeyedConfigError("generate.rerank_model", "generate.rerank_model: scores whole outputs, and "
                                   "model.answer_marker has the model write its working first; use one of them")
    _check_output_order(d, g)
    if g.retry_beams and (g.verify == "none" or g.retry_beams <= max(g.num_beams, g.candidates)):
        raise KeyedConfigError("generate.retry_beams", f"generate.retry_beams: {g.retry_beams} needs generate.verify "
                               "(to know which inputs found nothing) and more beams than the first search's "
                               f"{max(g.num_beams, g.candidates)}")
    if g.verify == "round_trip":
        from seqtune.chem import round_trip_refusal

        if why := round_trip_refusal(d.task):
            raise KeyedConfigError("generate.verify", f"generate.verify: {why}")
    if g.guide:
        from seqtune.chem import guide_refusal

        if why := guide_refusal(d.task):
            raise KeyedConfigError("generate.guide", f"generate.guide: {why}")
    if g.spellings > 1:
        from seqtune.chem import INPUT_KINDS

        if INPUT_KINDS.get(d.task) != "smiles":
            raise KeyedConfigError("generate.spellings", f"generate.spellings: {g.spellings} needs a chemistry task "
                                   f"that reads SMILES ({', '.join(k for k, v in INPUT_KINDS.items() if v == 'smiles')}), "
                                   f"not {d.task!r}")
        if g.verify == "none":
            raise KeyedConfigError("generate.spellings", f"generate.spellings: {g.spellings} needs generate.verify "
                                   "to choose among the spellings' beams (vote, opsin or well_formed)")


def _check_output_order(d: DataConfig, g: GenerateConfig) -> None:
    from seqtune.chem import INPUT_KINDS, NAME_OUTPUT_TASKS, SMILES_OUTPUT_TASKS

    if g.canonical and d.task not in SMILES_OUTPUT_TASKS:
        raise KeyedConfigError("generate.canonical", f"generate.canonical: rewrites SMILES outputs, and {d.task!r} "
                               f"does not write SMILES ({', '.join(SMILES_OUTPUT_TASKS)} do)")
    if d.output_order == "name":
        if d.task not in SMILES_OUTPUT_TASKS or INPUT_KINDS[d.task] != "name":
            raise KeyedConfigError("data.output_order", "data.output_order: name orders SMILES outputs by their "
                                   f"input names (a task from names to SMILES), not {d.task!r}")
        if not g.canonical:
            raise KeyedConfigError("data.output_order", "data.output_order: name teaches non-canonical SMILES; set "
                                   "generate.canonical: true so predictions are scored in canonical form")
    if d.input_order == "name" and d.task not in NAME_OUTPUT_TASKS:
        raise KeyedConfigError("data.input_order", "data.input_order: name orders SMILES inputs by their output "
                               f"names ({', '.join(NAME_OUTPUT_TASKS)}), not {d.task!r}")
