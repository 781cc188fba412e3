"""Few-step distilled presets (issue 19 §3), through the real command on tiny Wan pipelines:

- a LoRA in LightX2V's key style (Wan's original names, `lora_down`/`lora_up`/`alpha`, and
  `diff_b` bias deltas) changes the video as the same weights merged by hand do;
- a preset's [[lora]] tables load, one per expert of a tiny Wan 2.2 A14B, each with its
  scale once (diffusers' Wan converter multiplies the tensors it is given in place: a
  state dict used for both experts would give the second its alpha/rank twice);
- a preset's fixed sigmas reach the scheduler the pipeline runs with, shifted, with
  stochastic sampling whose noise follows the seed; --steps that disagrees is one line;
- `--lora` adds to a preset's LoRAs;
- the shipped LightX2V presets carry LightX2V's published settings.

Frames are PNG folders, so comparisons are of exact pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vidgen.media.readback import read_frames, read_recipe
from vidgen.settings.presets import load_preset

PROMPT = "a red fox running in the snow"
COMMON = ["--size", "32x32", "--frames", "9", "--seed", "3", "--device", "cpu", "--dtype", "float32", "-q"]
RANK, ALPHA = 4, 8.0  # alpha/rank = 2: the scale diffusers' converter folds into the matrices
# Wan's original layer names (LightX2V's keys) -> diffusers' names in WanTransformer3DModel.
WAN_NAMES = {
    **{f"self_attn.{o}": f"attn1.{c}" for o, c in zip("qkvo", ["to_q", "to_k", "to_v", "to_out.0"])},
    **{f"cross_attn.{o}": f"attn2.{c}" for o, c in zip("qkvo", ["to_q", "to_k", "to_v", "to_out.0"])},
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
}
LIGHTX2V_SIGMAS = [1.0, 0.75, 0.5, 0.25]


def _transformer(folder: Path, name: str = "transformer"):
    import diffusers

    return diffusers.WanTransformer3DModel.from_pretrained(folder / name).eval()


def write_lightx2v_lora(path: Path, transformer, seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """A LoRA for `transformer`'s shapes in LightX2V's layout, written with safetensors.
    Returns diffusers layer name -> (weight delta at scale 1: alpha/rank * up @ down, bias delta)."""
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    tensors, deltas = {}, {}
    for block in range(len(transformer.blocks)):
        for wan_name, name in WAN_NAMES.items():
            layer = transformer.get_submodule(f"blocks.{block}.{name}")
            down = torch.randn(RANK, layer.in_features, generator=generator) * 0.5
            up = torch.randn(layer.out_features, RANK, generator=generator) * 0.5
            diff_b = torch.randn(layer.out_features, generator=generator) * 0.5
            key = f"diffusion_model.blocks.{block}.{wan_name}"
            tensors.update(
                {f"{key}.lora_down.weight": down, f"{key}.lora_up.weight": up, f"{key}.alpha": torch.tensor(ALPHA), f"{key}.diff_b": diff_b}
            )
            deltas[f"blocks.{block}.{name}"] = (ALPHA / RANK * up @ down, diff_b)
    save_file(tensors, str(path))
    return deltas


def write_preset(path: Path, model: Path, body: str = "") -> Path:
    path.write_text(f'model = "{model}"\npipeline = "WanPipeline"\n{body}')
    return path


def lora_table(source: Path, weight: float = 1.0, into: str | None = None) -> str:
    return f'\n[[lora]]\nsource = "{source}"\nweight = {weight}\n' + (f'into = "{into}"\n' if into else "")


def render(run_cli, out: Path, *args) -> np.ndarray:
    result = run_cli("generate", PROMPT, *COMMON, *args, "-o", out)
    assert result.exit_code == 0, result.stderr
    return read_frames(out).astype(int)


def linked_model(folder: Path, into: Path, replace: str) -> Path:
    """`folder` with component `replace` left out (to be written), the rest linked."""
    into.mkdir()
    for entry in folder.iterdir():
        if entry.name != replace:
            (into / entry.name).symlink_to(entry)
    return into


@pytest.fixture(scope="module")
def wan_lora(tiny_pipeline_dir, tmp_path_factory):
    folder = tiny_pipeline_dir("WanPipeline")
    path = tmp_path_factory.mktemp("lightx2v") / "wan_lightx2v_4step.safetensors"
    return path, write_lightx2v_lora(path, _transformer(folder), seed=1)


def test_lightx2v_lora_changes_the_video_as_the_hand_merged_weights_do(run_cli, tiny_pipeline_dir, wan_lora, tmp_path):
    folder = tiny_pipeline_dir("WanPipeline")
    lora, deltas = wan_lora
    weight = 0.7
    preset = write_preset(tmp_path / "distilled.toml", folder, lora_table(lora, weight))
    with_lora = render(run_cli, tmp_path / "lora", "--preset", preset, "--steps", "2")
    base = render(run_cli, tmp_path / "base", "--model", folder, "--steps", "2")

    transformer = _transformer(folder)
    with torch.no_grad():
        for name, (delta, diff_b) in deltas.items():
            layer = transformer.get_submodule(name)
            layer.weight += weight * delta
            layer.bias += weight * diff_b
    merged = linked_model(folder, tmp_path / "merged", "transformer")
    transformer.save_pretrained(merged / "transformer", safe_serialization=True)
    by_hand = render(run_cli, tmp_path / "by-hand", "--model", merged, "--steps", "2")

    # The tiny VAE damps what the transformer changes; still, pixels move by tens of levels.
    assert np.abs(with_lora - base).max() > 10 and np.abs(with_lora - base).mean() > 0.5, "the LoRA must change the video"
    # The adapter computes x W^T + s (x A^T) B^T: the same sum in another order, so
    # float32 rounding may move a pixel by one level.
    assert np.abs(with_lora - by_hand).max() <= 1, np.abs(with_lora - by_hand).max()
    assert [(entry["source"], entry["scale"]) for entry in read_recipe(tmp_path / "lora")["loras"]] == [(str(lora), weight)]


def _effective_output(layer, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return layer(x)


def test_one_lora_file_into_both_experts_gets_its_scale_once_in_each(run_cli, tiny_pipeline_dir, wan_lora, pipeline_calls, tmp_path):
    """The same file into `transformer` (weight 1) and `transformer_2` (weight 0.5) of a tiny
    A14B: each expert's layers compute x (W + s dW)^T + b + s diff_b, checked on every layer
    the LoRA touches. Reading the file once and loading that dict twice fails here: the
    converter multiplies its cross-attention and feed-forward matrices by alpha/rank in place,
    so the second load scales them again, and (peft loads by assignment, sharing the tensors)
    the first expert's layers change with them."""
    import diffusers

    folder = tiny_pipeline_dir("WanPipeline", "wan2.2-t2v-a14b")
    lora, deltas = wan_lora  # the same shapes: both experts are the tiny Wan transformer
    body = lora_table(lora, 1.0, "transformer") + lora_table(lora, 0.5, "transformer_2")
    preset = write_preset(tmp_path / "a14b.toml", folder, body)
    calls = pipeline_calls(diffusers.WanPipeline)
    render(run_cli, tmp_path / "a14b", "--preset", preset, "--steps", "2")
    pipe = calls[-1].pipe
    assert pipe.get_list_adapters() == {"transformer": ["lora0"], "transformer_2": ["lora1"]}

    x = torch.randn(3, 32, generator=torch.Generator().manual_seed(0))
    for component, scale in (("transformer", 1.0), ("transformer_2", 0.5)):
        original = _transformer(folder, component)
        loaded = getattr(pipe, component)
        for name, (delta, diff_b) in deltas.items():
            base = original.get_submodule(name)
            inputs = x[:, : base.in_features]
            expected = inputs @ (base.weight + scale * delta).T + base.bias + scale * diff_b
            got = _effective_output(loaded.get_submodule(name), inputs)
            assert torch.allclose(got, expected, atol=1e-4), f"{component}.{name}: off by {(got - expected).abs().max():.3g}"


def test_a_lora_for_a_second_expert_the_pipeline_lacks_is_one_line(run_cli, tiny_pipeline_dir, wan_lora, tmp_path):
    preset = write_preset(tmp_path / "p.toml", tiny_pipeline_dir("WanPipeline"), lora_table(wan_lora[0], 1.0, "transformer_2"))
    result = run_cli("generate", PROMPT, *COMMON, "--preset", preset, "--steps", "2", "-o", tmp_path / "x")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: LoRA {wan_lora[0]} goes into transformer_2, which WanPipeline here has not (only Wan 2.2 A14B has a second expert)"
    )


DISTILLED = """
[defaults]
steps = 4
guidance = 1.0
scheduler = "FlowMatchEulerDiscreteScheduler"
flow_shift = 5.0
sigmas = [1.0, 0.75, 0.5, 0.25]
stochastic_sampling = {stochastic}
"""


def test_the_presets_sigmas_reach_the_scheduler_shifted(run_cli, tiny_pipeline_dir, pipeline_calls, tmp_path):
    import diffusers

    preset = write_preset(tmp_path / "d.toml", tiny_pipeline_dir("WanPipeline"), DISTILLED.format(stochastic="true"))
    calls = pipeline_calls(diffusers.WanPipeline)
    first = render(run_cli, tmp_path / "a", "--preset", preset)
    ran = calls[-1]
    assert type(ran.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"
    # shift 5: 5s / (1 + 4s) for s = 1, 0.75, 0.5, 0.25, then the closing 0
    assert ran.scheduler.sigmas.tolist() == pytest.approx([1.0, 0.9375, 0.833333, 0.625, 0.0], abs=1e-5)
    assert ran.scheduler.timesteps.tolist() == pytest.approx([1000.0, 937.5, 833.3333, 625.0], abs=1e-3)
    assert ran.scheduler.config["stochastic_sampling"] is True
    assert ran.kwargs["num_inference_steps"] == 4 and ran.kwargs["guidance_scale"] == 1.0
    recipe = read_recipe(tmp_path / "a")
    assert (recipe["sigmas"], recipe["stochastic_sampling"], recipe["steps"]) == (LIGHTX2V_SIGMAS, True, 4)

    # Stochastic sampling draws fresh noise at each step, from the seed: the same seed is the same video.
    assert np.array_equal(render(run_cli, tmp_path / "b", "--preset", preset), first)
    assert not np.array_equal(render(run_cli, tmp_path / "c", "--preset", preset, "--seed", "4"), first)
    deterministic = write_preset(tmp_path / "e.toml", tiny_pipeline_dir("WanPipeline"), DISTILLED.format(stochastic="false"))
    assert not np.array_equal(render(run_cli, tmp_path / "d", "--preset", deterministic), first), "the noise must be used"
    assert calls[-1].scheduler.config["stochastic_sampling"] is False


def test_steps_that_disagree_with_the_sigmas_are_one_line(run_cli, tiny_pipeline_dir, tmp_path):
    preset = write_preset(tmp_path / "d.toml", tiny_pipeline_dir("WanPipeline"), DISTILLED.format(stochastic="true"))
    result = run_cli("generate", PROMPT, *COMMON, "--preset", preset, "--steps", "8", "-o", tmp_path / "x")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "Error: --steps 8: preset d runs a fixed schedule of 4 steps (sigmas 1, 0.75, 0.5, 0.25), "
        "the ones its model was distilled for; leave out --steps"
    )
    assert not (tmp_path / "x").exists()


def test_lora_flag_adds_to_the_presets_loras(run_cli, tiny_pipeline_dir, wan_lora, pipeline_calls, tmp_path):
    import diffusers

    folder = tiny_pipeline_dir("WanPipeline")
    other = tmp_path / "other.safetensors"
    write_lightx2v_lora(other, _transformer(folder), seed=2)
    preset = write_preset(tmp_path / "p.toml", folder, lora_table(wan_lora[0], 1.0))
    calls = pipeline_calls(diffusers.WanPipeline)
    both = render(run_cli, tmp_path / "both", "--preset", preset, "--steps", "2", "--lora", f"{other}:0.5")
    pipe = calls[-1].pipe
    assert pipe.get_list_adapters() == {"transformer": ["lora0", "lora1"]}
    assert pipe.transformer.active_adapters() == ["lora0", "lora1"]
    layer = pipe.transformer.get_submodule("blocks.0.attn1.to_q")
    assert layer.scaling == {"lora0": 1.0, "lora1": 0.5}  # diffusers folds alpha/rank into the matrices
    recipe = read_recipe(tmp_path / "both")
    assert [(entry["source"], entry["scale"]) for entry in recipe["loras"]] == [(str(wan_lora[0]), 1.0), (str(other), 0.5)]
    only_preset = render(run_cli, tmp_path / "preset", "--preset", preset, "--steps", "2")
    assert not np.array_equal(both, only_preset)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[[lora]]\nsource = "x.safetensors"\nscale = 1.0\n', "[[lora]] unknown key(s) scale (allowed: source, weight, into, name)"),
        ('[[lora]]\nsource = "x.safetensors"\nweight = "high"\n', "[[lora]] weight must be float, got 'high'"),
        (
            '[[lora]]\nsource = "x.safetensors"\ninto = "transformer_3"\n',
            "[[lora]] into must be one of transformer, transformer_2, got 'transformer_3'",
        ),
        ("[[lora]]\nweight = 1.0\n", "[[lora]] missing key source"),
        ('lora = "x.safetensors"\n', "lora must be list, got 'x.safetensors'"),
        ("[defaults]\nsigmas = [1.0, 0.5, 0.75]\n", "[defaults] sigmas must fall from at most 1 to above 0, got [1.0, 0.5, 0.75]"),
        ('[defaults]\nsigmas = [1.0, "half"]\n', "[defaults] sigmas must be a list of numbers, got [1.0, 'half']"),
        ("[defaults]\nstochastic_sampling = 1\n", "[defaults] stochastic_sampling must be bool, got 1"),
    ],
)
def test_a_bad_lora_table_or_sigmas_names_the_file_and_key(body, message, run_cli, tmp_path):
    preset = tmp_path / "bad.toml"
    preset.write_text(f'model = "{tmp_path}"\n{body}')
    result = run_cli("generate", PROMPT, "--preset", preset, "-q", "-o", tmp_path / "x")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"Error: {preset}: {message}"


def test_a_relative_lora_source_is_from_the_presets_folder(tmp_path):
    (tmp_path / "loras").mkdir()
    (tmp_path / "loras" / "a.safetensors").write_bytes(b"")
    preset = write_preset(
        tmp_path / "p.toml",
        tmp_path,
        lora_table(Path("loras/a.safetensors")) + lora_table(Path("org/repo/b.safetensors"), 0.5, "transformer_2"),
    )
    loras = load_preset(str(preset)).loras
    assert [(lora.source, lora.scale, lora.into) for lora in loras] == [
        (str(tmp_path / "loras" / "a.safetensors"), 1.0, None),
        ("org/repo/b.safetensors", 0.5, "transformer_2"),
    ]


# ---- the shipped presets ----

LIGHTX2V = {
    # preset: (base preset, stochastic sampling, {expert: LoRA file})
    "wan2.1-t2v-14b-lightx2v": (
        "wan2.1-t2v-14b",
        True,
        {None: "lightx2v/Wan2.1-Distill-Loras/wan2.1_t2v_14b_lora_rank64_lightx2v_4step.safetensors"},
    ),
    "wan2.1-i2v-480p-lightx2v": (
        "wan2.1-i2v-480p",
        True,
        {None: "lightx2v/Wan2.1-Distill-Loras/wan2.1_i2v_lora_rank64_lightx2v_4step.safetensors"},
    ),
    "wan2.2-t2v-a14b-lightx2v": (
        "wan2.2-t2v-a14b",
        False,
        {
            "transformer": "lightx2v/Wan2.2-Distill-Loras/wan2.2_t2v_A14b_high_noise_lora_rank64_lightx2v_4step_1217.safetensors",
            "transformer_2": "lightx2v/Wan2.2-Distill-Loras/wan2.2_t2v_A14b_low_noise_lora_rank64_lightx2v_4step_1217.safetensors",
        },
    ),
    "wan2.2-i2v-a14b-lightx2v": (
        "wan2.2-i2v-a14b",
        False,
        {
            "transformer": "lightx2v/Wan2.2-Distill-Loras/wan2.2_i2v_A14b_high_noise_lora_rank64_lightx2v_4step_1022.safetensors",
            "transformer_2": "lightx2v/Wan2.2-Distill-Loras/wan2.2_i2v_A14b_low_noise_lora_rank64_lightx2v_4step_1022.safetensors",
        },
    ),
}


@pytest.mark.parametrize("name", sorted(LIGHTX2V))
def test_shipped_lightx2v_presets_carry_lightx2vs_settings(name):
    base_name, stochastic, loras = LIGHTX2V[name]
    preset, base = load_preset(name), load_preset(base_name)
    assert (preset.model, preset.pipeline, preset.task) == (base.model, base.pipeline, base.task)
    defaults = preset.defaults
    assert (defaults["steps"], defaults["guidance"], defaults["flow_shift"]) == (4, 1.0, 5.0)
    assert defaults["sigmas"] == LIGHTX2V_SIGMAS and defaults["scheduler"] == "FlowMatchEulerDiscreteScheduler"
    assert defaults["stochastic_sampling"] is stochastic
    assert {lora.into: lora.source for lora in preset.loras} == loras and all(lora.scale == 1.0 for lora in preset.loras)
    assert preset.call.get("guidance_scale_2", 1.0) == 1.0  # no second pass for either expert
    assert preset.constraints == base.constraints


def test_the_docs_list_every_lightx2v_preset():
    table = (Path(__file__).resolve().parent.parent / "docs" / "presets.md").read_text()
    for name in LIGHTX2V:
        assert f"| [`{name}`](#" in table and f"\n### {name}\n" in table, name  # its row and its section (tools/presets_doc.py)


def test_the_boundary_falls_between_the_second_and_third_step():
    """LightX2V's Wan 2.2 configs switch experts at boundary_step_index 2; the shifted sigmas put
    diffusers' boundary (0.875 for text-, 0.9 for image-to-video: t >= boundary x 1000 runs the
    high-noise expert) at the same place."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(shift=5.0)
    scheduler.set_timesteps(sigmas=LIGHTX2V_SIGMAS)
    for boundary in (0.875, 0.9):
        assert [bool(t >= boundary * 1000) for t in scheduler.timesteps] == [True, True, False, False]


def _in_hub_cache(monkeypatch, root: Path, repo: str, filename: str, source: Path) -> None:
    """`source` as REPO/FILENAME in a Hub cache under `root`, as huggingface_hub lays one out."""
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text("c" * 40)
    target = folder / "snapshots" / ("c" * 40) / filename
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(source.read_bytes())


def test_a_lora_named_repo_slash_filename_comes_from_the_hub_cache(
    run_cli, tiny_pipeline_dir, wan_lora, pipeline_calls, monkeypatch, tmp_path
):
    """The shipped presets name their LoRAs as REPO/FILENAME (LightX2V's own `lora_configs` paths):
    offline, a downloaded one loads; one not downloaded is one line naming `vidgen pull`."""
    import diffusers
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # empty: nothing downloaded
    folder = tiny_pipeline_dir("WanPipeline")
    spec = "lightx2v/Wan2.1-Distill-Loras/wan2.1_t2v_14b_lora_rank64_lightx2v_4step.safetensors"
    preset = write_preset(tmp_path / "hub.toml", folder, f'\n[[lora]]\nsource = "{spec}"\n')
    result = run_cli("generate", PROMPT, *COMMON, "--preset", preset, "--steps", "2", "-o", tmp_path / "missing")
    assert result.exit_code != 0
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: {spec} is not downloaded and HF_HUB_OFFLINE is set; download it with network access: vidgen pull {spec}"
    )

    _in_hub_cache(monkeypatch, tmp_path / "hub", "lightx2v/Wan2.1-Distill-Loras", spec.rsplit("/", 1)[1], wan_lora[0])
    calls = pipeline_calls(diffusers.WanPipeline)
    with_lora = render(run_cli, tmp_path / "cached", "--preset", preset, "--steps", "2")
    assert calls[-1].pipe.get_list_adapters() == {"transformer": ["lora0"]}
    direct = write_preset(tmp_path / "direct.toml", folder, lora_table(wan_lora[0]))
    assert np.array_equal(with_lora, render(run_cli, tmp_path / "direct", "--preset", direct, "--steps", "2"))
