"""CPU threads: how many torch's intra-op pool gets (`--threads`, VIDGEN_THREADS, or a launcher's
share of the cores), set before any model work, and what ffmpeg is told (`-threads`). A base
module: the writers of files (media/) read `configured_threads()`, the commands apply them.
Light: torch is imported only when the pool is set.
"""

from __future__ import annotations

import os

from vidgen.environment import variable
from vidgen.errors import UsageError

# What apply_threads gave torch; media/video.py and media/post/ffmpeg.py pass it to ffmpeg as -threads.
# Process state, not a run's: torch's CPU thread pool is one per process (a server sets it
# for each job before running it, vidgen.server.worker), and this records what it was set to.
_configured_threads: int | None = None


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, e.g. under taskset or a container)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def cpu_thread_count(requested: int | None, *, local_processes: int | None = None) -> int | None:
    """Threads for torch's CPU work: --threads, else VIDGEN_THREADS, else under a launcher
    this process's share of the cores (cores / processes on this machine), else None
    (torch's default: one per core). Every process taking every core is what made two
    batches on a 2-core machine 70x slower (docs/benchmarks.md)."""
    if requested is None:
        text = variable("VIDGEN_THREADS")
        if text:
            if not text.isdigit() or int(text) < 1:
                raise UsageError(f"VIDGEN_THREADS must be a whole number of at least 1, got {text!r}")
            requested = int(text)
    if requested is not None:
        if requested < 1:
            raise UsageError(f"--threads must be at least 1, got {requested}")
        return requested
    if local_processes is not None and local_processes > 1:
        return max(1, available_cores() // local_processes)
    return None


def apply_threads(requested: int | None, *, local_processes: int | None = None) -> int | None:
    """Set torch's intra-op thread count (and ffmpeg's) before any model work."""
    global _configured_threads
    count = cpu_thread_count(requested, local_processes=local_processes)
    if count is None:
        return None
    import torch  # here, not at the top: vidgen --help imports this module (torch takes seconds)

    torch.set_num_threads(count)
    _configured_threads = count
    return count


def configured_threads() -> int | None:
    return _configured_threads


def restore_threads(count: int) -> None:
    """torch back to `count` threads (a server's own, for a job that asked for none) and
    ffmpeg to its default."""
    global _configured_threads
    import torch  # here, not at the top: as in apply_threads

    torch.set_num_threads(count)
    _configured_threads = None
