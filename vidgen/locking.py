"""One process at a time: an exclusive `flock` on a file that also names its holder.

The kernel drops a flock when its process ends, however it ends (SIGKILL included), so a
dead holder never leaves the lock stuck; the file itself stays. The holder's pid is
written into the file only so that the one refused can say who holds it. Used for a
batch's output folder (vidgen.batch) and for the server's socket folder (vidgen.server).
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path


class LockHeld(Exception):
    """Another live process holds the lock; `holder` is its pid when the file names one."""

    def __init__(self, path: Path, holder: int | None):
        super().__init__(f"{path} is locked" + (f" by process {holder}" if holder else ""))
        self.holder = holder


class CannotLock(Exception):
    """The lock file cannot be opened (`opening`), or its file system has no locks."""

    def __init__(self, path: Path, error: OSError, *, opening: bool):
        super().__init__(error.strerror or str(error))
        self.reason = error.strerror or str(error)
        self.opening = opening


def take(path: Path, *, mode: int = 0o644) -> int:
    """Lock `path` (created if missing) for this process; returns the descriptor to give
    to release(). Never waits: LockHeld if another process has it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, mode)
    except OSError as error:
        raise CannotLock(path, error, opening=True) from error
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
        os.close(fd)
        raise LockHeld(path, int(holder) if holder.isdigit() else None) from None
    except OSError as error:  # a file system without locks
        os.close(fd)
        raise CannotLock(path, error, opening=False) from error
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)  # only for LockHeld's message
    return fd


def release(fd: int) -> None:
    os.close(fd)  # closing drops the flock


def is_held(path: Path) -> bool:
    """Whether a live process holds the lock on `path` now."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops the shared lock just taken


def wait_until_free(path: Path, *, poll: float = 0.1, limit: float = 3600.0) -> bool:
    """Wait while another process holds the lock (at most `limit` seconds); True once free."""
    deadline = time.monotonic() + limit
    while is_held(path):
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)
    return True
