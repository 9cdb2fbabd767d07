"""The loss mask covers exactly the completion + EOS, for every built-in format and tokenizer family."""

import pytest
from tiny import make_tokenizer

from seqtune.errors import ConfigError
from seqtune.prompts import encode_example, encode_prompt, get_format

PAIRS = [("CC(=O)Oc1ccccc1C(=O)O", "2-acetyloxybenzoic acid"), ("CCO", "ethanol"), ("C", "methane")]
INSTRUCTION = "Translate the SMILES string of a molecule into its IUPAC name."


def _check(tok, fmt):
    for inp, out in PAIRS:
        ids, mask = encode_example(tok, fmt, inp, out, INSTRUCTION)
        assert len(ids) == len(mask)
        n_prompt = mask.index(True)
        # mask is a block: False over the prompt, True over the completion and EOS
        assert not any(mask[:n_prompt]) and all(mask[n_prompt:])
        # the prompt part is exactly what inference feeds the model
        assert ids[:n_prompt] == encode_prompt(tok, fmt, inp, INSTRUCTION)
        assert ids[-1] == tok.eos_token_id
        assert tok.decode(ids[n_prompt:-1]).strip() == out
        # EOS appears once in the completion, at the end, even when pad == eos
        assert ids[n_prompt:].count(tok.eos_token_id) == 1


@pytest.mark.parametrize("family", ["gpt2", "opt", "llama"])
@pytest.mark.parametrize("name", ["plain", "instruct"])
def test_mask_tiny_families(family, name):
    _check(make_tokenizer(family), get_format(name))


def test_custom_jinja(tmp_path):
    t = tmp_path / "mine.jinja"
    t.write_text("Q: {{ instruction }} [{{ input }}]\nA:")
    fmt = get_format(str(t))
    tok = make_tokenizer("gpt2")
    _check(tok, fmt)
    assert fmt.prompt_text(tok, "CCO", "name it") == "Q: name it [CCO]\nA:"


def test_bad_templates(tmp_path):
    bad = tmp_path / "bad.jinja"
    bad.write_text("{{ input ")
    with pytest.raises(ConfigError, match="bad.jinja:1"):
        get_format(str(bad))
    unused = tmp_path / "unused.jinja"
    unused.write_text("no input here")
    with pytest.raises(ConfigError, match="never uses"):
        get_format(str(unused))
    with pytest.raises(ConfigError, match="not one of"):
        get_format("nonsense")


def test_chat_needs_template():
    with pytest.raises(ConfigError, match="chat template"):
        encode_example(make_tokenizer("gpt2"), get_format("chat"), "CCO", "ethanol", INSTRUCTION)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["plain", "instruct", "chat"])
def test_mask_smollm2(smollm2_tokenizer, name):
    _check(smollm2_tokenizer, get_format(name))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["plain", "instruct"])
def test_mask_gemma(gemma_tokenizer, name):
    ids, _ = encode_example(gemma_tokenizer, get_format(name), "CCO", "ethanol", INSTRUCTION)
    assert ids[0] == gemma_tokenizer.bos_token_id  # Gemma's prompt starts with <bos>
    _check(gemma_tokenizer, get_format(name))


def test_a_template_from_a_model_folder_cannot_run_code(tmp_path):
    """The format travels in seqtune.json with a model folder someone else may have made."""
    from seqtune.prompts import PromptFormat

    marker = tmp_path / "pwned"
    evil = PromptFormat("evil", "{{ cycler.__init__.__globals__.os.system('touch " + str(marker) + "') }}{{ input }}")
    with pytest.raises(ConfigError, match="template error"):
        evil.prompt_text(None, "CCO", "")
    assert not marker.exists()
