"""Labelling molecules with IUPAC names (openclatura) and checking names by OPSIN round trip."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from . import molecules, opsin


class _NamingTimeout(BaseException):
    # BaseException so that broad ``except Exception`` blocks inside the namer
    # cannot swallow the alarm and keep running.
    pass


@contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    # SIGALRM only works in the main thread of a Unix process; elsewhere we run
    # without a limit rather than fail.
    usable = (
        seconds is not None
        and seconds > 0
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def _raise(signum, frame):  # noqa: ARG001
        raise _NamingTimeout()

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def openclatura_version() -> str:
    import openclatura

    return str(getattr(openclatura, "__version__", "unknown"))


def name_smiles(smiles: str, timeout_s: float | None = 20.0) -> tuple[str | None, str | None]:
    """``(name, None)`` or ``(None, reason)`` with reason ``naming_failed`` / ``naming_timeout``."""
    import openclatura

    try:
        with _time_limit(timeout_s):
            name = openclatura.name_smiles(smiles)
    except _NamingTimeout:
        return None, "naming_timeout"
    except Exception:
        return None, "naming_failed"
    name = (name or "").strip()
    if not name:
        return None, "naming_failed"
    return name, None


@dataclass(frozen=True)
class RoundTrip:
    """What OPSIN made of a name, compared with the molecule the name should describe."""

    opsin_smiles: str | None
    canonical: str | None
    same_smiles: bool
    same_inchikey: bool

    @property
    def parsable(self) -> bool:
        return self.canonical is not None


def roundtrip(names: list[str | None], targets: list[str | None]) -> list[RoundTrip]:
    """Parse ``names`` with OPSIN (one batch) and compare each with the canonical SMILES in ``targets``.

    ``targets[i]`` must already be RDKit canonical SMILES (or ``None`` when unknown).
    """
    parsed = opsin.parse_names(names)
    out: list[RoundTrip] = []
    for smi, target in zip(parsed, targets, strict=True):
        mol = molecules.mol_from_smiles(smi)
        canon = molecules.canonical_from_mol(mol) if mol is not None else None
        if canon is None:
            out.append(RoundTrip(smi, None, False, False))
        elif target is None or canon == target:
            out.append(RoundTrip(smi, canon, canon == target, canon == target))
        else:
            # InChIKeys cost more than the OPSIN parse itself, so only for mismatches.
            key = molecules.inchikey_from_mol(mol)
            same_key = key is not None and key == molecules.inchikey_from_smiles(target)
            out.append(RoundTrip(smi, canon, False, same_key))
    return out
