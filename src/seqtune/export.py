"""`seqtune export` and the finishing touches of every run's `model/` folder.

A model folder must be usable without seqtune: vLLM, TGI, transformers pipelines and the Hub
read the tokenizer's chat template, `generation_config.json` and the model card's metadata,
so the training prompt, the stop token and the scores live there as well as in seqtune.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from seqtune.errors import SeqtuneError
from seqtune.io import atomic_write_json, atomic_write_text, replace_dir
from seqtune.model_card import base_hub_id, write_model_card
from seqtune.model_meta import FORMAT_FILE, saved_setting
from seqtune.prompts import PromptFormat, encode_prompt
from seqtune.rundir import RunDir

_CHAT_TEMPLATE_FILE = "chat_template.jinja"
# Inputs the rebuilt chat template must tokenise exactly as seqtune does before it is kept.
_PROBES = ("CCO", "c1ccc(cc1)C(=O)O", "2-methylpropan-1-ol", "Cl.N#CC[C@H](Br)F", "hello world")
_MARK = "\0seqtune-input\0"


def _bos_text(tok: Any) -> str:
    # A template format's prompt gets what the tokenizer adds in front of a text (BOS);
    # apply_chat_template adds nothing, so the template has to write it.
    bare = list(tok("a", add_special_tokens=False)["input_ids"])
    full = list(tok("a", add_special_tokens=True)["input_ids"])
    cut = next((i for i in range(len(full) - len(bare) + 1) if full[i:i + len(bare)] == bare), 0)
    return "".join(tok.convert_ids_to_tokens(full[:cut]))


def training_chat_template(tok: Any, fmt: PromptFormat, instruction: str) -> str | None:
    """A chat template whose one user message is the input and that renders the exact training
    prompt, or None when the prompt cannot be written as one (an input spelling, a filter)."""
    text = PromptFormat(fmt.name, fmt.template).prompt_text(tok, _MARK, instruction)
    if text.count(_MARK) != 1 or fmt.input_split != "none":
        return None
    before, after = text.split(_MARK)
    if fmt.template is not None:
        before = _bos_text(tok) + before
    # Literal pieces as string expressions: immune to the trim_blocks/lstrip_blocks settings
    # transformers renders with, and to whatever the instruction text contains.
    return ("{#- seqtune: the prompt this model was fine-tuned on; the input is the last user message -#}\n"
            f"{{{{ {json.dumps(before)} }}}}{{{{ messages[-1]['content'] }}}}{{{{ {json.dumps(after)} }}}}")


def _reproduces(tok: Any, template: str, want: list[list[int]]) -> bool:
    saved = tok.chat_template
    tok.chat_template = template
    try:
        for probe, ids in zip(_PROBES, want):
            got = tok.apply_chat_template([{"role": "user", "content": probe}], add_generation_prompt=True,
                                          return_dict=True)["input_ids"]
            if list(got) != ids:
                return False
        return True
    except Exception:  # a template this tokenizer cannot render is one that does not reproduce the prompt
        return False
    finally:
        tok.chat_template = saved


def write_prompt_files(folder: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Replace the base model's chat template with the training prompt (checked on probe inputs),
    or remove it where the prompt is not expressible; returns seqtune.json's updated fields."""
    from seqtune.modeling import load_tokenizer

    tok = load_tokenizer(str(folder))
    fmt = PromptFormat.from_dict(meta["format"])
    instruction = meta.get("instruction", "")
    want = [encode_prompt(tok, fmt, p, instruction) for p in _PROBES]
    template = training_chat_template(tok, fmt, instruction)
    updates: dict[str, Any] = {}
    if fmt.template is None and instruction and template is not None:
        # The chat format put the instruction inside the user message; the new template writes
        # it itself, so seqtune must stop adding it (kept as trained_instruction for the record).
        updates = {"instruction": "", "trained_instruction": instruction}
    if template is not None and _reproduces(tok, template, want):
        _set_chat_template(folder, template)
        updates["chat_template"] = "training prompt"
    else:
        _set_chat_template(folder, None)  # the base model's template is a prompt this model never saw
        updates["chat_template"] = "none: see prompt_template"
    shown = PromptFormat(fmt.name, fmt.template).prompt_text(tok, _MARK, instruction)
    updates["prompt_template"] = shown.replace("{", "{{").replace("}", "}}").replace(_MARK, "{input}")
    return updates


def _set_chat_template(folder: Path, template: str | None) -> None:
    path = folder / _CHAT_TEMPLATE_FILE
    if template is None:
        path.unlink(missing_ok=True)
    else:
        atomic_write_text(path, template)
    cfg_path = folder / "tokenizer_config.json"
    if cfg_path.is_file():  # an inline template there would win over the file on some versions
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        if cfg.pop("chat_template", None) is not None:
            atomic_write_json(cfg_path, cfg)


def write_generation_config(folder: Path, max_new_tokens: int, output_vocab: list[int] | None = None) -> None:
    """Greedy decoding that stops at EOS after at most `max_new_tokens`, as the run was scored;
    a model trained on its task's tokens only (`output_vocab`) has the others suppressed, so
    that plain transformers decodes it as seqtune does."""
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(folder)
    config = AutoConfig.from_pretrained(folder)
    eos = tok.eos_token_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos
    size = config.get_text_config().vocab_size
    suppress = sorted(set(range(size)) - set(output_vocab)) if output_vocab else None
    GenerationConfig(bos_token_id=getattr(config, "bos_token_id", None), eos_token_id=eos, pad_token_id=pad,
                     max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                     suppress_tokens=suppress).save_pretrained(folder)


def run_command() -> str:
    """The command line of this process as a user would type it again."""
    args = sys.argv[1:]
    prog = Path(sys.argv[0]).name if sys.argv else "seqtune"
    prog = "seqtune" if prog in ("seqtune", "__main__.py") else prog
    return shlex.join([prog, *args])


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def finish_model_folder(folder: str | Path, tuned: dict[str, Any] | None = None,
                        run_dir: str | Path | None = None, command: str | None = None) -> None:
    """Make a saved model folder self-describing for every tool: chat template = training prompt,
    generation_config.json, and a Hub model card with metadata. `tuned`: test scores (else read
    from RUN/metrics.json); `command`: the command that made the run (else this process's)."""
    folder = Path(folder)
    meta = _read_json(folder / FORMAT_FILE)
    if not meta:
        raise SeqtuneError(f"{folder}: not a seqtune model folder (no readable {FORMAT_FILE})")
    run = RunDir(run_dir if run_dir else folder.parent)
    metrics = _read_json(run.metrics)
    scores = tuned if tuned is not None else (metrics.get("tuned") or meta.get("test_scores") or {})
    meta.update(write_prompt_files(folder, meta))
    meta.setdefault("command", command or run_command())
    meta["test_scores"] = {k: v for k, v in scores.items() if isinstance(v, (int, float))}
    scratch = saved_setting(meta, "model.init") == "scratch"
    # Random weights shaped like the base: no "finetune" relation to it on the Hub.
    meta["base_model_hub_id"] = None if scratch else base_hub_id(meta.get("base_model", ""))
    max_new = int(saved_setting(meta, "generate.max_new_tokens", 128))
    write_generation_config(folder, max_new, meta.get("output_vocab"))
    atomic_write_json(folder / FORMAT_FILE, meta)
    write_model_card(folder, meta, _read_json(run.run_info), metrics)


def export_run(run_dir: str | Path, output: str | Path, dtype: str = "bf16", push_to_hub: str | None = None,
               private: bool = True) -> Path:
    """RUN/model, finished (see finish_model_folder), with its weights in `dtype`, written to
    `output` atomically; pushed to the Hub repo `push_to_hub` if given."""
    if dtype not in ("bf16", "fp32"):
        raise SeqtuneError(f"--dtype: {dtype!r} is not bf16 or fp32")
    src = RunDir(run_dir).model
    if not (src / FORMAT_FILE).is_file():
        raise SeqtuneError(f"{run_dir}: no finished model in {src} (run `seqtune run` to the end first)")
    output = Path(output)
    tmp = output.with_name(f".{output.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    _convert_weights(tmp, dtype)
    # A run made before commands were recorded is reproduced by its resolved config.
    made_by = _read_json(src / FORMAT_FILE).get("command") or shlex.join(
        ["seqtune", "run", str(RunDir(run_dir).config)])
    finish_model_folder(tmp, run_dir=run_dir, command=made_by)
    meta = _read_json(tmp / FORMAT_FILE)
    meta["exported_with"] = run_command()
    atomic_write_json(tmp / FORMAT_FILE, meta)
    output.parent.mkdir(parents=True, exist_ok=True)
    replace_dir(tmp, output)
    if push_to_hub:
        push(output, push_to_hub, private)
    return output


def _convert_weights(folder: Path, dtype: str) -> None:
    import torch

    from seqtune.modeling import pretrained_model

    want = torch.bfloat16 if dtype == "bf16" else torch.float32
    config = _read_json(folder / "config.json")
    if (config.get("dtype") or config.get("torch_dtype")) == str(want).removeprefix("torch."):
        return
    model = pretrained_model(folder)
    for stale in folder.glob("model*.safetensors*"):  # a sharded fp32 save may leave extra shards
        stale.unlink()
    model.to(want).save_pretrained(folder)


def push(folder: Path, repo_id: str, private: bool = True) -> str:
    """Upload an exported folder to the Hugging Face Hub (needs network and a token)."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    return str(api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message="seqtune export"))


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="seqtune export")
    p.add_argument("run_dir")
    p.add_argument("--output", "-o", required=True)
    p.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16", help="weights on disk (default bf16)")
    p.add_argument("--push-to-hub", metavar="USER/REPO", default=None,
                   help="also upload the folder to this Hub repo (network and HF token needed)")
    p.add_argument("--public", action="store_true", help="with --push-to-hub: make the repo public")
    a = p.parse_args(argv)
    print(export_run(a.run_dir, a.output, a.dtype, a.push_to_hub, private=not a.public))
    return 0
