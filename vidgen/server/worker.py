"""The server's queue, its worker and its pipeline cache.

One worker thread runs the jobs in arrival order (vidgen.server.jobs.execute: the same
functions as in-process), each in its own RunContext with the server's PipelineCache; a job
carries its own folder, standard input and output stream, so the worker changes no process
state per job but the CPU thread count (torch's is per process). The worker's own lines go
to the server's terminal in the server's context (`vidgen serve --quiet`). Idle pipelines
are unloaded after the keep-alive.
"""

from __future__ import annotations

import os
import queue
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

from vidgen import threads as threads_module
from vidgen import ui
from vidgen.context import Error, Exit, Refused, RunContext, current, running
from vidgen.engine.pipeline_cache import PipelineCache
from vidgen.server.address import API
from vidgen.server.control import describe_keep_alive
from vidgen.server.jobs import Job, execute


def _memory(libraries_ready: bool) -> dict[str, Any]:
    """Resident memory, and with torch imported and CUDA in use, memory on each card. Not
    before the worker's first imports have finished: a torch module still being imported
    in another thread is in sys.modules half-made, and reading it there failed the reply."""
    memory: dict[str, Any] = {"rss_bytes": None}
    try:
        with open("/proc/self/statm") as file:
            memory["rss_bytes"] = int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        memory["rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    torch = sys.modules.get("torch") if libraries_ready else None
    if torch is not None and torch.cuda.is_initialized():
        memory["cuda_allocated_bytes"] = {f"cuda:{i}": torch.cuda.memory_allocated(i) for i in range(torch.cuda.device_count())}
    return memory


class Server:
    """The queue, the worker and the cache; the HTTP side calls submit() and status()."""

    def __init__(self, socket_file: Path, keep_alive: float, context: RunContext | None = None):
        self.socket_file = socket_file
        self.context = current() if context is None else context  # the server's own (`vidgen serve`'s): its --quiet, its terminal
        self.cache = PipelineCache(keep_alive)
        self.jobs: queue.Queue = queue.Queue()
        self.current: Job | None = None
        self.stopping = threading.Event()
        self.libraries_ready = threading.Event()  # set once the worker has imported torch and diffusers
        self.started = time.time()
        self.done = 0
        self._default_threads: int | None = None

    def submit(self, job: Job) -> bool:
        if self.stopping.is_set():
            return False
        self.jobs.put(job)
        return True

    def find(self, number: int) -> Job | None:
        """The running or queued job with this number."""
        current = self.current
        if current is not None and current.number == number:
            return current
        return next((job for job in self.queued() if job.number == number), None)

    def queued(self) -> list[Job]:
        with self.jobs.mutex:
            return [job for job in self.jobs.queue if job is not None and not job.cancelled()]

    def status(self) -> dict[str, Any]:
        return {
            "api": API,
            "pid": os.getpid(),
            "socket": str(self.socket_file),
            "uptime_seconds": round(time.time() - self.started, 1),
            "keep_alive_seconds": self.cache.keep_alive,
            "stopping": self.stopping.is_set(),
            "models": self.cache.describe(),
            "memory": _memory(self.libraries_ready.is_set()),
            "running": None if self.current is None else self.current.summary(),
            "queued": [job.summary() for job in self.queued()],
            "jobs_done": self.done,
        }

    # ---- the worker ----

    def work(self) -> None:
        """Run jobs one at a time, in arrival order, until stopped; the worker's own lines in
        the server's context (a thread starts outside any)."""
        # Imported here, on the worker's thread: `vidgen serve --status` and `--stop` import
        # this package without torch, and the socket is up before these long imports end.
        import torch

        from vidgen.engine.loading import _quiet_library_logging

        _quiet_library_logging()  # imports diffusers and transformers once, before any job
        self.libraries_ready.set()
        self._default_threads = torch.get_num_threads()
        with running(self.context):
            while True:
                try:
                    job = self.jobs.get(timeout=1.0)
                except queue.Empty:
                    self._expire()
                    continue
                if job is None:
                    return
                if job.cancelled():  # its client left (or was interrupted) while it waited
                    job.send(Error("interrupted before the job started; nothing was written"))
                    job.send(Exit(int(job.cancel_code)))
                    continue
                if self.stopping.is_set():
                    job.send(Refused("the vidgen server is stopping"))
                    continue
                self._run(job)
                self._expire()

    def _expire(self) -> None:
        for model in self.cache.expire():
            ui.info(f"unloaded {model} (idle for the keep-alive, {describe_keep_alive(self.cache.keep_alive)})")

    def _threads(self) -> None:
        """The running job's --threads (its context's: its client's --threads or VIDGEN_THREADS),
        else the server's own count."""
        threads = current().threads
        if isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1:
            threads_module.apply_threads(threads)
        elif self._default_threads is not None:
            threads_module.restore_threads(self._default_threads)

    def _run(self, job: Job) -> None:
        self.current = job
        job.started_at = time.time()
        code = execute(job, prepare=self._threads, cache=self.cache)
        self.cache.touch_all()
        self.done += 1
        self.current = None
        outcome = "cancelled" if job.cancelled() else f"exit {int(code)}"
        ui.info(f"job {job.number} ({job.command}): {outcome} in {time.time() - job.started_at:.1f}s")
        job.send(Exit(int(code)))
