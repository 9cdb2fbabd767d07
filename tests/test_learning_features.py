"""The study's levers on tiny models: input/output spellings, example order, SMILES
augmentation, task mixes, fixed holdouts, frozen layers, and scoring a model on holdouts."""

import json

import pytest
import torch
from tiny import make_model, make_tokenizer

from seqtune.config import TrainConfig, load_config
from seqtune.errors import ConfigError
from seqtune.prompts import (
    NUMBER_LETTERS,
    PromptFormat,
    encode_example,
    encode_prompt,
    get_format,
    join_text,
    split_text,
)
from seqtune.training.batching import Example, step_order
from seqtune.training.loop import train

SMILES = ["CC(=O)Nc1ccc(O)cc1", "C[C@@H](N)C(=O)O", "Brc1ccc(Cl)cc1", "O=C1CC[NH2+]CC1", "C1CC2(CC1)OCCO2"]
NAMES = ["N-(4-hydroxyphenyl)acetamide", "(2S)-2-aminopropanoic acid", "1-bromo-4-chlorobenzene",
         "4-oxopiperidin-1-ium", "1,4-dioxaspiro[4.4]nonane"]


def test_text_that_is_not_smiles_is_left_as_it_is():
    assert split_text("not a smiles!", "smiles") == "not a smiles!"


@pytest.mark.parametrize("text,how", [(s, "smiles") for s in SMILES] + [(n, "chars") for n in NAMES]
                         + [("methyl 2-aminobenzoate", "chars")])
def test_spellings_round_trip(text, how):
    spelled = split_text(text, how)
    assert join_text(spelled, how) == text
    if how == "smiles" and text in SMILES:
        assert spelled.split() == [t for t in spelled.split() if t]  # one token per unit
        assert "( = O )" in spelled or "Br" in spelled or "[C@@H]" in spelled or "C 1" in spelled
    if how == "chars":
        assert len(spelled.split(" ")) == len(text)


def test_smiles_tokens_are_chemical_units():
    assert split_text("C[C@@H](Cl)c1ccccc1Br", "smiles").split() == [
        "C", "[C@@H]", "(", "Cl", ")", "c", "1", "c", "c", "c", "c", "c", "1", "Br"]


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("isplit,osplit", [("smiles", "none"), ("none", "chars"), ("smiles", "chars"),
                                           ("numbers", "numbers")])
def test_spelled_examples_keep_ids_and_mask_aligned(family, isplit, osplit):
    tok = make_tokenizer(family)
    fmt = get_format("instruct", isplit, osplit)
    for smi, name in zip(SMILES, NAMES):
        ids, mask = encode_example(tok, fmt, smi, name, "name it")
        prompt = encode_prompt(tok, fmt, smi, "name it")
        assert ids[:len(prompt)] == prompt and not any(mask[:len(prompt)])
        assert all(mask[len(prompt):]) and ids[-1] == tok.eos_token_id
        completion = tok.decode(ids[len(prompt):-1])
        if tok.unk_token_id not in ids:  # the tiny llama vocabulary has no ',' (it becomes <unk>)
            assert fmt.output_text(completion) == name  # what decoding gives back is the plain name
        if isplit == "smiles":
            assert split_text(smi, "smiles") in tok.decode(prompt)


def test_format_with_spellings_survives_the_model_folder_round_trip():
    fmt = get_format("plain", "smiles", "chars")
    assert PromptFormat.from_dict(json.loads(json.dumps(fmt.to_dict()))) == fmt
    assert PromptFormat.from_dict({"name": "plain", "template": "{{ input }}\n"}).input_split == "none"
    with pytest.raises(ConfigError, match="model.output_split"):
        get_format("plain", "none", "words")
    with pytest.raises(ConfigError, match="'_'"):
        encode_example(make_tokenizer("gpt2"), fmt, "CCO", "a_b", "")


INCHIS = ["InChI=1S/C10H14O4/c1-13-9-4-2-3-5-10(9)14-7-8(12)6-11/h2-5,8,11-12H,6-7H2,1H3",
          "InChI=1S/C11H17NO/c1-4-12(3,5-2)10-7-6-8-11(13)9-10/h6-9H,4-5H2,1-3H3/p+1"]


@pytest.mark.parametrize("text", INCHIS + ["C32H66", "a 07 and 100, 31 and 32", "no numbers"])
def test_numbers_spelling_round_trips(text):
    assert join_text(split_text(text, "numbers"), "numbers") == text


def test_numbers_spelling_writes_each_number_10_to_31_as_one_letter():
    assert split_text("c1-13-9-10(9)14-31", "numbers") == "c1-δ-9-α(9)ε-ω"
    assert split_text("C10H14O4", "numbers") == "CαHεO4"
    assert split_text("07 100 32 9", "numbers") == "07 100 32 9"  # left as digits: not 10-31, or a leading 0


def test_numbers_spelling_is_one_token_a_number_in_smollm2(smollm2_tokenizer):
    tok = smollm2_tokenizer
    fmt = get_format("plain", "smiles", "numbers")
    for inchi in INCHIS:
        ids, mask = encode_example(tok, fmt, "CCO", inchi, "")
        completion = [i for i, m in zip(ids, mask) if m][:-1]  # without EOS
        spelled = split_text(inchi, "numbers")
        assert len(completion) < len(tok(inchi, add_special_tokens=False)["input_ids"])
        assert fmt.output_text(tok.decode(completion)) == inchi
        for letter in set(spelled) & set(NUMBER_LETTERS):
            assert tok.decode([i for i in completion if tok.decode([i]) == letter]) == letter * spelled.count(letter)
    with pytest.raises(ConfigError, match="Greek"):
        encode_example(tok, fmt, "CCO", "InChI=1S/α", "")


def test_grouped_and_curriculum_orders():
    lengths = [(i * 37) % 101 + 5 for i in range(600)]
    for order in ("random", "grouped", "curriculum"):
        for epoch in (0, 1):
            steps = step_order(600, 8, 3, epoch, lengths, order)
            assert sorted(i for s in steps for i in s) == list(range(600))  # every example once
            assert steps == step_order(600, 8, 3, epoch, lengths, order)  # a function of its arguments
    first = step_order(600, 8, 3, 0, lengths, "curriculum")
    flat = [lengths[i] for s in first for i in s]
    assert flat == sorted(flat)  # shortest first in epoch 1

    def padding(steps):
        return sum(max(lengths[i] for i in s) * len(s) - sum(lengths[i] for i in s) for s in steps)

    grouped = step_order(600, 8, 3, 1, lengths, "grouped")
    assert padding(grouped) < padding(step_order(600, 8, 3, 1, lengths, "random")) / 4
    assert grouped != step_order(600, 8, 3, 2, lengths, "grouped")  # reshuffled every epoch
    with pytest.raises(ValueError):
        step_order(10, 2, 0, 0, None, "grouped")


def test_random_smiles_augmentation_is_seeded_and_keeps_the_molecule():
    pytest.importorskip("rdkit")
    from seqtune.chem.molecules import canonical_smiles
    from seqtune.chem.tasks import random_smiles_inputs

    canon = [canonical_smiles(s) for s in SMILES]
    e1 = random_smiles_inputs(canon, 1, seed=0)
    assert e1 == random_smiles_inputs(canon, 1, seed=0)
    assert e1 != random_smiles_inputs(canon, 2, seed=0)
    assert [canonical_smiles(s) for s in e1] == canon
    assert random_smiles_inputs(["not smiles"], 1, 0) == ["not smiles"]


def test_task_mix_is_deterministic_and_complete():
    pytest.importorskip("rdkit")
    from seqtune.chem.tasks import INSTRUCTIONS, mix_examples

    pairs = list(zip(SMILES, NAMES))
    mixed = mix_examples("smiles2iupac", pairs, ["iupac2smiles", "smiles2formula"], seed=0)
    assert mixed == mix_examples("smiles2iupac", pairs, ["iupac2smiles", "smiles2formula"], seed=0)
    assert len(mixed) == 2 * len(pairs)
    assert mixed[0] == (NAMES[0], "CC(=O)Nc1ccc(O)cc1", INSTRUCTIONS["iupac2smiles"])
    assert mixed[len(pairs)][1] == "C8H9NO2"
    with pytest.raises(ValueError, match="own task"):
        mix_examples("smiles2iupac", pairs, ["smiles2iupac"], 0)
    with pytest.raises(ValueError, match="needs a smiles2iupac"):
        mix_examples("smiles2formula", pairs, ["iupac2smiles"], 0)


def _chem_data(folder, n=30):
    from seqtune.chem.molecules import canonical_smiles

    folder.mkdir(parents=True, exist_ok=True)
    alkanes = [("C" * k, ["methane", "ethane", "propane", "butane", "pentane", "hexane", "heptane", "octane"][k - 1])
               for k in range(1, 9)]
    alcohols = [("C" * k + "O", n.replace("ane", "an-1-ol")) for k, (_, n) in enumerate(alkanes, start=1) if k > 1]
    pairs = [(canonical_smiles(s), name) for s, name in alkanes + alcohols]
    rows = "".join(json.dumps({"input": s, "output": name}) + "\n" for s, name in pairs)
    (folder / "train.jsonl").write_text(rows)
    (folder / "holdout.jsonl").write_text("".join(json.dumps({"input": s, "output": name}) + "\n"
                                                  for s, name in pairs[:3]))
    return folder


def _cfg(tmp_path, model_dir, data, **over):
    raw = {"out_dir": str(tmp_path / "run"), "evaluate_base": False,
           "data": {"path": str(data / "train.jsonl"), "task": "smiles2iupac", "val_fraction": 0.2, "test_size": None},
           "model": {"name": str(model_dir), "format": "instruct"},
           "train": {"epochs": 2, "lr": 1e-3, "batch_size": 4, "progress": False, "logger": "none",
                     "eval_generate": False, "precision": "fp32"},
           "generate": {"max_new_tokens": 8}}
    for key, value in over.items():
        section, name = key.split("__")
        raw[section][name] = value
    return load_config(None, raw)


def test_fixed_holdout_replaces_the_test_split_and_leaves_training(tmp_path):
    from seqtune.data import load_splits

    data = _chem_data(tmp_path / "d")
    splits = load_splits(_cfg(tmp_path, "x", data, data__test_path=str(data / "holdout.jsonl")).data)
    held = {json.loads(x)["input"] for x in (data / "holdout.jsonl").read_text().splitlines()}
    assert {p.input for p in splits.test} == held
    assert not held & {p.input for p in splits.train + splits.val}
    assert len(splits.train) + len(splits.val) == 15 - 3


def test_mix_and_augment_run_end_to_end_and_resume_exactly(tmp_path, tiny_llama_dir):
    pytest.importorskip("rdkit")
    from seqtune.pipeline import run_pipeline

    data = _chem_data(tmp_path / "d")
    over = dict(data__mix="iupac2smiles", data__augment="random_smiles", model__input_split="smiles",
                train__order="grouped", data__test_path=str(data / "holdout.jsonl"))
    result = run_pipeline(_cfg(tmp_path, tiny_llama_dir, data, **over))
    run = tmp_path / "run"
    used = json.loads((run / "run.json").read_text())["data"]["used"]
    assert used["train"] + used["val"] == 12  # 15 pairs less the 3 holdout molecules
    assert result["train"]["train_examples"] == 2 * used["train"]  # own pairs + one reverse pair each
    assert len((run / "predictions" / "test.jsonl").read_text().splitlines()) == 3
    # a run stopped after epoch 1 and resumed ends exactly where the uninterrupted one did
    import shutil

    ref = [json.loads(x) for x in (run / "epochs.jsonl").read_text().splitlines()]
    shutil.rmtree(run / "model")
    (run / "metrics.json").unlink()
    ckpts = sorted((run / "checkpoints").iterdir(), key=lambda p: int(p.name.split("-")[1]))
    shutil.rmtree(ckpts[-1])  # back to the end of epoch 1
    state = json.loads((ckpts[0] / "state.json").read_text())
    assert state["epoch"] == 1
    again = run_pipeline(_cfg(tmp_path, tiny_llama_dir, data, **over))
    resumed = [json.loads(x) for x in (run / "epochs.jsonl").read_text().splitlines()]
    assert [r["train_loss"] for r in resumed] == [r["train_loss"] for r in ref]
    assert again["train"]["train_examples"] == result["train"]["train_examples"]


def test_augmented_epochs_differ_but_keep_outputs(tmp_path, tiny_llama_dir):
    pytest.importorskip("rdkit")
    from seqtune.data import load_splits
    from seqtune.modeling import load_tokenizer
    from seqtune.pipeline import augmented_epochs
    from seqtune.training.batching import encode_pairs

    data = _chem_data(tmp_path / "d")
    cfg = _cfg(tmp_path, tiny_llama_dir, data, data__augment="random_smiles")
    tok, fmt = load_tokenizer(str(tiny_llama_dir)), get_format("instruct")
    enc = encode_pairs(load_splits(cfg.data).train, tok, fmt, "i", 256, "drop", "train")
    epochs = augmented_epochs(cfg, enc, tok, fmt)
    assert epochs(0) == enc.examples
    assert epochs(1) == epochs(1) and epochs(1) != epochs(2) and len(epochs(2)) == len(enc.examples)
    for a, b in zip(epochs(0), epochs(3)):  # the completion (name + EOS) never changes
        assert [t for t, m in zip(a.ids, a.mask) if m] == [t for t, m in zip(b.ids, b.mask) if m]


def test_mix_needs_a_format_that_shows_the_instruction(tmp_path, tiny_llama_dir):
    from seqtune.pipeline import run_pipeline

    data = _chem_data(tmp_path / "d")
    with pytest.raises(ConfigError, match="data.mix"):
        run_pipeline(_cfg(tmp_path, tiny_llama_dir, data, data__mix="iupac2smiles", model__format="plain"))
    assert not (tmp_path / "run").exists()


def test_frozen_lower_layers_do_not_change(tmp_path):
    from seqtune.modeling import freeze_lower

    tok = make_tokenizer("llama")
    model = make_model("llama", len(tok), layers=3)
    freeze_lower(model, 2, embeddings=False)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ex = [Example(*map(tuple, encode_example(tok, get_format("plain"), s, n, ""))) for s, n in zip(SMILES, NAMES)]
    cfg = TrainConfig(epochs=2, lr=1e-2, batch_size=2, progress=False, logger="none", precision="fp32",
                      shared_prefix=False)
    train(model, ex[:4], ex[4:], cfg, tmp_path, tok.pad_token_id or 0)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(".layers.2." in n or n.startswith("model.norm") for n in changed), changed
    with pytest.raises(Exception, match="freeze_layers"):
        freeze_lower(make_model("llama", len(tok), layers=2), 2, embeddings=False)


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_kept_lower_layers_compute_what_those_layers_of_the_full_model_compute(kind):
    from seqtune.modeling import keep_lower_layers

    tok = make_tokenizer(kind)
    full = make_model(kind, len(tok), layers=3).eval()
    ids = torch.tensor([tok.encode("CC(=O)Nc1ccc(O)cc1")])
    with torch.no_grad():
        hidden = full(ids, output_hidden_states=True).hidden_states
    keep_lower_layers(full, 2)
    assert full.config.num_hidden_layers == 2
    with torch.no_grad():
        kept = full(ids, output_hidden_states=True).hidden_states
    assert len(kept) == 3  # embeddings + 2 blocks
    torch.testing.assert_close(kept[1], hidden[1])  # the first block's output is untouched
    with pytest.raises(Exception, match="keep_layers"):
        keep_lower_layers(full, 3)


def test_a_shallower_model_is_saved_as_the_shallower_model(tmp_path, tiny_llama_dir):
    from seqtune.modeling import load_finetuned
    from seqtune.pipeline import run_pipeline

    data = _chem_data(tmp_path / "d")
    run_pipeline(_cfg(tmp_path, tiny_llama_dir, data, train__epochs=1, model__keep_layers=1))
    model, _, _ = load_finetuned(tmp_path / "run" / "model")
    assert model.config.num_hidden_layers == 1 and len(model.model.layers) == 1
    with pytest.raises(ConfigError, match="model.keep_layers"):
        load_config(None, {"model": {"keep_layers": -1}})


def test_evaluate_scores_a_model_on_holdouts_in_one_command(tmp_path, tiny_llama_dir):
    pytest.importorskip("rdkit")
    from seqtune.cli import main
    from seqtune.pipeline import run_pipeline

    data = _chem_data(tmp_path / "d")
    run_pipeline(_cfg(tmp_path, tiny_llama_dir, data, train__epochs=1))
    holdout = data / "holdout.jsonl"
    assert main(["evaluate", "--model", str(tmp_path / "run" / "model"), "--holdout", str(holdout),
                 "--max-new-tokens", "6"]) == 0
    scores = json.loads((tmp_path / "run" / "holdouts" / "holdout.json").read_text())
    rows = (tmp_path / "run" / "holdouts" / "holdout.jsonl").read_text().splitlines()
    assert scores["n"] == 3 and len(rows) == 3 and "same_molecule_pct" in scores
    assert {"input", "reference", "prediction"} <= set(json.loads(rows[0]))
    assert main(["evaluate", "--model", str(tmp_path / "run" / "model"), "--holdout", "nope.jsonl"]) == 2
    # a training checkpoint scored through the model folder: the last one holds the final weights
    last = sorted((tmp_path / "run" / "checkpoints").iterdir())[-1]
    assert main(["evaluate", "--model", str(tmp_path / "run" / "model"), "--holdout", str(holdout),
                 "--max-new-tokens", "6", "--checkpoint", str(last)]) == 0
    again = (tmp_path / "run" / "holdouts" / last.name / "holdout.jsonl").read_text().splitlines()
    assert [json.loads(r)["prediction"] for r in again] == [json.loads(r)["prediction"] for r in rows]
    assert main(["evaluate", "--model", str(tmp_path / "run" / "model"), "--holdout", str(holdout),
                 "--checkpoint", str(tmp_path)]) == 2


def test_several_sources_are_concatenated_split_by_split(tmp_path):
    from seqtune.data import load_splits

    a = _chem_data(tmp_path / "a")
    b = tmp_path / "b"
    b.mkdir()
    (b / "train.jsonl").write_text(json.dumps({"input": "c1ccccc1", "output": "benzene"}) + "\n")
    (b / "test.jsonl").write_text(json.dumps({"input": "c1ccncc1", "output": "pyridine"}) + "\n")
    cfg = _cfg(tmp_path, "x", a, data__path=f"{b},{a / 'train.jsonl'}", data__test_path=str(a / "holdout.jsonl"))
    splits = load_splits(cfg.data)
    assert "c1ccccc1" in {p.input for p in splits.train}
    # the fixed holdout replaces every source's own test split
    assert {p.input for p in splits.test} == {json.loads(x)["input"] for x in (a / "holdout.jsonl").read_text().splitlines()}


def test_a_model_from_scratch_has_the_overridden_shape_and_seeded_weights(tiny_llama_dir):
    from seqtune.config import ModelConfig
    from seqtune.modeling import load_model

    cfg = ModelConfig(name=str(tiny_llama_dir), init="scratch", config_overrides="num_hidden_layers=3")
    model, tok = load_model(cfg, seed=7)
    pretrained, _ = load_model(ModelConfig(name=str(tiny_llama_dir)))
    assert model.config.num_hidden_layers == 3 and len(model.model.layers) == 3
    assert model.get_input_embeddings().weight.shape == pretrained.get_input_embeddings().weight.shape
    again, _ = load_model(cfg, seed=7)
    other, _ = load_model(cfg, seed=8)
    w = model.get_input_embeddings().weight
    torch.testing.assert_close(again.get_input_embeddings().weight, w)  # a function of the seed
    assert not torch.equal(other.get_input_embeddings().weight, w)
    assert not torch.equal(pretrained.get_input_embeddings().weight, w)  # not the saved weights


def test_a_model_from_scratch_trains_saves_and_refuses_bad_overrides(tmp_path, tiny_llama_dir):
    from seqtune.errors import ModelError
    from seqtune.modeling import load_finetuned, load_model
    from seqtune.pipeline import run_pipeline

    data = _chem_data(tmp_path / "d")
    run_pipeline(_cfg(tmp_path, tiny_llama_dir, data, train__epochs=1, model__init="scratch",
                      model__config_overrides="num_hidden_layers=1"))
    model, _, _ = load_finetuned(tmp_path / "run" / "model")
    assert model.config.num_hidden_layers == 1
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    assert "random weights" in card and "fine-tun" not in card and "base_model:" not in card
    with pytest.raises(ConfigError, match="model.config_overrides"):  # architecture changes need random weights
        load_config(None, {"model": {"config_overrides": "num_hidden_layers=1"}})
    with pytest.raises(ModelError, match="model.config_overrides"):
        load_model(load_config(None, {"model": {"name": str(tiny_llama_dir), "init": "scratch",
                                                "config_overrides": "no_such_key=3"}}).model)
