"""`vidgen batch` end to end on the fake pipeline (tests/fake_pipeline.py): formats, merging, seeds, names,
path safety, manifest, resume (after a real SIGKILL), bad lines, exit codes, --json,
standard input, and two processes under `accelerate launch`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FAKE_ARGS, gallery_file
from vidgen.batch import LOCK_NAME, MANIFEST_NAME, derive_seed, file_sha256, short_slug
from vidgen.media.readback import probe_video, read_recipe


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / MANIFEST_NAME).read_text().splitlines() if line.strip()]


def videos_in(out: Path) -> list[str]:
    """Every file in the folder but the manifest, the lock and the gallery, hidden (temporary) ones included."""
    return sorted(
        str(path.relative_to(out))
        for path in out.rglob("*")
        if path.is_file() and path.name not in (MANIFEST_NAME, LOCK_NAME) and not gallery_file(path.relative_to(out))
    )


def test_txt_lines_become_named_videos_with_manifest_and_checksums(batch):
    Path("prompts.txt").write_text("# my clips\na red circle moves left\n\n  a blue square  \n")

    result = batch("prompts.txt", "--num-videos", "2", "--fps", "8")

    assert result.exit_code == 0, result.stderr
    out = Path("out")
    seeds = {2: derive_seed(0, 2), 4: derive_seed(0, 4)}  # no --seed: base 0, by line number
    expected = [
        f"0002-a-red-circle-moves-left-s{seeds[2]}.mp4",
        f"0002-a-red-circle-moves-left-s{seeds[2] + 1}.mp4",
        f"0004-a-blue-square-s{seeds[4]}.mp4",
        f"0004-a-blue-square-s{seeds[4] + 1}.mp4",
    ]
    assert videos_in(out) == sorted(expected)
    assert result.stdout.splitlines() == [str((out / name).resolve()) for name in expected]  # paths only
    records = manifest(out)
    assert [(r["line"], r["video"], r["output"], r["status"]) for r in records] == [
        (2, 1, expected[0], "done"),
        (2, 2, expected[1], "done"),
        (4, 1, expected[2], "done"),
        (4, 2, expected[3], "done"),
    ]
    for record in records:
        path = out / record["output"]
        assert record["sha256"] == file_sha256(path)
        assert record["error"] is None and record["seconds"] > 0
        assert record["settings"]["steps"] == 2 and record["settings"]["fps"] == 8
        info = probe_video(path)
        assert (info.frames, info.width, info.height, info.fps) == (9, 32, 32, 8.0)
        recipe = read_recipe(path)
        assert (recipe["prompt"], recipe["seed"]) == (record["prompt"], record["seed"])
    assert records[2]["prompt"] == "a blue square"
    assert "4 videos done" in result.stderr


def test_seeds_are_stable_per_line_and_follow_the_base_seed():
    # Pinned: a batch resumed with a later vidgen, and its file names, depend on these staying.
    assert derive_seed(0, 7) == 541618850 and derive_seed(5, 3) == 943935321
    assert len({derive_seed(0, line) for line in range(1, 200)}) == 199
    assert derive_seed(1, 7) != derive_seed(0, 7)
    assert all(0 <= derive_seed(base, 3) < 2**31 for base in (0, 5, 2**40))


def test_names_are_short_safe_slugs():
    assert short_slug("A red circle moves left on a blue background, slowly") == "a-red-circle-moves-left-on-a-blue"
    assert short_slug("../../etc/passwd") == "etc-passwd"
    assert short_slug("日本語") == "video"
    assert len(short_slug("x" * 100)) == 40


def test_overall_bar_above_the_video_bar_on_a_terminal(batch, monkeypatch):
    import io

    from rich.console import Console

    from vidgen import ui

    screen = io.StringIO()
    monkeypatch.setattr(ui, "_stderr", Console(file=screen, force_terminal=True, width=100, highlight=False))
    finished = []
    original = ui.BatchProgress.video_finished
    monkeypatch.setattr(ui.BatchProgress, "video_finished", lambda self: (finished.append(self.total_videos), original(self)))
    Path("p.txt").write_text("a red ball\na blue cat\n")

    result = batch("p.txt")

    assert result.exit_code == 0, screen.getvalue()[-3000:]
    assert finished == [2, 2]
    assert "videos" in screen.getvalue() and "line 2 video 1" in screen.getvalue()
    assert len(result.stdout.splitlines()) == 2  # the bars stay on stderr


def test_jsonl_line_wins_over_flags_which_win_over_preset(batch):
    lines = [
        {"prompt": "a red ball", "fps": 12, "frames": 5, "seed": 3, "width": 48, "negative_prompt": "blur", "output": "sub/ball.mp4"},
        {"prompt": "a green cat", "num_videos": 2, "seed": 10},
        {"prompt": "a dog"},
    ]
    Path("p.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")

    result = batch("p.jsonl", "--fps", "8", "--seed", "100", "--json")

    assert result.exit_code == 0, result.stderr
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    by_output = {o["output"]: o for o in objects}
    assert set(by_output) == {
        "sub/ball.mp4",
        "0002-a-green-cat-s10.mp4",
        "0002-a-green-cat-s11.mp4",
        f"0003-a-dog-s{derive_seed(100, 3)}.mp4",
    }
    ball = probe_video(Path("out/sub/ball.mp4"))
    assert (ball.frames, ball.width, ball.height, ball.fps) == (5, 48, 32, 12.0)  # the line's values
    assert read_recipe(Path("out/sub/ball.mp4"))["negative_prompt"] == "blur"
    dog = probe_video(Path(by_output[f"0003-a-dog-s{derive_seed(100, 3)}.mp4"]["path"]))
    assert (dog.frames, dog.fps) == (9, 8.0)  # the flags' values
    assert all(o["status"] == "done" and Path(o["path"]).is_file() for o in objects)


def test_csv_header_names_the_fields_and_empty_cells_use_the_flags(batch):
    Path("p.csv").write_text('prompt,seed,fps\n"a red ball, bouncing",4,12\na blue sky,,\n')

    result = batch("p.csv", "--fps", "8")

    assert result.exit_code == 0, result.stderr
    first, second = manifest(Path("out"))
    assert (first["line"], first["prompt"], first["seed"], first["settings"]["fps"]) == (2, "a red ball, bouncing", 4, 12)
    assert (second["line"], second["seed"], second["settings"]["fps"]) == (3, derive_seed(0, 3), 8)
    assert first["output"] == "0002-a-red-ball-bouncing-s4.mp4"


def test_bad_lines_and_escaping_outputs_fail_alone_exit_1(batch, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    out = Path("out")
    out.mkdir()
    (out / "link").symlink_to(outside)
    lines = [
        '{"prompt": "a red ball"}',
        "{not json",
        '{"seed": 3}',
        '{"prompt": "a cat", "steps": 0}',
        '{"prompt": "a cat", "colour": "red"}',
        '{"prompt": "a cat", "frames": 2.5}',
        '{"prompt": "a cat", "output": "../escape.mp4"}',
        '{"prompt": "a cat", "output": "/tmp/escape.mp4"}',
        '{"prompt": "a cat", "output": "link/escape.mp4"}',
        '{"prompt": "a cat", "output": "a.exe"}',
        '{"prompt": "../../etc/passwd"}',
    ]
    Path("p.jsonl").write_text("\n".join(lines) + "\n")

    result = batch("p.jsonl")

    assert result.exit_code == 1
    records = {r["line"]: r for r in manifest(out)}
    assert records[1]["status"] == "done" and records[11]["status"] == "done"
    assert records[11]["output"] == f"0011-etc-passwd-s{derive_seed(0, 11)}.mp4"  # the slug cannot traverse
    errors = {line: records[line]["error"] for line in range(2, 11)}
    assert all(records[line]["status"] == "failed" and records[line]["output"] is None for line in errors)
    assert errors[2].startswith("invalid JSON")
    assert errors[3] == "missing prompt"
    assert errors[4] == "--steps must be at least 1, got 0"
    assert errors[5].startswith("unknown key(s) colour")
    assert errors[6] == "frames must be a whole number, got 2.5"
    assert "may not contain '..'" in errors[7]
    assert "must be relative" in errors[8]
    assert "outside" in errors[9] and "symbolic link" in errors[9]
    assert "must end in .mp4" in errors[10]
    assert list(outside.iterdir()) == [] and not (tmp_path / "escape.mp4").exists()
    assert "failed" in result.stderr and "2 videos done" in result.stderr and "9 failed" in result.stderr
    assert len(result.stdout.splitlines()) == 2  # only the videos made


def test_exit_2_before_any_work(batch, tmp_path):
    missing = batch("nope.txt")
    assert missing.exit_code == 2
    assert missing.stderr.strip() == "Error: cannot read prompts file nope.txt: No such file or directory"

    Path("empty.txt").write_text("# nothing\n\n")
    assert batch("empty.txt").exit_code == 2

    Path("p.txt").write_text("a cat\n")
    Path("a-file").write_text("")
    blocked = batch("p.txt", out="a-file/out")
    assert blocked.exit_code == 2 and "cannot create output folder" in blocked.stderr

    bad_flag = batch("p.txt", "--crf", "99")
    assert bad_flag.exit_code == 2 and "--crf must be at most 51" in bad_flag.stderr
    assert not Path("out/manifest.jsonl").exists() or manifest(Path("out")) == []
    assert missing.stdout == blocked.stdout == bad_flag.stdout == ""


def test_stdin_prompts_then_resume_overwrite_and_stale_temp_files(batch):
    prompts = "a red ball\na blue cat\n"
    first = batch("-", "--json", input=prompts)
    assert first.exit_code == 0, first.stderr
    out = Path("out")
    names = [json.loads(line)["output"] for line in first.stdout.splitlines()]
    assert names == [f"0001-a-red-ball-s{derive_seed(0, 1)}.mp4", f"0002-a-blue-cat-s{derive_seed(0, 2)}.mp4"]

    again = batch("-", input=prompts)  # existing videos: ask before replacing
    assert again.exit_code == 2 and "--resume" in again.stderr

    (out / names[1]).write_bytes(b"truncated")  # a damaged file is made again
    stale = out / f".{Path(names[0]).stem}.0123abcd.part.mp4"
    stale.write_bytes(b"half a video")
    keep = out / ".keep"
    keep.write_text("mine")
    untouched = (out / names[0]).stat().st_mtime_ns

    resumed = batch("-", "--resume", input=prompts)

    assert resumed.exit_code == 0, resumed.stderr
    assert resumed.stdout.splitlines() == [str((out / names[1]).resolve())]
    assert (out / names[0]).stat().st_mtime_ns == untouched
    assert not stale.exists() and keep.read_text() == "mine"
    assert manifest(out)[-1]["sha256"] == file_sha256(out / names[1])
    assert "1 videos done, 1 already done" in resumed.stderr

    replaced = batch("-", "--overwrite", input=prompts)
    assert replaced.exit_code == 0 and len(replaced.stdout.splitlines()) == 2


def _vidgen_process(*args, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vidgen", *map(str, args)], env=os.environ.copy(), **popen)


@pytest.mark.slow
def test_sigkill_mid_batch_then_resume_leaves_every_video_exactly_once(fake_model_dir, batch):
    prompts = ["a red ball", "a blue cat", "a green dog", "a white sea"]
    Path("p.txt").write_text("\n".join(prompts) + "\n")
    out = Path("out")
    args = ["batch", "p.txt", "-O", out, "--model", fake_model_dir, *FAKE_ARGS, "--json"]

    process = _vidgen_process(*args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    first_line = process.stdout.readline()  # --json streams: a record while the batch runs
    process.kill()
    process.wait()
    process.stdout.close()
    assert json.loads(first_line)["status"] == "done"
    assert any(r["status"] == "done" for r in manifest(out))

    resumed = batch("p.txt", "--resume")

    assert resumed.exit_code == 0, resumed.stderr
    expected = sorted(f"{n:04d}-{p.replace(' ', '-')}-s{derive_seed(0, n)}.mp4" for n, p in enumerate(prompts, start=1))
    assert videos_in(out) == expected  # each once, no temporary files
    latest = {r["output"]: r for r in manifest(out) if r["status"] == "done"}
    for name in expected:
        assert latest[name]["sha256"] == file_sha256(out / name)
        assert probe_video(out / name).frames == 9


def test_a_plain_line_is_planned_without_a_dict_of_its_own(tmp_path):
    """The plan keeps a prompt and a seed once, in the job: a line that sets nothing else holds
    no values dict (a third of a 100,000-line plan, docs/reliability.md), and a line that does
    keeps only its own values, from which the settings merge again to the planned ones."""
    from vidgen.batch.plan import plan_jobs
    from vidgen.engine.prepare import merge_settings
    from vidgen.settings.presets import choose_preset
    from vidgen.settings.prompts import PromptLine

    chosen = choose_preset(None, None)
    lines = [PromptLine(1, {"prompt": "a red ball"}), PromptLine(2, {"prompt": "a blue cat", "seed": 40, "steps": 3, "num_videos": 2})]
    jobs = plan_jobs(lines, chosen=chosen, model=None, flags={}, base_seed=7, out_dir=tmp_path, strict=False, shown_notes=set(), warn=None)
    assert [(job.line, job.video, job.seed, job.values) for job in jobs] == [
        (1, 1, derive_seed(7, 1), None),
        (2, 1, 40, {"steps": 3, "num_videos": 2}),
        (2, 2, 41, {"steps": 3, "num_videos": 2}),
    ]
    for job in jobs:
        settings, _ = merge_settings(chosen, [{}, job.line_values()], model=None)
        assert settings.prompt == job.prompt and settings.seed + job.video - 1 == job.seed
    assert merge_settings(chosen, [{}, jobs[2].line_values()], model=None)[0].steps == 3
