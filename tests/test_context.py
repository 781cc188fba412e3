"""A run's context (vidgen.context): each run's events go to its own sink, with its own
--quiet, whatever runs beside it; and the wire form of every event reads back as itself."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from vidgen import ui
from vidgen.context import (
    EVENTS,
    PROCESS_CONTEXT,
    Accepted,
    BatchAdvance,
    BatchDescribe,
    BatchEnd,
    BatchStart,
    Bytes,
    Error,
    Exit,
    Info,
    Preview,
    ProgressEnd,
    ProgressPhase,
    ProgressStart,
    ProgressStep,
    Refused,
    Result,
    ResultTable,
    RunContext,
    Status,
    StatusEnd,
    Table,
    Traceback,
    Warn,
    Writing,
    current,
    decode,
    running,
)
from vidgen.settings.request import GenerateRequest

HANG = 300  # seconds: only to stop a hung test, never a measure


class _Collect:
    def __init__(self) -> None:
        self.events: list = []

    def send(self, event) -> None:
        self.events.append(event)


def test_two_runs_on_two_threads_see_only_their_own_events(capsys):
    """Two runs at once, in turns on two threads: each sink gets its own run's lines and bars,
    the quiet run's notes and bars are hidden and its warnings are not, and nothing reaches
    this process's terminal or outlives the runs."""
    sinks = [_Collect(), _Collect()]
    turns = threading.Barrier(2)

    def run(index: int) -> None:
        with running(RunContext(events=sinks[index], quiet=index == 1)):
            for turn in range(3):
                turns.wait(HANG)  # both runs are in their contexts at once
                ui.info(f"run {index} note {turn}")
                ui.warn(f"run {index} warning {turn}")
                with ui.progress(f"run {index}", 3) as bar:
                    turns.wait(HANG)
                    bar.step(turn)
                ui.emit_result(f"run {index} result {turn}")

    threads = [threading.Thread(target=run, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    loud, quiet = sinks
    assert [event.message for event in loud.events if isinstance(event, Info)] == [f"run 0 note {turn}" for turn in range(3)]
    assert [event.message for event in loud.events if isinstance(event, Warn)] == [f"run 0 warning {turn}" for turn in range(3)]
    assert [event.text for event in loud.events if isinstance(event, Result)] == [f"run 0 result {turn}" for turn in range(3)]
    assert {event.label for event in loud.events if isinstance(event, ProgressStart)} == {"run 0"}
    assert [event.completed for event in loud.events if isinstance(event, ProgressStep)] == [0, 1, 2]
    assert [type(event) for event in quiet.events] == [Warn, Result] * 3  # --quiet: no notes, no bars
    assert [event.message for event in quiet.events if isinstance(event, Warn)] == [f"run 1 warning {turn}" for turn in range(3)]
    assert capsys.readouterr() == ("", "")
    assert current() is PROCESS_CONTEXT


def test_a_served_jobs_client_gets_its_notes_while_the_server_is_quiet(tmp_path: Path, capsys):
    """`vidgen serve --quiet` quiets the server's own lines, not its clients': the worker
    (on its own thread, as serve starts it) sends the job's `seed` and `loaded` lines to the
    job's stream, and prints none of its own."""
    from vidgen.server.jobs import Job
    from vidgen.server.worker import Server

    with running(RunContext(quiet=True)):  # as the command line runs `vidgen serve --quiet`
        server = Server(tmp_path / "vidgen.sock", keep_alive=0)
    worker = threading.Thread(target=server.work, name="vidgen-worker")
    worker.start()
    overrides = {"steps": 2, "size": "32x32", "frames": 5, "seed": 4}
    job = Job(GenerateRequest(prompt="a red ball", overrides=overrides, output=str(tmp_path / "v.mp4")), tmp_path, client_pid=None)
    try:
        assert server.submit(job)
        events = [job.events.get(timeout=HANG)]
        while events[-1]["event"] != "exit":
            events.append(job.events.get(timeout=HANG))
    finally:
        server.jobs.put(None)
        worker.join(HANG)
    assert events[-1] == {"event": "exit", "code": 0}, events
    notes = [event["message"] for event in events if event["event"] == "info"]
    assert "seed 4" in notes and any(note.startswith("loaded ") for note in notes), events
    assert (tmp_path / "v.mp4").is_file()
    assert "exit 0" not in capsys.readouterr().err  # the worker's own `job N (generate): exit 0 in ...s`: quiet


def test_every_event_reads_back_from_its_wire_form():
    samples = [
        Info("seed 7"),
        Warn("changed"),
        Error("failed"),
        Traceback("Traceback ..."),
        Result("/out/v.mp4"),
        Bytes(b"\x00\xffmp4"),
        Table("failed", ("line", "error"), (("1", "no"),)),
        ResultTable("presets", ("name",), (("wan",),), ("name",)),
        ProgressStart(3, "video", 20, True),
        ProgressPhase(3, "decode"),
        ProgressStep(3, 5),
        ProgressEnd(3),
        BatchStart(4),
        BatchAdvance(),
        BatchDescribe("videos: 1 done"),
        BatchEnd(),
        Status("loading"),
        StatusEnd(),
        Writing("/out/v.mp4"),
        Preview("/out/p.png", 5, 20),
        Accepted(1),
        Exit(130),
        Refused("stopping"),
    ]
    assert {event.kind for event in samples} == set(EVENTS)  # a new event needs a sample here
    for event in samples:
        wire = json.loads(json.dumps(event.to_json()))
        assert wire["event"] == event.kind and decode(wire) == event, event
    assert decode({"event": "info"}) is None and decode({"event": "nonsense", "message": "x"}) is None and decode([1]) is None
