"""An exported folder works without seqtune: chat template = training prompt, generation config, Hub card."""

from __future__ import annotations

import json
import re

import pytest
import torch
from tiny import make_model, make_tokenizer

from seqtune.export import export_run, finish_model_folder, training_chat_template
from seqtune.model_card import base_hub_id
from seqtune.modeling import ModelInfo, save_model
from seqtune.prompts import encode_prompt, get_format

INPUTS = ["CCO", "c1ccccc1", "CC(=O)O", "CC(C)O", "N#CBr"]
CONFIG = {"data": {"path": "data/chem/pubchem_tiny", "input_column": "smiles"}, "generate": {"max_new_tokens": 6},
          "model": {"method": "full"}, "train": {"epochs": 1, "lr": 5e-4, "batch_size": 16}}


def make_run(root, kind="llama", fmt="instruct", base="smollm2-135m", input_split="none", chat_template=None):
    tok = make_tokenizer(kind)
    if chat_template:
        tok.chat_template = chat_template
    run = root / "run"
    info = ModelInfo(get_format(fmt, input_split), "smiles2iupac", "Name it.", base, {"config": CONFIG})
    save_model(make_model(kind, len(tok), seed=3, hidden=32), tok, run / "model", info)
    (run / "metrics.json").write_text(json.dumps({"tuned": {"exact_match": 12.5, "same_molecule_pct": 20.0,
                                                           "eval_loss": 0.5}}))
    (run / "run.json").write_text(json.dumps({"n_params": 123456, "data_hash": "abc",
                                              "data": {"used": {"train": 90, "test": 10}}}))
    return run, tok, info


@pytest.mark.parametrize("kind", ["gpt2", "llama", "opt"])
@pytest.mark.parametrize("fmt", ["plain", "instruct"])
def test_chat_template_gives_the_training_prompt_ids(tmp_path, kind, fmt):
    from transformers import AutoTokenizer

    run, tok, info = make_run(tmp_path, kind, fmt)
    finish_model_folder(run / "model")
    saved = AutoTokenizer.from_pretrained(run / "model")
    for text in INPUTS + ['a "quoted" {x} \\n', "two words"]:
        ids = saved.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                        return_dict=True)["input_ids"]
        assert list(ids) == encode_prompt(tok, info.format, text, info.instruction), (kind, fmt, text)


def test_chat_format_bakes_the_instruction_into_the_template(tmp_path):
    from transformers import AutoTokenizer

    from seqtune.modeling import load_finetuned

    template = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
                "{% if add_generation_prompt %}<|assistant|> {% endif %}")
    run, tok, info = make_run(tmp_path, "llama", "chat", chat_template=template)
    want = [encode_prompt(tok, info.format, x, info.instruction) for x in INPUTS]
    finish_model_folder(run / "model")
    saved = AutoTokenizer.from_pretrained(run / "model")
    _, tok2, info2 = load_finetuned(run / "model")
    for text, ids in zip(INPUTS, want):
        got = saved.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                        return_dict=True)["input_ids"]
        assert list(got) == ids
        assert encode_prompt(tok2, info2.format, text, info2.instruction) == ids  # seqtune itself: unchanged
    finish_model_folder(run / "model")  # idempotent
    _, tok3, info3 = load_finetuned(run / "model")
    assert [encode_prompt(tok3, info3.format, x, info3.instruction) for x in INPUTS] == want


def test_exported_folder_decodes_like_seqtune_predict_with_plain_transformers(tmp_path):
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from seqtune.inference.predict import predict

    run, _, _ = make_run(tmp_path)
    out = export_run(run, tmp_path / "exported")
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}
    gen = json.loads((out / "generation_config.json").read_text())
    tok = AutoTokenizer.from_pretrained(out)
    assert gen["eos_token_id"] == tok.eos_token_id and gen["max_new_tokens"] == 6 and gen["pad_token_id"] is not None
    src = tmp_path / "in.csv"
    src.write_text("id,smiles\n" + "".join(f"m{i},{x}\n" for i, x in enumerate(INPUTS)))
    predict(str(out), str(src), str(tmp_path / "out.csv"), precision="fp32")
    import pandas as pd

    ours = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert list(ours.columns[:2]) == ["id", "smiles"] and list(ours["smiles"]) == INPUTS  # trained column
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    theirs = []
    for text in INPUTS:
        batch = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                        return_dict=True, return_tensors="pt")
        ids = model.generate(**batch)
        theirs.append(tok.decode(ids[0, batch["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    assert list(ours["prediction"]) == theirs


def test_card_metadata_and_fp32_option(tmp_path):
    from huggingface_hub import ModelCard
    from safetensors import safe_open

    run, _, _ = make_run(tmp_path, base="gemma3-270m")
    out = export_run(run, tmp_path / "exported", dtype="fp32")
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float32}
    card = ModelCard.load(out / "README.md")
    data = card.data
    assert data.base_model == "google/gemma-3-270m" and data.license == "gemma"
    assert data.pipeline_tag == "text-generation" and data.model_name == "seqtune-smiles2iupac"
    scores = {r.metric_type: r.metric_value for r in data.eval_results}
    assert scores == {"exact_match": 12.5, "same_molecule_pct": 20.0}
    text = card.text
    for part in ("## Intended use and limits", "## How it was made", "seqtune run", "apply_chat_template",
                 "OPSIN", "held-out"):
        assert part in text, part
    meta = json.loads((out / "seqtune.json").read_text())
    assert meta["chat_template"] == "training prompt" and "{input}" in meta["prompt_template"]
    assert base_hub_id("smollm2-135m") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    run2, _, _ = make_run(tmp_path / "b")
    assert ModelCard.load(export_run(run2, tmp_path / "e2") / "README.md").data.license == "apache-2.0"


def test_a_spelled_input_gets_prompt_template_and_a_working_snippet(tmp_path):
    """SMILES spelled token by token is not expressible as a chat template: no misleading
    template is left, and the card's transformers snippet reproduces seqtune's predictions."""
    from seqtune.inference.predict import predict

    run, tok, info = make_run(tmp_path, "gpt2", "instruct", input_split="smiles")
    assert training_chat_template(tok, info.format, info.instruction) is None
    out = export_run(run, tmp_path / "exported", dtype="fp32")
    assert not (out / "chat_template.jinja").exists()
    meta = json.loads((out / "seqtune.json").read_text())
    assert meta["chat_template"].startswith("none") and "{input}" in meta["prompt_template"]
    snippet = re.search(r"```python\n(.*?)```", (out / "README.md").read_text(), re.S).group(1)
    snippet = snippet.replace('model_dir = "."', f'model_dir = {str(out)!r}')
    snippet = snippet.replace("inputs = ['CCO']", f"inputs = {INPUTS!r}")
    assert "    print(text, answer.strip())" in snippet
    snippet = snippet.replace("    print(text, answer.strip())", "    results.append(answer.strip())")
    scope: dict = {"results": []}
    exec(compile(snippet, "card-snippet", "exec"), scope)
    theirs = scope["results"]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(INPUTS) + "\n")
    predict(str(out), str(src), str(tmp_path / "out.jsonl"), precision="fp32")
    ours = [json.loads(line)["prediction"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert ours == theirs


def test_every_run_model_folder_is_finished_and_exports_from_the_command_line(tmp_path, tiny_llama_dir):
    from huggingface_hub import ModelCard

    from seqtune.cli import main
    from seqtune.config import load_config
    from seqtune.pipeline import run_pipeline

    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "test"):
        (data / f"{split}.jsonl").write_text("".join(json.dumps({"input": x, "output": x.lower()}) + "\n"
                                                     for x in INPUTS))
    cfg = load_config(None, {
        "out_dir": str(tmp_path / "run"), "evaluate_base": False,
        "data": {"path": str(data), "task": "toy", "dedupe": False, "test_size": None},
        "model": {"name": str(tiny_llama_dir), "format": "instruct"},
        "train": {"epochs": 1, "batch_size": 4, "progress": False, "logger": "none", "eval_generate": False},
        "generate": {"max_new_tokens": 7},
    })
    result = run_pipeline(cfg)
    model = tmp_path / "run" / "model"
    assert (model / "chat_template.jinja").is_file()
    assert json.loads((model / "generation_config.json").read_text())["max_new_tokens"] == 7
    scores = {r.metric_type: r.metric_value for r in ModelCard.load(model / "README.md").data.eval_results}
    assert scores["exact_match"] == round(result["tuned"]["exact_match"], 4)
    assert main(["export", str(tmp_path / "run"), "-o", str(tmp_path / "out"), "--dtype", "fp32"]) == 0
    assert (tmp_path / "out" / "chat_template.jinja").read_text() == (model / "chat_template.jinja").read_text()


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_predict_writes_the_suffix_format_and_keeps_input_columns(tmp_path, suffix):
    import pandas as pd

    from seqtune.inference.predict import predict

    run, _, _ = make_run(tmp_path)
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "smiles": x, "note": "n"}) + "\n" for i, x in enumerate(INPUTS)))
    out = tmp_path / f"out{suffix}"
    predict(str(run / "model"), str(src), str(out), max_new_tokens=3)
    read = {".csv": pd.read_csv, ".tsv": lambda p: pd.read_csv(p, sep="\t"), ".parquet": pd.read_parquet,
            ".jsonl": lambda p: pd.read_json(p, lines=True)}[suffix]
    table = read(out)
    assert list(table.columns[:3]) == ["id", "smiles", "note"] and "prediction" in table.columns
    assert list(table["smiles"]) == INPUTS and list(table["id"]) == list(range(len(INPUTS)))


def test_the_cards_snippet_spells_and_reads_numbers_as_seqtune_does():
    """A model trained with numbers as Greek letters (model.input_split / output_split: numbers):
    the card's transformers snippet spells the input and reads the answer back the same way."""
    from seqtune.model_card import transformers_snippet
    from seqtune.prompts import join_text, split_text

    fmt = {"name": "plain", "template": "{{ input }}\n", "input_split": "numbers", "output_split": "numbers"}
    snippet = transformers_snippet({"format": fmt, "prompt_template": "{input}\n", "task": "smiles2inchi"})
    spell_def = snippet[snippet.index("import re"):snippet.index("model_dir")]
    read_line = next(line.strip() for line in snippet.splitlines() if "NUMBER" not in line and "index(c)" in line)
    inchi = "InChI=1S/C10H14O4/c1-13-9-4-2-3-5-10(9)14-7-8(12)6-11/h2-5,8,11-12H,6-7H2,1H3 07 100 32"
    scope: dict = {}
    exec(compile(spell_def, "card-spell", "exec"), scope)
    assert scope["spell"](inchi) == split_text(inchi, "numbers")
    scope["answer"] = split_text(inchi, "numbers")
    exec(compile(read_line, "card-read", "exec"), scope)
    assert scope["answer"] == join_text(split_text(inchi, "numbers"), "numbers") == inchi


def test_the_cards_limits_say_what_each_chemistry_task_writes_and_how_to_check_it():
    """A chemist reading an InChI model's card is sent to RDKit, not OPSIN; every chemistry task has its words."""
    from seqtune.chem import CHEM_TASKS
    from seqtune.model_card import _CHECKS, _limits

    assert set(_CHECKS) == CHEM_TASKS
    prov = {"settings": {"max_heavy_atoms": 14}}
    inchi = _limits("smiles2inchi", prov, {"same_molecule_pct": 55.7})
    assert "About 56% of test InChIs are the input's molecule" in inchi and "RDKit" in inchi
    assert "OPSIN" not in inchi and "name" not in inchi and "at most 14 heavy atoms" in inchi
    naming = _limits("smiles2iupac", {}, {"same_molecule_pct": 20.0})
    assert "OPSIN round trip" in naming and "test names" in naming
    assert "formulas" in _limits("smiles2formula", {}, {}) and "% of test" not in _limits("smiles2formula", {}, {})
    assert _limits("my_task", prov, {"same_molecule_pct": 1.0}).endswith("when they are wrong.")
