"""The data shapes users bring from other tools: JSON arrays, TRL's prompt/completion,
chat `messages`, a per-row instruction column, and Chemprop's scaffold split."""

import json

import pytest
import yaml

from seqtune.config import DataConfig, load_config
from seqtune.data import load_splits, read_pairs
from seqtune.errors import ConfigError, DataError
from seqtune.prompts import encode_example, get_format, require_instruction_slot


def _write(path, text):
    path.write_text(text, encoding="utf-8", newline="")
    return path


def _jsonl(path, rows):
    return _write(path, "".join(json.dumps(r) + "\n" for r in rows))


def _triples(pairs):
    return [(p.input, p.output, p.instruction) for p in pairs]


# --- .json arrays -------------------------------------------------------------------------

def test_json_array_of_records_reads_with_the_line_of_each_record(tmp_path):
    path = _write(tmp_path / "p.json", '[\n  {"input": "C", "output": "methane"},\n  {\n    "input": "CC",\n'
                                       '    "output": "ethane"\n  }\n]\n')
    pairs = read_pairs(path)
    assert _triples(pairs) == [("C", "methane", ""), ("CC", "ethane", "")]
    assert [p.where for p in pairs] == [f"{path}:2", f"{path}:3"]


def test_json_file_may_still_hold_json_lines(tmp_path):
    path = _jsonl(tmp_path / "p.json", [{"input": "C", "output": "methane"}, {"input": "CC", "output": "ethane"}])
    assert _triples(read_pairs(path)) == [("C", "methane", ""), ("CC", "ethane", "")]


@pytest.mark.parametrize("name,content,message", [
    ("items.json", '[\n {"input": "C", "output": "m"},\n 5\n]', "items.json:3: expected a JSON object per array item, got number"),
    ("strings.json", '["C", "CC"]', "strings.json:1: expected a JSON object per array item, got string"),
    ("object.json", '{\n  "data": [{"input": "C", "output": "m"}]\n}\n', "object.json:1: the file is one JSON object, not records"),
    ("scalar.json", "42\n", "scalar.json:1: the file is one JSON number, not records"),
    ("truncated.json", '[\n {"input": "C", "output": "m"},\n {"input": "CC",', "truncated.json:3: not valid JSON"),
    ("unclosed.json", '[\n {"input": "C", "output": "m"}\n\n', r"unclosed.json:2: not valid JSON \(the array is never closed"),
    # an error inside a record spread over lines is named at the line the record starts on, as in CSV
    ("inside.json", '[\n {"input": "C", "output": "m"},\n {\n  "input": "CC",\n  "output":\n }\n]', "inside.json:3: not valid JSON"),
    ("comma.json", '[\n {"input": "C", "output": "m"},\n]', "comma.json:3: not valid JSON"),
    ("after.json", '[{"input": "C", "output": "m"}]\n{"input": "CC"}', "after.json:2: not valid JSON .text after"),
    ("lines.jsonl", '[{"input": "C", "output": "m"}]\n', "lines.jsonl:1: expected a JSON object per line"),
])
def test_bad_json_names_file_and_line(tmp_path, name, content, message):
    with pytest.raises(DataError, match=message):
        read_pairs(_write(tmp_path / name, content))


# --- prompt/completion and messages --------------------------------------------------------

def test_prompt_completion_columns_are_recognised(tmp_path):
    rows = [{"prompt": "C", "completion": "methane"}, {"prompt": "CC", "completion": "ethane"}]
    assert _triples(read_pairs(_jsonl(tmp_path / "p.jsonl", rows))) == [("C", "methane", ""), ("CC", "ethane", "")]
    csv = _write(tmp_path / "p.csv", "prompt,completion\nCCO,ethanol\n")
    assert _triples(read_pairs(csv)) == [("CCO", "ethanol", "")]


def test_conversational_prompt_completion_is_one_conversation(tmp_path):
    row = {"prompt": [{"role": "system", "content": "Name it."}, {"role": "user", "content": "CCO"}],
           "completion": [{"role": "assistant", "content": "ethanol"}]}
    assert _triples(read_pairs(_jsonl(tmp_path / "p.jsonl", [row]))) == [("CCO", "ethanol", "Name it.")]


def test_messages_last_user_turn_its_answer_and_the_system_turn(tmp_path):
    rows = [
        {"messages": [{"role": "user", "content": "C"}, {"role": "assistant", "content": "methane"}]},
        {"messages": [{"role": "system", "content": "Name the molecule."},
                      {"role": "user", "content": "CC"}, {"role": "assistant", "content": "a guess"},
                      {"role": "user", "content": "CCO"}, {"role": "assistant", "content": "ethanol"}]},
    ]
    pairs = read_pairs(_jsonl(tmp_path / "chat.jsonl", rows))
    assert _triples(pairs) == [("C", "methane", ""), ("CCO", "ethanol", "Name the molecule.")]


def test_messages_in_a_csv_cell_and_a_parquet_list(tmp_path):
    turns = [{"role": "user", "content": "CCO"}, {"role": "assistant", "content": "ethanol"}]
    cell = json.dumps(turns).replace('"', '""')
    assert _triples(read_pairs(_write(tmp_path / "chat.csv", f'id,messages\n1,"{cell}"\n'))) == [("CCO", "ethanol", "")]
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"messages": [turns]}), tmp_path / "chat.parquet")
    assert _triples(read_pairs(tmp_path / "chat.parquet")) == [("CCO", "ethanol", "")]


def test_input_output_keep_priority_and_named_columns_turn_detection_off(tmp_path):
    both = _jsonl(tmp_path / "both.jsonl", [{"input": "C", "output": "methane", "prompt": "x", "completion": "y"}])
    assert _triples(read_pairs(both)) == [("C", "methane", "")]
    trl = _jsonl(tmp_path / "trl.jsonl", [{"prompt": "C", "completion": "methane"}])
    with pytest.raises(DataError, match=r"trl.jsonl:1: missing column 'smiles' \(columns: prompt, completion\)$"):
        read_pairs(trl, "smiles", "name")
    other = _jsonl(tmp_path / "other.jsonl", [{"smiles": "C", "name": "methane"}])
    with pytest.raises(DataError, match="other.jsonl:1: missing column 'input'.*or prompt/completion, or messages"):
        read_pairs(other)


_USER, _BOT = {"role": "user", "content": "C"}, {"role": "assistant", "content": "methane"}


@pytest.mark.parametrize("messages,message", [
    ("C -> methane", "column 'messages' must be a list of {role, content} turns, got string"),
    ({"user": "C"}, "column 'messages' must be a list of {role, content} turns, got object"),
    ([{"content": "C"}, _BOT], r"messages\[0\] must be an object with 'role' and 'content'"),
    ([_USER, {"role": "assistant"}], r"messages\[1\] must be an object with 'role' and 'content'"),
    (["C", "methane"], r"messages\[0\] must be an object"),
    ([{"role": "system", "content": "x"}, _BOT], "messages has no user turn followed by an assistant turn"),
    ([_USER, _BOT, {"role": "user", "content": "CC"}], r"the last user turn \(messages\[2\]\) is not followed"),
    ([_USER, {"role": "assistant", "content": ""}], r"empty value in column 'messages\[1\].content'"),
])
def test_bad_messages_name_file_and_line(tmp_path, messages, message):
    good = {"messages": [_USER, _BOT]}
    path = _jsonl(tmp_path / "chat.jsonl", [good, good, {"messages": messages}])
    with pytest.raises(DataError, match=f"chat.jsonl:3: .*{message}"):
        read_pairs(path)


def test_bad_messages_in_csv_name_the_line_the_record_starts_on(tmp_path):
    good = json.dumps([_USER, _BOT]).replace('"', '""')
    path = _write(tmp_path / "chat.csv", f'messages\n"{good}"\n"multi\nline text"\n')
    with pytest.raises(DataError, match="chat.csv:3: column 'messages' must be a list"):
        read_pairs(path)


# --- per-row instructions ------------------------------------------------------------------

def test_instruction_column_is_read_per_row(tmp_path):
    path = _write(tmp_path / "p.csv", "input,output,task\nC,methane,Name it.\nC,CH4,Give the formula.\n")
    pairs = read_pairs(path, instruction_column="task")
    assert _triples(pairs) == [("C", "methane", "Name it."), ("C", "CH4", "Give the formula.")]
    with pytest.raises(DataError, match=r"p.csv:2: missing column 'kind' \(columns: input, output, task\)"):
        read_pairs(path, instruction_column="kind")
    blank = _write(tmp_path / "blank.csv", "input,output,task\nC,methane,Name it.\nCC,ethane, \n")
    with pytest.raises(DataError, match="blank.csv:3: empty value in column 'task'"):
        read_pairs(blank, instruction_column="task")


def test_instruction_column_beats_the_system_turn_and_is_recorded(tmp_path):
    rows = [{"task": f"Task {i}.", "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": f"x{i}"},
                                                 {"role": "assistant", "content": f"y{i}"}]} for i in range(20)]
    path = _jsonl(tmp_path / "chat.jsonl", rows)
    splits = load_splits(DataConfig(path=str(path), instruction_column="task", val_fraction=0.1, test_fraction=0.1))
    assert all(p.instruction == f"Task {p.input[1:]}." for p in splits.train + splits.val + splits.test)
    assert splits.stats["instructions"] == "data.instruction_column"
    assert load_splits(DataConfig(path=str(path))).stats["instructions"] == "the system turns of messages"
    plain = _jsonl(tmp_path / "plain.jsonl", [{"input": f"x{i}", "output": "y"} for i in range(20)])
    assert "instructions" not in load_splits(DataConfig(path=str(plain))).stats


def test_row_instruction_is_rendered_with_ids_and_mask_aligned(tmp_path):
    from tiny import make_tokenizer

    from seqtune.training.batching import encode_pairs

    tok, fmt = make_tokenizer("llama"), get_format("instruct")
    path = _write(tmp_path / "p.csv", "input,output,task\nCCO,ethanol,Name the molecule.\nCC,ethane,Give its name.\n")
    pairs = read_pairs(path, instruction_column="task")
    enc = encode_pairs(pairs, tok, fmt, "Translate the SMILES.", 256, "error", "train")
    for p, ex in zip(pairs, enc.examples):
        ids, mask = encode_example(tok, fmt, p.input, p.output, p.instruction)  # rendered as a fixed instruction
        assert (list(ex.ids), list(ex.mask)) == (ids, mask)
        fixed_ids, fixed_mask = encode_example(tok, fmt, p.input, p.output, "Translate the SMILES.")
        assert ids != fixed_ids
        assert len(ids) == len(mask) and sum(mask) == sum(fixed_mask)
        assert [t for t, m in zip(ids, mask) if m] == [t for t, m in zip(fixed_ids, fixed_mask) if m]
        prompt = tok.decode([t for t, m in zip(ids, mask) if not m])
        assert p.instruction in prompt and "Translate the SMILES." not in prompt


def test_a_format_without_an_instruction_slot_refuses_row_instructions(tmp_path):
    require_instruction_slot(get_format("plain"), None)
    for ok in ("instruct", "chat"):
        require_instruction_slot(get_format(ok), "data.instruction_column")
    with pytest.raises(ConfigError, match="model.format: 'plain' has no instruction slot.*data.instruction_column"):
        require_instruction_slot(get_format("plain"), "data.instruction_column")
    template = _write(tmp_path / "mine.jinja", "Q: {{ input }} # no instruction here\nA:")
    with pytest.raises(ConfigError, match="'mine' has no instruction slot"):
        require_instruction_slot(get_format(str(template)), "data.instruction_column")


def test_run_refuses_plain_with_an_instruction_column_before_any_work(tmp_path, tiny_llama_dir):
    from seqtune.pipeline import run_pipeline

    path = _write(tmp_path / "p.csv", "input,output,task\n" + "".join(f"x{i},y{i},t{i}\n" for i in range(10)))
    cfg = load_config(None, {"out_dir": str(tmp_path / "run"), "data": {"path": str(path), "instruction_column": "task"},
                             "model": {"name": str(tiny_llama_dir), "format": "plain"}})
    with pytest.raises(ConfigError, match="no instruction slot"):
        run_pipeline(cfg)
    assert not (tmp_path / "run").exists()


# --- scaffold split ------------------------------------------------------------------------

RINGS = ["c1ccccc1", "C1CCCCC1", "c1ccncc1", "c1ccc2ccccc2c1", "C1CCNCC1", "c1ccoc1", "c1ccsc1", "C1CCOC1",
         "c1cnccn1", "C1CCC1", "C1CCCC1", "c1ccc(cc1)-c1ccccc1"]


def _chem_file(tmp_path):
    smiles = [f"{sub}{ring}" for ring in RINGS for sub in ("", "C", "CC", "O")]
    return _jsonl(tmp_path / "mols.jsonl", [{"input": s, "output": f"name of {s}"} for s in smiles])


def test_scaffold_split_keeps_scaffolds_apart_and_follows_the_seed(tmp_path):
    pytest.importorskip("rdkit")
    from seqtune.chem.molecules import mol_from_smiles, murcko_scaffold

    path = _chem_file(tmp_path)

    def split(seed):
        cfg = DataConfig(path=str(path), split="scaffold", val_fraction=0.2, test_fraction=0.2, seed=seed)
        return load_splits(cfg)

    a = split(1)
    scaffolds = {name: {murcko_scaffold(mol_from_smiles(p.input)) for p in getattr(a, name)}
                 for name in ("train", "val", "test")}
    assert a.test and a.val and not scaffolds["train"] & scaffolds["test"] and not scaffolds["train"] & scaffolds["val"]
    assert not scaffolds["val"] & scaffolds["test"]
    assert len(a.train) + len(a.val) + len(a.test) == 4 * len(RINGS) and a.stats["split"] == "scaffold"
    assert a.digest() == split(1).digest()
    assert {p.input for p in split(2).test} != {p.input for p in a.test}
    random_split = load_splits(DataConfig(path=str(path), val_fraction=0.2, test_fraction=0.2, seed=1))
    assert "split" not in random_split.stats and random_split.digest() != a.digest()


def test_scaffold_split_refuses_inputs_that_are_not_smiles(tmp_path):
    pytest.importorskip("rdkit")
    path = _jsonl(tmp_path / "names.jsonl", [{"input": "CCO", "output": "ethanol"},
                                             {"input": "ethanol", "output": "CCO"}])
    with pytest.raises(DataError, match="names.jsonl:2: data.split: scaffold needs SMILES inputs; 'ethanol'"):
        load_splits(DataConfig(path=str(path), split="scaffold"))


def test_scaffold_split_refuses_data_that_brings_its_splits(tmp_path):
    for name in ("train", "test"):
        _jsonl(tmp_path / f"{name}.jsonl", [{"input": "CCO", "output": "ethanol"}])
    with pytest.raises(ConfigError, match="data.split: scaffold splits a single file"):
        load_splits(DataConfig(path=str(tmp_path), split="scaffold"))


# --- end to end ----------------------------------------------------------------------------

def test_seqtune_run_on_a_json_array_of_prompt_completion_with_row_instructions(tmp_path, tiny_llama_dir,
                                                                                 monkeypatch):
    import seqtune.inference.decode as decode
    from seqtune.cli import main

    words = ["methane", "ethane", "propane", "butane", "pentane", "hexane", "heptane", "octane"]
    records = [{"prompt": "C" * (i + 1), "completion": w, "task": f"Name alkane {i}."} for i, w in enumerate(words)]
    data = tmp_path / "alkanes.json"
    data.write_text(json.dumps(records, indent=2))
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "out_dir": str(tmp_path / "run"), "evaluate_base": False,
        "data": {"path": str(data), "task": "toy", "instruction_column": "task", "val_fraction": 0.0,
                 "test_fraction": 0.25},
        "model": {"name": str(tiny_llama_dir), "format": "instruct"},
        "train": {"epochs": 1, "batch_size": 4, "progress": False, "logger": "none", "eval_generate": False},
        "generate": {"max_new_tokens": 4},
    }))
    seen = []
    real = decode.encode_prompt

    def spy(tok, fmt, text, instruction):
        seen.append((text, instruction))
        return real(tok, fmt, text, instruction)

    monkeypatch.setattr(decode, "encode_prompt", spy)
    assert main(["run", str(config)]) == 0
    run = tmp_path / "run"
    saved = [json.loads(x) for x in (run / "data" / "train.jsonl").read_text().splitlines()]
    assert len(saved) == 6 and all(r["instruction"] == f"Name alkane {len(r['input']) - 1}." for r in saved)
    assert all(r["output"] == words[len(r["input"]) - 1] for r in saved)
    tested = [json.loads(x)["input"] for x in (run / "predictions" / "test.jsonl").read_text().splitlines()]
    assert len(tested) == 2 and sorted(seen) == sorted((s, f"Name alkane {len(s) - 1}.") for s in tested)
    assert json.loads((run / "run.json").read_text())["data"]["instructions"] == "data.instruction_column"
