"""A signal that asks twice: the first asks the work in hand to stop at its next safe point,
the second stops it now.

Used for SIGTERM in a batch (stop after the current video; a second: now), for Ctrl-C
during denoising (stop after the current step; a second: now), and for both in a client
of `vidgen serve`, which passes them on to its job in the server. Handlers can only be set
on the main thread; elsewhere (a `vidgen serve` worker) the latch is inert and the
server's own signals and cancellations apply.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable

from vidgen import ui
from vidgen.errors import SECOND_SIGTERM, ExitCode, Interrupted


class StopRequest:
    """While active (`with`), the first `signum` sets `requested`, prints `notice` and
    calls `first()` if given; a second calls `second()`, which stops the work at once
    (in-process by raising; a server's client by asking the server). The previous
    handler comes back on exit."""

    def __init__(self, signum: int, *, notice: str, second: Callable[[], None], first: Callable[[], None] | None = None) -> None:
        self.signum = signum
        self.notice = notice
        self.first = first
        self.second = second
        self.requested = False
        self._previous = None

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(self.signum, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            self.second()
            return
        self.requested = True
        ui.info(self.notice)
        if self.first is not None:
            self.first()

    def __exit__(self, *exc_info) -> None:
        if self._previous is not None:
            signal.signal(self.signum, self._previous)
            self._previous = None


def after_current_video(*, second: Callable[[], None], first: Callable[[], None] | None = None) -> StopRequest:
    """SIGTERM to a batch: a first stops it after the current video, a second at once."""
    return StopRequest(
        signal.SIGTERM, notice="SIGTERM: stopping after the current video (send it again to stop now)", first=first, second=second
    )


def after_current_step(*, second: Callable[[], None], first: Callable[[], None] | None = None) -> StopRequest:
    """Ctrl-C while a video is made: a first stops it after the current step, a second at once."""
    return StopRequest(signal.SIGINT, notice="stopping after this step (Ctrl-C again to stop now)", first=first, second=second)


def _terminate_now() -> None:
    raise Interrupted(SECOND_SIGTERM, ExitCode.TERMINATED)


def sigterm_after_current_step() -> StopRequest | contextlib.AbstractContextManager[None]:
    """SIGTERM while a video is made stops after the current step, as a first Ctrl-C does
    (exit 143), so that --save-latents keeps that step; a second stops at once. Only where
    SIGTERM has its default action: a batch's own handler (stop after the current video)
    stays. Entered, it gives None where it does nothing."""
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return contextlib.nullcontext(None)
    return StopRequest(signal.SIGTERM, notice="SIGTERM: stopping after this step (send it again to stop now)", second=_terminate_now)
