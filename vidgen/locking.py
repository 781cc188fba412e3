"""One process at a time: an exclusive `flock` on a file that also names its holder.

The kernel drops a flock when its process ends, however it ends (SIGKILL included), so a
dead holder never leaves the lock stuck; a file left by one (kill -9) is simply locked
again by the next. The holder's pid is written into the file only so that the one
refused can say who holds it. Used for a batch's output folder (vidgen.batch), which
removes the file when the batch ends, and for the server's socket folder (vidgen.server.serve).

Removing a lock file safely takes both sides: the holder unlinks it while it still holds
the lock, then closes (release(fd, remove=path)); whoever takes the lock checks, once it
has it, that `path` still names the file it locked, and starts again if not (take). Else
a process that opened the file just before the holder removed it would lock a file
nobody else can open, while the next one creates and locks a new one: two holders.
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
    while True:
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
        try:
            if names(path, fd):
                break
        except OSError as error:
            os.close(fd)
            raise CannotLock(path, error, opening=True) from error
        # Its holder removed it between our open and our flock (release(fd, remove=...)):
        # the lock we got is on a file no one else will open. Take the one there now.
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)  # only for LockHeld's message
    return fd


def names(path: Path, fd: int) -> bool:
    """Whether `path` is (still) the file open as `fd`: same device and inode."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)


def release(fd: int, *, remove: Path | None = None) -> None:
    """Drop the lock taken by take(). With `remove` (its path), delete the lock file first,
    while the lock is still held: removed after closing, it could be the file the next
    holder has just locked. Not removed if `path` no longer names our file (someone
    deleted it by hand and another process made its own); a failure to remove leaves
    only a file that the next take() locks again."""
    try:
        if remove is not None and names(remove, fd):
            os.unlink(remove)
    except OSError:
        pass
    finally:
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
