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
    if cfg.data.output_order == "name" or cfg.data.input_order == "name":
        from seqtune.chem.tasks import name_ordered_smiles

        if cfg.data.output_order == "name":
            ordered = name_ordered_smiles([p.input for p in train], [p.output for p in train])
            train = [replace(p, output=o) for p, o in zip(train, ordered, strict=True)]
        else:
            ordered = name_ordered_smiles([p.output for p in train], [p.input for p in train])
            train = [replace(p, input=o) for p, o in zip(train, ordered, strict=True)]
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
