"""Export folder round trip and the HTTP server (bounded requests; more in test_server.py)."""

import pytest
from fastapi.testclient import TestClient
from tiny import make_model, make_tokenizer

from seqtune.errors import SeqtuneError
from seqtune.export import export_run
from seqtune.inference.server import Limits, create_app
from seqtune.modeling import ModelInfo, load_finetuned, save_model
from seqtune.prompts import get_format


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    tok = make_tokenizer("gpt2")
    run = tmp_path_factory.mktemp("run")
    info = ModelInfo(get_format("instruct"), "toy", "name it", "tiny-gpt2", {})
    save_model(make_model("gpt2", len(tok)), tok, run / "model", info, card="# card\n")
    return run


def test_export_copies_a_loadable_folder(model_dir, tmp_path):
    out = export_run(model_dir, tmp_path / "exported")
    model, tok, info = load_finetuned(out)
    assert info.format.name == "instruct" and info.instruction == "name it" and info.task == "toy"
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "pipeline_tag: text-generation" in card  # the Hub card replaces the old one
    assert not list(tmp_path.glob(".*tmp*"))
    with pytest.raises(SeqtuneError, match="no finished model"):
        export_run(tmp_path, tmp_path / "x")


def test_server_predicts_and_rejects_bad_requests(model_dir):
    app = create_app(model_dir / "model", Limits(max_new_tokens=4))
    with TestClient(app) as client:
        assert client.get("/health").json()["task"] == "toy"
        r = client.post("/predict", json={"inputs": ["CCO", "c1ccccc1"]})
        body = r.json()
        assert r.status_code == 200 and len(body["predictions"]) == 2
        assert all(isinstance(p, str) for p in body["predictions"])
        for bad in ({"inputs": "CCO", "num_beams": 0}, {"inputs": [""]}, {"nothing": 1}, {"inputs": ["C"], "num_beams": 99}):
            r = client.post("/predict", json=bad)
            assert r.status_code == 400 and r.json()["error"].startswith("bad request")
        assert client.post("/nope", json={"inputs": ["C"]}).status_code == 404


def test_no_loader_asks_for_hub_kernels(model_dir, tiny_llama_dir, tmp_path, monkeypatch):
    """On a CUDA machine transformers swaps layers for kernels fetched from the Hub at load time
    (offline, every Llama-family model failed to load on an H100). Here that request fails the
    way it did there, so each of seqtune's loaders must load the stock layers."""
    from transformers import PreTrainedModel

    from seqtune.config import ModelConfig
    from seqtune.modeling import load_model

    stock = PreTrainedModel.set_use_kernels

    def offline(self, use_kernels, *args, **kwargs):
        if use_kernels:
            raise ValueError("Version 2 of 'kernels-community/rotary' is not available in the local cache")
        return stock(self, use_kernels, *args, **kwargs)

    monkeypatch.setattr(PreTrainedModel, "set_use_kernels", offline)
    model, _ = load_model(ModelConfig(name=str(tiny_llama_dir)))
    out = export_run(model_dir, tmp_path / "exported", dtype="bf16")  # converts the weights: a load
    tuned, _, _ = load_finetuned(out)
    assert not model.use_kernels and not tuned.use_kernels
