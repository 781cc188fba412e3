#!/usr/bin/env bash
# The built-in model's denoiser on a GPU (issue 8): one large latent pool, then three denoiser
# layouts trained side by side on the one card, each for the same minutes. What comes back is one
# small file per layout (EMA weights in float16, configs, latent statistics, steps): put it at
# runs/NAME/denoiser/state.pt here and `python -m vidgen.embedded.train export --work runs/NAME`
# writes the pipeline; benchmarks/probe_shapes.py scores it on the CPU, where it ships.
#
#   bash benchmarks/gpu_train_sweep.sh OUTDIR [MINUTES] [POOL]
# DEVICE=cpu PYTHON=.venv/bin/python BATCH=8 runs it here at toy size (a dry run).
# Needs the autoencoder of an earlier CPU run in runs/c/vae/best (carried to the GPU machine).
set -u
out=${1:?usage: gpu_train_sweep.sh OUTDIR [MINUTES] [POOL]}
minutes=${2:-3}
pool=${3:-24000}
work=${WORK:-/tmp/shapes-gpu}
python=${PYTHON:-python3}
device=${DEVICE:-cuda}
batch=${BATCH:-256}
train="$python -m vidgen.embedded.train"
mkdir -p "$out" "$work/vae"
cp -r runs/c/vae/best "$work/vae/best"
{ nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true; } | tee -a "$out/train.log"
$train latents --work "$work" --pool "$pool" --device "$device" --workers 14 2>&1 | tee -a "$out/train.log"

# name patch width layers: the shipped layout, then patch 2 (four times the tokens: finer shape)
# as wide and as deep, and patch 2 narrower but deeper.
layouts="p4w256l6 4 256 6
p2w256l6 2 256 6
p2w224l8 2 224 8"
while read -r name patch width layers; do
    mkdir -p "$work-$name"
    ln -sf "$work/latents.pt" "$work-$name/latents.pt"
    ln -sfn "$work/vae" "$work-$name/vae"
    $train denoiser --work "$work-$name" --device "$device" --minutes "$minutes" --batch "$batch" --patch "$patch" \
        --width "$width" --layers "$layers" --corner-weight 16 --probe-minutes 0 > "$work-$name.log" 2>&1 &
done <<< "$layouts"
wait
while read -r name _; do
    echo "== $name" >> "$out/train.log"
    cat "$work-$name.log" >> "$out/train.log"
    $python - "$work-$name/denoiser/state.pt" "$out/$name.pt" <<'PY'
import sys, torch
state = torch.load(sys.argv[1], weights_only=False, map_location="cpu")
slim = {key: state[key] for key in ("transformer_config", "text_config", "step", "seconds", "latent_stats", "batch")}
for key in ("ema_transformer", "ema_text_encoder"):
    slim[key] = {name: tensor.half() if tensor.is_floating_point() else tensor for name, tensor in state[key].items()}
torch.save(slim, sys.argv[2])
print(sys.argv[2], state["step"], "steps")
PY
done <<< "$layouts"
tail -n 3 "$work"-*.log
