"""A request is a value: built once, sent as JSON unchanged, refused in one line when wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vidgen.errors import UsageError
from vidgen.server.jobs import Job
from vidgen.settings.request import BatchRequest, GenerateRequest, from_json, json_schema, with_schema

# What `curl --unix-socket ... -d '...'` sends: written by hand, not by vidgen's client.
HAND_WRITTEN = """{"version": 1, "command": "generate", "cwd": "/tmp", "prompt": "a red circle moving left",
                   "output": "/tmp/clip.mp4", "overrides": {"seed": 7, "steps": 10, "guidance": 5, "loras": ["/tmp/a.safetensors:0.5"]}}"""


def test_a_hand_written_job_is_accepted_as_the_request_it_names():
    job = Job.from_request(json.loads(HAND_WRITTEN), client_pid=None)
    assert isinstance(job, Job), job
    assert job.request == GenerateRequest(
        prompt="a red circle moving left",
        output="/tmp/clip.mp4",
        overrides={"seed": 7, "steps": 10, "guidance": 5, "loras": ["/tmp/a.safetensors:0.5"]},
    )
    assert job.env.folder() == Path("/tmp") and job.command == "generate"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "red"}, "unknown field(s) in a generate request: 'colour' (known: "),
        ({"strict": "yes"}, "strict must be true or false, got 'yes'"),
        ({"threads": 2.5}, "threads must be a whole number, got 2.5"),
        ({"prompt": None}, "prompt must not be null"),
        ({"overrides": {"stepz": 4}}, "overrides: unknown setting 'stepz' for generate (known: "),
        ({"overrides": {"steps": "10"}}, "overrides.steps must be a whole number, got '10'"),
        ({"overrides": {"guidance": True}}, "overrides.guidance must be a number, got True"),
        ({"overrides": {"loras": [3]}}, "overrides.loras must be a list of strings, got [3]"),
        ({"overrides": {"gallery": False}}, "overrides: unknown setting 'gallery' for generate"),  # a batch's
        ({"version": 2}, "request version 2 is not supported (this server speaks version 1)"),
        ({"command": "rm"}, "command must be one of generate, batch, got 'rm'"),
        ({"cwd": "relative"}, "a job needs cwd, the client's folder (an absolute path)"),
    ],
)
def test_an_unknown_or_mistyped_field_is_refused_in_one_line(change, message):
    body = {**json.loads(HAND_WRITTEN), **change}
    refused = Job.from_request(body, client_pid=None)
    assert isinstance(refused, str) and refused.startswith(message) and "\n" not in refused, refused


def test_a_request_goes_through_json_unchanged_and_cannot_change_after():
    batch = BatchRequest(
        prompts_file="p.txt",
        out_dir="out",
        preset="shapes",
        overrides={"seed": 3, "gallery": False, "size": "32x32"},
        resume=True,
        threads=2,
    )
    assert from_json(json.loads(json.dumps(batch.to_json()))) == batch
    with pytest.raises(TypeError):
        batch.overrides["seed"] = 4  # a read-only view
    with pytest.raises(AttributeError):
        batch.resume = False  # frozen
    with pytest.raises(UsageError, match="a batch request needs out_dir"):
        from_json({"command": "batch", "prompts_file": "p.txt"})


def test_the_api_page_holds_the_schema_the_code_makes():
    page = Path(__file__).parents[1] / "docs" / "api.md"
    text = page.read_text()
    assert with_schema(text) == text, "docs/api.md's schema is stale: run `python -m vidgen.settings.request docs/api.md`"
    schema = json_schema()
    [generate] = [variant for variant in schema["oneOf"] if variant["title"] == "GenerateRequest"]
    assert generate["required"] == ["command", "prompt", "cwd"] and generate["additionalProperties"] is False
    assert generate["properties"]["overrides"]["properties"]["steps"]["type"] == ["integer", "null"]
