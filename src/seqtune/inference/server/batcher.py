"""Dynamic batching: one worker thread owns the model and decodes the requests of many clients together.

Batched decoding is many times faster per input than one input at a time, so a request that
arrives while the model is busy (or within `max_wait_ms` of another) waits for the next batch
instead of for every request in front of it. Each request carries a Future; the worker resolves
each with that request's own slice of the batch, so answers never cross between clients.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

# (inputs, num_beams, num_return, max_new_tokens) -> candidates per input, best first.
DecodeFn = Callable[[list[str], int, int, int], list[list[str]]]
# (inputs, candidates per input) -> index of the first consistent candidate per input, or None.
VerifyFn = Callable[[list[str], list[list[str]]], list[int | None]]


class QueueFull(Exception):
    """More requests are waiting than the server accepts; the client should retry later."""


@dataclass
class Job:
    """One request: its inputs and decoding settings, and the Future its answer goes to."""

    inputs: list[str]
    num_beams: int = 1
    num_return: int = 1
    max_new_tokens: int = 128
    verify: bool = False
    future: Future = field(default_factory=Future)

    @property
    def key(self) -> tuple[int, int, int]:
        # Only requests with the same settings can share one generate call.
        return self.num_beams, self.num_return, self.max_new_tokens


@dataclass
class Answer:
    """Per input: the chosen output, all candidates, and the round-trip verdict (None: not checked)."""

    predictions: list[str]
    candidates: list[list[str]]
    verified: list[bool | None]


class Batcher:
    """Queue + worker thread. `submit` never blocks: a full queue raises QueueFull."""

    def __init__(self, decode: DecodeFn, verify: VerifyFn | None = None, max_batch: int = 32,
                 max_wait_ms: float = 5.0, max_queue: int = 64) -> None:
        self.decode, self.verify = decode, verify
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1000
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=max_queue)
        self._carry: Job | None = None
        self._stopping = False
        self.decode_calls = 0
        self.batches: list[int] = []  # inputs per decode call, most recent last (bounded)
        self._thread = threading.Thread(target=self._loop, name="seqtune-batcher", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> Future:
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFull(f"{self._queue.maxsize} requests already waiting") from None
        return job.future

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def close(self, timeout: float = 5.0) -> None:
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)

    def _next_batch(self) -> list[Job] | None:
        first = self._carry or self._queue.get()
        self._carry = None
        if first is None:
            return None
        batch, n = [first], len(first.inputs)
        deadline = time.monotonic() + self.max_wait
        while n < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._stopping = True
                break
            if n + len(job.inputs) > self.max_batch:
                self._carry = job  # first in line for the next batch: no request is overtaken twice
                break
            batch.append(job)
            n += len(job.inputs)
        return batch

    def _loop(self) -> None:
        while not self._stopping:
            batch = self._next_batch()
            if batch is None:
                return
            # A request that timed out while waiting is dropped, not decoded for nobody.
            live = [job for job in batch if job.future.set_running_or_notify_cancel()]
            groups: dict[tuple[int, int, int], list[Job]] = {}
            for job in live:
                groups.setdefault(job.key, []).append(job)
            for jobs in groups.values():
                self._run(jobs)

    def _run(self, jobs: list[Job]) -> None:
        flat = [x for job in jobs for x in job.inputs]
        beams, num_return, max_new = jobs[0].key
        try:
            self.decode_calls += 1
            self.batches = (self.batches + [len(flat)])[-1000:]
            cands = self.decode(flat, beams, num_return, max_new)
            answers, start = [], 0
            for job in jobs:
                part = cands[start:start + len(job.inputs)]
                start += len(job.inputs)
                answers.append(self._answer(job, part))
        except Exception as err:  # the worker must survive; each request gets the error as its answer
            for job in jobs:
                job.future.set_exception(err)
            return
        for job, answer in zip(jobs, answers):
            job.future.set_result(answer)

    def _answer(self, job: Job, cands: list[list[str]]) -> Answer:
        verified: list[bool | None] = [None] * len(cands)
        preds = [c[0] if c else "" for c in cands]
        if job.verify and self.verify is not None:
            picks = self.verify(job.inputs, cands)
            for i, pick in enumerate(picks):
                verified[i] = pick is not None
                if pick is not None:
                    preds[i] = cands[i][pick]
        return Answer(preds, cands, verified)


def stats(batcher: Batcher) -> dict[str, Any]:
    recent = batcher.batches[-100:]
    return {"waiting": batcher.waiting, "decode_calls": batcher.decode_calls,
            "mean_batch": round(sum(recent) / len(recent), 2) if recent else 0.0}
