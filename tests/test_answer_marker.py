"""Outputs that show their working (model.answer_marker): the model is taught the working and the
answer, and only the answer is predicted, scored and compared with the reference's answer."""

import json

import pytest
from tiny import make_tokenizer, tiny_run

from seqtune.config import load_config
from seqtune.errors import ConfigError
from seqtune.prompts import PromptFormat, encode_example, encode_prompt, get_format

MARK = " => "


def test_the_working_is_taught_and_only_the_answer_is_read():
    tok = make_tokenizer("gpt2")
    fmt = get_format("plain", "smiles", "smiles", MARK)
    output = "C1 C2 O3 O4 => CC(=O)O"
    assert fmt.completion_text(output) == "C1 C2 O3 O4 => C C ( = O ) O"  # the spelling is the answer's
    ids, mask = encode_example(tok, fmt, "OC(C)=O", output, "")
    prompt = encode_prompt(tok, fmt, "OC(C)=O", "")
    assert ids[:len(prompt)] == prompt and not any(mask[:len(prompt)]) and all(mask[len(prompt):])
    completion = tok.decode(ids[len(prompt):-1])
    assert "C1 C2 O3 O4" in completion  # the working is learnt, not masked out
    assert fmt.output_text(completion) == "CC(=O)O"
    assert fmt.answer(output) == "CC(=O)O" and fmt.answer("CCO") == "CCO"  # a reference with or without working
    assert fmt.answer("a => b => CCO") == "CCO"  # the last marker: the working may quote one
    plain = get_format("plain", "smiles", "smiles")
    assert plain.answer(output) == output  # no marker set: the whole output is the answer


def test_the_marker_is_saved_with_the_model():
    fmt = get_format("plain", "smiles", "none", MARK)
    assert PromptFormat.from_dict(json.loads(json.dumps(fmt.to_dict()))) == fmt
    assert PromptFormat.from_dict({"name": "plain", "template": "{{ input }}\n"}).answer_marker == ""


def test_a_run_with_working_scores_answers_and_refuses_a_reranker(tmp_path, tiny_llama_dir):
    from seqtune.inference.decode import DecodeSettings, decode_rows
    from seqtune.modeling import load_finetuned
    from seqtune.pipeline import run_pipeline

    rows = [{"input": "C" * k, "output": f"{' '.join('a' * k)}{MARK}{name}"} for k, name in
            enumerate(["methane", "ethane", "propane", "butane", "pentane", "hexane"] * 3, start=1)]
    raw = tiny_run(tmp_path, rows, tiny_llama_dir, {"answer_marker": MARK})
    run_pipeline(load_config(None, raw))
    folder = tmp_path / "run" / "model"
    assert json.loads((folder / "seqtune.json").read_text())["format"]["answer_marker"] == MARK
    scored = [json.loads(line) for line in (tmp_path / "run" / "predictions" / "test.jsonl").read_text().splitlines()]
    names = {"methane", "ethane", "propane", "butane", "pentane", "hexane"}
    assert len(scored) >= 2 and all(r["reference"] in names for r in scored)
    model, tok, info = load_finetuned(folder)
    assert info.format.answer_marker == MARK
    with pytest.raises(ConfigError, match="answer_marker"):  # refused before a run trains
        load_config(None, {**raw, "generate": {"num_beams": 2, "rerank_model": str(folder)}})
    with pytest.raises(ConfigError, match="working"):
        decode_rows(model, tok, info.format, "", ["CC"], [""], None, DecodeSettings(num_beams=2, rerank_model=str(folder)))


def test_inchi_working_numbers_each_input_atom_as_inchi_does():
    from seqtune.chem.molecules import inchi_working

    assert inchi_working("CC(=O)O", "InChI=1S/C2H4O2/c1-2(3)4/h1H3,(H,3,4)") == "C1 C2 O3 O4"
    # The input's own atom order, numbered in InChI's: the ketone O is 10th, the fluorine 9th.
    assert inchi_working("CC(=O)c1cccc(F)c1", "InChI=1S/C8H7FO/c1-6(10)7-3-2-4-8(9)5-7/h2-5H,1H3") == \
        "C1 C6 O10 c7 c3 c2 c4 c8 F9 c5"
    # Each component counted from 1, as InChI's layers count it; the input's order kept.
    salt = "InChI=1S/C2H4O2.Na/c1-2(3)4;/h1H3,(H,3,4);/q;+1/p-1"
    assert inchi_working("[Na+].CC(=O)[O-]", salt) == "Na1 C1 C2 O3 O4"
    assert inchi_working("CC(=O)O", "InChI=1S/C2H4O2/c1-2(3)4/h1H3,(H,3,4)", hydrogens=True) == "C1H3 C2 O3 O4H"
    assert inchi_working("CCO", "InChI=1S/CH4/h1H4") is None  # another molecule's InChI: no numbering of it
    assert inchi_working("C1CC", "InChI=1S/CH4/h1H4") is None  # not a SMILES
