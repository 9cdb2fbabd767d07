"""What a run trains on: its training split, its SMILES in `data.output_order` / `data.input_order`,
plus the pairs of `data.mix`. One owner, so `seqtune check` plans the same examples `seqtune run` trains on."""

from __future__ import annotations

from dataclasses import replace

from seqtune.config import RunConfig
from seqtune.data import Pair
from seqtune.errors import ConfigError
from seqtune.prompts import PromptFormat


def training_pairs(cfg: RunConfig, train: list[Pair], fmt: PromptFormat) -> list[Pair]:
    """The training split (its SMILES in `data.output_order` / `data.input_order`) plus the pairs
    of `data.mix` (other tasks on the same molecules)."""
    if cfg.data.output_order == "name":
        train = _name_ordered(train, smiles="output")
    elif cfg.data.input_order == "name":  # the config allows one: they fit opposite tasks
        train = _name_ordered(train, smiles="input")
    extra = [t.strip() for t in cfg.data.mix.split(",") if t.strip()]
    if not extra:
        return train
    if not fmt.shows_instruction:
        raise ConfigError(f"data.mix: the {fmt.name!r} format does not show the instruction, so the model could "
                          "not tell the tasks apart; use model.format: instruct or chat")
    try:
        from seqtune.chem.tasks import mix_examples
    except ModuleNotFoundError as err:
        raise ConfigError(f"data.mix: needs the chemistry extra ({err.name} is not installed)") from None
    try:
        made = mix_examples(cfg.data.task, [(p.input, p.output) for p in train], extra, cfg.data.seed)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return train + [Pair(i, o, f"data.mix:{n + 1}", instr) for n, (i, o, instr) in enumerate(made)]


def _name_ordered(train: list[Pair], smiles: str) -> list[Pair]:
    """`train` with its `smiles` side ("input" or "output") written in the order the other side, a
    name, reads (chem.tasks.name_ordered_smiles)."""
    from seqtune.chem.tasks import name_ordered_smiles

    name = "input" if smiles == "output" else "output"
    ordered = name_ordered_smiles([getattr(p, name) for p in train], [getattr(p, smiles) for p in train])
    return [replace(p, **{smiles: text}) for p, text in zip(train, ordered, strict=True)]
