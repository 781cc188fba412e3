"""This process's place among those `accelerate launch` or `torchrun` started (or the
only one), and the barriers at which they agree: a batch's shares (vidgen.batch), and the
group that makes one video together (`--parallel`, vidgen.engine.parallel).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch

from vidgen.errors import ExitCode, SharedError, VidgenError

# Under accelerate a process may finish its share long before the slowest one; the
# end-of-batch barrier must not time out while the others still generate.
_BARRIER_TIMEOUT = timedelta(days=7)


@dataclass
class Processes:
    """This process's place among those `accelerate launch` started (or the only one)."""

    index: int = 0
    count: int = 1
    device: str | None = None  # the device accelerate gives this process
    state: Any = None  # accelerate.PartialState, for the barriers
    local_count: int = 1  # processes on this machine (for their share of the CPU cores)

    @property
    def is_main(self) -> bool:
        return self.index == 0

    def wait_for_everyone(self) -> None:
        if self.state is not None and self.count > 1:
            self.state.wait_for_everyone()

    def agree(self, error: VidgenError | None, *, one_voice: bool = False) -> None:
        """A barrier at which every process learns whether any failed to get ready; then
        all raise the first error, so none waits forever for one that has stopped.
        `one_voice`: only the first failing process shows it (the group making one video
        meets the same errors in every process); the others end with its code, silently."""
        if self.state is None or self.count <= 1:
            if error is not None:
                raise error
            return
        from accelerate.utils import gather_object  # here, not at the top: only processes that accelerate launched import it

        found = [
            (rank, *item)
            for rank, item in enumerate(gather_object([None if error is None else (error.message, int(error.exit_code))]))
            if item
        ]
        if not found:
            return
        rank, message, code = found[0]
        if one_voice and rank != self.index:
            raise SharedError(message, ExitCode(code))
        if error is not None:
            raise error
        raise VidgenError(message, ExitCode(code))

    def share(self, value: Any) -> Any:
        """The first process's `value`, in every process (a drawn seed, for one)."""
        if self.state is None or self.count <= 1:
            return value
        from accelerate.utils import broadcast_object_list  # here, not at the top: see agree

        return broadcast_object_list([value], from_process=0)[0]


def launched_by_accelerate() -> bool:
    return bool(os.environ.get("WORLD_SIZE")) or any(key.startswith("ACCELERATE_") for key in os.environ)


def current_processes() -> Processes:
    """accelerate is imported only when it launched us: a plain run stays light."""
    if not launched_by_accelerate():
        return Processes()
    from accelerate import PartialState  # here, not at the top: only processes that accelerate launched import it

    has_accelerator = torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())
    # With no GPU (or `--cpu`), accelerate's gloo backend needs cpu=True to form the group.
    use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes") or not has_accelerator
    state = PartialState(cpu=use_cpu, timeout=_BARRIER_TIMEOUT)
    device = "cpu" if state.device.type == "cpu" else str(state.device)
    local_count = int(os.environ.get("LOCAL_WORLD_SIZE") or state.num_processes)
    return Processes(state.process_index, state.num_processes, device, state, max(1, local_count))
