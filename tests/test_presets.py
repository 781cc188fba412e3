"""Preset files: lookup, validation, listing, `presets show --json`, default choice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vidgen.errors import UsageError
from vidgen.settings.locations import BUILTIN_WEIGHTS_DIR
from vidgen.settings.presets import choose_preset, load_preset, read_preset, shipped_presets_dir


def write_preset(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(body)
    return path


def test_every_shipped_preset_reads():
    for path in sorted(shipped_presets_dir().glob("*.toml")):
        preset = read_preset(path)
        assert preset.name == path.stem
        assert preset.pipeline, path


def test_shapes_is_the_default_and_resolves_to_the_package(isolated_environment):
    preset = choose_preset(None, None)
    assert preset.name == "shapes"
    assert preset.model_location().location == str(BUILTIN_WEIGHTS_DIR / "shapes")


def test_vidgen_preset_env_and_config_change_the_default(isolated_environment, monkeypatch):
    (isolated_environment).mkdir(parents=True, exist_ok=True)
    (isolated_environment / "config.toml").write_text('preset = "wan2.1-t2v-1.3b"\n')
    assert choose_preset(None, None).name == "wan2.1-t2v-1.3b"
    monkeypatch.setenv("VIDGEN_PRESET", "cogvideox-2b")
    assert choose_preset(None, None).name == "cogvideox-2b"
    assert choose_preset("mochi", None).name == "mochi"  # --preset wins


def test_model_alone_picks_the_matching_preset_or_an_adhoc_one():
    assert choose_preset(None, "Wan-AI/Wan2.1-T2V-1.3B-Diffusers").name == "wan2.1-t2v-1.3b"
    adhoc = choose_preset(None, "someone/some-model")
    assert (adhoc.name, adhoc.pipeline, adhoc.defaults) == ("custom", None, {})


def test_user_presets_folder_adds_and_shadows(isolated_environment):
    folder = isolated_environment / "presets"
    write_preset(folder, "mine", 'model = "me/my-model"\npipeline = "WanPipeline"\n')
    write_preset(folder, "shapes", 'model = "me/other"\n')
    assert load_preset("mine").model == "me/my-model"
    assert load_preset("shapes").model == "me/other"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('model = "a/b"\ncolour = "red"\n', "unknown key(s) colour"),
        ('model = "a/b"\n[defaults]\nframe = 9\n', "[defaults] unknown key(s) frame"),
        ('model = "a/b"\n[defaults]\nsteps = "many"\n', "[defaults] steps must be int"),
        ('model = "a/b"\n[defaults]\nsteps = true\n', "[defaults] steps must be int"),
        ('model = "a/b"\n[constraints]\nframes_step = 0\n', "frames_step must be positive"),
        ('model = "a/b"\ntask = "text-to-audio"\n', "task must be one of"),
        ('model = "a/b"\nrevision = 3\n', "revision must be str"),
        ('pipeline = "WanPipeline"\n', "missing key model"),
        ("model = \n", "not valid TOML"),
    ],
)
def test_bad_preset_files_are_rejected_with_file_and_key(tmp_path, body, message):
    path = write_preset(tmp_path, "bad", body)
    with pytest.raises(UsageError) as error:
        read_preset(path)
    assert message in str(error.value) and str(path) in str(error.value)


def test_relative_local_model_resolves_from_the_preset_file(tmp_path):
    path = write_preset(tmp_path / "p", "local", 'model = "./weights/tiny"\n')
    assert read_preset(path).model_location().location == str((tmp_path / "p" / "weights" / "tiny").resolve())


def test_presets_list_is_plain_lines_in_a_pipe(run_cli):
    result = run_cli("presets")
    assert result.exit_code == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    names = [row[0] for row in rows]
    assert "shapes" in names and "wan2.1-t2v-1.3b" in names
    shapes = rows[names.index("shapes")]
    assert shapes[:6] == ["shapes", "text-to-video", "builtin:shapes", "64x64", "17", "8"]


def test_presets_list_warns_about_a_broken_user_preset(run_cli, isolated_environment):
    write_preset(isolated_environment / "presets", "broken", "model = \n")
    result = run_cli("presets")
    assert result.exit_code == 0
    assert "skipped a preset" in result.stderr and "broken.toml" in result.stderr


def test_presets_show_json_is_resolved(run_cli, tiny_wan_dir, isolated_environment):
    result = run_cli("presets", "show", "shapes", "--json")
    assert result.exit_code == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["model"] == str(BUILTIN_WEIGHTS_DIR / "shapes")
    assert Path(shown["model"]).is_absolute()
    assert shown["pipeline"] == "WanPipeline"
    assert {"width", "height", "frames", "fps", "steps", "guidance", "dtype", "crf"} <= set(shown["defaults"])
    assert shown["constraints"]["frames_step"] == 4

    hub = json.loads(run_cli("presets", "show", "wan2.1-t2v-1.3b", "--json").stdout)
    assert hub["model"] == "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"

    write_preset(isolated_environment / "presets", "tiny", f'model = "{tiny_wan_dir}"\n')
    local = json.loads(run_cli("presets", "show", "tiny", "--json").stdout)
    assert local["model"] == str(tiny_wan_dir.resolve())


def test_presets_show_text_and_unknown(run_cli):
    result = run_cli("presets", "show", "shapes")
    assert result.exit_code == 0
    assert "name: shapes" in result.stdout and "  frames: 17" in result.stdout
    unknown = run_cli("presets", "show", "nope")
    assert unknown.exit_code == 2 and unknown.stderr.startswith("Error: unknown preset 'nope'")


def test_pull_of_a_local_model_prints_its_folder(run_cli, tiny_wan_dir, isolated_environment):
    write_preset(isolated_environment / "presets", "tiny", f'model = "{tiny_wan_dir}"\n')
    result = run_cli("pull", "tiny")
    assert result.exit_code == 0 and result.stdout.strip() == str(tiny_wan_dir.resolve())


def test_pull_offline_is_a_clear_error(run_cli):
    result = run_cli("pull", "wan2.1-t2v-1.3b")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == "Error: cannot download Wan-AI/Wan2.1-T2V-1.3B-Diffusers: HF_HUB_OFFLINE is set"


def test_presets_task_filter(run_cli, isolated_environment):
    """--task lists only that task's presets; `audio` lists the presets whose model makes sound."""
    write_preset(isolated_environment / "presets", "talkie", 'model = "me/talkie"\npipeline = "LTX2Pipeline"\naudio = true\n')
    by_task = {}
    for task in ("text-to-video", "image-to-video", "video-to-video", "audio"):
        result = run_cli("presets", "--task", task)
        assert result.exit_code == 0, result.stderr
        by_task[task] = {line.split("\t")[0]: line.split("\t")[1] for line in result.stdout.splitlines()}
    assert "shapes" in by_task["text-to-video"] and "svd-xt" not in by_task["text-to-video"]
    assert all(task.startswith("image-to-video") for task in by_task["image-to-video"].values()) and "svd-xt" in by_task["image-to-video"]
    assert by_task["image-to-video"]["ltx2-i2v"] == "image-to-video+audio" and {"ltx2", "ltx2-i2v", "talkie"} <= set(by_task["audio"])
    assert "wan2.1-v2v-1.3b" in by_task["video-to-video"] and "shapes" not in by_task["video-to-video"]
    assert "talkie" in by_task["audio"] and "shapes" not in by_task["audio"]
    assert by_task["text-to-video"]["talkie"] == "text-to-video+audio"
    every = {line.split("\t")[0] for line in run_cli("presets").stdout.splitlines()}
    assert every == set().union(*(by_task[task] for task in ("text-to-video", "image-to-video", "video-to-video")))


def test_presets_unknown_task_is_one_line(run_cli):
    result = run_cli("presets", "--task", "text-to-speech")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "Error: unknown task 'text-to-speech' (known: text-to-video, image-to-video, video-to-video, audio)"
    ]


REVISION = "diffusers/base/post-trained"


def _hub_preset(folder: Path, name: str = "branchy") -> None:
    """A user preset for a hub repository whose diffusers weights are on a branch."""
    write_preset(folder, name, f'model = "someorg/tiny-wan"\nrevision = "{REVISION}"\npipeline = "WanPipeline"\n')


def _hub_answers(monkeypatch) -> None:
    """The stand-in Hub of these tests is reachable (vidgen asks before reading the Hub)."""
    from vidgen.engine import hub

    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=hub.HUB_TIMEOUT: True)
    monkeypatch.setattr(hub, "_reachability", None)


def test_revision_reaches_the_hub_downloads_and_from_pretrained(run_cli, tiny_wan_dir, isolated_environment, monkeypatch, tmp_path):
    """A preset's `revision` goes with every Hub request for its model (model_index.json,
    component configs, from_pretrained); the tiny folder stands in for the repository, so
    the real loading and generation run on it."""
    import diffusers
    import huggingface_hub

    from vidgen.media.readback import read_recipe

    _hub_preset(isolated_environment / "presets")
    downloads, loads = [], []

    def fake_hf_hub_download(repo_id, filename, **kwargs):
        downloads.append((repo_id, filename, kwargs.get("revision")))
        return str(tiny_wan_dir / filename)

    real_from_pretrained = diffusers.DiffusionPipeline.from_pretrained.__func__

    def from_pretrained(cls, location, **kwargs):
        loads.append((location, kwargs.pop("revision", None)))
        return real_from_pretrained(cls, tiny_wan_dir if location == "someorg/tiny-wan" else location, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_hf_hub_download)
    monkeypatch.setattr(diffusers.DiffusionPipeline, "from_pretrained", classmethod(from_pretrained))
    _hub_answers(monkeypatch)
    out = tmp_path / "out"
    result = run_cli(PROMPT_TEXT, "--preset", "branchy", "--steps", "2", "--size", "32x32", "--frames", "9", "--device", "cpu", "-o", out)
    assert result.exit_code == 0, result.stderr
    assert downloads and all(revision == REVISION for _, _, revision in downloads), downloads
    assert ("someorg/tiny-wan", "model_index.json", REVISION) in downloads
    assert loads == [("someorg/tiny-wan", REVISION)]
    assert read_recipe(out)["revision"] == REVISION

    # Another --model under the same preset is another repository: the branch is not its.
    loads.clear()
    result = run_cli(
        PROMPT_TEXT,
        "--preset",
        "branchy",
        "--model",
        tiny_wan_dir,
        "--steps",
        "2",
        "--size",
        "32x32",
        "--frames",
        "9",
        "--device",
        "cpu",
        "-o",
        tmp_path / "local",
    )
    assert result.exit_code == 0, result.stderr
    assert loads == [(str(tiny_wan_dir.resolve()), None)]


def test_pull_downloads_the_presets_revision(run_cli, isolated_environment, monkeypatch, tmp_path):
    import huggingface_hub
    from huggingface_hub import constants

    _hub_preset(isolated_environment / "presets")
    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs.get("revision")))
        return str(tmp_path / "snapshot")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    _hub_answers(monkeypatch)
    result = run_cli("pull", "branchy")
    assert result.exit_code == 0, result.stderr
    assert calls == [("someorg/tiny-wan", REVISION)]
    assert result.stdout.strip() == str(tmp_path / "snapshot")
    assert f"downloading someorg/tiny-wan (revision {REVISION})" in result.stderr
    shown = json.loads(run_cli("presets", "show", "branchy", "--json").stdout)
    assert shown["revision"] == REVISION

    calls.clear()  # a preset without one asks for the default branch, as before
    assert run_cli("pull", "wan2.1-t2v-1.3b").exit_code == 0
    assert calls == [("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", None)]


PROMPT_TEXT = "a red fox running in the snow"


def test_a_user_presets_relative_model_is_loaded_from_the_presets_folder(run_cli, tiny_wan_dir, isolated_environment, tmp_path):
    # The preset says ./weights/tiny beside itself; the command runs in another folder
    # (isolated_environment's work/), where no ./weights exists.
    import shutil

    shutil.copytree(tiny_wan_dir, isolated_environment / "presets" / "weights" / "tiny")
    write_preset(isolated_environment / "presets", "mine", 'model = "./weights/tiny"\npipeline = "WanPipeline"\n')
    result = run_cli(
        "a fox", "--preset", "mine", "--steps", "2", "--size", "32x32", "--frames", "5", "--device", "cpu", "-o", tmp_path / "x.mp4"
    )
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "x.mp4").is_file()


# ---- the makers' recipes (issue 30) ----

# The makers' values for the rows issue 30 found wrong; each preset's comments name the source
# (Wan-Video/Wan2.1 generate.py; diffusers' LTX-Video docs; Lightricks/LTX-2 constants.py; zai-org/CogVideo
# cli_demo.py; Tencent-Hunyuan/HunyuanVideo-1.5 README).
LTX2_0 = {
    "spatio_temporal_guidance_blocks": [29],
    "use_cross_timestep": False,
    "stg_scale": 1.0,
    "modality_scale": 3.0,
    "guidance_rescale": 0.7,
    "audio_guidance_scale": 7.0,
}
MAKERS = {
    "wan2.1-vace-1.3b": {"defaults": {"flow_shift": 16.0, "steps": 50}},
    "ltx-video-0.9.7-two-stage": {"defaults": {"width": 1536, "height": 1024, "guidance": 5.0}, "call": {"guidance_rescale": 0.7}},
    **{
        name: {"defaults": {"steps": 40, "guidance": 3.0}, "call": LTX2_0}
        for name in ("ltx2", "ltx2-i2v", "ltx2-condition", "ltx2-two-stage")
    },
    "cogvideox1.5-5b": {
        "defaults": {"scheduler": "CogVideoXDPMScheduler", "timestep_spacing": "trailing"},
        "call": {"use_dynamic_cfg": True},
    },
    "hunyuanvideo1.5-480p": {"model": "hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-480p_t2v"},
    "hunyuanvideo1.5-480p-i2v": {"model": "hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-480p_i2v"},
}


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_presets_show_gives_the_makers_values(run_cli, name):
    from diffusers.pipelines.ltx2.utils import DEFAULT_NEGATIVE_PROMPT  # LTX-2's, copied from Lightricks/LTX-2

    result = run_cli("presets", "show", name, "--json")
    assert result.exit_code == 0, result.stderr
    shown = json.loads(result.stdout)
    for table, values in MAKERS[name].items():
        if isinstance(values, dict):
            assert {key: shown[table].get(key) for key in values} == values, table
        else:
            assert shown[table] == values
    if name.startswith("ltx2"):
        assert shown["defaults"]["negative_prompt"] == DEFAULT_NEGATIVE_PROMPT
    if name.endswith("two-stage"):  # the first pass at 768x512, as the makers' and diffusers' recipes
        base = shown["stages"][0]
        assert (shown["defaults"]["width"] * base["scale"], shown["defaults"]["height"] * base["scale"]) == (768, 512)


def test_presets_page_is_generated_from_the_files():
    """docs/presets.md's generated part is what tools/presets_doc.py makes of presets/*.toml, and every
    preset names a source for each default (its convention: tools/presets_doc.py's docstring)."""
    from tools import presets_doc

    found = presets_doc.traces()
    assert len(found) == len(list(shipped_presets_dir().glob("*.toml")))
    assert presets_doc.problems(found, presets_doc.PAGE.read_text()) == []


def test_a_default_without_a_source_is_a_problem(tmp_path):
    from tools import presets_doc

    path = write_preset(
        tmp_path,
        "bare",
        '# Sources:\n#   [card]  a model card\nmodel = "a/b"\n[defaults]\n'
        "steps = 30   # [card]\nguidance = 5.0\nfps = 8   # [cadr] typo\nwidth = 64   # vidgen: small\nheight = 64\n",
    )
    trace = presets_doc.read(path)
    assert [problem.split(": ", 1)[1] for problem in trace.problems] == [
        "defaults.guidance names no source (`# [tag] ...` or `# vidgen: reason`)",
        "defaults.fps: [cadr] is not among the file's sources",
    ]
    assert [(entry.where, entry.tags) for entry in trace.entries] == [
        ("steps", ("card",)),
        ("fps", ("cadr",)),
        ("width", ("vidgen",)),
        ("height", ("vidgen",)),
    ]


def test_a_preset_file_is_read_once_per_version(tmp_path):
    """`--model X` looks through every preset: each file is parsed once, and again when it changes."""
    from vidgen.settings.presets import read_preset

    path = tmp_path / "mine.toml"
    path.write_text('model = "org/one"\n[defaults]\nsteps = 4\n')
    first = read_preset(path)
    assert read_preset(path) is first  # the same file: not parsed again
    path.write_text('model = "org/two"\n[defaults]\nsteps = 40\n')
    again = read_preset(path)
    assert (again.model, again.defaults["steps"]) == ("org/two", 40)  # a changed file is read afresh
