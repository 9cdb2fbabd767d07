"""Load test of `seqtune serve` on 127.0.0.1: one request at a time, then N concurrent clients, same run.

    .venv/bin/python bench/serve_load.py --model runs/demo/model --clients 32 --seconds 60

Starts the server as a subprocess, and in each phase every client sends requests of 1-4 SMILES
for `--seconds`. Every answer is checked against its own request (same inputs, in order, one
prediction each); any 5xx other than the intended 503s counts as an error. Reports throughput
(inputs/s and requests/s), p50/p99 latency, the server's RSS before and after, the mean batch
the server decoded, and throughput at N clients over one request at a time. Exit status 1 when
an answer is lost, mixed up, or an unintended error came back.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

FALLBACK = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "CC(C)O", "CCN", "CC(=O)O", "OCC(O)CO", "c1ccncc1",
            "CC(C)(C)O", "ClCCl", "CCOC(C)=O", "NCC(=O)O", "C1CCCCC1", "CC#N", "O=C1CCCCC1", "Cc1ccccc1"]


def pool(path: str | None) -> list[str]:
    if path and Path(path).is_file():
        rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        return [r["input"] for r in rows if r.get("input")][:2000] or FALLBACK
    return FALLBACK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def start_server(args: argparse.Namespace, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "seqtune", "serve", args.model, "--port", str(port),
           "--max-batch", str(args.max_batch), "--max-queue", str(args.max_queue)]
    if args.max_new_tokens:
        cmd += ["--max-new-tokens", str(args.max_new_tokens)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + args.start_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with status {proc.returncode}: {' '.join(cmd)}")
        try:
            if get(port, "/health").get("status") == "ok":
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"server not up within {args.start_timeout} s")


class Phase:
    """N client threads sending requests until a deadline; results gathered under a lock."""

    def __init__(self, port: int, inputs: list[str], clients: int, seconds: float, seed: int) -> None:
        self.port, self.inputs, self.clients, self.seconds, self.seed = port, inputs, clients, seconds, seed
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.n_inputs = self.busy = self.errors = self.mismatches = 0
        self.answers: dict[str, set[str]] = {}

    def client(self, k: int, deadline: float) -> None:
        rng = random.Random(self.seed * 1000 + k)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        while time.monotonic() < deadline:
            sent = rng.sample(self.inputs, rng.randint(1, 4))
            start = time.perf_counter()
            try:
                conn.request("POST", "/predict", json.dumps({"inputs": sent}), {"Content-Type": "application/json"})
                resp = conn.getresponse()
                body = json.loads(resp.read())
            except (OSError, http.client.HTTPException, ValueError):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
                with self.lock:
                    self.errors += 1
                continue
            took = time.perf_counter() - start
            self.record(resp.status, sent, body, took)
            if resp.status == 503:
                time.sleep(float(resp.getheader("Retry-After") or 1) / 10)
        conn.close()

    def record(self, status: int, sent: list[str], body: dict, took: float) -> None:
        with self.lock:
            if status == 503:
                self.busy += 1
                return
            if status != 200:
                self.errors += 1
                return
            results = body.get("results", [])
            if [r.get("input") for r in results] != sent or len(body.get("predictions", [])) != len(sent):
                self.mismatches += 1
                return
            self.latencies.append(took)
            self.n_inputs += len(sent)
            for r in results:
                self.answers.setdefault(r["input"], set()).add(r["prediction"])

    def run(self) -> dict:
        deadline = time.monotonic() + self.seconds
        threads = [threading.Thread(target=self.client, args=(k, deadline)) for k in range(self.clients)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - start
        lat = sorted(self.latencies) or [float("nan")]
        return {"clients": self.clients, "seconds": round(wall, 2), "requests": len(self.latencies),
                "inputs": self.n_inputs, "inputs_per_s": round(self.n_inputs / wall, 2),
                "requests_per_s": round(len(self.latencies) / wall, 2),
                "p50_ms": round(statistics.median(lat) * 1000, 1),
                "p99_ms": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1000, 1),
                "busy_503": self.busy, "errors": self.errors, "mismatches": self.mismatches}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model folder (RUN/model or an export)")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--seconds", type=float, default=60, help="per phase")
    p.add_argument("--inputs", default="data/holdouts/moses_scaffold/test.jsonl", help="JSONL with an input field")
    p.add_argument("--max-batch", type=int, default=32)
    p.add_argument("--max-queue", type=int, default=64)
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--start-timeout", type=float, default=300)
    p.add_argument("--json", default=None, help="also write the report here")
    args = p.parse_args()
    port = free_port()
    proc = start_server(args, port)
    try:
        inputs = pool(args.inputs)
        rss_before = rss_mb(proc.pid)
        Phase(port, inputs, 1, min(3.0, args.seconds), seed=0).run()  # warm-up: first-call costs
        serial = Phase(port, inputs, 1, args.seconds, seed=1).run()
        calls_before = get(port, "/health")["decode_calls"]
        concurrent = Phase(port, inputs, args.clients, args.seconds, seed=2).run()
        health = get(port, "/health")
        rss_after = rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
    calls = max(health["decode_calls"] - calls_before, 1)
    report = {"model": args.model, "serial": serial, "concurrent": concurrent,
              "speedup": round(concurrent["inputs_per_s"] / max(serial["inputs_per_s"], 1e-9), 2),
              "mean_inputs_per_decode_call": round(concurrent["inputs"] / calls, 2),
              "rss_mb_before": round(rss_before, 1), "rss_mb_after": round(rss_after, 1)}
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    bad = sum(ph["mismatches"] + ph["errors"] for ph in (serial, concurrent))
    print(f"{args.clients} clients: {concurrent['inputs_per_s']} inputs/s, one at a time: {serial['inputs_per_s']} "
          f"inputs/s -> {report['speedup']}x; p50/p99 {concurrent['p50_ms']}/{concurrent['p99_ms']} ms; "
          f"RSS {report['rss_mb_before']} -> {report['rss_mb_after']} MB; lost/mixed/errors: {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
