"""Headless Chromium for the tests, driven over the Chrome DevTools Protocol on a pipe.

`--remote-debugging-pipe` makes Chromium read commands on its file descriptor 3 and
write answers and events on 4, each a JSON text ended by a NUL byte: the protocol with
nothing but the standard library (no websocket client, no playwright download), against
the system's Chromium, from Debian's packages.

`find_chromium()` finds it, installing Debian's package when it is missing and the tests
run as root with apt (`apt-get update` and `apt-get install --no-install-recommends
chromium`: about a minute on a fresh machine); None, with the reason, when it cannot or
when VIDGEN_TEST_NO_INSTALL is set (the test is then skipped, saying why). `pytest -m
browser` runs the browser test alone, `-m "not browser"` leaves it out.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

# Debian's /usr/bin/chromium is a shell script; the binary beside it is what it starts.
CANDIDATES = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _installed() -> str | None:
    for name in CANDIDATES:
        found = name if os.path.isabs(name) and os.access(name, os.X_OK) else shutil.which(name)
        if found:
            return found
    return None


def find_chromium() -> tuple[str | None, str]:
    """(the browser's path, "") or (None, why there is none)."""
    found = _installed()
    if found:
        return found, ""
    if os.environ.get("VIDGEN_TEST_NO_INSTALL"):
        return None, "no chromium installed and VIDGEN_TEST_NO_INSTALL is set"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None, "no chromium installed, and apt-get as root is not available to install it (apt-get install chromium)"
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"]):
        result = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
        if result.returncode != 0:
            last = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or ["no output"]
            return None, f"cannot install chromium ({' '.join(command)}: {last[0]})"
    found = _installed()
    return (found, "") if found else (None, "apt-get installed chromium but no browser binary was found")


class Browser:
    """One headless Chromium; `page(url)` opens a tab and gives its session."""

    def __init__(self, executable: str):
        self.profile = tempfile.mkdtemp(prefix="vidgen-chromium-")
        commands_read, self._commands = os.pipe()
        self._answers, answers_write = os.pipe()

        def onto_3_and_4() -> None:  # in the child: the pipe's ends become fds 3 and 4
            read_end, write_end = os.dup(commands_read), os.dup(answers_write)  # above 4, so neither overwrites the other
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self.process = subprocess.Popen(
            [
                executable,
                "--headless",
                "--remote-debugging-pipe",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--mute-audio",
                "--autoplay-policy=no-user-gesture-required",
                f"--user-data-dir={self.profile}",
                "about:blank",
            ],
            preexec_fn=onto_3_and_4,
            close_fds=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(commands_read)
        os.close(answers_write)
        self._buffer = b""
        self._last_id = 0
        self.events: list[dict[str, Any]] = []  # what arrived while waiting for answers
        self.on_event = None  # called with each event as it arrives (e.g. to close a dialog)

    def _message(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            chunk = os.read(self._answers, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed its DevTools pipe (it exited)")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(raw)

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        """One command; its result (events that come first are kept in `events`)."""
        self._last_id += 1
        number = self._last_id
        message = {"id": number, "method": method, "params": params or {}, **({"sessionId": session} if session else {})}
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._message()
            if answer.get("id") == number:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            if "method" in answer:
                self.events.append(answer)
                if self.on_event is not None:
                    self.on_event(answer)

    def wait_for(self, method: str, session: str) -> dict[str, Any]:
        """The next event `method` of `session` (from those kept, else as it arrives)."""
        while True:
            for event in self.events:
                if event.get("method") == method and event.get("sessionId") == session:
                    self.events.remove(event)
                    return event
            event = self._message()
            if "method" in event:
                self.events.append(event)
                if self.on_event is not None:
                    self.on_event(event)

    def page(self) -> str:
        """A new blank tab with Page and Runtime events on: its session id."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.send("Page.enable", session=session)
        self.send("Runtime.enable", session=session)
        return session

    def evaluate(self, session: str, expression: str) -> Any:
        """The value of a JavaScript expression (a promise is awaited)."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}, session)
        if "exceptionDetails" in result:
            raise RuntimeError(
                f"JavaScript failed: {result['exceptionDetails'].get('exception', {}).get('description') or result['exceptionDetails']}"
            )
        return result["result"].get("value")

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (RuntimeError, OSError):
            pass
        try:
            self.process.wait(timeout=30)  # not a test's limit: a browser that will not close is killed
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)
        os.close(self._answers)
        shutil.rmtree(self.profile, ignore_errors=True)


def file_url(path: Path) -> str:
    return Path(path).resolve().as_uri()
