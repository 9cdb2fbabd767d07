"""The FastAPI app of `seqtune serve`: /predict (batched across clients), /health, /info, /depict, the page.

Every error is a JSON body {"error": "one line"}: 400 malformed or invalid request, 413 too much
(body, inputs, characters), 408 body never completed, 503 queue full (with Retry-After),
504 request timed out, 500 internal error.
"""

from __future__ import annotations

import asyncio
import logging
import unicodedata
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from seqtune.chem import CHEM_TASKS, INPUT_KINDS
from seqtune.inference.server.batcher import Batcher, Job, QueueFull, stats
from seqtune.inference.server.middleware import AccessLog, BodyLimit

LOG = logging.getLogger("seqtune.serve")
# Characters a SMILES string can hold (atoms, bonds, rings, charges, stereo, reactions).
SMILES_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789@+-[]()=#$%:/\\.*~?>")
PAGE_FILES = {"app.js": "text/javascript", "style.css": "text/css"}


@dataclass
class Limits:
    """What one server accepts; each bound keeps one client from taking the server from the others."""

    max_inputs: int = 64  # inputs per request
    max_input_chars: int = 300  # characters per input
    max_body_bytes: int = 256 * 1024
    max_new_tokens: int = 128  # per-request max_new_tokens is capped here
    max_beams: int = 8
    max_batch: int = 32  # inputs decoded together
    max_wait_ms: float = 5.0  # how long a batch waits for more requests once it has one
    max_queue: int = 64  # requests waiting; beyond, 503
    request_timeout_s: float = 60.0
    body_timeout_s: float = 10.0


class PredictRequest(BaseModel):
    """One input or a list of inputs, decoded greedily (num_beams 1) or with beam search."""

    model_config = ConfigDict(strict=True, extra="forbid")
    inputs: list[str] | str = Field(description="one input or a list of them", examples=[["CCO", "c1ccccc1O"]])
    num_beams: int | None = Field(None, ge=1, description="beam search width (1 = greedy; default: the server's)")
    candidates: int | None = Field(None, ge=1, description="candidates returned per input (<= num_beams)")
    max_new_tokens: int | None = Field(None, ge=1, description="longest output; capped by the server's limit")
    verify: bool = Field(False, description="chemistry tasks: OPSIN/RDKit round trip; picks the first "
                                            "candidate that maps back to the input molecule")


class Result(BaseModel):
    input: str
    prediction: str
    verified: bool | None = Field(None, description="round trip to the input molecule: true/false; null if unchecked")
    candidates: list[str]


class PredictResponse(BaseModel):
    results: list[Result]
    predictions: list[str]


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:300]


def check_inputs(raw: list[str] | str, limits: Limits, kind: str) -> list[str]:
    """The request's inputs, stripped, or ApiError naming the first problem."""
    inputs = [raw] if isinstance(raw, str) else list(raw)
    if not inputs:
        raise ApiError(400, "bad request: 'inputs' is empty")
    if len(inputs) > limits.max_inputs:
        raise ApiError(413, f"too many inputs: {len(inputs)} > {limits.max_inputs} per request")
    out = []
    for n, text in enumerate(inputs, start=1):
        text = text.strip()
        if not text:
            raise ApiError(400, f"bad request: input {n} is empty")
        if len(text) > limits.max_input_chars:
            raise ApiError(413, f"input {n} has {len(text)} characters, over the {limits.max_input_chars} limit")
        for i, ch in enumerate(text):
            if unicodedata.category(ch).startswith("C") or (kind == "smiles" and ch not in SMILES_CHARS):
                what = "a control or invisible character" if unicodedata.category(ch).startswith("C") else \
                    "not a SMILES character"
                raise ApiError(400, f"bad request: input {n} has {ch!r} (U+{ord(ch):04X}) at position {i + 1}: {what}")
        out.append(text)
    return out


def _kinds(task: str) -> tuple[str, str | None]:
    """(input kind, which side to draw) for the task."""
    kind = INPUT_KINDS.get(task)
    if kind is None:
        return "text", None
    # A name is not drawn: the structure of a name-reading task is its predicted SMILES.
    return kind, "input" if kind == "smiles" else "prediction"


def _card_scores(folder: Path, meta_scores: dict[str, Any]) -> dict[str, Any]:
    """Test scores from the model card's model-index (what the Hub shows), else from seqtune.json."""
    try:
        from huggingface_hub import ModelCard

        card = ModelCard.load(folder / "README.md")
        results = card.data.eval_results or []
        scores = {r.metric_type: r.metric_value for r in results}
    except Exception:  # no card, or a card without metadata: fall back to seqtune.json
        scores = {}
    return scores or dict(meta_scores)


def create_app(model_dir: str | Path, limits: Limits | None = None, loaded: tuple[Any, Any, Any] | None = None,
               num_beams: int = 1) -> FastAPI:
    """The app around one model folder (loaded here unless `loaded` is given)."""
    from seqtune.modeling import load_finetuned

    limits = limits or Limits()
    folder = Path(model_dir)
    model, tok, info = loaded or load_finetuned(folder)
    verifier = _verifier(info.task)
    batcher = Batcher(_decoder(model, tok, info, limits.max_batch), verifier,
                      max_batch=limits.max_batch, max_wait_ms=limits.max_wait_ms, max_queue=limits.max_queue)
    trained_new = int(info.saved("generate.max_new_tokens", limits.max_new_tokens))
    kind, draw = _kinds(info.task)
    about = {
        "task": info.task, "base_model": info.base_model, "base_model_hub_id": info.extra.get("base_model_hub_id"),
        "format": info.format.name, "input_column": info.saved("data.input_column"),
        "input_kind": kind, "draw": draw, "verify": verifier is not None,
        "scores": _card_scores(folder, info.extra.get("test_scores", {})),
        "default_max_new_tokens": min(trained_new, limits.max_new_tokens),
        "default_num_beams": min(num_beams, limits.max_beams), "limits": asdict(limits),
    }

    async def lifespan(app: FastAPI) -> Any:
        yield
        batcher.close()

    app = FastAPI(title="seqtune", version="1", lifespan=lifespan,
                  description=f"Predictions of a fine-tuned `{info.task}` model ({info.base_model}).")
    app.state.batcher, app.state.limits, app.state.about = batcher, limits, about
    _add_error_handlers(app)
    _add_api_routes(app, batcher, limits, about)
    _add_page_routes(app, limits)
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes, timeout_s=limits.body_timeout_s)
    app.add_middleware(AccessLog)
    return app


def _decoder(model: Any, tok: Any, info: Any, batch_size: int) -> Any:
    from seqtune.inference.generate import generate
    from seqtune.prompts import encode_prompt

    def decode(inputs: list[str], num_beams: int, num_return: int, max_new_tokens: int) -> list[list[str]]:
        # The project's one decode path (as `seqtune predict`): same prompts, same generate.
        prompts = [encode_prompt(tok, info.format, x, info.instruction) for x in inputs]
        return generate(model, tok, prompts, num_beams=num_beams, num_return=num_return,
                        max_new_tokens=max_new_tokens, batch_size=batch_size, text_of=info.format.output_text)

    return decode


def _verifier(task: str) -> Any:
    """The round-trip check of a chemistry task, or None (not chemistry, or no Java/OPSIN here)."""
    if task not in CHEM_TASKS:
        return None
    try:
        from seqtune.chem.opsin import ensure_started
        from seqtune.chem.verify import first_consistent

        # Started here, in the main thread, not by the first request: a JVM started (or joined as
        # an ordinary thread) by the worker thread keeps the process from exiting at shutdown.
        ensure_started()
    except Exception as err:  # no Java, no jar, no RDKit: serve without the check
        LOG.warning("round-trip verification unavailable: %s", _one_line(str(err)))
        return None

    def verify(inputs: list[str], cands: list[list[str]]) -> list[int | None]:
        import jpype

        if not jpype.java.lang.Thread.isAttached():
            jpype.java.lang.Thread.attachAsDaemon()
        return first_consistent(task, inputs, cands)

    return verify


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError) -> JSONResponse:
        return JSONResponse({"error": err.message}, status_code=err.status, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        first = (err.errors() or [{}])[0]
        if first.get("type") == "json_invalid":
            return JSONResponse({"error": "bad request: body is not valid JSON"}, status_code=400)
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        if where == "body" and first.get("type") == "missing":
            return JSONResponse({"error": "bad request: expected a JSON object with 'inputs'"}, status_code=400)
        return JSONResponse({"error": _one_line(f"bad request: {where}: {first.get('msg', 'invalid')}")},
                            status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        message = f"no route {request.url.path}" if err.status_code == 404 else _one_line(str(err.detail))
        return JSONResponse({"error": message}, status_code=err.status_code, headers=err.headers)

    @app.exception_handler(Exception)
    async def internal(request: Request, err: Exception) -> JSONResponse:
        LOG.exception("internal error on %s", request.url.path)
        return JSONResponse({"error": _one_line(f"internal error: {type(err).__name__}: {err}")}, status_code=500)


def _job(req: PredictRequest, inputs: list[str], limits: Limits, about: dict[str, Any]) -> Job:
    beams = req.num_beams or about["default_num_beams"]
    if beams > limits.max_beams:
        raise ApiError(400, f"bad request: num_beams {beams} is over the server's {limits.max_beams}")
    if req.max_new_tokens is not None and req.max_new_tokens > limits.max_new_tokens:
        raise ApiError(400, f"bad request: max_new_tokens {req.max_new_tokens} is over the server's "
                            f"{limits.max_new_tokens}")
    if req.verify and not about["verify"]:
        raise ApiError(400, f"bad request: verify: task {about['task']!r} has no round-trip check")
    num_return = req.candidates or (beams if req.verify else 1)
    if num_return > beams:
        raise ApiError(400, f"bad request: candidates {num_return} > num_beams {beams}")
    return Job(inputs, beams, num_return, req.max_new_tokens or about["default_max_new_tokens"], req.verify)


def _add_api_routes(app: FastAPI, batcher: Batcher, limits: Limits, about: dict[str, Any]) -> None:
    errors: dict[int | str, dict[str, Any]] = {
        code: {"description": what, "content": {"application/json": {"example": {"error": what}}}}
        for code, what in ((400, "malformed or invalid request"), (413, "too many inputs, too long, body too big"),
                           (503, "queue full: retry after Retry-After seconds"), (504, "timed out"),
                           (500, "internal error"))}

    @app.post("/predict", response_model=PredictResponse, responses=errors)
    async def predict(req: PredictRequest) -> dict[str, Any]:
        """Decode one or many inputs; concurrent requests are decoded together in batches."""
        job = _job(req, check_inputs(req.inputs, limits, about["input_kind"]), limits, about)
        try:
            future = batcher.submit(job)
        except QueueFull as err:
            raise ApiError(503, f"busy: {err}; retry later", {"Retry-After": "1"}) from None
        try:
            answer = await asyncio.wait_for(asyncio.wrap_future(future), limits.request_timeout_s)
        except asyncio.TimeoutError:
            raise ApiError(504, f"timed out after {limits.request_timeout_s:g} s") from None
        except Exception as err:
            LOG.exception("decoding failed")
            raise ApiError(500, _one_line(f"internal error: {type(err).__name__}: {err}")) from None
        results = [{"input": x, "prediction": p, "verified": v, "candidates": c}
                   for x, p, v, c in zip(job.inputs, answer.predictions, answer.verified, answer.candidates)]
        return {"results": results, "predictions": answer.predictions}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness and load: requests waiting, decode calls so far, mean inputs per decode call."""
        return {"status": "ok", "task": about["task"], "base_model": about["base_model"], **stats(batcher)}

    @app.get("/info")
    async def info() -> dict[str, Any]:
        """The model: task, base model, prompt format, test scores from its card, and the server's limits."""
        return about


def _add_page_routes(app: FastAPI, limits: Limits) -> None:
    page = resources.files("seqtune.inference.server") / "page"

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page.joinpath("index.html").read_text(encoding="utf-8"))

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in PAGE_FILES:
            raise ApiError(404, f"no route /static/{name}")
        return Response(page.joinpath(name).read_text(encoding="utf-8"), media_type=PAGE_FILES[name])

    @app.get("/depict", responses={200: {"content": {"image/svg+xml": {}}}})
    async def depict(smiles: str) -> Response:
        """The molecule drawn as SVG (RDKit)."""
        if not smiles or len(smiles) > limits.max_input_chars:
            raise ApiError(400, f"bad request: smiles must have 1..{limits.max_input_chars} characters")
        from seqtune.inference.server.depict import smiles_svg

        try:
            svg = await asyncio.to_thread(smiles_svg, smiles)
        except ImportError:
            raise ApiError(501, "drawing needs RDKit (pip install 'seqtune[chem]')") from None
        if svg is None:
            raise ApiError(422, "not a SMILES string RDKit can read")
        return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "max-age=3600"})
