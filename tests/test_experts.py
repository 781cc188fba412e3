"""Wan 2.2 A14B's two experts from the command line, on a tiny A14B-shaped WanPipeline:
`--lora FILE[:SCALE][@COMPONENT]` into one expert only, `--lora-scale NAME=SCALE` re-weighting a
preset's own [[lora]], and `--boundary-ratio`, the switch between the experts, as the pipeline
really ran it. Frames are PNG folders; LoRA files are LightX2V-style (tests/test_distilled.py)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch

from tests.test_distilled import _transformer, lora_table, write_lightx2v_lora, write_preset
from tests.test_pipeline_class import _without_weights
from vidgen.media.readback import read_recipe

PROMPT = "a red fox running in the snow"
COMMON = ["--size", "32x32", "--frames", "9", "--seed", "3", "--device", "cpu", "--dtype", "float32", "-q"]


@pytest.fixture(scope="module")
def a14b(tiny_pipeline_dir):
    return tiny_pipeline_dir("WanPipeline", "wan2.2-t2v-a14b")


@pytest.fixture(scope="module")
def lora(a14b, tmp_path_factory):
    path = tmp_path_factory.mktemp("expert-lora") / "expert_lora.safetensors"
    return path, write_lightx2v_lora(path, _transformer(a14b), seed=5)  # both experts have the tiny transformer's shapes


def _layers_compute(loaded, original, deltas: dict, scale: float) -> None:
    """Every layer the LoRA names computes x (W + scale dW)^T + b + scale diff_b (scale 0: untouched)."""
    x = torch.randn(3, 32, generator=torch.Generator().manual_seed(0))
    for name, (delta, diff_b) in deltas.items():
        base = original.get_submodule(name)
        inputs = x[:, : base.in_features]
        expected = inputs @ (base.weight + scale * delta).T + base.bias + scale * diff_b
        with torch.no_grad():
            got = loaded.get_submodule(name)(inputs)
        assert torch.allclose(got, expected, atol=1e-4), f"{name}: off by {(got - expected).abs().max():.3g}"


def test_lora_at_transformer_2_goes_into_that_expert_only(run_cli, a14b, lora, pipeline_calls, tmp_path):
    import diffusers

    path, deltas = lora
    calls = pipeline_calls(diffusers.WanPipeline)
    result = run_cli(
        "generate", PROMPT, "--model", a14b, "--steps", "2", *COMMON, "--lora", f"{path}:0.8@transformer_2", "-o", tmp_path / "v"
    )
    assert result.exit_code == 0, result.stderr
    pipe = calls[-1].pipe
    assert {name: adapters for name, adapters in pipe.get_list_adapters().items() if adapters} == {"transformer_2": ["lora0"]}
    _layers_compute(pipe.transformer_2, _transformer(a14b, "transformer_2"), deltas, 0.8)
    _layers_compute(pipe.transformer, _transformer(a14b, "transformer"), deltas, 0.0)  # the high-noise expert as it was
    assert read_recipe(tmp_path / "v")["loras"] == [{"source": str(path), "scale": 0.8, "into": "transformer_2"}]


def test_a_component_the_model_lacks_is_one_line_before_loading(run_cli, tiny_pipeline_dir, lora, tmp_path):
    """On a Wan 2.1 folder without its weights: a refusal after loading began would be "no
    safetensors weights" (exit 1) instead."""
    path = lora[0]
    model = _without_weights(tiny_pipeline_dir("WanPipeline"), tmp_path / "wan21")
    common = ["generate", PROMPT, "--model", model, "--steps", "2", *COMMON, "-o", tmp_path / "x"]
    result = run_cli(*common, "--lora", f"{path}:0.8@transformer_2")
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == f"Error: LoRA {path} goes into transformer_2, which WanPipeline here has not (only Wan 2.2 A14B has a second expert)"
    )
    result = run_cli(*common, "--lora", f"{path}@vae")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"Error: --lora {path}@vae: @vae is no component a LoRA goes into "
        "(@transformer, or @transformer_2: Wan 2.2 A14B's low-noise expert)"
    )
    result = run_cli(*common, "--boundary-ratio", "0.5")
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == "Error: --boundary-ratio: WanPipeline here has no second expert (transformer_2); only Wan 2.2 A14B switches between two"
    )
    assert not (tmp_path / "x").exists()


def test_lora_scale_reweights_the_presets_own_lora(run_cli, a14b, lora, pipeline_calls, tmp_path):
    import diffusers

    path, deltas = lora
    body = lora_table(path, 1.0, "transformer") + 'name = "high_noise"\n' + lora_table(path, 1.0, "transformer_2") + 'name = "low_noise"\n'
    preset = write_preset(tmp_path / "pair.toml", a14b, body)
    calls = pipeline_calls(diffusers.WanPipeline)
    result = run_cli(
        "generate", PROMPT, "--preset", preset, "--steps", "2", *COMMON, "--lora-scale", "low_noise=0.25", "-o", tmp_path / "v"
    )
    assert result.exit_code == 0, result.stderr
    pipe = calls[-1].pipe
    _layers_compute(pipe.transformer, _transformer(a14b, "transformer"), deltas, 1.0)
    _layers_compute(pipe.transformer_2, _transformer(a14b, "transformer_2"), deltas, 0.25)
    assert [(entry["name"], entry["scale"]) for entry in read_recipe(tmp_path / "v")["loras"]] == [("high_noise", 1.0), ("low_noise", 0.25)]

    result = run_cli("generate", PROMPT, "--preset", preset, "--steps", "2", *COMMON, "--lora-scale", "low=0.25", "-o", tmp_path / "x")
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: --lora-scale low: preset pair has no LoRA of that name (its LoRAs: high_noise, low_noise)"


def test_the_shipped_lightx2v_loras_have_names_to_reweight(run_cli):
    for name, expected in (
        ("wan2.2-i2v-a14b-lightx2v", ["high_noise", "low_noise"]),
        ("wan2.2-t2v-a14b-lightx2v", ["high_noise", "low_noise"]),
        ("wan2.1-i2v-480p-lightx2v", ["lightx2v"]),
        ("wan2.1-t2v-14b-lightx2v", ["lightx2v"]),
    ):
        shown = json.loads(run_cli("presets", "show", name, "--json").stdout)
        assert [entry["name"] for entry in shown["loras"]] == expected, name


def _count_expert_calls(monkeypatch, cls) -> list[dict]:
    """Per pipeline call: how many denoiser passes each expert ran, the boundary the call read, its timesteps."""
    runs: list[dict] = []
    original = cls.__call__

    @functools.wraps(original)
    def spy(self, *args, **kwargs):
        counts = {"transformer": 0, "transformer_2": 0}
        hooks = [
            getattr(self, name).register_forward_pre_hook(lambda module, inputs, name=name: counts.__setitem__(name, counts[name] + 1))
            for name in counts
        ]
        try:
            output = original(self, *args, **kwargs)
        finally:
            for hook in hooks:
                hook.remove()
        runs.append({**counts, "boundary": self.config.boundary_ratio, "timesteps": [float(t) for t in self.scheduler.timesteps]})
        return output

    monkeypatch.setattr(cls, "__call__", spy)
    return runs


def test_boundary_ratio_moves_the_switch_between_the_experts(run_cli, a14b, monkeypatch, tmp_path):
    """The steps at t >= ratio x 1000 run the high-noise expert: counted on the real call, at the
    model's own 0.875 (recorded from its config) and at --boundary-ratio 0.95 (6 steps at t 999, 983,
    960, 923, 857, 707: 4 then 3 of them high-noise)."""
    import diffusers

    runs = _count_expert_calls(monkeypatch, diffusers.WanPipeline)
    for ratio in (None, 0.95):
        extra = ["--boundary-ratio", str(ratio)] if ratio is not None else []
        result = run_cli("generate", PROMPT, "--model", a14b, "--steps", "6", *COMMON, *extra, "-o", tmp_path / f"v{ratio or 0}.mp4")
        assert result.exit_code == 0, result.stderr
        assert read_recipe(tmp_path / f"v{ratio or 0}.mp4")["boundary_ratio"] == (ratio or 0.875)
    (default, moved) = runs
    assert (default["boundary"], moved["boundary"]) == (0.875, 0.95)
    for run in runs:
        high_steps = sum(t >= run["boundary"] * 1000 for t in run["timesteps"])
        passes = (run["transformer"] + run["transformer_2"]) // len(run["timesteps"])  # 2 with classifier-free guidance
        assert (run["transformer"], run["transformer_2"]) == (high_steps * passes, (len(run["timesteps"]) - high_steps) * passes)
    assert default["transformer"] > moved["transformer"] > 0 and moved["transformer_2"] > default["transformer_2"] > 0


def test_the_a14b_presets_carry_the_makers_boundaries(run_cli):
    """Wan2.2 wan/configs: t2v_A14B.boundary 0.875, i2v_A14B.boundary 0.900."""
    for name, ratio in (
        ("wan2.2-t2v-a14b", 0.875),
        ("wan2.2-t2v-a14b-lightx2v", 0.875),
        ("wan2.2-i2v-a14b", 0.9),
        ("wan2.2-i2v-a14b-lightx2v", 0.9),
    ):
        assert json.loads(run_cli("presets", "show", name, "--json").stdout)["defaults"]["boundary_ratio"] == ratio, name


def test_the_component_and_the_reweighting_travel_to_a_server(tmp_path):
    """`vidgen serve`'s client makes a relative LoRA path absolute and must keep its @component."""
    from vidgen.cli.app import _overrides
    from vidgen.cli.client import resolve_paths
    from vidgen.settings.request import GenerateRequest, from_json

    Path("low.safetensors").write_bytes(b"")  # in the command's folder (the test's working folder)
    overrides = _overrides({"loras": ["low.safetensors:0.5@transformer_2"], "lora_scales": ["high_noise=2"], "steps": 4}, fast=False)
    request = resolve_paths(GenerateRequest(prompt="x", overrides=overrides))
    resolved = from_json(json.loads(json.dumps(request.to_json()))).overrides  # as the server decodes it
    assert resolved["loras"] == [f"{Path('low.safetensors').absolute()}:0.5@transformer_2"]
    assert resolved["lora_scales"] == {"high_noise": 2.0}
