"""Issue 21, parts 2 (its second half) and 3 on Wan 2.1 1.3B at 480p: the fast modes, and the lossless path's
attention backends and compile modes, each against plain diffusers in the same process (benchmarks/round21.py
runs them and gives the plan and budget; round21_wan.py has the workload's helpers)."""

from __future__ import annotations

import copy
from typing import Any

from benchmarks import bench
from benchmarks.round21_wan import (
    Wan,
    cached_steps,
    cannot_run,
    computed_whole,
    cuda_only,
    estimate,
    quantize_like_vidgen,
    release,
    timed,
    vidgen_call,
    warm_decoder,
    warm_up,
)

TARGET_LOSSLESS_S_PER_STEP, TARGET_LOSSLESS_PSNR_DB = 0.95, 40.0  # issue 21, part 3


class Session:
    """Plain diffusers first, then vidgen's variants on fresh copies of the same weights, in one process."""

    def __init__(self, run, wan: Wan, timed_steps: int):
        import torch

        self.run, self.wan, self.device, self.steps = run, wan, wan.device, timed_steps
        self.pipe = wan.plain()
        self.vae16 = copy.deepcopy(self.pipe.vae).to(torch.bfloat16)  # vidgen's one dtype
        for vae in (self.pipe.vae, self.vae16):
            warm_decoder(vae, wan)
        self.frames: dict[str, Any] = {}
        self.records: dict[str, dict] = {}
        self.compile_cost = 15.0 if self.device.startswith("cuda") else 1.0  # regional compile of the 1.3B's block

    def plain_variant(self) -> None:
        def action() -> dict[str, Any]:
            warm = warm_up(self.pipe, self.wan.arguments(), 2, self.device)
            record, frames = timed(bench._plain_call(self.pipe, self.wan.arguments(), 0), self.steps, self.device)
            return self.keep(
                "diffusers", {"variant": "diffusers", "warmup_seconds": warm, "compiled": False, **record, "steps": self.steps}, frames
            )

        self.run("diffusers", action, None)

    def keep(self, name: str, record: dict[str, Any], frames: Any) -> dict[str, Any]:
        self.records[name], self.frames[name] = record, frames
        plain = self.records.get("diffusers", {})
        if name != "diffusers" and plain.get("seconds_per_step_median") and record.get("seconds_per_step_median"):
            record["speedup_per_step"] = round(plain["seconds_per_step_median"] / record["seconds_per_step_median"], 3)
        for reference in ("diffusers", "vidgen"):  # the same seed and the same number of steps only
            other = self.records.get(reference, {})
            if name != reference and reference in self.frames and other.get("steps") == record.get("steps"):
                record[f"psnr_vs_{reference}_db"] = bench._round(bench.psnr(self.frames[reference], frames))
        return record

    def per_step(self) -> float | None:
        return self.records.get("diffusers", {}).get("seconds_per_step_median")

    def vidgen_variant(
        self,
        name: str,
        *,
        steps: int | None = None,
        quantize: str | None = None,
        compile_mode: str | None = None,
        estimate_steps: float = 0,
        compiled: bool = True,
        **overrides: Any,
    ) -> None:
        import torch

        def action() -> dict[str, Any]:
            for part in (overrides.get("attention_backend"), compile_mode):
                if part:
                    cuda_only(part, self.device)
            transformer = copy.deepcopy(self.pipe.transformer)  # fresh: quantizing, caches and compiling change it in place
            record: dict[str, Any] = {"variant": name}
            if quantize:
                record.update(quantize_like_vidgen(transformer, quantize, self.device))
            torch._dynamo.reset()  # each variant compiles afresh (no guard from a former copy, no cache-size limit)
            settings = self.wan.settings(compile=False if compile_mode else None, **overrides)
            loaded = self.wan.vidgen(transformer, self.vae16, settings)
            if compile_mode:
                if self.device.startswith("cuda"):  # vidgen compiles in the default mode only: the script does this one itself
                    transformer.compile_repeated_blocks(fullgraph=True, mode=compile_mode)
                else:  # the dry run: the same regional compile through Dynamo, with its eager backend (Inductor on 2 CPU cores takes minutes)
                    transformer.compile_repeated_blocks(fullgraph=True, backend="eager")
                    record["note"] = f"dry run: Dynamo's eager backend in place of mode {compile_mode}"
            record.update(
                offload=loaded.offload,
                compiled=compile_mode or loaded.compiled,
                cache=loaded.cache,
                attention_backend=overrides.get("attention_backend") or "default (SDPA)",
            )
            record["warmup_seconds"] = warm_up(loaded.pipe, self.wan.arguments(), 2, self.device)
            result, frames = timed(vidgen_call(loaded, settings), steps or self.steps, self.device)
            record.update(result, steps=steps or self.steps)
            record["cached_steps"] = cached_steps(record, self.per_step())
            if steps:  # a cache's whole video at the real step count: its median step is a cached one
                record["whole_video_50_steps"] = record["whole_video_seconds"]
            else:
                record["whole_video_50_steps_computed"] = computed_whole(record, self.wan.workload["steps"])
            del loaded, transformer
            release(self.device)
            return self.keep(name, record, frames)

        reason = cannot_run(self.device, backend=overrides.get("attention_backend"), quantize=quantize, compile_mode=compile_mode)
        if reason:
            self.run(name, lambda: {"variant": name, "skipped": reason}, None)
            return
        extra = (self.compile_cost if compiled else 0.0) + (self.records.get("diffusers", {}).get("decode_seconds") or 3.0)
        self.run(name, action, estimate(estimate_steps or self.steps + 2, self.per_step(), extra=extra))

    def plain_whole(self) -> None:
        """Plain diffusers' whole video at the real step count, computed from its s/step (the speed-up reference)."""
        record = self.records.get("diffusers")
        if record:
            record["whole_video_50_steps_computed"] = computed_whole(record, self.wan.workload["steps"])
            for other in self.records.values():
                mine = other.get("whole_video_50_steps") or other.get("whole_video_50_steps_computed")
                if other is not record and mine and record["whole_video_50_steps_computed"]:
                    other["speedup_whole_video_50_steps"] = round(record["whole_video_50_steps_computed"] / mine, 3)


def part_modes(run, wan: Wan) -> None:
    """Plain diffusers, vidgen lossless (compiled), --cache taylorseer (at the real 50 steps), --quantize
    fp8-dynamic, --fast, --quantize int8, SageAttention: s/step, whole video, PSNR against lossless."""
    from vidgen.engine.acceleration import FAST_CACHE

    session = Session(run, wan, timed_steps=3)
    session.plain_variant()
    session.vidgen_variant("vidgen", estimate_steps=5)
    # TaylorSeer computes about 13 of 50 steps (the 3 first, then every 5th): run the real count
    session.vidgen_variant("vidgen --cache taylorseer", cache="taylorseer", steps=wan.workload["steps"], estimate_steps=15, compiled=False)
    session.vidgen_variant("vidgen --quantize fp8-dynamic", quantize="fp8-dynamic", estimate_steps=5)
    session.vidgen_variant(f"vidgen --fast ({FAST_CACHE})", cache=FAST_CACHE, estimate_steps=5, compiled=False)
    session.vidgen_variant("vidgen --quantize int8", quantize="int8", estimate_steps=5)
    session.vidgen_variant("vidgen --attention-backend sage", attention_backend="sage", estimate_steps=5)
    session.plain_whole()
    run.save()


def part_lossless(run, wan: Wan) -> None:
    """Plain diffusers against vidgen compiled with each attention backend, then torch.compile's modes
    with the best backend so far (the fastest at PSNR >= 40 dB against plain)."""
    session = Session(run, wan, timed_steps=3)
    session.plain_variant()
    session.vidgen_variant("vidgen default (SDPA)", estimate_steps=5)
    session.vidgen_variant("vidgen _native_cudnn", attention_backend="_native_cudnn", estimate_steps=5)

    def best() -> str | None:
        good = {
            r.get("attention_backend"): r["seconds_per_step_median"]
            for r in session.records.values()
            if r.get("seconds_per_step_median")
            and r.get("compiled") is True
            and (r.get("psnr_vs_diffusers_db") or 0) >= TARGET_LOSSLESS_PSNR_DB
        }
        name = min(good, key=good.get) if good else None
        return None if name in (None, "default (SDPA)") else name

    session.vidgen_variant(
        "vidgen + CUDA graphs (reduce-overhead)", compile_mode="reduce-overhead", attention_backend=best(), estimate_steps=5
    )
    session.vidgen_variant("vidgen _native_flash", attention_backend="_native_flash", estimate_steps=5)
    session.vidgen_variant("vidgen flash (flash-attn)", attention_backend="flash", estimate_steps=5)
    # Autotuning every GEMM shape takes minutes of compile: last, where the budget allows it
    session.vidgen_variant(
        "vidgen max-autotune-no-cudagraphs", compile_mode="max-autotune-no-cudagraphs", attention_backend=best(), estimate_steps=40
    )
    for record in session.records.values():
        if record.get("seconds_per_step_median") and "psnr_vs_diffusers_db" in record:
            psnr = record["psnr_vs_diffusers_db"]
            record["meets_lossless_target"] = record["seconds_per_step_median"] <= TARGET_LOSSLESS_S_PER_STEP and (
                psnr == "inf" or psnr >= TARGET_LOSSLESS_PSNR_DB
            )
    run.save()
