"""SMILES outputs in the order of the input name (data.output_order: name) and canonical
predictions (generate.canonical, --canonical): the model is taught another spelling of the same
molecule, and everything after decoding sees the canonical one."""

import json
from types import SimpleNamespace

import pytest

from seqtune.config import config_to_dict, load_config
from seqtune.errors import ConfigError
from seqtune.modeling import ModelInfo

pytest.importorskip("rdkit")
from seqtune.chem import molecules, opsin  # noqa: E402

needs_java = pytest.mark.skipif(not opsin.java_available(), reason="no Java runtime for OPSIN")

NAMES = ["3-bromo-5-methylphenol", "1-chloro-2-methyl-3-nitrobenzene", "2-ethyloctanedioic acid"]
SMILES = ["Cc1cc(O)cc(Br)c1", "Cc1c(Cl)cccc1[N+](=O)[O-]", "CCC(CCCCCC(=O)O)C(=O)O"]


@needs_java
def test_name_ordered_smiles_keep_the_molecule_and_follow_the_name():
    from seqtune.chem.tasks import name_ordered_smiles

    ordered = name_ordered_smiles(NAMES, SMILES)
    assert [molecules.canonical_smiles(s) for s in ordered] == SMILES
    assert ordered != SMILES
    # the first prefix of the name is the first atom written; the canonical SMILES starts elsewhere
    assert ordered[0].startswith("Br") and ordered[1].startswith("Cl")
    assert not SMILES[0].startswith("Br") and not SMILES[1].startswith("Cl")
    # a name OPSIN cannot read, or one of another molecule, leaves its output as it is
    assert name_ordered_smiles(["not a name at all", "ethanol"], ["CCO", "CCN"]) == ["CCO", "CCN"]


def _cfg(**over):
    raw = {"data": {"task": "iupac2smiles"}, "generate": {}}
    for key, value in over.items():
        section, name = key.split("__")
        raw.setdefault(section, {})[name] = value
    return load_config(None, raw)


def test_output_order_and_canonical_are_checked_against_the_task():
    assert _cfg(data__output_order="name", generate__canonical=True).data.output_order == "name"
    with pytest.raises(ConfigError, match="data.output_order: name teaches non-canonical SMILES"):
        _cfg(data__output_order="name")
    with pytest.raises(ConfigError, match="data.output_order: name orders SMILES outputs by their input names"):
        _cfg(data__task="randomsmiles2canonical", data__output_order="name", generate__canonical=True)
    with pytest.raises(ConfigError, match="generate.canonical: rewrites SMILES outputs, and 'smiles2iupac'"):
        _cfg(data__task="smiles2iupac", generate__canonical=True)
    assert _cfg(data__task="smiles2iupac", data__input_order="name").data.input_order == "name"
    with pytest.raises(ConfigError, match="data.input_order: name orders SMILES inputs by their output names"):
        _cfg(data__input_order="name")  # iupac2smiles reads names


def _decode(monkeypatch, beams, canonical, verify="well_formed"):
    import seqtune.inference.decode as decode
    from seqtune.inference.decode import DecodeSettings
    from seqtune.prompts import get_format

    monkeypatch.setattr(decode, "encode_prompt", lambda tok, fmt, x, instr: x)
    monkeypatch.setattr(decode, "generate", lambda model, tok, prompts, **kw: [list(b) for b in beams])
    s = DecodeSettings(num_beams=3, verify=verify, canonical=canonical)
    return decode.decode_rows(None, None, get_format("plain"), "iupac2smiles", ["ethanol", "ethylamine"],
                              ["i"] * 2, ["CCO", "CCN"], s)


def test_canonical_decoding_scores_and_picks_the_canonical_form(monkeypatch):
    beams = [["C(C)O", "OCC", "C("], ["C(C)N", "C(", "CCO"]]  # name-ordered beams: none canonical
    summary, rows = _decode(monkeypatch, beams, canonical=True)
    assert [r["prediction"] for r in rows] == ["CCO", "CCN"]
    assert [r["top_beam"] for r in rows] == ["CCO", "CCN"]
    assert summary["exact_match"] == 100.0 and summary["top_beam_exact_match"] == 100.0
    # without it the same beams are scored as written: right molecules, wrong strings
    summary, rows = _decode(monkeypatch, beams, canonical=False)
    assert [r["prediction"] for r in rows] == ["C(C)O", "CCO"]  # no beam well-formed: the top one
    assert summary["top_beam_exact_match"] == 0.0


def test_the_vote_keeps_the_agreed_molecule_though_no_beam_wrote_it_canonically(monkeypatch):
    beams = [["C(C)O", "CCN", "OCC"], ["C(C)N", "C(", "CCO"]]  # ethanol at ranks 1 and 3
    _, rows = _decode(monkeypatch, beams, canonical=True, verify="vote")
    assert [r["prediction"] for r in rows] == ["CCO", "CCN"]
    _, rows = _decode(monkeypatch, beams, canonical=False, verify="vote")
    assert rows[0]["prediction"] == "CCN"  # the winner has no canonical beam: the runner-up's is kept


def test_the_reverse_model_reads_the_canonical_form_and_the_forward_one_the_beam(tiny_gpt2_dir):
    from tiny import make_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from seqtune.inference import rerank
    from seqtune.prompts import get_format

    model, tok = AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir), AutoTokenizer.from_pretrained(tiny_gpt2_dir)
    reverse = make_model("gpt2", len(tok), seed=7)
    fmt = get_format("plain")
    triple = (reverse, tok, ModelInfo(fmt, "", "", "tiny", {}))
    written = ["C(C)O", "OCC"]
    canonical = {y: molecules.canonical_smiles(y) for y in written}
    got = rerank.channel_scores(model, tok, fmt, ["ethanol"], [""], [written], triple, 2, "fp32", canonical)[0]
    forward = rerank.completion_logprobs(model, tok, fmt, [("ethanol", y, "") for y in written], precision="fp32")
    backward = rerank.completion_logprobs(reverse, tok, fmt, [("CCO", "ethanol", "")], precision="fp32")[0]
    assert [got[y][0] for y in written] == pytest.approx(forward, abs=1e-4)
    assert forward[0] != pytest.approx(forward[1], abs=1e-4)  # the beams' own spellings are scored
    assert [got[y][1] for y in written] == pytest.approx([backward, backward], abs=1e-4)
    # a reverse model taught SMILES in its names' order (data.input_order: name) reads the beams as written
    taught = ModelInfo(fmt, "", "", "tiny", {"config": {"data": {"input_order": "name"}}})
    got = rerank.channel_scores(model, tok, fmt, ["ethanol"], [""], [written], (reverse, tok, taught), 2, "fp32",
                                canonical)[0]
    as_written = rerank.completion_logprobs(reverse, tok, fmt, [(y, "ethanol", "") for y in written], precision="fp32")
    assert [got[y][1] for y in written] == pytest.approx(as_written, abs=1e-4)
    assert as_written[0] != pytest.approx(as_written[1], abs=1e-4)


@needs_java
def test_a_name_order_run_trains_on_ordered_outputs_and_predicts_canonical(tmp_path, tiny_llama_dir):
    from seqtune.pipeline import run_pipeline
    from seqtune.prompts import get_format

    alkanes = ["methane", "ethane", "propane", "butane", "pentane", "hexane", "heptane", "octane"]
    pairs = [(f"{n.replace('ane', 'an-1-ol')}", "C" * k + "O") for k, n in enumerate(alkanes, start=1) if k > 1]
    pairs += [*zip(NAMES, SMILES), ("1-bromo-4-chlorobenzene", molecules.canonical_smiles("Brc1ccc(Cl)cc1"))]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"input": n, "output": s}) + "\n" for n, s in pairs))
    cfg = load_config(None, {
        "out_dir": str(tmp_path / "run"), "evaluate_base": False,
        "data": {"path": str(tmp_path / "train.jsonl"), "task": "iupac2smiles", "val_fraction": 0.2,
                 "test_size": None, "output_order": "name"},
        "model": {"name": str(tiny_llama_dir), "format": "plain", "output_split": "smiles"},
        "train": {"epochs": 1, "batch_size": 4, "progress": False, "logger": "none", "eval_generate": False,
                  "precision": "fp32"},
        "generate": {"max_new_tokens": 8, "num_beams": 2, "canonical": True}})
    from seqtune.lineage import run_splits
    from seqtune.training_pairs import training_pairs

    splits = run_splits(cfg)
    taught = training_pairs(cfg, splits.train, get_format("plain"))
    assert [p.input for p in taught] == [p.input for p in splits.train]
    assert [molecules.canonical_smiles(p.output) for p in taught] == [p.output for p in splits.train]
    assert [p.output for p in taught] != [p.output for p in splits.train]
    assert all(p.output.startswith("Br") for p in taught if p.input.startswith(("1-bromo", "3-bromo")))
    run_pipeline(cfg)
    rows = [json.loads(x) for x in (tmp_path / "run" / "predictions" / "test.jsonl").read_text().splitlines()]
    assert rows and all(molecules.canonical_smiles(r["prediction"]) in (None, r["prediction"]) for r in rows)
    # its reranker, the same pairs read the other way, is taught the SMILES inputs in the same order
    raw = config_to_dict(cfg)
    reverse = load_config(None, {**raw, "data": {**raw["data"], "task": "smiles2iupac", "input_column": "output",
                                                 "output_column": "input", "output_order": "as_is",
                                                 "input_order": "name"}, "generate": {"max_new_tokens": 8}})
    read = training_pairs(reverse, run_splits(reverse).train, get_format("plain"))
    assert sorted((p.output, p.input) for p in read) == sorted((p.input, p.output) for p in taught)


def test_reranked_beams_are_made_canonical_after_the_reranker_saw_both_spellings(monkeypatch):
    import seqtune.inference.decode as decode
    from seqtune.inference import rerank
    from seqtune.inference.decode import DecodeSettings
    from seqtune.prompts import get_format

    seen = {}

    def rerank_last_first(model, tok, fmt, inputs, instructions, candidates, reverse, *args, reverse_text=None):
        seen.update(reverse_text)
        return [list(dict.fromkeys(reversed(c))) for c in candidates]

    monkeypatch.setattr(rerank, "load_reverse", lambda folder, device: "reverse")
    monkeypatch.setattr(rerank, "channel_rerank", rerank_last_first)
    monkeypatch.setattr(decode, "encode_prompt", lambda tok, fmt, x, instr: x)
    monkeypatch.setattr(decode, "generate", lambda model, tok, prompts, **kw: [["C(C)N", "C(C)O"]])
    model = SimpleNamespace(parameters=lambda: iter([SimpleNamespace(device="cpu")]))
    s = DecodeSettings(num_beams=2, verify="well_formed", rerank_model="folder", canonical=True)
    summary, rows = decode.decode_rows(model, None, get_format("plain"), "iupac2smiles", ["ethanol"], ["i"], ["CCO"], s)
    assert seen == {"C(C)N": "CCN", "C(C)O": "CCO"}  # the beams as written, each with its canonical form
    assert rows[0]["prediction"] == "CCO" and rows[0]["top_beam"] == "CCN"
    assert summary["exact_match"] == 100.0 and summary["top_beam_exact_match"] == 0.0
