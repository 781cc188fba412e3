"""The table's rows for how a video is made (settings/table.py holds what it shows, and the table):
the model and its loading, memory and speed, previews and latents, the output file and its
post-processing, sampling. Their order is --help's, after the table's own.
"""

from __future__ import annotations

from vidgen.media.post.plan import DEFAULT_INTERPOLATION, INTERPOLATION_METHODS, interpolate_model_problem, upscale_model_problem
from vidgen.media.post.plan import MAX_FACTOR as MAX_POST_FACTOR
from vidgen.settings.grammar import CACHE_METHODS, LoraSpec, parallel_problem, parse_lora_scales, preview_suffix_problem, quantize_problem
from vidgen.settings.setting import MAX_CRF, MAX_GUIDANCE, MAX_STEPS, OFFLOAD_MODES, Setting

RUN_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "loras",
        list,
        "LoRA PATH_OR_ID[:SCALE][@COMPONENT], repeatable; @transformer_2 puts it in Wan 2.2 A14B's "
        "low-noise expert (@transformer, the default: the high-noise one).",
        default=list,
        flag=("--lora",),
        loads=True,
        recipe=True,
        item=LoraSpec,
    ),
    # Layer-only: build_settings re-weights the preset's LoRAs with it, which the loading key and the recipe then carry.
    Setting(
        "lora_scales",
        dict,
        "NAME=SCALE: a new weight for one of the preset's own LoRAs (vidgen presets show NAME "
        "names them), e.g. --lora-scale high_noise=2; repeatable.",
        flag=("--lora-scale",),
        read=parse_lora_scales,
        field=False,
        item=float,
    ),
    Setting("dtype", str, "auto, float32, float16 or bfloat16.", default="auto", preset=True, loads=True, recipe=True),
    Setting(
        "quantize",
        str,
        "Quantize while loading: int8, int8-dynamic, fp8, fp8-dynamic, nf4 or none, for the denoiser(s); "
        "or per component, e.g. transformer=fp8,text_encoder=int8 (pip install 'vidgen\\[quant]').",
        preset=True,
        line=True,
        loads=True,
        recipe=True,
        check=quantize_problem,
    ),
    Setting(
        "transformer",
        str,
        "The denoiser from one file: FILE.gguf or FILE.safetensors (original or ComfyUI key names), "
        "or REPO/FILENAME on the Hugging Face Hub; the rest of the pipeline from the preset's model.",
        preset=True,
        loads=True,
        recipe=True,
        path=True,
    ),
    Setting(
        "transformer_2",
        str,
        "Wan 2.2 A14B's second (low-noise) expert from one file, as --transformer.",
        flag=("--transformer-2",),
        preset=True,
        loads=True,
        recipe=True,
        path=True,
    ),
    # diffusers' WanPipeline and WanImageToVideoPipeline read it from their config (register_to_config) at every call.
    Setting(
        "boundary_ratio",
        float,
        "Wan 2.2 A14B: where the high-noise expert hands over to the low-noise one, as a share "
        "of the 1000 training timesteps (transformer while t >= ratio x 1000); the makers' 0.875 for text-, 0.9 for "
        "image-to-video.",
        preset=True,
        loads=True,
        recipe=True,
        minimum=0,
        maximum=1,
    ),
    Setting(
        "device",
        str,
        "auto, cpu, cuda, cuda:N, mps or xpu.",
        default="auto",
        loads=True,
        batch_help="auto, cpu, cuda, cuda:N, mps or xpu (under accelerate: each process's own).",
    ),
    Setting(
        "offload",
        str,
        "none, model, group, sequential or auto (by free GPU memory).",
        default="none",
        preset=True,
        loads=True,
        choices=OFFLOAD_MODES,
    ),
    Setting("vae_tiling", bool, "Decode in tiles to save memory.", default=False, preset=True, loads=True),
    Setting(
        "preview",
        str,
        "Rewrite FILE (.png: a strip of frames; .gif or .webp: an animation) every --preview-every steps "
        "with the video as it forms (Wan family). Example: --preview p.png, then watch it in an image viewer.",
        path=True,
        check=preview_suffix_problem,
        batch_help="As for generate: FILE shows the video in progress.",
    ),
    Setting(
        "preview_every",
        int,
        "Steps between previews (default 5; the last step always writes one).",
        default=5,
        minimum=1,
        maximum=MAX_STEPS,
    ),
    Setting(
        "save_latents",
        bool,
        "Keep the final latents and the recipe beside the video (NAME.latents.safetensors; "
        "`vidgen decode` makes the video from them); on Ctrl-C or SIGTERM during denoising, the last finished step's.",
    ),
    Setting(
        "resume_latents",
        str,
        "Go on from the latents a run stopped with --save-latents left (same command otherwise): the frames an uninterrupted run makes.",
        commands=("generate",),
        path=True,
    ),
    Setting(
        "crf",
        int,
        "Quality, 0 (lossless) to 51; default 18.",
        default=18,
        preset=True,
        minimum=0,
        maximum=MAX_CRF,
        commands=("generate", "batch", "post"),
    ),
    # After the decode, before the write (vidgen/post): N x the frames and fps, same duration; N x the width and height.
    Setting(
        "interpolate",
        int,
        "N x the frame rate after decoding, same duration: N x the frames (e.g. 2: 16 -> 32 fps).",
        commands=("generate", "batch", "post"),
        preset=True,
        line=True,
        recipe=True,
        minimum=1,
        maximum=MAX_POST_FACTOR,
    ),
    Setting(
        "interpolate_method",
        str,
        f"How --interpolate makes frames: {', '.join(INTERPOLATION_METHODS)} (default {DEFAULT_INTERPOLATION}; docs/benchmarks.md).",
        default=DEFAULT_INTERPOLATION,
        commands=("generate", "batch", "post"),
        preset=True,
        line=True,
        recipe=True,
        choices=INTERPOLATION_METHODS,
    ),
    Setting(
        "interpolate_model",
        str,
        "Interpolate with RIFE instead: ECCV2022-RIFE's HD weights (flownet.pkl); --interpolate 2, 4 or 8 (default 2).",
        commands=("generate", "batch", "post"),
        preset=True,
        line=True,
        recipe=True,
        path=True,
        check=interpolate_model_problem,
    ),
    Setting(
        "upscale",
        int,
        "N x the width and height after decoding (Lanczos, or --upscale-model).",
        commands=("generate", "batch", "post"),
        preset=True,
        line=True,
        recipe=True,
        minimum=1,
        maximum=MAX_POST_FACTOR,
    ),
    Setting(
        "upscale_model",
        str,
        "Upscale with a learned model: a .pth or .safetensors file spandrel knows (Real-ESRGAN, "
        "SwinIR, SPAN...; pip install 'vidgen\\[post]'); default factor: its own.",
        commands=("generate", "batch", "post"),
        preset=True,
        line=True,
        recipe=True,
        path=True,
        check=upscale_model_problem,
    ),
    Setting(
        "cache",
        str,
        "Step cache: none, first-block, taylorseer or pab (faster, slightly different output).",
        default="none",
        loads=True,
        recipe=True,
        choices=CACHE_METHODS,
    ),
    Setting(
        "compile",
        bool,
        "Compile the denoiser's blocks (default: on for CUDA runs of 10+ steps).",
        flag=("--compile/--no-compile",),
        loads=True,
    ),
    Setting("attention_backend", str, "diffusers attention backend (default: PyTorch SDPA).", loads=True),
    Setting(
        "parallel",
        str,
        "Make the video together with the other processes of accelerate launch or torchrun (one per GPU): "
        "ulysses, ring or ulysses=2,ring=2 (docs/scaling.md).",
        loads=True,
        check=parallel_problem,
        batch_help="With --processes N (or under accelerate launch): the processes make each video together, one at a time: "
        "ulysses, ring or ulysses=2,ring=2 (docs/scaling.md).",
    ),
    Setting("scheduler", str, flag=None, preset=True, loads=True, recipe=True),
    Setting("flow_shift", float, flag=None, preset=True, loads=True, recipe=True, minimum=0, maximum=MAX_GUIDANCE),
    # How the scheduler spaces its steps (CogVideo's cli_demo.py: "trailing"), set on the preset's or the model's scheduler.
    Setting("timestep_spacing", str, flag=None, preset=True, loads=True, recipe=True, choices=("leading", "linspace", "trailing")),
    Setting(
        "sigmas", list, flag=None, preset=True, loads=True, recipe=True, item=float
    ),  # a fixed schedule, before the shift (vidgen.engine.sampling)
    Setting(
        "stochastic_sampling", bool, flag=None, preset=True, loads=True, recipe=True
    ),  # fresh noise at each step (vidgen.engine.sampling)
    Setting("trust_remote_code", bool, "Allow a model's own Python code to run.", default=False, loads=True),
    # A batch's, not a video's: batch.run takes it out of the flags (as --seed), so it travels to a server and to
    # --processes with the others. field=False: no video's settings carry it.
    Setting(
        "gallery",
        bool,
        "Write DIR/index.html, a page of the batch's videos, when the batch ends (again after --resume).",
        default=True,
        flag=("--gallery/--no-gallery",),
        commands=("batch",),
        field=False,
    ),
)
