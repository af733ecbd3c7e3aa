"""Files written safely: atomic writes with the umask's permissions, and an exclusive lock on a file in use.

A reader (or a run resumed after a kill) never sees a half-written file: data goes to a temporary file beside
the target, is flushed to disk and renamed over it. The new file gets the permissions an ordinary ``open`` would
give it (``0o666`` less the umask), not ``mkstemp``'s private ``0o600``. :func:`exclusive_lock` keeps a second
process from writing the same file at the same time (the lock goes with the process: a kill leaves none behind).

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> atomic_write_text(path, "hello")
    >>> path.read_text(), oct(path.stat().st_mode & 0o777) == oct(0o666 & ~current_umask())
    ('hello', True)
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import torch

__all__ = [
    "FileInUseError",
    "atomic_torch_save",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "current_umask",
    "exclusive_lock",
]


class FileInUseError(RuntimeError):
    """Another process holds the lock on a file this one means to write."""


def current_umask() -> int:
    """The process's umask (read from ``/proc`` where it can be, so that it is never changed, even briefly)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it over ``path``.

    The file gets the permissions ``open`` would give a new file (``0o666`` less the umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_torch_save(path: str | os.PathLike[str], obj: Any) -> None:
    """``torch.save`` to ``path``, atomically."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _try_lock(fh: IO[bytes]) -> bool:
    """Take an exclusive, non-blocking lock on the open file ``fh``; False if another holder has it."""
    if sys.platform == "win32":  # pragma: no cover - CI runs on Linux
        import msvcrt

        try:
            msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike[str], *, what: str = "file") -> Iterator[Path]:
    """Hold an exclusive lock on ``path`` + ``.lock`` for the ``with`` block; raise :class:`FileInUseError` at
    once (never wait) if another process holds it. The lock file stays (empty); the lock ends with the block or
    the process, however it ends, so a killed run leaves nothing to clean up.

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "results.jsonl"
    >>> with exclusive_lock(target):
    ...     try:
    ...         with exclusive_lock(target):
    ...             pass
    ...     except FileInUseError as err:
    ...         print("refused")
    refused
    """
    lock = Path(f"{os.fspath(path)}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+b") as fh:
        if not _try_lock(fh):
            raise FileInUseError(
                f"{path} is in use by another process (lock {lock} is held): wait for it to finish, "
                f"or write this {what} elsewhere"
            )
        yield lock
