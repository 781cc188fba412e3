"""Merging, validation and snapping, without loading any model."""

from __future__ import annotations

import pytest

from vidgen.errors import UsageError
from vidgen.settings.grammar import LoraSpec
from vidgen.settings.layers import build_settings, parse_size, snap_to_constraints, validate
from vidgen.settings.presets import Constraints, Preset

WAN_RULES = Constraints(frames_step=4, frames_offset=1, size_multiple=16, min_frames=5, max_frames=81, max_width=1280, max_height=1280)


def wan_preset() -> Preset:
    return Preset(
        name="wan",
        model="a/b",
        pipeline="WanPipeline",
        defaults={"width": 832, "height": 480, "frames": 81, "fps": 16, "steps": 50, "guidance": 5.0, "dtype": "bfloat16"},
        constraints=WAN_RULES,
        call={"max_sequence_length": 512},
    )


def test_merge_order_builtin_preset_then_layers():
    settings = build_settings(wan_preset(), [{"prompt": "x", "steps": 30, "crf": None}, {"steps": 10, "size": "64x48"}])
    assert (settings.steps, settings.width, settings.height) == (10, 64, 48)
    assert settings.crf == 18  # built-in default survives a None
    assert settings.guidance == 5.0 and settings.dtype == "bfloat16"  # from the preset
    assert settings.call_kwargs == {"max_sequence_length": 512}


def test_later_frames_cancel_earlier_seconds():
    settings = build_settings(wan_preset(), [{"prompt": "x", "seconds": 2}, {"frames": 9}])
    assert settings.frames == 9


def test_unknown_setting_in_a_layer_is_refused():
    with pytest.raises(UsageError, match="unknown setting"):
        build_settings(wan_preset(), [{"prompt": "x", "stepz": 3}])


@pytest.mark.parametrize(("frames", "expected"), [(20, 21), (19, 21), (18, 17), (1, 5), (200, 81), (81, 81)])
def test_frames_snap_to_4k_plus_1_within_limits(frames, expected):
    settings = build_settings(wan_preset(), [{"prompt": "x", "frames": frames}])
    settings, changes = snap_to_constraints(settings, WAN_RULES, strict=False)
    assert settings.frames == expected
    assert len(changes) == (0 if frames == expected else 1)


def test_snap_message_and_strict_refusal():
    settings = build_settings(wan_preset(), [{"prompt": "x", "frames": 18, "size": "500x300"}])
    assert snap_to_constraints(settings, WAN_RULES, strict=False)[1] == [
        "frames 18 -> 17: this model takes 4k+1, at most 81 frames",
        "size 500x300 -> 496x304: this model takes sides divisible by 16, at most 1280x1280",
    ]
    settings = build_settings(wan_preset(), [{"prompt": "x", "frames": 18}])
    with pytest.raises(UsageError, match=r"frames 18 is not valid .*nearest 17.*--strict"):
        snap_to_constraints(settings, WAN_RULES, strict=True)


def test_size_snaps_up_to_at_least_one_multiple_and_down_to_the_limit():
    settings = build_settings(wan_preset(), [{"prompt": "x", "size": "4x5000"}])
    settings, _ = snap_to_constraints(settings, WAN_RULES, strict=False)
    assert (settings.width, settings.height) == (16, 1280)


@pytest.mark.parametrize("text", ["832x480", "832X480", " 832 x 480 "])
def test_parse_size(text):
    assert parse_size(text) == (832, 480)


@pytest.mark.parametrize("text", ["832", "x480", "832x", "-1x4", "a x b", "832x480x2"])
def test_parse_size_refuses(text):
    with pytest.raises(UsageError):
        parse_size(text)


def test_lora_spec():
    assert LoraSpec.parse("org/style-lora:0.8") == LoraSpec("org/style-lora", 0.8)
    assert LoraSpec.parse("/loras/a.safetensors") == LoraSpec("/loras/a.safetensors", 1.0)
    assert LoraSpec.parse("org/x:abc") == LoraSpec("org/x:abc", 1.0)


def test_validate_collects_everything():
    settings = build_settings(wan_preset(), [{"prompt": "", "steps": 0, "num_videos": -1, "device": "tpu"}])
    with pytest.raises(UsageError) as error:
        validate(settings)
    message = str(error.value)
    for fragment in ("the prompt is empty", "--steps must be at least 1", "--num-videos must be at least 1", "unknown device 'tpu'"):
        assert fragment in message


def test_dtype_aliases():
    assert build_settings(wan_preset(), [{"prompt": "x", "dtype": "BF16"}]).dtype == "bfloat16"
    with pytest.raises(UsageError, match="unknown dtype"):
        build_settings(wan_preset(), [{"prompt": "x", "dtype": "int8"}])


def test_dtype_explicit_only_when_a_user_layer_sets_it():
    from vidgen.settings.layers import build_settings
    from vidgen.settings.presets import load_preset

    preset = load_preset("wan2.1-t2v-1.3b")
    from_preset = build_settings(preset, [{"prompt": "a cat", "dtype": None}])
    assert (from_preset.dtype, from_preset.dtype_explicit) == ("bfloat16", False)
    from_flag = build_settings(preset, [{"prompt": "a cat", "dtype": "bf16"}])
    assert (from_flag.dtype, from_flag.dtype_explicit) == ("bfloat16", True)


def test_steps_times_strength_below_one_step_is_refused_in_one_line(run_cli, tmp_path):
    """diffusers runs int(steps x strength) steps of a video-to-video call: none at 2 x 0.3, and
    it failed deep inside ("cannot reshape tensor of 0 elements")."""
    video = tmp_path / "in.mp4"
    video.write_bytes(b"not read: the settings are refused first")
    result = run_cli(
        "a ball", "--preset", "wan2.1-v2v-1.3b", "--video", video, "--steps", "2", "--strength", "0.3", "-o", tmp_path / "x.mp4"
    )
    assert result.exit_code == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "Error: --steps 2 with --strength 0.3 runs no denoising step (steps x strength must be at least 1; try --steps 4)"
    ]


def test_command_line_overrides_travel_to_a_server_as_json(tmp_path):
    """What the options give is what `vidgen serve`'s client sends: JSON, and --lora as text
    it can resolve in its own folder (a LoraSpec object would break both)."""
    import json

    from vidgen.cli.app import _overrides
    from vidgen.cli.client import resolve_paths
    from vidgen.settings.request import GenerateRequest

    (tmp_path / "style.safetensors").write_bytes(b"")
    overrides = _overrides(
        {"loras": [str(tmp_path / "style.safetensors") + ":0.5"], "extras": ["overlap_history=37"], "steps": 4}, fast=False
    )
    assert json.loads(json.dumps(overrides))["loras"] == [str(tmp_path / "style.safetensors") + ":0.5"]
    resolved = resolve_paths(GenerateRequest(prompt="x", overrides=overrides)).overrides
    assert resolved["loras"] == [str(tmp_path / "style.safetensors") + ":0.5"] and resolved["extras"] == {"overlap_history": 37}


@pytest.mark.parametrize(
    "preset, overrides, warned",
    [
        ("wan2.1-t2v-14b-lightx2v", {"negative_prompt": "blurry"}, True),  # distilled: guidance 1
        ("wan2.1-t2v-14b", {"negative_prompt": "blurry", "guidance": 1.0}, True),
        ("wan2.1-t2v-14b", {"negative_prompt": "blurry"}, False),  # guidance 5: it steers
        ("wan2.1-t2v-14b-lightx2v", {}, False),  # the preset's own, unasked for: no line every run
    ],
)
def test_negative_prompt_that_does_nothing_says_so(preset, overrides, warned):
    from vidgen.engine.prepare import merge_settings
    from vidgen.settings.presets import load_preset

    _, notes = merge_settings(load_preset(preset), [{"prompt": "x", **overrides}], model=None)
    said = [note for note in notes if note.startswith("--negative-prompt does nothing at guidance 1")]
    assert bool(said) is warned, notes


def test_negative_prompt_warning_reaches_stderr(run_cli):
    result = run_cli("a fox", "--preset", "wan2.1-t2v-14b-lightx2v", "--negative-prompt", "blurry", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "--negative-prompt does nothing at guidance 1: there is no unconditional pass" in result.stderr


def test_settings_are_frozen_and_each_field_typed_as_its_setting():
    """GenerationSettings is derived from the table, frozen, each field typed (never Any); a
    change is a new value (dataclasses.replace), and the snapping returns one."""
    from dataclasses import FrozenInstanceError, fields
    from typing import Any, Optional, Union, get_args, get_origin

    from vidgen.settings.table import FIELDS, GenerationSettings

    types = {item.name: item.type for item in fields(GenerationSettings)}
    assert not [name for name, kind in types.items() if kind is Any or kind in (list, dict, tuple)], types
    for setting in FIELDS:  # the table's type, Optional where it may be unset; a list is a tuple of its items
        members = (
            [kind for kind in get_args(types[setting.name]) if kind is not type(None)]
            if get_origin(types[setting.name]) is Union
            else [types[setting.name]]
        )
        wanted = {list: tuple, dict: dict}.get(setting.type)
        if wanted:
            assert [get_origin(kind) for kind in members] == [wanted], (setting.name, types[setting.name])
        else:
            assert set(members) == set(setting.type if isinstance(setting.type, tuple) else (setting.type,)), setting.name
    assert (types["steps"], types["fps"], types["loras"]) == (Optional[int], Union[int, float], tuple[LoraSpec, ...])

    settings = build_settings(wan_preset(), [{"prompt": "x", "frames": 18, "loras": ["a/b:0.5"]}])
    assert isinstance(settings.loras, tuple) and settings.loras[0].scale == 0.5
    with pytest.raises(FrozenInstanceError):
        settings.dtype = "float32"
    snapped, _ = snap_to_constraints(settings, WAN_RULES, strict=False)
    assert (snapped.frames, settings.frames) == (17, 18)  # a new value; the one asked for is as it was


def test_the_model_location_is_resolved_once_when_the_settings_are_built(tmp_path, monkeypatch):
    """--model ./w is the folder it named where the settings were built, whatever the current
    folder later (the loading key and the recipe read the resolved location); a preset's own
    relative model is from the preset's folder."""
    from vidgen.engine.pipeline_cache import loading_key
    from vidgen.engine.runner import build_recipe

    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    (here / "w").mkdir(parents=True)
    (elsewhere / "w").mkdir(parents=True)
    monkeypatch.chdir(here)
    settings = build_settings(wan_preset(), [{"prompt": "x"}], model="./w")
    monkeypatch.chdir(elsewhere)
    assert settings.location.location == str(here / "w")
    assert loading_key(settings).model == str(here / "w")
    assert build_recipe(settings, 1, (5, 16, 16))["model"] == str(here / "w")

    folder = tmp_path / "presets"
    (folder / "weights").mkdir(parents=True)
    own = Preset(name="mine", model="./weights", source=folder / "mine.toml")
    assert build_settings(own, [{"prompt": "x"}]).location.location == str(folder / "weights")


def test_the_recipe_records_what_ran_beside_what_was_asked():
    """RunFacts holds what ran (dtype, class, the pipeline's defaults); the settings keep what
    was asked, and the recipe is built from both."""
    from vidgen.engine.runner import build_recipe
    from vidgen.settings.runfacts import RunFacts

    asked = build_settings(Preset(name="custom", model="a/b"), [{"prompt": "x"}])
    facts = RunFacts(device="cpu", dtype="float32", pipeline_class="WanPipeline", defaults=(("steps", 7), ("guidance", 4.5)))
    recipe = build_recipe(asked, 1, (5, 16, 16), facts)
    assert (recipe["dtype"], recipe["pipeline"], recipe["steps"], recipe["guidance"]) == ("float32", "WanPipeline", 7, 4.5)
    assert (asked.dtype, asked.pipeline_class, asked.steps) == ("auto", None, None)  # what was asked, untouched
    assert facts.filled_in(asked).steps == 7
    assert build_recipe(asked, 1, (5, 16, 16))["dtype"] == "auto"  # before loading: nothing ran yet
