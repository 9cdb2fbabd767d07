"""The `seqtune` command re-executes itself once with a caching allocator preloaded."""

import os
import subprocess
import sys

import pytest

from seqtune import runtime


def test_reexec_preloads_the_allocator_once(tmp_path, monkeypatch):
    lib = tmp_path / "libfake.so"
    lib.write_bytes(b"")
    for var in ("LD_PRELOAD", "SEQTUNE_ALLOCATOR_LOADED"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SEQTUNE_ALLOCATOR", str(lib))
    monkeypatch.setattr(runtime, "_loaded", None)
    calls = []
    monkeypatch.setattr(os, "execve", lambda exe, args, env: calls.append((exe, args, env)))
    runtime.use_fast_allocator(["-m", "seqtune", "run", "x.yaml"])
    (exe, args, env), = calls
    assert args == [sys.executable, "-m", "seqtune", "run", "x.yaml"]
    assert env["LD_PRELOAD"] == str(lib) and env["SEQTUNE_ALLOCATOR_LOADED"] == str(lib)

    # In the re-executed process: nothing more to do, and children do not inherit the preload.
    monkeypatch.setenv("LD_PRELOAD", str(lib))
    monkeypatch.setenv("SEQTUNE_ALLOCATOR_LOADED", str(lib))
    runtime.use_fast_allocator(["-m", "seqtune"])
    assert len(calls) == 1 and runtime.loaded_allocator() == str(lib)
    assert "LD_PRELOAD" not in os.environ and "SEQTUNE_ALLOCATOR_LOADED" not in os.environ


def test_user_preload_and_opt_out_are_respected(monkeypatch):
    monkeypatch.delenv("SEQTUNE_ALLOCATOR_LOADED", raising=False)
    monkeypatch.setattr(os, "execve", lambda *a: pytest.fail("must not re-execute"))
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/libmine.so")
    runtime.use_fast_allocator(["-m", "seqtune"])
    monkeypatch.delenv("LD_PRELOAD")
    monkeypatch.setenv("SEQTUNE_ALLOCATOR", "system")
    assert runtime.fast_allocator() is None
    runtime.use_fast_allocator(["-m", "seqtune"])


def test_command_reports_its_allocator():
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "SEQTUNE_ALLOCATOR")}
    r = subprocess.run([sys.executable, "-m", "seqtune", "--version"], capture_output=True, text=True, timeout=60, env=env)
    expected = runtime.fast_allocator() or "system"
    assert r.returncode == 0 and f"memory allocator: {expected}" in r.stdout
    r = subprocess.run([sys.executable, "-m", "seqtune", "--version"], capture_output=True, text=True, timeout=60,
                       env={**env, "SEQTUNE_ALLOCATOR": "system"})
    assert "memory allocator: system" in r.stdout
