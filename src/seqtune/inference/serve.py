"""`seqtune serve MODEL_DIR`: the web page and JSON API of a model folder, on 127.0.0.1 by default.

POST /predict {"inputs": ["CCO", ...]} -> {"results": [{"input", "prediction", "verified", "candidates"}],
"predictions": [...]}; GET /health, GET /info, GET / (the page), GET /docs (OpenAPI).
The app itself is seqtune.inference.server.app; this module parses the command line, binds and runs uvicorn.
"""

from __future__ import annotations

import argparse
import errno
import logging
import socket
import sys
from typing import Any

from seqtune.errors import SeqtuneError
from seqtune.inference.server.app import Limits, create_app


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or one line saying why not (port out of range, in use, host unknown)."""
    if not 0 <= port <= 65535:
        raise SeqtuneError(f"--port: {port} is out of range (0-65535)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise SeqtuneError(f"--host: cannot resolve {host!r} ({err.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(1024)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise SeqtuneError(f"--port: {host}:{port} is already in use (pick another with --port)") from None
        if err.errno in (errno.EACCES, errno.EPERM):
            raise SeqtuneError(f"--port: not allowed to listen on {host}:{port} (ports below 1024 need root)") from None
        raise SeqtuneError(f"--host/--port: cannot listen on {host}:{port} ({err.strerror})") from None
    return sock


def _log_to_stderr() -> None:
    logger = logging.getLogger("seqtune.serve")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def serve(model_dir: str, host: str = "127.0.0.1", port: int = 8000, num_beams: int = 1,
          max_new_tokens: int = 128, limits: Limits | None = None) -> None:
    """Serve `model_dir` until interrupted. The port is bound before the model loads, so a port in
    use is reported at once."""
    import uvicorn

    from seqtune.modeling import load_finetuned

    limits = limits or Limits(max_new_tokens=max_new_tokens)
    sock = bind(host, port)
    try:
        loaded = load_finetuned(model_dir)
        app = create_app(model_dir, limits, loaded=loaded, num_beams=num_beams)
        _log_to_stderr()
        shown = f"[{host}]" if ":" in host else host
        print(f"serving {model_dir} on http://{shown}:{sock.getsockname()[1]}/ (page), /docs (API), "
              "POST /predict", flush=True)
        config = uvicorn.Config(app, access_log=False, log_level="warning", timeout_graceful_shutdown=5)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


def parse_args(argv: list[str]) -> Any:
    p = argparse.ArgumentParser(prog="seqtune serve", description="Web page and JSON API of a model folder.")
    p.add_argument("model_dir", nargs="?", help="folder written by `seqtune run` (RUN/model) or `seqtune export`")
    p.add_argument("--model", default=None, help="the same as MODEL_DIR")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--beams", type=int, default=1, help="default beam width of a request")
    p.add_argument("--max-new-tokens", type=int, default=128, help="cap on a request's max_new_tokens")
    d = Limits()
    p.add_argument("--max-batch", type=int, default=d.max_batch, help="inputs decoded together")
    p.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms, help="wait for more requests to batch")
    p.add_argument("--max-queue", type=int, default=d.max_queue, help="requests waiting before 503")
    p.add_argument("--max-inputs", type=int, default=d.max_inputs, help="inputs per request")
    p.add_argument("--timeout", type=float, default=d.request_timeout_s, help="seconds per request before 504")
    a = p.parse_args(argv)
    a.model_dir = a.model_dir or a.model
    if not a.model_dir:
        p.error("a model folder is needed: seqtune serve MODEL_DIR")
    for name in ("beams", "max_new_tokens", "max_batch", "max_queue", "max_inputs"):
        if getattr(a, name) <= 0:
            raise SeqtuneError(f"--{name.replace('_', '-')}: must be > 0")
    return a


def main(argv: list[str]) -> int:
    a = parse_args(argv)
    limits = Limits(max_new_tokens=a.max_new_tokens, max_batch=a.max_batch, max_wait_ms=a.max_wait_ms,
                    max_queue=a.max_queue, max_inputs=a.max_inputs, request_timeout_s=a.timeout,
                    max_beams=max(Limits().max_beams, a.beams))
    serve(a.model_dir, a.host, a.port, num_beams=a.beams, limits=limits)
    return 0
