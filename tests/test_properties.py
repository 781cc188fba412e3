"""Property tests (Hypothesis) on generated inputs:
- every generation option: a valid settings object, or one UsageError line, never
  another exception (and non-finite floats never get through);
- prompts files of random bytes, random JSON values a line, random CSV: run as a real
  batch, never a traceback, every line accounted for in the manifest (or the whole file
  refused with nothing created), no file outside the output folder.

Example counts are kept small so the suite stays quick on a 2-core CPU; the runs are
derandomized, so a failure reproduces."""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from tests.conftest import gallery_file
from vidgen.batch import LOCK_NAME, MANIFEST_NAME
from vidgen.engine.prepare import merge_settings
from vidgen.errors import UsageError
from vidgen.settings.layers import GenerationSettings, validate
from vidgen.settings.presets import choose_preset
from vidgen.settings.prompts import LINE_KEYS

QUICK = settings(max_examples=60, deadline=None, derandomize=True, database=None)
# Each batch example loads the tiny model and may make a few videos.
BATCHES = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
BATCH_ARGS = ["--steps", "1", "--size", "16x16", "--frames", "1", "--quiet"]

numbers = st.one_of(
    st.none(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 2**63, 2**64, 10**400]),
)
names = st.one_of(
    st.none(),
    st.text(max_size=12),
    st.sampled_from(["auto", "cpu", "cuda", "cuda:1", "mps", "float16", "bf16", "model", "group", "none", "first-block"]),
)
options = st.fixed_dictionaries(
    {},
    optional={
        "seed": numbers,
        "steps": numbers,
        "guidance": numbers,
        "frames": numbers,
        "seconds": numbers,
        "fps": numbers,
        "width": numbers,
        "height": numbers,
        "num_videos": numbers,
        "crf": numbers,
        "size": st.one_of(
            st.none(), st.text(max_size=12), st.builds(lambda w, h: f"{w}x{h}", st.integers(-5, 10**6), st.integers(-5, 10**6))
        ),
        "dtype": names,
        "device": names,
        "offload": names,
        "cache": names,
        "negative_prompt": st.one_of(st.none(), st.text(max_size=20)),
    },
)


def _check_merged(preset_name: str | None, model: str | None, prompt: str, values: dict, strict: bool) -> None:
    chosen = choose_preset(preset_name, model)
    try:
        result, notes = merge_settings(chosen, [{"prompt": prompt, **values}], model=model, strict=strict)
    except UsageError as error:
        assert error.message and "\n" not in error.message, error.message
        return
    assert isinstance(result, GenerationSettings)
    validate(result)  # what passed once passes again, after snapping
    for name in ("guidance", "fps", "flow_shift"):
        value = getattr(result, name)
        assert value is None or math.isfinite(value), (name, value)
    for name in ("steps", "frames", "width", "height", "num_videos", "crf", "seed"):
        value = getattr(result, name)
        assert value is None or (isinstance(value, int) and value >= 0), (name, value)
    assert all("\n" not in note for note in notes)


@QUICK
@given(values=options, prompt=st.text(max_size=30), strict=st.booleans())
def test_options_give_valid_settings_or_one_usage_error_with_the_default_preset(values, prompt, strict):
    _check_merged(None, None, prompt, values, strict)


@QUICK
@given(values=options, strict=st.booleans())
@example(values={"seconds": 10**400}, strict=False)  # found by Hypothesis: too large for a float
@example(values={"fps": 10**400}, strict=False)
def test_options_give_valid_settings_or_one_usage_error_for_an_ad_hoc_model(values, strict, tmp_path_factory):
    _check_merged(None, "./some-model-folder", "a red ball", values, strict)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999"])
@pytest.mark.parametrize("option", ["--guidance", "--fps", "--seconds"])
def test_non_finite_floats_are_refused_on_the_command_line(run_cli, tiny_wan_dir, option, value):
    result = run_cli("a red ball", "--model", tiny_wan_dir, option, value, "-o", "x.mp4")
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and option in lines[0], result.stderr
    assert list(Path.cwd().iterdir()) == []


# ---- prompts files ----


def _expected_txt_lines(data: bytes) -> list[int]:
    """What a reader of the UTF-8 file would call its prompt lines (blank and # lines skipped;
    blank as str.strip() has it, which also strips Unicode spaces)."""
    text = (data[3:] if data.startswith(b"\xef\xbb\xbf") else data).decode("utf-8")
    return [number for number, line in enumerate(text.split("\n"), start=1) if line.strip() and not line.strip().startswith("#")]


def _run_batch(run_cli, model: Path, name: str, data: bytes):
    """A real batch in a fresh folder; returns the result, the work folder and DIR."""
    work = Path(tempfile.mkdtemp(dir=Path.cwd()))
    (work / name).write_bytes(data)
    out = work / "out"
    result = run_cli("batch", work / name, "-O", out, "--model", model, *BATCH_ARGS)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), result.stderr
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.stderr)
    # Nothing outside DIR but the prompts file itself.
    assert sorted(path.name for path in work.iterdir()) == sorted([name] + (["out"] if out.exists() else []))
    if result.exit_code == 2:
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
        assert not (out / MANIFEST_NAME).exists() or (out / MANIFEST_NAME).read_bytes() == b""
        event("refused as a whole")
        return result, None
    records = [json.loads(line) for line in (out / MANIFEST_NAME).read_text().splitlines() if line.strip()]
    event(f"exit {result.exit_code}, {len(records)} records")
    made = {path.relative_to(out).as_posix() for path in out.rglob("*") if path.is_file() and not gallery_file(path.relative_to(out))} - {
        MANIFEST_NAME,
        LOCK_NAME,
    }
    assert made == {r["output"] for r in records if r["status"] == "done"}  # every file has its record
    for path in out.rglob("*"):
        assert path.resolve().is_relative_to(out.resolve())
    return result, records


# Lines of random bytes, of text (so some files are UTF-8 and run), and the awkward ones.
byte_lines = st.one_of(
    st.binary(max_size=24),
    st.text(max_size=16).map(lambda text: text.encode("utf-8")),
    st.sampled_from([b"", b"# a comment", b"\r", b"a red \x00 ball", b"\xef\xbb\xbfa red ball", b"  a blue cat  \r"]),
)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@BATCHES
@given(data=st.lists(byte_lines, max_size=4).map(lambda parts: b"\n".join(parts)))
def test_random_bytes_as_a_prompts_file(run_cli, tiny_wan_dir, data):
    result, records = _run_batch(run_cli, tiny_wan_dir, "p.txt", data)
    # Refused as a whole exactly when the file gives cause: not UTF-8, or no prompt line.
    expected = _expected_txt_lines(data) if _is_utf8(data) else []
    should_refuse = not expected
    assert (records is None) == should_refuse, (data, result.stderr)
    if records is not None:
        assert sorted({r["line"] for r in records}) == expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)
json_objects = st.fixed_dictionaries(
    {"prompt": st.one_of(st.text(max_size=12), st.integers(), st.none())},
    optional={key: json_values for key in ("seed", "steps", "guidance", "fps", "frames", "output", "num_videos")},
)


@BATCHES
@given(values=st.lists(st.one_of(json_values, json_objects), min_size=1, max_size=4))
def test_random_json_lines_as_a_prompts_file(run_cli, tiny_wan_dir, values):
    data = "\n".join(json.dumps(value) for value in values).encode()
    result, records = _run_batch(run_cli, tiny_wan_dir, "p.jsonl", data)
    # Refused as a whole exactly when no line is an object.
    assert (records is None) == (not any(isinstance(value, dict) for value in values)), (values, result.stderr)
    if records is not None:
        assert sorted({r["line"] for r in records}) == list(range(1, len(values) + 1))


cells = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=10)


@BATCHES
@given(
    header=st.one_of(
        st.lists(st.sampled_from(sorted(LINE_KEYS) + ["title", ""]), min_size=1, max_size=4),
        st.lists(st.sampled_from(sorted(set(LINE_KEYS) - {"prompt"})), unique=True, max_size=3).map(lambda rest: ["prompt", *rest]),
    ),
    rows=st.lists(st.lists(cells, min_size=1, max_size=5), min_size=1, max_size=4),
)
def test_random_csv_as_a_prompts_file(run_cli, tiny_wan_dir, header, rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    data = buffer.getvalue().encode()
    result, records = _run_batch(run_cli, tiny_wan_dir, "p.csv", data)
    # Every data row that is not blank is one line of the manifest (its last physical line);
    # the first row that is not blank is the header.
    reader = csv.reader(io.StringIO(data.decode()))
    expected, found_header = [], None
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        if found_header is None:
            found_header = [cell.strip() for cell in row]
            continue
        expected.append(reader.line_num)
    # Refused as a whole exactly when the file gives cause: a header without a prompt column,
    # with a column vidgen does not know or one named twice, or no data row at all.
    bad_header = (
        found_header is None
        or "prompt" not in found_header
        or not set(found_header) <= set(LINE_KEYS)
        or len(set(found_header)) != len(found_header)
    )
    assert (records is None) == (bad_header or not expected), (data, result.stderr)
    if records is not None:
        assert sorted({r["line"] for r in records}) == expected


def test_hypothesis_keeps_no_files_in_the_checkout(request):
    """Hypothesis writes `.hypothesis/` in the folder pytest starts in (the checkout, not this
    test's working folder) unless conftest.py points it elsewhere; collecting this file with
    the @given tests above is enough to make it."""
    from hypothesis.configuration import storage_directory

    root = request.config.rootpath.resolve()
    assert not (root / ".hypothesis").exists(), f"{root / '.hypothesis'} exists (left by an earlier run? remove it)"
    # Run alone, this test collects no @given test before it: ask Hypothesis where it would write.
    where = storage_directory("examples")
    storage = Path(getattr(where, "path", where)).resolve()  # a StorageDirectory, or a path in older releases
    assert not storage.is_relative_to(root), f"Hypothesis stores its files in the checkout: {storage}"
