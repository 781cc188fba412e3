"""Hostile prompts files: refused as a whole before anything is created when they cannot
be prompts files, one failed line each for lines that cannot run, and read as a stream."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from vidgen.batch import MANIFEST_NAME
from vidgen.settings.prompts import MAX_LINE_BYTES, detect_format, open_prompts, read_prompt_lines


def read_lines(path: Path) -> list:
    file, name = open_prompts(str(path))
    with file:
        return list(read_prompt_lines(file, name, detect_format(file, name)))


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / MANIFEST_NAME).read_text().splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("p.csv", b"title,seed\na red ball,3\n", "p.csv is not a CSV prompts file: its header (title, seed) has no prompt column"),
        ("p.csv", b"prompt,colour\na red ball,red\n", "p.csv: unknown CSV column(s) colour"),
        ("p.csv", b"prompt,seed,seed\na red ball,1,2\n", "p.csv: CSV column(s) named twice: seed"),
        (
            "p.txt",
            "a red ball\nun caf\u00e9\n".encode("latin-1"),
            "cannot read prompts file p.txt: not UTF-8 text (line 2: invalid continuation byte",
        ),
        ("p.txt", "a red ball".encode("utf-16"), "not UTF-8 text (line 1"),
        ("p.jsonl", b'"a red ball"\n[1, 2]\n{not json\n', "p.jsonl is not a JSON Lines prompts file: no line is a JSON object"),
        ("p.txt", b"# only a comment\n\n  \n", "no prompts in p.txt"),
    ],
)
def test_a_file_that_cannot_be_a_prompts_file_is_refused_before_anything_is_created(batch, name, content, fragment):
    Path(name).write_bytes(content)
    result = batch(name)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [result.stderr.splitlines()[0]] and fragment in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not Path("out").exists()


def test_a_file_refused_late_is_refused_before_anything_is_created(batch):
    """The bad byte is on the last of many good lines: still nothing is made."""
    Path("p.txt").write_bytes(b"a red ball\n" * 500 + b"\xff\n")
    result = batch("p.txt")
    assert result.exit_code == 2 and "line 501" in result.stderr
    assert not Path("out").exists()


def test_bom_and_crlf_are_read_as_plain_lines(tmp_path):
    txt = tmp_path / "p.txt"
    txt.write_bytes(b"\xef\xbb\xbfa red ball\r\n\r\n# note\r\na blue cat\r\n")
    assert [(line.number, line.values["prompt"]) for line in read_lines(txt)] == [(1, "a red ball"), (4, "a blue cat")]
    csv_file = tmp_path / "p.csv"
    csv_file.write_bytes(b'\xef\xbb\xbfprompt,seed\r\n"a red ball, twice",4\r\na blue cat,\r\n')
    assert [(line.number, line.values) for line in read_lines(csv_file)] == [
        (2, {"prompt": "a red ball, twice", "seed": 4}),
        (3, {"prompt": "a blue cat"}),
    ]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_bytes(b'\xef\xbb\xbf{"prompt": "a red ball"}\r\n')
    assert [line.values for line in read_lines(jsonl)] == [{"prompt": "a red ball"}]


def test_nul_bytes_and_overlong_lines_fail_alone(batch):
    long_line = b"a very long prompt " * (MAX_LINE_BYTES // 19 + 10)
    Path("p.txt").write_bytes(b"a red ball\nnul \x00 inside\n" + long_line + b"\na blue cat\n")

    result = batch("p.txt")

    assert result.exit_code == 1
    records = {record["line"]: record for record in manifest(Path("out"))}
    assert sorted(records) == [1, 2, 3, 4]  # every line accounted for
    assert records[1]["status"] == records[4]["status"] == "done"
    assert records[2]["status"] == "failed" and "NUL" in records[2]["error"]
    assert records[3]["status"] == "failed" and records[3]["error"] == "line longer than 1 MiB"
    assert "Traceback" not in result.stderr


def test_overlong_csv_line_fails_alone(tmp_path):
    path = tmp_path / "p.csv"
    path.write_bytes(b"prompt,seed\na red ball,1\n" + b"x" * (MAX_LINE_BYTES + 5) + b",2\na blue cat,3\n")
    lines = read_lines(path)
    assert [(line.number, line.error) for line in lines] == [(2, None), (3, "line longer than 1 MiB"), (4, None)]


def test_deeply_nested_json_is_one_failed_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a red ball"}\n' + "[" * 100_000 + "\n")
    lines = read_lines(path)
    assert lines[0].error is None and lines[1].error.startswith("invalid JSON")


def test_reading_100000_lines_keeps_memory_flat(tmp_path):
    """Read as a stream: the peak does not grow with the file (5.7 MB here)."""
    path = tmp_path / "p.txt"
    with open(path, "w") as file:
        for number in range(100_000):
            file.write(f"a red circle moving left on a black background, take {number}\n")
    tracemalloc.start()
    try:
        file, name = open_prompts(str(path))
        with file:
            count = sum(1 for _ in read_prompt_lines(file, name, detect_format(file, name)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 100_000
    assert peak < 256 * 1024, peak  # the whole text would be 5.7 MB


@pytest.mark.slow
def test_resume_reads_the_manifest_without_holding_its_records(tmp_path):
    """--resume over a manifest of 20,000 done records keeps one checksum per planned
    output, not the records (prompts, names and settings a second time). Measured in a fresh
    interpreter: inside the whole suite the same measurement came out 1.6 times larger than alone."""
    script = """
import json, sys, tracemalloc
from pathlib import Path
from vidgen.batch.folder import MANIFEST_NAME, Manifest, finished_jobs
from vidgen.batch.plan import Job

folder = Path(sys.argv[1])
jobs = [Job(number, 1, f"a red circle moving left on a black background, take {number}", number, f"{number:05d}-a-red-circle-s{number}.mp4",
            {"prompt": "x"}) for number in range(1, 20_001)]
with open(folder / MANIFEST_NAME, "w") as file:
    for job in jobs:
        record = {"line": job.line, "video": 1, "prompt": job.prompt, "seed": job.seed, "output": job.output, "status": "done",
                  "sha256": "0" * 64, "seconds": 0.8, "error": None, "settings": {"steps": 20}, "process": 0}
        file.write(json.dumps(record) + "\\n")
tracemalloc.start()
finished = finished_jobs(Manifest(folder), jobs, folder)
_, peak = tracemalloc.get_traced_memory()
print(json.dumps({"finished": len(finished), "peak": peak, "size": (folder / MANIFEST_NAME).stat().st_size}))
"""
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout)
    assert measured["finished"] == 0  # the manifest says done, but the files are not there
    # Holding each record's prompt, name and checksum took 1.27 times the file (8.2 MB); one checksum
    # per output takes 0.63 times (4.1 MB).
    assert measured["peak"] < measured["size"], measured
