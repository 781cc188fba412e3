#!/usr/bin/env bash
# The built-in model on a GPU (issue 8), in one call: a large latent pool under the shipped autoencoder's
# encoder, then two trainings at once on the one card, each for the same minutes:
#   - a patch-2 denoiser (four times the tokens of the shipped patch 4: a token covers 8x8 pixels, where
#     a square's corner and a circle's edge differ), bfloat16, batch 256;
#   - a wider decoder (decoder_base_dim 32) from scratch under that encoder, on whole 64x64 clips
#     rendered by worker processes, so the round trips (the probe's ceiling) keep square corners.
# The encoder is the shipped one, so the new decoder also serves the shipped denoiser and the new
# denoiser the shipped decoder: every pairing can be scored on the CPU afterwards.
# What comes back in OUTDIR: denoiser.pt (EMA weights in float16, configs, latent statistics, steps),
# decoder-best/ and decoder-last/ (EMA folders), the logs. Put them in a work folder here as train.py lays it out
# (vae/best, decoder/best, denoiser/state.pt) and `python -m training.train export --work DIR`
# writes the pipeline; benchmarks/probe_shapes.py scores it on the CPU, which decides what ships.
#
#   bash benchmarks/gpu_train.sh OUTDIR [MINUTES] [POOL]
# DEVICE=cpu PYTHON=.venv/bin/python BATCH=4 DECODER_BATCH=2 DECODER_CROP=32 WORKERS=2 runs it here at toy size
# (a dry run; whole 64x64 clips through the 32-wide decoder in bf16 on this CPU corrupted the heap in
# the backward pass under torch 2.13.0+cpu in most short runs, so the dry run takes crops).
set -u
out=${1:?usage: gpu_train.sh OUTDIR [MINUTES] [POOL]}
minutes=${2:-6.5}
pool=${3:-20000}
work=${WORK:-/tmp/shapes-gpu}
python=${PYTHON:-python3}
device=${DEVICE:-cuda}
batch=${BATCH:-256}
decoder_batch=${DECODER_BATCH:-32}
decoder_crop=${DECODER_CROP:-64}
workers=${WORKERS:-10}
train="$python -m training.train"
mkdir -p "$out" "$work/vae"
rm -rf "$work/vae/best" && cp -r vidgen/embedded/weights/shapes/vae "$work/vae/best"
{ nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true; } | tee -a "$out/train.log"
$train latents --work "$work" --pool "$pool" --device "$device" --workers 14 2>&1 | tee -a "$out/train.log"

# Each trainer stops itself after its minutes; `timeout` is only a guard, so that what was trained comes back.
guard=$(awk "BEGIN {print int($minutes * 60 + 90)}")
timeout "$guard" $train denoiser --work "$work" --device "$device" --minutes "$minutes" --batch "$batch" \
    --patch 2 --width 256 --layers 6 --corner-weight 16 --lr 1e-3 --probe-minutes 0 > "$out/denoiser.log" 2>&1 &
timeout "$guard" $train decoder --work "$work" --device "$device" --minutes "$minutes" --batch "$decoder_batch" \
    --crop "$decoder_crop" --workers "$workers" --decoder-base-dim 32 --corner-weight 20 --latent-noise 0.1 > "$out/decoder.log" 2>&1 &
wait
cp -r "$work/decoder/best" "$out/decoder-best" 2>/dev/null
cp -r "$work/decoder/last" "$out/decoder-last" 2>/dev/null
cp "$work/decoder/scores.jsonl" "$out/decoder-scores.jsonl" 2>/dev/null
$python - "$work/denoiser/state.pt" "$out/denoiser.pt" <<'PY'
import sys, torch
state = torch.load(sys.argv[1], weights_only=False, map_location="cpu")
slim = {key: state[key] for key in ("transformer_config", "text_config", "step", "seconds", "latent_stats", "batch")}
for key in ("ema_transformer", "ema_text_encoder"):
    slim[key] = {name: tensor.half() if tensor.is_floating_point() else tensor for name, tensor in state[key].items()}
torch.save(slim, sys.argv[2])
print(sys.argv[2], state["step"], "steps")
PY
tail -n 4 "$out/denoiser.log" "$out/decoder.log"
