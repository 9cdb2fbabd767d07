"""Test-time augmentation (`generate.spellings`): each SMILES input is decoded in several spellings
of its molecule and the verify step chooses among all their beams."""

import pytest

from seqtune.config import load_config
from seqtune.errors import ConfigError
from seqtune.inference.decode import DecodeSettings


def test_spellings_are_distinct_seeded_and_the_same_molecule():
    pytest.importorskip("rdkit")
    from seqtune.chem.molecules import canonical_smiles
    from seqtune.chem.tasks import input_spellings

    inputs = ["CC(=O)Nc1ccc(O)cc1", "c1ccccc1CSCC"]
    spelled = input_spellings("smiles2iupac", inputs, 4)
    assert spelled == input_spellings("smiles2iupac", inputs, 4)
    for x, variants in zip(inputs, spelled, strict=True):
        assert variants[0] == x and len(variants) == 4 == len(set(variants))
        assert {canonical_smiles(v) for v in variants} == {canonical_smiles(x)}
        assert canonical_smiles(x) not in variants[1:]  # canonicalisation's answer is never an input
    # The first spellings do not depend on how many are asked for, nor on the other inputs.
    assert input_spellings("smiles2iupac", inputs[1:], 2) == [spelled[1][:2]]
    # Few spellings exist for tiny molecules (ethanol: CCO, OCC, C(C)O, C(O)C; CCO is canonical);
    # an unreadable input is decoded as it is.
    ethanol, bad = input_spellings("randomsmiles2canonical", ["OCC", "C(C"], 6)
    assert ethanol[0] == "OCC" and set(ethanol) <= {"OCC", "C(C)O", "C(O)C"} and bad == ["C(C"]
    with pytest.raises(ValueError, match="reads names"):
        input_spellings("iupac2smiles", ["ethanol"], 2)


def test_spellings_vote_over_every_spellings_beams(monkeypatch):
    pytest.importorskip("rdkit")
    import seqtune.inference.decode as decode
    from seqtune.prompts import get_format

    seen: list[list[str]] = []

    def fake_generate(model, tok, prompts, **kw):
        seen.append(list(prompts))
        # The input's own spelling answers benzene first; every other spelling says phenol.
        return [["c1ccccc1", "Oc1ccccc1"] if p == "c1ccccc1O" else ["Oc1ccccc1", "c1ccccc1"] for p in prompts]

    monkeypatch.setattr(decode, "encode_prompt", lambda tok, fmt, x, instr: x)
    monkeypatch.setattr(decode, "generate", fake_generate)
    args = (None, None, get_format("plain"), "randomsmiles2canonical", ["c1ccccc1O"], ["i"], ["Oc1ccccc1"])
    _, alone = decode.decode_rows(*args, DecodeSettings(num_beams=2, verify="vote"))
    summary, rows = decode.decode_rows(*args, DecodeSettings(num_beams=2, verify="vote", spellings=3))
    assert alone[0]["prediction"] == "c1ccccc1"
    assert len(seen[1]) == 3 and seen[1][0] == "c1ccccc1O"  # one decoding pass over all three spellings
    assert rows[0]["prediction"] == "Oc1ccccc1" and rows[0]["top_beam"] == "c1ccccc1"  # top_beam: the input's own
    assert summary["exact_match"] == 100.0 and summary["top_beam_exact_match"] == 0.0


def test_spellings_need_smiles_inputs_and_a_verify_mode():
    assert load_config(None, ["data.task=smiles2iupac", "generate.verify=vote", "generate.spellings=4"]).generate.spellings == 4
    with pytest.raises(ConfigError, match="generate.spellings: 4 needs a chemistry task that reads SMILES"):
        load_config(None, ["data.task=iupac2smiles", "generate.verify=vote", "generate.spellings=4"])
    with pytest.raises(ConfigError, match="generate.spellings: 4 needs generate.verify"):
        load_config(None, ["data.task=smiles2iupac", "generate.spellings=4"])
    with pytest.raises(ConfigError, match="generate.spellings: must be > 0"):
        load_config(None, ["generate.spellings=0"])
    with pytest.raises(ConfigError, match="spellings: 2 needs verify"):
        DecodeSettings(spellings=2)


def test_run_decodes_with_the_configs_spellings(monkeypatch):
    import seqtune.pipeline as pipeline

    seen = []
    monkeypatch.setattr(pipeline, "decode_rows", lambda *args: seen.append(args[7]) or ({}, []))
    cfg = load_config(None, ["data.task=randomsmiles2canonical", "generate.verify=vote", "generate.spellings=8",
                             "generate.num_beams=5", "generate.candidates=5"])
    pipeline.predict_pairs(None, None, None, "", [], cfg, "randomsmiles2canonical", progress=False)
    assert (seen[0].spellings, seen[0].beams, seen[0].verify) == (8, 5, "vote")
