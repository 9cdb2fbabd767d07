"""IUPAC names tokenised a morpheme at a time (model.input_split / output_split: morphemes)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from tiny import make_tokenizer

from seqtune.errors import ConfigError
from seqtune.name_morphemes import lexicon, morphemes
from seqtune.prompts import encode_example, encode_prompt, get_format

NAMES = ["N-(4-hydroxyphenyl)acetamide", "(2S)-2-aminopropanoic acid", "1-bromo-4-chlorobenzene",
         "1,1-difluorononane", "tricyclo[5.1.0.0^{2,4}]octane", "2-hydroxypropyl 2-bromoacetate"]
SMILES = ["CC(=O)Nc1ccc(O)cc1", "C[C@H](N)C(=O)O", "Brc1ccc(Cl)cc1", "CCCCCCCCC(F)F", "C1CC2CC2C2CC12",
          "CC(O)COC(=O)CBr"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", [*NAMES, "", "Not a Name: ü!", "xyzzy"])
def test_the_cut_keeps_every_character(name):
    assert "".join(morphemes(name)) == name


def test_names_are_cut_into_their_morphemes_in_the_fewest_pieces():
    assert morphemes("1,1-difluorononane") == ["1", ",", "1", "-", "di", "fluoro", "non", "ane"]
    assert morphemes("2-methylpropan-1-ol")[:3] == ["2", "-", "meth"]
    assert morphemes("benzenesulfinic acid")[-2:] == [" ", "acid"]
    assert morphemes("xyzzy") == list("xyzzy")  # no lexicon word: letter by letter


def test_a_morpheme_gets_the_same_tokens_in_every_name(smollm2_tokenizer):
    tok = smollm2_tokenizer
    fmt = get_format("plain", "morphemes", "none")
    fluoro = tok("fluoro", add_special_tokens=False)["input_ids"]
    for name in ("1,1-difluorononane", "1-(3-fluorophenyl)ethan-1-one", "hexafluorobutane"):
        ids = encode_prompt(tok, fmt, name, "")
        assert any(ids[i:i + len(fluoro)] == fluoro for i in range(len(ids))), name
        assert tok.decode(ids) == name + "\n"  # the text itself is unchanged
    # byte-pair tokens of the whole name do not hold it in the first of these
    plain = encode_prompt(tok, get_format("plain"), "1,1-difluorononane", "")
    assert not any(plain[i:i + len(fluoro)] == fluoro for i in range(len(plain)))


@pytest.mark.parametrize("isplit,osplit", [("morphemes", "smiles"), ("smiles", "morphemes"),
                                           ("morphemes", "morphemes")])
def test_examples_by_morpheme_keep_ids_and_mask_aligned(isplit, osplit):
    tok = make_tokenizer("gpt2")
    fmt = get_format("instruct", isplit, osplit)
    for name, smiles in zip(NAMES, SMILES, strict=True):
        x, y = (name if isplit == "morphemes" else smiles), (name if osplit == "morphemes" else smiles)
        ids, mask = encode_example(tok, fmt, x, y, "translate it")
        prompt = encode_prompt(tok, fmt, x, "translate it")
        assert ids[:len(prompt)] == prompt and not any(mask[:len(prompt)])
        assert all(mask[len(prompt):]) and ids[-1] == tok.eos_token_id
        assert fmt.output_text(tok.decode(ids[len(prompt):-1])) == y
        if isplit == "morphemes":
            assert f"### Input:\n{name}\n" in tok.decode(prompt)


def test_a_tokenizer_that_marks_each_text_start_is_refused():
    with pytest.raises(ConfigError, match="morphemes"):
        encode_prompt(make_tokenizer("llama"), get_format("plain", "morphemes", "none"), "2-methylpropane", "")


def test_the_shipped_lexicon_is_opsins():
    pytest.importorskip("py2opsin")
    spec = importlib.util.spec_from_file_location("build_name_morphemes", ROOT / "scripts" / "build_name_morphemes.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    words, longest = lexicon()
    assert sorted(words) == script.opsin_words()
    assert {"fluoro", "meth", "yl", "acid", "benzen"} <= words and longest == max(map(len, words))
