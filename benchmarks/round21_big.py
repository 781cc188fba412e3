"""Issue 21, part 1: Wan 2.1 14B on one card, random bf16 weights built on it, quantized as `--quantize` does
(benchmarks/round21.py runs it and gives the plan and budget; round21_wan.py has the workload's helpers)."""

from __future__ import annotations

import time
from typing import Any

from benchmarks.round21_wan import (
    Wan,
    computed_whole,
    estimate,
    gib,
    quantize_like_vidgen,
    release,
    resident_bytes,
    sync,
    timed,
    vidgen_call,
    warm_decoder,
    warm_up,
)

# Issue 21's targets for 14B at 480p with fp8-dynamic (text encoder excluded: the workload has none).
TARGET_PEAK_GIB = {"none": 20, "model": 12}
TARGET_SPEEDUP = 1.3


def part_big(run, wan: Wan) -> None:
    """bf16, fp8-dynamic, fp8-dynamic with --offload model, the 4-step video with the fastest, int8, fp8.
    Eager throughout: compiling 40 blocks of a 14B denoiser costs a variant's budget (see round21.py)."""
    import torch

    device = wan.device
    wan.embed()
    vae = wan.vae(torch.bfloat16)  # vidgen loads every component in the preset's dtype
    warm_decoder(vae, wan)
    held: dict[str, Any] = {}  # one transformer in memory at a time, so each peak is its own
    measured: dict[str, dict] = {}
    on_cuda = device.startswith("cuda")

    def model(method: str) -> tuple[Any, dict[str, Any]]:
        if method in held:
            return held[method], {}
        held.clear()
        release(device)
        started = time.perf_counter()
        transformer = wan.transformer()
        info = quantize_like_vidgen(transformer, method, device) if method != "bf16" else {}
        sync(device)
        info["build_seconds"] = round(time.perf_counter() - started, 2)
        info["transformer_resident_gib"] = gib(resident_bytes(transformer))
        held[method] = transformer
        return transformer, info

    def variant(name: str, method: str, *, warm: int, steps: int, offload: str = "none", guidance: float | None = None):
        def action() -> dict[str, Any]:
            transformer, info = model(method)
            settings = wan.settings(compile=False, offload=offload, guidance=guidance)
            loaded = wan.vidgen(transformer, vae, settings)
            record = {"variant": name, "method": method, "offload": loaded.offload, "compiled": loaded.compiled, **info}
            try:
                record["warmup_seconds"] = warm_up(loaded.pipe, wan.arguments(guidance), warm, device)
                record["warmup_steps"] = warm
                result, _ = timed(vidgen_call(loaded, settings), steps, device)
            finally:
                if loaded.offload != "none":  # the next variant gets the modules back on the card, without hooks
                    loaded.pipe.remove_all_hooks()
                    transformer.to(device), vae.to(device)
            record.update(result, steps=steps, guidance=settings.guidance)
            measured[method if guidance is None and offload == "none" else name] = record
            bf16 = measured.get("bf16", {}).get("seconds_per_step_median")
            if bf16 and record.get("seconds_per_step_median") and name != "bf16" and guidance is None:  # same passes a step
                record["speedup_per_step_vs_bf16"] = round(bf16 / record["seconds_per_step_median"], 3)
            if method == "fp8-dynamic" and guidance is None and record.get("peak_memory_gib") is not None:  # issue 21's targets
                peak = TARGET_PEAK_GIB[offload]
                record["targets"] = {f"peak <= {peak} GiB": record["peak_memory_gib"] <= peak}
                if offload == "none" and "speedup_per_step_vs_bf16" in record:
                    record["targets"][f">= {TARGET_SPEEDUP}x bf16 a step"] = record["speedup_per_step_vs_bf16"] >= TARGET_SPEEDUP
            return record

        return action

    def per_step(method: str) -> float | None:
        return measured.get(method, measured.get("bf16", {})).get("seconds_per_step_median")

    decode = lambda: measured.get("bf16", {}).get("decode_seconds") or 3.0  # noqa: E731
    build = 10.0 if on_cuda else 0.0  # build, cast and quantize 14B on the card (a guess until measured)
    run("bf16", variant("bf16", "bf16", warm=1, steps=3), None)
    run("fp8-dynamic", variant("fp8-dynamic", "fp8-dynamic", warm=1, steps=3), estimate(4, per_step("bf16"), extra=build + decode()))
    run(
        "fp8-dynamic + offload model",
        variant("fp8-dynamic + offload model", "fp8-dynamic", warm=0, steps=3, offload="model"),
        estimate(3, per_step("fp8-dynamic"), extra=decode() + (12.0 if on_cuda else 0.0)),
    )
    speeds = {
        m: measured[m]["seconds_per_step_median"] for m in ("bf16", "fp8-dynamic") if measured.get(m, {}).get("seconds_per_step_median")
    }
    fastest = min(speeds, key=speeds.get) if speeds else "bf16"
    # guidance 1 makes one denoiser pass a step instead of two; kernels are warm when the model is held
    name = f"4 steps, guidance 1, {fastest}"
    run(
        name,
        variant(name, fastest, warm=0 if fastest in held else 1, steps=4, guidance=1.0),
        estimate(2.5, per_step(fastest), extra=decode() + (0 if fastest in held else build)),
    )
    if "bf16" in measured:
        whole = computed_whole(measured["bf16"], wan.workload["steps"])
        four = measured.get(name, {}).get("whole_video_seconds")
        run(
            "50 steps, guidance 5, bf16 (computed)",
            lambda: {
                "variant": "50 steps, guidance 5, bf16 (computed)",
                "whole_video_seconds": whole,
                "computed": f"{wan.workload['steps']} x bf16's median s/step + its decode (not run: it would take the whole call)",
                "speedup_of_4_step_video": round(whole / four, 2) if whole and four else None,
            },
            None,
        )
    for method in ("int8", "fp8"):  # weight-only: matmuls in bf16 after dequantizing, so not the fastest here
        run(method, variant(method, method, warm=1, steps=2), estimate(3, per_step("bf16"), extra=build + decode()))
    held.clear()
