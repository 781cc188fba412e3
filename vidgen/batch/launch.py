"""`vidgen batch --processes N`: N batch processes on this machine, started through
accelerate's own launcher, and the honest exit code for the whole batch.

Why vidgen launches them itself instead of leaving it to `accelerate launch`: accelerate's
launcher replaces any non-zero exit of its processes by its own 1 (`simple_launcher`
raises CalledProcessError, `multi_gpu_launcher` lets torchrun's ChildFailedError
escape), so a shell or a scheduler cannot tell a bad prompts file (2) from a failed
video (1) or a stop (143). Here the same launcher runs in vidgen's process, which
catches those exceptions and reads every process's own code. Before any process starts,
the options and the whole prompts file are checked once (a bad input: one line, exit 2,
nothing started, nothing created); the processes check again, as they must for a
folder another batch holds.

The exit code is the worst of the processes': a signal (130 Ctrl-C, 143 SIGTERM) over a
usage error (2) over a failure (1) over success. When one process fails, torchrun stops
the others with SIGTERM; their 143 is that clean-up, so it counts only when no process
failed otherwise.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from accelerate.commands.launch import launch_command, launch_command_parser
from torch.distributed.elastic.multiprocessing import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

from vidgen import ui
from vidgen.batch.check import check_batch
from vidgen.engine import parallel
from vidgen.errors import ExitCode, UsageError
from vidgen.processes import launched_by_accelerate
from vidgen.settings.request import BatchRequest

PROCESSES_OPTION = "--processes"
# torchrun sends its processes SIGTERM when it is stopped, then SIGKILL after this many
# seconds (its default is 30). A batch stops after its current video, which on a GPU can
# take minutes: give it a day unless the user set TORCH_ELASTIC_SHUTDOWN_TIMEOUT.
_SHUTDOWN_SECONDS = str(24 * 3600)


def without_processes_option(args: list[str]) -> list[str]:
    """The command line the processes run: the launcher's own, less `--processes N`."""
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == PROCESSES_OPTION:
            skip = True  # and its value
        elif not arg.startswith(PROCESSES_OPTION + "="):
            kept.append(arg)
    return kept


def exit_code_of(returncode: int) -> int:
    """A process's exit code as a shell reports it: killed by signal N (-N) -> 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def worst_exit_code(codes: Iterable[int]) -> int:
    """The batch's code from its processes' (see the module's docstring); an int, since a
    process killed by another signal (137 for SIGKILL) has no ExitCode."""
    codes = [exit_code_of(code) for code in codes]
    failures = [code for code in codes if code not in (0, *_SIGNAL_CODES)]
    if failures:
        return int(ExitCode.USAGE if ExitCode.USAGE in failures else ExitCode.FAILURE)
    signalled = [code for code in codes if code in _SIGNAL_CODES]
    if signalled:
        return max(signalled)
    return int(ExitCode.SUCCESS)


_SIGNAL_CODES = (ExitCode.INTERRUPTED, ExitCode.TERMINATED, 128 + signal.SIGKILL, 128 + signal.SIGHUP)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the launcher (it copies os.environ into each process)."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def launch(args: list[str], processes: int) -> int:
    """Run `vidgen ARGS` (a batch command line without --processes) in `processes`
    processes through accelerate's launcher; the worst of their exit codes."""
    gpus = torch.cuda.device_count()
    if gpus and processes > gpus:
        raise UsageError(f"--processes {processes}: this machine has {gpus} GPU{'s' if gpus != 1 else ''} (one process per GPU)")
    launch_args = [
        "--multi_gpu",
        "--num_processes",
        str(processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
        "-m",
        "vidgen",
        *args,
    ]
    # Without GPUs, accelerate starts several CPU processes only through torchrun with
    # ACCELERATE_USE_CPU (`--cpu` alone starts one); vidgen then forms a gloo group.
    environment = {"ACCELERATE_USE_CPU": "true", "CUDA_VISIBLE_DEVICES": ""} if not gpus else {}
    environment["TORCH_ELASTIC_SHUTDOWN_TIMEOUT"] = os.environ.get("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", _SHUTDOWN_SECONDS)
    ui.info(f"starting {processes} processes ({'one per GPU' if gpus else 'on the CPU'}) with accelerate")
    # torchrun's agent logs each process it stops and each exit code; the processes say
    # what went wrong themselves and the exit code says the rest.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    with _environment(environment):
        try:
            launch_command(launch_command_parser().parse_args(launch_args))
        except ChildFailedError as failed:  # torchrun: every process that did not exit 0
            return worst_exit_code(failure.exitcode for failure in failed.failures.values())
        except subprocess.CalledProcessError as failed:  # accelerate's single-process launcher
            return worst_exit_code([failed.returncode])
        except SignalException as stopped:
            # Ctrl-C or SIGTERM to this process: torchrun passed it on to the processes,
            # which stopped after their current video; their codes are not reported.
            return worst_exit_code([-int(stopped.sigval)])
    return int(ExitCode.SUCCESS)


def run_in_processes(args: list[str], processes: int, request: BatchRequest) -> int:
    """`vidgen batch ... --processes N` (`args`: its whole command line, from `batch` on)."""
    if processes < 1:
        raise UsageError(f"--processes must be at least 1, got {processes}")
    if launched_by_accelerate():
        raise UsageError("--processes starts its own processes: give it without `accelerate launch`")
    if request.prompts_file == "-":
        raise UsageError("--processes needs a prompts file, not - (every process reads it)")
    check_batch(request)
    parallel.check_group(request.overrides.get("parallel"), processes, command="batch")  # the degrees against N, before any process starts
    return launch(without_processes_option(args), processes)
