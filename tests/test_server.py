"""The FastAPI server: requests, validation, limits, errors, and batching across concurrent clients."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient
from live_server import serving
from tiny import make_model, make_tokenizer

from seqtune.errors import SeqtuneError
from seqtune.inference.server import Limits, create_app
from seqtune.modeling import ModelInfo, load_finetuned, save_model
from seqtune.prompts import get_format


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    tok = make_tokenizer("gpt2")
    folder = tmp_path_factory.mktemp("served") / "model"
    info = ModelInfo(get_format("plain"), "smiles2iupac", "", "tiny-gpt2", {"test_scores": {"exact_match": 1.5}})
    save_model(make_model("gpt2", len(tok)), tok, folder, info)
    return folder


@pytest.fixture(scope="module")
def loaded(model_dir):
    return load_finetuned(model_dir)


def _app(model_dir, loaded, **limits):
    return create_app(model_dir, Limits(**{"max_new_tokens": 4, **limits}), loaded=loaded)


@pytest.fixture(scope="module")
def client(model_dir, loaded):
    app = _app(model_dir, loaded, max_inputs=4, max_input_chars=20, max_body_bytes=2000)
    with TestClient(app) as c:
        yield c


def test_predict_one_or_many_as_seqtune_predict_does(client, loaded, tmp_path):
    from seqtune.inference.predict import decode_and_score

    one = client.post("/predict", json={"inputs": "CCO"})
    assert one.status_code == 200, one.text
    assert [r["input"] for r in one.json()["results"]] == ["CCO"]
    many = client.post("/predict", json={"inputs": ["CCO", " c1ccccc1 ", "CC(=O)O"]}).json()
    assert [r["input"] for r in many["results"]] == ["CCO", "c1ccccc1", "CC(=O)O"]
    assert many["predictions"] == [r["prediction"] for r in many["results"]]
    assert all(r["verified"] is None for r in many["results"])
    out = tmp_path / "p.jsonl"
    decode_and_score(loaded, ["CCO", "c1ccccc1", "CC(=O)O"], None, str(out), max_new_tokens=4)
    assert many["predictions"] == [json.loads(line)["prediction"] for line in out.read_text().splitlines()]
    beams = client.post("/predict", json={"inputs": ["CCO"], "num_beams": 3, "candidates": 2}).json()
    assert len(beams["results"][0]["candidates"]) == 2


def test_health_info_and_openapi(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["task"] == "smiles2iupac" and health["decode_calls"] >= 0
    info = client.get("/info").json()
    assert info["task"] == "smiles2iupac" and info["base_model"] == "tiny-gpt2"
    assert info["scores"] == {"exact_match": 1.5} and info["limits"]["max_inputs"] == 4
    assert info["draw"] == "input" and isinstance(info["verify"], bool)  # False where Java is missing
    assert "/predict" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize("body, status, says", [
    (b"{not json", 400, "not valid JSON"),
    (b"", 400, "JSON object"),
    (b"[1, 2]", 400, "bad request"),
    (b'{"nothing": 1}', 400, "inputs"),
    (b'{"inputs": 5}', 400, "inputs"),
    (b'{"inputs": [1, 2]}', 400, "inputs"),
    (b'{"inputs": ["CCO"], "num_beams": "2"}', 400, "num_beams"),
    (b'{"inputs": ["CCO"], "verify": "yes"}', 400, "verify"),
    (b'{"inputs": ["CCO"], "num_beams": 0}', 400, "num_beams"),
    (b'{"inputs": ["CCO"], "num_beams": 99}', 400, "over the server"),
    (b'{"inputs": ["CCO"], "max_new_tokens": 999}', 400, "over the server"),
    (b'{"inputs": ["CCO"], "candidates": 3}', 400, "candidates"),
    (b'{"inputs": ["CCO"], "extra": 1}', 400, "extra"),
    (b'{"inputs": []}', 400, "empty"),
    (b'{"inputs": ["  "]}', 400, "input 1 is empty"),
    (b'{"inputs": ["' + b"C" * 21 + b'"]}', 413, "21 characters"),
    (b'{"inputs": ["C", "C", "C", "C", "C"]}', 413, "too many inputs"),
    (b'{"inputs": ["C C"]}', 400, "not a SMILES character"),
    (b'{"inputs": ["CC\\u0000O"]}', 400, "control"),
])
def test_bad_requests_get_a_one_line_reason(client, body, status, says):
    r = client.post("/predict", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert says in error and "\n" not in error


def test_body_limits_and_lying_content_length(client):
    big = json.dumps({"inputs": ["C" * 10] * 300}).encode()
    r = client.post("/predict", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "limit" in r.json()["error"]

    def chunks():  # no Content-Length: the limit holds while the body streams in
        for _ in range(30):
            yield b" " * 100

    assert client.post("/predict", content=chunks()).status_code == 413
    short = client.post("/predict", content=b'{"inputs": ["C"]}',
                        headers={"Content-Type": "application/json", "Content-Length": "500"})
    assert short.status_code == 400 and "Content-Length" in short.json()["error"]
    assert client.get("/nope").json() == {"error": "no route /nope"}
    assert client.get("/predict").status_code == 405


def _concurrent(app, bodies):
    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as c:
            return await asyncio.gather(*(c.post("/predict", json=b) for b in bodies))

    return asyncio.run(go())


def test_concurrent_requests_are_decoded_together_and_answered_separately(model_dir, loaded):
    app = _app(model_dir, loaded, max_wait_ms=200, max_batch=64)
    batcher = app.state.batcher
    sizes = []

    def fake_decode(inputs, beams, num_return, max_new):
        sizes.append(len(inputs))
        time.sleep(0.05)
        return [[x[::-1] + "-name"] for x in inputs]

    batcher.decode = fake_decode
    bodies = [{"inputs": [f"C{'C' * i}O", f"N{'C' * j}"][: 1 + (i + j) % 2]} for i in range(6) for j in range(4)]
    responses = _concurrent(app, bodies)
    for body, r in zip(bodies, responses):
        assert r.status_code == 200, r.text
        assert [x["input"] for x in r.json()["results"]] == body["inputs"]
        assert r.json()["predictions"] == [x[::-1] + "-name" for x in body["inputs"]]
    assert len(sizes) < len(bodies) / 4, sizes  # 24 requests in a few decode calls
    assert sum(sizes) == sum(len(b["inputs"]) for b in bodies)
    assert batcher.decode_calls == len(sizes)
    batcher.close()


def test_full_queue_gets_503_with_retry_after_and_timeouts_504(model_dir, loaded):
    app = _app(model_dir, loaded, max_queue=1, max_wait_ms=0, request_timeout_s=1.0)
    gate = threading.Event()

    def blocked(inputs, *args):
        gate.wait(10)
        return [["x"] for _ in inputs]

    app.state.batcher.decode = blocked
    responses = _concurrent(app, [{"inputs": ["C"]}] * 4)
    gate.set()
    codes = sorted(r.status_code for r in responses)
    assert 503 in codes and codes.count(503) >= 2, codes
    busy = next(r for r in responses if r.status_code == 503)
    assert busy.headers["Retry-After"] == "1" and "busy" in busy.json()["error"]
    assert {c for c in codes if c != 503} <= {200, 504}
    app.state.batcher.close()


def test_decode_error_is_a_500_with_json_and_the_server_carries_on(model_dir, loaded):
    app = _app(model_dir, loaded)
    real = app.state.batcher.decode

    def broken(*args):
        raise RuntimeError("boom")

    app.state.batcher.decode = broken
    with TestClient(app) as c:
        r = c.post("/predict", json={"inputs": ["CCO"]})
        assert r.status_code == 500 and r.json()["error"] == "internal error: RuntimeError: boom"
        app.state.batcher.decode = real
        assert c.post("/predict", json={"inputs": ["CCO"]}).status_code == 200


def test_depict_draws_smiles(client):
    r = client.get("/depict", params={"smiles": "c1ccccc1O"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml") and "<svg" in r.text
    assert client.get("/depict", params={"smiles": "C1CC"}).status_code == 422


@pytest.fixture()
def live_server(model_dir, loaded):
    """The real thing: uvicorn on a loopback port, in a thread."""
    with serving(_app(model_dir, loaded, body_timeout_s=0.5)) as port:
        yield port


def test_live_server_answers_and_does_not_hang_on_a_short_body(live_server, caplog):
    port = live_server
    with caplog.at_level(logging.INFO, logger="seqtune.serve.access"):
        r = httpx.post(f"http://127.0.0.1:{port}/predict", json={"inputs": ["CCO"]}, timeout=30)
        assert r.status_code == 200
        # The access line is written after the response has gone out: wait for it, briefly.
        deadline = time.monotonic() + 5
        while not any('"POST /predict" 200' in rec.getMessage() for rec in caplog.records):
            assert time.monotonic() < deadline, "no access-log line for the request"
            time.sleep(0.01)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100\r\n\r\n{\"inputs\": [")
        start = time.monotonic()
        reply = b""
        while not reply.rstrip().endswith(b"}"):  # headers and body may come in separate packets
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
        reply = reply.decode()
    assert reply.startswith("HTTP/1.1 408") and "Content-Length" in reply
    assert time.monotonic() - start < 5


def test_port_in_use_or_out_of_range_is_one_line_and_exit_2(model_dir, live_server, capsys):
    from seqtune.cli import main
    from seqtune.inference.serve import bind

    with pytest.raises(SeqtuneError, match="already in use"):
        bind("127.0.0.1", live_server)
    with pytest.raises(SeqtuneError, match="out of range"):
        bind("127.0.0.1", 70000)
    assert main(["serve", str(model_dir), "--port", str(live_server)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "already in use" in err


def _raw(port: int, request: bytes) -> str:
    """Send bytes as they are (no client library fixing them up); the whole reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    return reply.decode(errors="replace")


def _post(body: bytes, length: bytes | None = None) -> bytes:
    n = str(len(body)).encode() if length is None else length
    return (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: " + n + b"\r\n\r\n" + body)


@pytest.mark.parametrize("request_bytes, status", [
    (_post(b'{"inputs": ["C\\ud800C"]}'), b"400"),  # a lone surrogate
    (_post(b"[" * 100_000 + b"]" * 100_000), b"400"),  # deep nesting
    (_post(b'{"inputs": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"), b"400"),  # deep nesting under it
    (_post(b'{"inputs": ["C"]}', length=b"abc"), b"400"),  # Content-Length that is not a number
    (_post(b" " * 5_000_000), b"413"),  # a 5 MB body: the answer still reaches the client
])
def test_hostile_requests_get_an_answer_on_a_real_socket(live_server, request_bytes, status):
    reply = _raw(live_server, request_bytes)
    assert reply.startswith("HTTP/1.1 " + status.decode()), reply[:300]


def test_twenty_concurrent_connections_are_all_answered(live_server):
    port = live_server

    def one(i: int) -> int:
        return httpx.post(f"http://127.0.0.1:{port}/predict", json={"inputs": ["C" * (1 + i % 5)]},
                          timeout=60).status_code

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(one, range(40)))
    assert codes.count(200) + codes.count(503) == 40 and codes.count(200) > 0

