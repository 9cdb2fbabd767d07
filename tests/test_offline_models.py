"""The real offline base models from PyPI load, generate and save (marked slow; runs in CI)."""

import pytest
import torch

from seqtune.config import ModelConfig
from seqtune.inference.generate import generate
from seqtune.modeling import load_model
from seqtune.prompts import encode_prompt, get_format


@pytest.mark.slow
def test_smollm2_gguf_generates_and_saves(tmp_path):
    model, tok = load_model(ModelConfig(name="smollm2-135m"))
    assert model.hf_quantizer is None and not hasattr(model.config, "quantization_config")
    assert model.dtype == torch.float32 and sum(p.numel() for p in model.parameters()) > 100e6
    fmt = get_format("chat")
    prompts = [encode_prompt(tok, fmt, q, "") for q in ("What is the capital of France?", "Say hello.")]
    outs = generate(model, tok, prompts, max_new_tokens=12, batch_size=2)
    assert "paris" in outs[0][0].lower()
    assert outs[1][0].strip()
    beams = generate(model, tok, prompts[:1], num_beams=3, num_return=3, max_new_tokens=6)
    assert len(beams[0]) == 3
    model.save_pretrained(tmp_path / "m")  # refused while the GGUF quantizer is attached
    assert (tmp_path / "m" / "config.json").is_file()
