"""`seqtune serve`: a small HTTP server around an exported model (standard library only).

POST /predict {"inputs": ["CCO", ...], "num_beams": 1} -> {"predictions": ["ethanol", ...]}
GET /health -> {"status": "ok", "task": ..., "base_model": ...}
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from seqtune.formats import encode_prompt
from seqtune.generate import generate
from seqtune.modeling import load_finetuned

MAX_INPUTS = 256
MAX_BODY = 1 << 20


def make_server(model_dir: str, host: str = "127.0.0.1", port: int = 8000, num_beams: int = 1,
                max_new_tokens: int = 128) -> ThreadingHTTPServer:
    model, tok, info = load_finetuned(model_dir)
    lock = threading.Lock()  # one decode at a time: the model is not re-entrant

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, obj: dict[str, Any]) -> None:
            body = json.dumps(obj, ensure_ascii=False).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args: Any) -> None:  # keep stderr for errors only
            return

        def do_GET(self) -> None:
            if self.path == "/health":
                self._send(200, {"status": "ok", "task": info.task, "base_model": info.base_model})
            else:
                self._send(404, {"error": f"no route {self.path}"})

        def do_POST(self) -> None:
            if self.path != "/predict":
                self._send(404, {"error": f"no route {self.path}"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length <= 0 or length > MAX_BODY:
                self._send(400, {"error": f"body must be 1..{MAX_BODY} bytes of JSON"})
                return
            try:
                req = json.loads(self.rfile.read(length))
                inputs = req["inputs"]
                beams = int(req.get("num_beams", num_beams))
                if not (isinstance(inputs, list) and all(isinstance(x, str) and x.strip() for x in inputs)):
                    raise ValueError("'inputs' must be a list of non-empty strings")
                if not 0 < len(inputs) <= MAX_INPUTS or not 0 < beams <= 16:
                    raise ValueError(f"1..{MAX_INPUTS} inputs and 1..16 beams per request")
            except (ValueError, KeyError, TypeError) as err:
                self._send(400, {"error": f"bad request: {err}"})
                return
            prompts = [encode_prompt(tok, info.format, x.strip(), info.instruction) for x in inputs]
            with lock:
                outs = generate(model, tok, prompts, num_beams=beams, max_new_tokens=max_new_tokens,
                                text_of=info.format.output_text)
            self._send(200, {"predictions": [o[0] if o else "" for o in outs]})

    return ThreadingHTTPServer((host, port), Handler)


def serve(model_dir: str, host: str = "127.0.0.1", port: int = 8000, num_beams: int = 1,
          max_new_tokens: int = 128) -> None:
    server = make_server(model_dir, host, port, num_beams, max_new_tokens)
    print(f"serving {model_dir} on http://{host}:{server.server_address[1]} (POST /predict)")
    try:
        server.serve_forever()
    finally:
        server.server_close()
