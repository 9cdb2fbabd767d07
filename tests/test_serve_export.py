"""Export folder round trip and the HTTP server (loopback only, bounded requests)."""

import json
import threading
import urllib.error
import urllib.request

import pytest
from tiny import make_model, make_tokenizer

from seqtune.errors import SeqtuneError
from seqtune.export import export_run
from seqtune.formats import get_format
from seqtune.modeling import ModelInfo, load_finetuned, save_model
from seqtune.serve import make_server


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
    assert (out / "README.md").read_text() == "# card\n"
    assert not list(tmp_path.glob(".*tmp*"))
    with pytest.raises(SeqtuneError, match="no finished model"):
        export_run(tmp_path, tmp_path / "x")


def _post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_server_predicts_and_rejects_bad_requests(model_dir):
    server = make_server(str(model_dir / "model"), "127.0.0.1", 0, max_new_tokens=4)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with urllib.request.urlopen(base + "/health", timeout=10) as r:
            assert json.loads(r.read())["task"] == "toy"
        code, body = _post(base + "/predict", {"inputs": ["CCO", "c1ccccc1"]})
        assert code == 200 and len(body["predictions"]) == 2 and all(isinstance(p, str) for p in body["predictions"])
        for bad in ({"inputs": "CCO"}, {"inputs": [""]}, {"nothing": 1}, {"inputs": ["C"], "num_beams": 99}):
            code, body = _post(base + "/predict", bad)
            assert code == 400 and body["error"].startswith("bad request")
        code, _ = _post(base + "/nope", {"inputs": ["C"]})
        assert code == 404
    finally:
        server.shutdown()
        server.server_close()
