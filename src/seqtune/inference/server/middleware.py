"""ASGI middleware: request bodies read whole, bounded in size and time; one access-log line per request.

The body is read here, before FastAPI sees it, so that an oversized body is refused after its
first bytes (or its header), and a client whose Content-Length promises more than it sends gets
an answer after `timeout_s` instead of holding a connection open for ever.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

Scope = dict[str, Any]
ACCESS_LOG = logging.getLogger("seqtune.serve.access")
# The most of a refused body read (and dropped) before answering; larger ones are cut off.
DRAIN_BYTES = 16 << 20


async def send_json(send: Any, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] = ()) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": data})


class BodyLimit:
    """Reads each request body (at most `max_bytes`, within `timeout_s`) and replays it to the app."""

    def __init__(self, app: Any, max_bytes: int, timeout_s: float) -> None:
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and not declared.strip().isdigit():
            await send_json(send, 400, {"error": "bad request: Content-Length is not a number"})
            return
        if declared is not None and int(declared) > self.max_bytes:
            await self._drain(receive)
            await send_json(send, 413, {"error": f"body of {int(declared)} bytes is over the {self.max_bytes}-byte limit"})
            return
        body = await self._read(receive, send)
        if body is None:
            return
        if declared is not None and len(body) != int(declared):
            await send_json(send, 400, {"error": f"bad request: body has {len(body)} bytes, Content-Length says "
                                                 f"{int(declared)}"})
            return
        if _too_deep(body):
            await send_json(send, 400, {"error": "bad request: JSON nested too deeply"})
            return
        await self.app(scope, _replay(body, receive), send)

    async def _drain(self, receive: Any) -> None:
        """Read and drop the rest of a refused body (up to DRAIN_BYTES, within the timeout): a server
        that answers and closes while the client is still sending makes the client's TCP stack
        reset the connection, and the client never sees the answer."""
        size = 0
        while size <= DRAIN_BYTES:
            try:
                message = await asyncio.wait_for(receive(), self.timeout_s)
            except asyncio.TimeoutError:
                return
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                return
            size += len(message.get("body", b""))

    async def _read(self, receive: Any, send: Any) -> bytes | None:
        chunks, size = [], 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), self.timeout_s)
            except asyncio.TimeoutError:
                await send_json(send, 408, {"error": f"request body not received within {self.timeout_s:g} s "
                                                     "(Content-Length larger than the body?)"})
                return None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                if message.get("more_body", False):
                    await self._drain(receive)
                await send_json(send, 413, {"error": f"body is over the {self.max_bytes}-byte limit"})
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _too_deep(body: bytes) -> bool:
    """Nesting deep enough to make the JSON parser recurse past Python's limit: caught here, where
    the request still gets a 400, instead of as a RecursionError inside the framework."""
    if body.lstrip()[:1] not in (b"[", b"{"):
        return False
    try:
        json.loads(body)
    except RecursionError:
        return True
    except ValueError:  # invalid JSON: the app's own handler says so
        return False
    return False


def _replay(body: bytes, receive: Any) -> Any:
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # later calls wait for the disconnect, as the server's own would

    return replay


class AccessLog:
    """`client "METHOD /path" status duration` per request, on the seqtune.serve.access logger."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), [500]

        async def record(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            client = scope.get("client") or ("-", 0)
            ACCESS_LOG.info('%s "%s %s" %d %.1f ms', client[0], scope["method"], scope["path"], status[0],
                            (time.perf_counter() - start) * 1000)
