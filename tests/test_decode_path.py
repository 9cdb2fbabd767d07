"""`seqtune run` and `seqtune predict` decode, verify and score through one function
(inference.decode.decode_rows): one candidate rule, one row and summary layout."""

import json

import pytest

from seqtune.cli import main
from seqtune.inference.decode import DecodeSettings
from seqtune.rundir import RunDir


@pytest.mark.parametrize(("num_beams", "candidates", "verify", "beams", "returned"), [
    (1, 1, "none", 1, 1),
    (5, 1, "none", 5, 1),  # only the best beam is kept when nothing is verified
    (1, 1, "opsin", 1, 1),  # no hidden widening to 5 beams (predict did that before)
    (3, 1, "opsin", 3, 3),  # verify tries every beam decoded
    (1, 5, "opsin", 5, 5),
    (5, 3, "opsin", 5, 5),
])
def test_one_candidate_rule(num_beams, candidates, verify, beams, returned):
    s = DecodeSettings(num_beams=num_beams, candidates=candidates, verify=verify)
    assert (s.beams, s.returned) == (beams, returned)


def test_well_formed_decoding_keeps_the_first_well_formed_beam(monkeypatch):
    pytest.importorskip("rdkit")
    import seqtune.inference.decode as decode
    from seqtune.prompts import get_format

    beams = [["C(C", "OCC", "CCO"], ["CCN", "CCO"], ["C(", "C1CC("]]  # canonical SMILES: CCO, CCN, none
    monkeypatch.setattr(decode, "encode_prompt", lambda tok, fmt, x, instr: x)
    monkeypatch.setattr(decode, "generate", lambda model, tok, prompts, **kw: [list(b) for b in beams])
    s = DecodeSettings(num_beams=3, verify="well_formed")
    summary, rows = decode.decode_rows(None, None, get_format("plain"), "randomsmiles2canonical",
                                       ["OCC", "NCC", "CCO"], ["i"] * 3, ["CCO", "CCN", "CCO"], s)
    assert [r["prediction"] for r in rows] == ["CCO", "CCN", "C("]  # none well-formed: the top beam
    assert [r["verified"] for r in rows] == [True, True, False]
    assert [r["top_beam"] for r in rows] == ["C(C", "CCN", "C("]
    assert summary["exact_match"] == pytest.approx(200 / 3) and summary["top_beam_exact_match"] == pytest.approx(100 / 3)
    assert summary["verified_pct"] == pytest.approx(200 / 3)


def test_round_trip_decoding_refuses_a_task_without_a_way_back_before_decoding(monkeypatch):
    import seqtune.inference.decode as decode
    from seqtune.errors import ConfigError
    from seqtune.prompts import get_format

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded before the settings were checked")

    monkeypatch.setattr(decode, "generate", no_decoding)
    s = DecodeSettings(num_beams=3, verify="round_trip")
    with pytest.raises(ConfigError, match="round_trip reads outputs back into inputs for .*, not for 'smiles2formula'"):
        decode.decode_rows(None, None, get_format("plain"), "smiles2formula", ["CCO"], ["i"], ["C2H6O"], s)


def test_vote_decoding_keeps_the_answer_the_beams_agree_on(monkeypatch):
    pytest.importorskip("rdkit")
    import seqtune.inference.decode as decode
    from seqtune.prompts import get_format

    beams = [["OCC", "CCN", "CCO"], ["C(", "C1CC("]]  # ethanol at ranks 1 and 3 outweighs ethylamine
    monkeypatch.setattr(decode, "encode_prompt", lambda tok, fmt, x, instr: x)
    monkeypatch.setattr(decode, "generate", lambda model, tok, prompts, **kw: [list(b) for b in beams])
    for verify, first in (("vote", "CCO"), ("well_formed", "CCN")):
        s = DecodeSettings(num_beams=3, verify=verify)
        summary, rows = decode.decode_rows(None, None, get_format("plain"), "randomsmiles2canonical",
                                           ["C(O)C", "CC("], ["i"] * 2, ["CCO", "CCO"], s)
        assert [r["prediction"] for r in rows] == [first, "C("]
        assert [r["verified"] for r in rows] == [True, False]
        assert summary["exact_match"] == pytest.approx(50.0 if verify == "vote" else 0.0)


def test_inputs_whose_beams_all_fail_are_searched_again_wider(monkeypatch):
    pytest.importorskip("rdkit")
    import seqtune.inference.decode as decode
    from seqtune.prompts import get_format

    searches = []

    def fake_generate(model, tok, prompts, num_beams, num_return, **kw):
        searches.append((list(prompts), num_beams))
        first = {"OCC": ["CCO", "C("], "NCC": ["C(", "C1CC("], "CC(": ["C(", "C1("]}
        wide = {"NCC": ["C(", "C1C", "CCN", "CC"], "CC(": ["C(", "C1(", "C((", "C1CC("]}
        return [list((first if num_beams == 2 else wide)[x][:num_return]) for x in prompts]

    monkeypatch.setattr(decode, "encode_prompt", lambda tok, fmt, x, instr: x)
    monkeypatch.setattr(decode, "generate", fake_generate)
    s = DecodeSettings(num_beams=2, verify="well_formed", retry_beams=4)
    summary, rows = decode.decode_rows(None, None, get_format("plain"), "randomsmiles2canonical",
                                       ["OCC", "NCC", "CC("], ["i"] * 3, ["CCO", "CCN", "CCO"], s)
    assert searches == [(["OCC", "NCC", "CC("], 2), (["NCC", "CC("], 4)]  # only the two that found nothing
    assert [r["prediction"] for r in rows] == ["CCO", "CCN", "C("]  # none of the wider beams: the first pick
    assert [r["verified"] for r in rows] == [True, True, False]
    assert [r["top_beam"] for r in rows] == ["CCO", "C(", "C("]  # the model's own first search
    assert summary["exact_match"] == pytest.approx(200 / 3) and summary["verified_pct"] == pytest.approx(200 / 3)


@pytest.mark.parametrize(("rounds", "searches", "last"), [
    (2, [(["OCC", "NCC", "CC("], 2, 32), (["NCC", "CC("], 4, 16), (["CC("], 8, 8)], "CC"),  # the second finds one
    (3, [(["OCC", "NCC", "CC("], 2, 32), (["NCC", "CC("], 4, 16), (["CC("], 8, 8)], "CC"),  # none left: no third
    (1, [(["OCC", "NCC", "CC("], 2, 32), (["NCC", "CC("], 4, 16)], "C("),
])  # each search as many sequences per pass as the first (32 inputs x 2 beams)
def test_retry_rounds_double_the_beams_for_the_inputs_still_without_a_pick(monkeypatch, rounds, searches, last):
    pytest.importorskip("rdkit")
    import seqtune.inference.decode as decode
    from seqtune.errors import ConfigError
    from seqtune.prompts import get_format

    seen = []

    def fake_generate(model, tok, prompts, num_beams, num_return, **kw):
        seen.append((list(prompts), num_beams, kw["batch_size"]))
        beams = {2: {"OCC": ["CCO", "C("], "NCC": ["C(", "C1CC("], "CC(": ["C(", "C1("]},
                 4: {"NCC": ["C(", "CCN", "C1C", "C1("], "CC(": ["C(", "C1(", "C((", "C1CC("]},
                 8: {"CC(": ["C(", "C1(", "C((", "C1CC(", "C)", "C1)", "CC", "C2("]}}[num_beams]
        return [list(beams[x][:num_return]) for x in prompts]

    monkeypatch.setattr(decode, "encode_prompt", lambda tok, fmt, x, instr: x)
    monkeypatch.setattr(decode, "generate", fake_generate)
    s = DecodeSettings(num_beams=2, verify="well_formed", retry_beams=4, retry_rounds=rounds, batch_size=32)
    _, rows = decode.decode_rows(None, None, get_format("plain"), "randomsmiles2canonical",
                                 ["OCC", "NCC", "CC("], ["i"] * 3, ["CCO", "CCN", "CC"], s)
    assert seen == searches
    assert [r["prediction"] for r in rows] == ["CCO", "CCN", last]
    assert [r["verified"] for r in rows] == [True, True, last == "CC"]
    with pytest.raises(ConfigError, match="retry_rounds: must be >= 1, got 0"):
        DecodeSettings(num_beams=2, verify="well_formed", retry_beams=4, retry_rounds=0)


@pytest.mark.parametrize(("verify", "retry"), [("none", 8), ("well_formed", 2)])
def test_a_retry_needs_a_check_and_a_wider_search(verify, retry):
    from seqtune.config import load_config
    from seqtune.errors import ConfigError

    with pytest.raises(ConfigError, match=f"retry_beams: {retry} needs verify"):
        DecodeSettings(num_beams=2, verify=verify, retry_beams=retry)
    with pytest.raises(ConfigError, match=f"generate.retry_beams: {retry} needs generate.verify"):
        load_config(None, ["data.task=randomsmiles2canonical", "generate.num_beams=2", f"generate.verify={verify}",
                           f"generate.retry_beams={retry}"])


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("spellings", [1, 2])  # 2: each input also decoded in a random SMILES of its molecule
def test_run_and_predict_give_the_same_verified_predictions_and_keys(tmp_path, tiny_gpt2_dir, capsys, spellings):
    run = RunDir(tmp_path / "run")
    # candidates is left at 1: both commands must still try all 3 beams.
    assert main(["run", f"out_dir={run.root}", "evaluate_base=false", "data.path=data/smiles2iupac_demo",
                 "data.task=smiles2iupac", "data.train_size=16", "data.test_size=6", f"model.name={tiny_gpt2_dir}",
                 "model.format=instruct", "train.epochs=1", "train.batch_size=8", "train.progress=false",
                 "train.logger=none", "train.eval_generate=false", "generate.max_new_tokens=8",
                 "generate.num_beams=3", "generate.verify=opsin", f"generate.spellings={spellings}"]) == 0
    assert json.loads(run.run_info.read_text())["dropped_overlength"]["test"] == 0  # run decodes every test input
    tuned = json.loads(run.metrics.read_text())["tuned"]
    from_run = _jsonl(run.prediction("test"))
    capsys.readouterr()

    out = tmp_path / "predicted.jsonl"
    assert main(["predict", "--model", str(run.model), "--input", str(run.split("test")), "--output", str(out),
                 "--beams", "3", "--verify", "opsin", "--spellings", str(spellings)]) == 0
    summary = json.loads(capsys.readouterr().out)
    # predict keeps the input file's own columns first; "output" is the only one run does not write.
    from_predict = [{k: v for k, v in row.items() if k != "output"} for row in _jsonl(out)]

    assert [r["prediction"] for r in from_predict] == [r["prediction"] for r in from_run]
    assert [list(r) for r in from_predict] == [list(r) for r in from_run]
    assert from_predict == from_run
    assert {"verified", "top_beam", "reference", "exact"} <= set(from_run[0])
    assert summary == {"n": len(from_run), **tuned}
    assert {"verified_pct", "top_beam_exact_match", "top_beam_same_molecule_pct"} <= set(tuned)

    # Without references: the same rows less the reference and its scores.
    (tmp_path / "in.txt").write_text("\n".join(r["input"] for r in from_run))
    assert main(["predict", "--model", str(run.model), "--input", str(tmp_path / "in.txt"), "--output",
                 str(tmp_path / "plain.jsonl"), "--beams", "3", "--verify", "opsin", "--spellings", str(spellings)]) == 0
    plain = _jsonl(tmp_path / "plain.jsonl")
    assert plain == [{k: r[k] for k in ("input", "prediction", "verified", "top_beam")} for r in from_run]
    assert set(json.loads(capsys.readouterr().out)) == {"n", "verified_pct"}


def test_sampling_is_seeded_and_cools_to_greedy(tiny_gpt2_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from seqtune.inference.generate import generate

    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir)
    tok = AutoTokenizer.from_pretrained(tiny_gpt2_dir)
    prompts = [tok("CCO ethanol")["input_ids"], tok("c1ccccc1")["input_ids"]]

    def sample(temperature, seed=0):
        torch.manual_seed(seed)
        return generate(model, tok, prompts, num_return=6, max_new_tokens=8, precision="fp32",
                        temperature=temperature)

    hot = sample(1.0)
    assert [len(s) for s in hot] == [6, 6] and hot == sample(1.0)  # seeded: the same samples again
    assert any(len(set(s)) > 1 for s in hot)  # a random tiny model's samples differ from each other
    greedy = generate(model, tok, prompts, max_new_tokens=8, precision="fp32")
    assert sample(1e-4) == [g * 6 for g in greedy]  # near zero temperature every sample is the argmax
