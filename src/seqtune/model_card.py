"""The model card (README.md) of a model folder, built with huggingface_hub's ModelCard so the Hub,
vLLM/TGI front-ends and search read its metadata: base model, licence, pipeline tag, scores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from seqtune.chem import CHEM_TASKS, INPUT_KINDS
from seqtune.prompts import NUMBER_LETTERS, SMILES_TOKEN

# Scores shown in model-index: the ones a reader compares models by (losses stay in the table).
_NOT_IN_INDEX = ("train_loss", "eval_loss", "n")


# The bundled offline aliases are GGUF copies of these Hub models: the card names the original.
ALIAS_HUB_IDS = {"smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct", "gemma3-270m": "google/gemma-3-270m"}
# Licence of a base model, by a piece of its hub id; a fine-tune inherits its base's terms.
_LICENCES = (("gemma", "gemma"), ("smollm", "apache-2.0"), ("pythia", "apache-2.0"), ("gpt2", "mit"))


def base_hub_id(base_model: str) -> str | None:
    """The Hub id of a base model given as an alias, a hub id, or a local path (None)."""
    if base_model in ALIAS_HUB_IDS:
        return ALIAS_HUB_IDS[base_model]
    if base_model.count("/") == 1 and not Path(base_model).exists() and not base_model.endswith(".gguf"):
        return base_model
    return None


def _licence(hub_id: str | None) -> str | None:
    low = (hub_id or "").lower()
    return next((lic for key, lic in _LICENCES if key in low), None)


def _provenance(data_path: str) -> dict[str, Any]:
    for part in data_path.split(","):
        prov = Path(part.strip()) / "provenance.json"
        if prov.is_file():
            try:
                return json.loads(prov.read_text(encoding="utf-8"))
            except ValueError:
                return {}
    return {}


def card_data(meta: dict[str, Any], dataset_label: str) -> Any:
    from huggingface_hub import EvalResult, ModelCardData

    cfg = meta.get("config", {})
    data_path = cfg.get("data", {}).get("path", "")
    hub_id = meta.get("base_model_hub_id")
    task = meta.get("task") or "seq2seq"
    datasets = [p.strip()[3:].split(":")[0] for p in data_path.split(",") if p.strip().startswith("hf:")]
    results = [EvalResult(task_type="text-generation", task_name=task, dataset_type=dataset_label,
                          dataset_name=f"{dataset_label} (held-out test split)", dataset_split="test",
                          metric_type=k, metric_name=k, metric_value=round(float(v), 4))
               for k, v in meta.get("test_scores", {}).items() if k not in _NOT_IN_INDEX]
    lic = _licence(hub_id)
    return ModelCardData(
        base_model=hub_id, base_model_relation="finetune" if hub_id else None, license=lic or "other",
        license_name=None if lic else "same-as-base-model", datasets=datasets or None,
        pipeline_tag="text-generation", library_name="transformers", model_name=f"seqtune-{task}",
        tags=["seqtune", task] + (["chemistry"] if task in CHEM_TASKS else []), eval_results=results or None,
    )


def transformers_snippet(meta: dict[str, Any]) -> str:
    """Python that prompts and decodes this folder exactly as seqtune does, with transformers alone."""
    fmt = meta["format"]
    example = "CCO" if INPUT_KINDS.get(meta.get("task")) == "smiles" else "ethanol"
    lines = ["from transformers import AutoModelForCausalLM, AutoTokenizer", "",
             'model_dir = "."  # this folder, or its Hub repo id',
             "tok = AutoTokenizer.from_pretrained(model_dir)",
             "model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=\"float32\")",
             f"inputs = [{example!r}]", "for text in inputs:"]
    if meta.get("chat_template") == "training prompt":
        lines += ["    batch = tok.apply_chat_template([{\"role\": \"user\", \"content\": text}],",
                  "                                    add_generation_prompt=True, return_dict=True, return_tensors=\"pt\")"]
    else:
        lines[1:1] = _spelling_lines(fmt["input_split"])
        add = fmt.get("template") is not None
        lines += [f"    prompt = PROMPT_TEMPLATE.format(input={'spell(text)' if fmt['input_split'] != 'none' else 'text'})",
                  f"    batch = tok(prompt, add_special_tokens={add}, return_tensors=\"pt\")"]
        lines.insert(2, f"PROMPT_TEMPLATE = {meta['prompt_template']!r}  # seqtune.json: prompt_template")
    lines += ["    out = model.generate(**batch)  # generation_config.json: greedy, stop at EOS, max_new_tokens",
              "    answer = tok.decode(out[0, batch[\"input_ids\"].shape[1]:], skip_special_tokens=True)"]
    split = fmt.get("output_split", "none")
    if split == "smiles":
        lines.append("    answer = \"\".join(answer.split())  # trained with spaces between SMILES tokens")
    elif split == "chars":
        lines.append("    answer = \"\".join(answer.split(\" \")).replace(\"_\", \" \")  # trained one character apart")
    elif split == "numbers":
        lines.append(f"    answer = \"\".join(str(10 + {NUMBER_LETTERS!r}.index(c)) if c in {NUMBER_LETTERS!r} else c "
                     "for c in answer)  # trained with numbers 10-31 as Greek letters")
    if fmt.get("output_prefix"):
        lines.append(f"    answer = {fmt['output_prefix']!r} + answer.strip()  # trained without the text every answer starts with")
    lines.append("    print(text, answer.strip())")
    return "\n".join(lines)


def _spelling_lines(split: str) -> list[str]:
    if split == "smiles":
        return ["import re", "", f"SMILES_TOKEN = re.compile({SMILES_TOKEN.pattern!r})", "",
                "def spell(s):  # one space between SMILES tokens, as in training",
                "    tokens = SMILES_TOKEN.findall(s)", "    return \" \".join(tokens) if \"\".join(tokens) == s else s",
                ""]
    if split == "chars":
        return ["", "def spell(s):  # one space between characters, a real space as _, as in training",
                "    return \" \".join(\"_\" if c == \" \" else c for c in s)", ""]
    if split == "numbers":
        return ["import re", "", f"NUMBER_LETTERS = {NUMBER_LETTERS!r}", "",
                "def spell(s):  # each whole number 10-31 as one Greek letter (10 = first), as in training",
                "    return re.sub(r\"[0-9]+\", lambda m: m.group() if m.group()[0] == \"0\" or not 10 <= int(m.group())"
                f" < {10 + len(NUMBER_LETTERS)}",
                "                  else NUMBER_LETTERS[int(m.group()) - 10], s)", ""]
    if split == "morphemes":
        return ["", "def spell(s):  # trained on the name tokenised a morpheme at a time (seqtune.name_morphemes):",
                "    return s  # this plain tokenisation is close; `seqtune predict` prompts exactly as in training", ""]
    return []


def _scores_table(scores: dict[str, Any]) -> str:
    rows = "\n".join(f"| {k} | {v:.4g} |" for k, v in scores.items() if isinstance(v, (int, float)))
    return f"| metric | value |\n|---|---|\n{rows}" if rows else "(no test scores recorded)"


# What each chemistry task writes, and how a user checks one before trusting it: the card is read
# by chemists, so an InChI model must not be sent to OPSIN.
_CHECKS = {
    "smiles2iupac": ("names", "Check each name with an OPSIN round trip (`seqtune predict --verify opsin`, or the "
                     "badge on the `seqtune serve` page)"),
    "iupac2smiles": ("SMILES", "Check each SMILES by naming it back (`seqtune predict --verify round_trip`)"),
    "smiles2inchi": ("InChIs", "Check each InChI by reading it back with RDKit (`seqtune predict --verify round_trip`)"),
    "smiles2formula": ("formulas", "Compute formulas with RDKit where they matter"),
    "randomsmiles2canonical": ("SMILES", "Canonicalise with RDKit where it matters"),
}


def _limits(task: str, prov: dict[str, Any], scores: dict[str, Any]) -> str:
    text = ("A small language model trained on one task: it answers in the form of its training outputs and "
            "does not follow other instructions. Outputs look plausible when they are wrong.")
    if task in CHEM_TASKS:
        noun, check = _CHECKS[task]
        atoms = prov.get("settings", {}).get("max_heavy_atoms")
        size = f" (training molecules had at most {atoms} heavy atoms)" if atoms else ""
        same = scores.get("same_molecule_pct")
        rate = f" About {same:.0f}% of test {noun} are the input's molecule." if same is not None else ""
        text += (f" Molecules unlike the training set{size} get worse {noun}.{rate} {check} before using one; "
                 f"do not use unchecked {noun} for safety, regulatory or purchasing decisions.")
    return text


def render_card(meta: dict[str, Any], run_info: dict[str, Any], metrics: dict[str, Any]) -> str:
    from huggingface_hub import ModelCard

    cfg = meta.get("config", {})
    data, model, train = cfg.get("data", {}), cfg.get("model", {}), cfg.get("train", {})
    task = meta.get("task") or "seq2seq"
    data_path = data.get("path", "unknown")
    prov = _provenance(data_path)
    label = Path(data_path.split(",")[0]).name or data_path
    base = meta.get("base_model", "")
    hub = meta.get("base_model_hub_id")
    n_params = run_info.get("n_params") or metrics.get("train", {}).get("n_params")
    size = f" ({n_params / 1e6:.1f}M parameters)" if n_params else ""
    lic = _licence(hub)
    scratch = model.get("init") == "scratch"
    origin = (f"trained from random weights with the architecture and tokenizer of `{base}`" if scratch else
              f"fine-tuned from [{hub or base}]({f'https://huggingface.co/{hub}' if hub else '#'})")
    body = f"""
# seqtune-{task}

`{task}`: {origin}{size}
(seqtune alias `{base}`) with {model.get("method", "full")} {"training" if scratch else "fine-tuning"}, the `{meta["format"]["name"]}` prompt
format, {run_info.get("data", {}).get("used", {}).get("train", "?")} training pairs, {train.get("epochs", "?")} epoch(s),
lr {train.get("lr", "?")}, batch {train.get("batch_size", "?")}.

## Use

```bash
seqtune predict --model THIS_FOLDER -i molecules.csv -o named.csv   # add --beams 5 --verify opsin for chemistry
seqtune serve THIS_FOLDER                                           # web page and API on http://127.0.0.1:8000
```

With transformers alone (the tokenizer's chat template is {"the training prompt" if meta.get("chat_template") == "training prompt" else "absent: the prompt is `prompt_template` below"}):

```python
{transformers_snippet(meta)}
```

Prompt (`prompt_template` in seqtune.json; `{{input}}` is the input{", spelled " + meta["format"]["input_split"] if meta["format"]["input_split"] != "none" else ""}):

```text
{meta.get("prompt_template", "")}
```

## Test scores ({run_info.get("data", {}).get("used", {}).get("test", "?")} held-out pairs of `{data_path}`)

{_scores_table(meta.get("test_scores", {}))}

## Training data and provenance

- data: `{data_path}` (hash {run_info.get("data_hash", "?")}), input column `{data.get("input_column", "input")}`,
  output column `{data.get("output_column", "output")}`
{_provenance_lines(prov)}
## Intended use and limits

{_limits(task, prov, meta.get("test_scores", {}))}

## How it was made

```bash
{meta.get("command", "?")}
```

The full resolved config is in `seqtune.json` (`config`); package versions: {", ".join(f"{k} {v}" for k, v in run_info.get("versions", {}).items()) or "?"}.

## Licence

{f"`{lic}`, inherited from the base model [{hub}](https://huggingface.co/{hub})." if lic else "The base model's licence applies; check it before redistributing."}
"""
    return str(ModelCard(f"---\n{card_data(meta, label).to_yaml()}\n---\n{body}"))


def _provenance_lines(prov: dict[str, Any]) -> str:
    if not prov:
        return ""
    src = prov.get("source", {})
    lines = [f"- source: {src.get('source', '?')} ({src.get('package', '')}), {prov.get('total', '?')} verified pairs",
             f"- verification: {prov['verification']}" if prov.get("verification") else "",
             f"- held out from training by InChIKey: {', '.join(prov['excluded_from'])}" if prov.get("excluded_from")
             else ""]
    return "\n".join(line for line in lines if line) + "\n"


def write_model_card(folder: Path, meta: dict[str, Any], run_info: dict[str, Any], metrics: dict[str, Any]) -> None:
    from seqtune.io import atomic_write_text

    atomic_write_text(folder / "README.md", render_card(meta, run_info, metrics))
