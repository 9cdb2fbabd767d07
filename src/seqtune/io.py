"""Crash-safe file writing: write to a temporary name in the same folder, fsync, rename.

A reader (or a resumed run) therefore sees either the old file or the complete new
one, never half of it, whatever moment a process is killed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from seqtune.errors import SeqtuneError
from seqtune.rundir import LOCK as LOCK_FILE

# Errors that mean "this place cannot take the file" rather than a bug: reported as one line.
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG}


def _read_umask() -> int:
    # The umask can only be read by setting it; done once, at import, before any thread
    # could create a file under the temporary value.
    old = os.umask(0)
    os.umask(old)
    return old


# mkstemp creates 0600 files; outputs get the mode a plain open() would give them
# (0644 under the usual umask 022), so other users and containers can read a run.
FILE_MODE = 0o666 & ~_read_umask()


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as fh:
            os.fchmod(fh.fileno(), FILE_MODE)
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def finite(obj: Any, _path: frozenset[int] = frozenset()) -> Any:
    """`obj` with NaN and infinities replaced by None: JSON has no spelling for them, and
    Python's bare `NaN` makes a file other readers refuse (a missing score reads as null)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (dict, list, tuple)):
        if id(obj) in _path:  # as json.dumps reports it, rather than recursing without end
            raise ValueError("Circular reference detected")
        inner = _path | {id(obj)}
        if isinstance(obj, dict):
            return {k: finite(v, inner) for k, v in obj.items()}
        return [finite(v, inner) for v in obj]
    return obj


def dumps(obj: Any, indent: int | None = None) -> str:
    """Strict JSON (no NaN/Infinity tokens), non-ASCII kept as is."""
    return json.dumps(finite(obj), indent=indent, ensure_ascii=False, default=str, allow_nan=False)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, dumps(obj, indent=2) + "\n")


def atomic_write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    with atomic_open(path, "w") as fh:
        for row in rows:
            fh.write(dumps(row) + "\n")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def replace_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Move a fully written folder into place; an older folder of that name is removed only afterwards."""
    final_dir = Path(final_dir)
    old = None
    if final_dir.exists():
        old = final_dir.with_name(f".{final_dir.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    fsync_dir(final_dir.parent)


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def check_writable_file(path: str | Path, what: str = "output") -> None:
    """Fail now, with one line, if `path` cannot be written: before hours of work whose result
    would have nowhere to go. Creates the missing parent folders, as the write itself would."""
    path = Path(path)
    if path.is_dir():
        raise SeqtuneError(f"{path}: {what} is a folder, not a file")
    check_writable_dir(path.parent, what)


def check_writable_dir(folder: str | Path, what: str = "output") -> None:
    """Create `folder` if missing and check that files can be written into it; one line if not."""
    folder = Path(folder)
    _mkdir(folder, f"{what} folder")
    _probe(folder, what)


def _mkdir(folder: Path, what: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise SeqtuneError(f"{folder}: {what} is a file (or inside one), not a folder") from None
    except OSError as err:
        raise SeqtuneError(f"{folder}: cannot create the {what} ({err.strerror})") from None


def _probe(folder: Path, what: str) -> None:
    # Create and remove a file: permission bits, read-only mounts and root's exceptions
    # all answer the same way they will for the real write.
    try:
        fd, tmp = tempfile.mkstemp(prefix=".seqtune-probe-", dir=folder)
    except OSError as err:
        raise SeqtuneError(f"{folder}: {what} folder is not writable ({err.strerror})") from None
    os.close(fd)
    os.unlink(tmp)


def write_error(err: OSError, where: str | Path, what: str) -> SeqtuneError | None:
    """The one-line error for a failed write of `what` into `where` (a full disk, a read-only
    folder), or None for an OSError that is not about the place written to (a bug to show)."""
    if err.errno not in WRITE_ERRNOS:
        return None
    full = " (disk full)" if err.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    return SeqtuneError(f"{err.filename or where}: cannot write {what}: {err.strerror}{full}")


@contextlib.contextmanager
def run_folder_lock(out: Path) -> Iterator[None]:
    """Hold `out` for one run: a second run on the same folder would mix its config, checkpoints
    and model with this one's. An OS lock (flock) on out/.seqtune.lock is released by the kernel
    when the holder exits, however it dies, so a stale lock never blocks a new run; the file
    holds the holder's PID for the message. Also checks that `out` can be written, before any
    work. A run that fails before writing anything removes the folder it created."""
    created = [p for p in (out, *out.parents) if not p.exists()]
    _mkdir(out, "run folder (out_dir)")
    done = False
    fd = None
    try:
        _probe(out, "run")
        fd = _take_lock(out / LOCK_FILE, out)
        yield
        done = True
    finally:
        if not done and created:
            _remove_if_unused(out, created)
        if fd is not None:
            os.close(fd)  # releases the lock


def _remove_if_unused(out: Path, created: list[Path]) -> None:
    with contextlib.suppress(OSError):
        if [p.name for p in out.iterdir()] in ([], [LOCK_FILE]):
            (out / LOCK_FILE).unlink(missing_ok=True)
            for p in created:  # deepest first
                p.rmdir()


def _take_lock(path: Path, out: Path) -> int:
    import fcntl

    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise SeqtuneError(f"{out}: run folder is not writable ({err.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = ""
        for _ in range(50):  # the holder writes its PID just after taking the lock
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            if holder:
                break
            time.sleep(0.01)
        os.close(fd)
        pid, _, host = holder.partition(" ")
        on = f" on {host}" if host and host != socket.gethostname() else ""
        raise SeqtuneError(f"{out}: another seqtune run (pid {pid or '?'}{on}) is using this run folder; "
                           "wait for it to finish or choose another out_dir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
    return fd
