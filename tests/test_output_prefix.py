"""model.output_prefix: text every answer starts with ("InChI=1S/") is not taught or generated,
and comes back on every prediction (decode, the model folder, the card's snippet)."""

import json

import pytest
from tiny import make_tokenizer, tiny_run

from seqtune.config import load_config
from seqtune.errors import ConfigError
from seqtune.prompts import PromptFormat, encode_completion, encode_example, encode_prompt, get_format

PREFIX = "InChI=1S/"
INCHI = "InChI=1S/C10H14O4/c1-13-9-4-2-3-5-10(9)14-7-8(12)6-11/h2-5,8,11-12H,6-7H2,1H3"


@pytest.mark.parametrize("split", ["none", "numbers", "chars"])
def test_the_prefix_is_not_taught_and_comes_back_on_the_prediction(split):
    tok = make_tokenizer("gpt2")
    fmt = get_format("plain", "smiles", split, output_prefix=PREFIX)
    taught = fmt.completion_text(INCHI)
    assert taught == get_format("plain", "smiles", split).completion_text(INCHI[len(PREFIX):])
    ids, mask = encode_example(tok, fmt, "COc1ccccc1OCC(O)CO", INCHI, "")
    prompt = encode_prompt(tok, fmt, "COc1ccccc1OCC(O)CO", "")
    assert len(ids) == len(mask) and ids[:len(prompt)] == prompt and not any(mask[:len(prompt)])
    assert all(mask[len(prompt):])
    without = encode_completion(tok, INCHI, get_format("plain", "smiles", split))
    assert len(ids) - len(prompt) < len(without)  # the prefix's tokens are gone from what is trained
    assert fmt.output_text(tok.decode(ids[len(prompt):-1])) == INCHI
    assert fmt.answer(INCHI) == INCHI  # references keep it: they are compared with whole predictions


def test_an_output_without_the_prefix_is_refused_by_name():
    fmt = get_format("plain", "none", "none", output_prefix=PREFIX)
    with pytest.raises(ConfigError, match=r"model.output_prefix: 'InChI=1S/' does not start this output \('InChI=1/"):
        fmt.completion_text("InChI=1/CH4/h1H4")


def test_the_prefix_is_saved_with_the_format():
    fmt = get_format("plain", "smiles", "numbers", output_prefix=PREFIX)
    assert PromptFormat.from_dict(json.loads(json.dumps(fmt.to_dict()))) == fmt
    assert PromptFormat.from_dict({"name": "plain", "template": "{{ input }}\n"}).output_prefix == ""


def test_a_run_predicts_whole_outputs_and_its_card_puts_the_prefix_back(tmp_path, tiny_llama_dir):
    from seqtune.model_card import transformers_snippet
    from seqtune.modeling import load_finetuned
    from seqtune.pipeline import run_pipeline

    rows = [{"input": "C" * k, "output": f"{PREFIX}C{k}/c{k}"} for k in range(1, 19)]
    raw = tiny_run(tmp_path, rows, tiny_llama_dir, {"output_prefix": PREFIX}, max_new_tokens=4)
    run_pipeline(load_config(None, raw))
    folder = tmp_path / "run" / "model"
    meta = json.loads((folder / "seqtune.json").read_text())
    assert meta["format"]["output_prefix"] == PREFIX
    scored = [json.loads(line) for line in (tmp_path / "run" / "predictions" / "test.jsonl").read_text().splitlines()]
    assert len(scored) >= 2 and all(r["prediction"].startswith(PREFIX) for r in scored)
    assert all(r["reference"].startswith(PREFIX) for r in scored)
    assert load_finetuned(folder)[2].format.output_prefix == PREFIX
    read_line = next(line.strip() for line in transformers_snippet(meta).splitlines() if PREFIX in line)
    scope = {"answer": " C2/c2"}
    exec(compile(read_line, "card-read", "exec"), scope)
    assert scope["answer"] == f"{PREFIX}C2/c2"


def test_a_run_whose_data_lacks_the_prefix_fails_before_writing(tmp_path, tiny_llama_dir):
    from seqtune.pipeline import run_pipeline

    rows = [{"input": "C" * k, "output": f"{PREFIX}C{k}" if k != 7 else "C7"} for k in range(1, 19)]
    raw = tiny_run(tmp_path, rows, tiny_llama_dir, {"output_prefix": PREFIX})
    with pytest.raises(ConfigError, match="does not start this output \\('C7'\\)"):
        run_pipeline(load_config(None, raw))
    assert not (tmp_path / "run").exists()
