#!/usr/bin/env bash
# The wheels the H200 machine lacks for issue 21's round (benchmarks/gpu_suite.py), fetched here from PyPI
# into .whl/ (ignored by git; the device call carries it: `carry: [".whl"]`). That machine has no network,
# Python 3.12 and torch 2.11.0+cu130, transformers, accelerate, safetensors, huggingface_hub, tokenizers,
# typer, rich, imageio, numpy and pillow (/work/.library/device/KINDS.md), and lacks:
#   diffusers 0.42.1 (vidgen's pin in practice: what every figure so far was taken with),
#   torchao 0.18.0 (--quantize; its own table: built for torch >= 2.11, the machine's),
#   gguf (vidgen's quant extra), ftfy and its wcwidth (Wan's prompt cleaning calls ftfy.fix_text),
#   imageio-ffmpeg (vidgen.media.readback imports it; video.py encodes with its ffmpeg),
#   sageattention 1.0.6, the newest on PyPI: diffusers' `sage` backend wants 2.1.1, built from source against
#   CUDA, so part 2 records SageAttention as not usable there, with diffusers' reason.
# Not carried, though `pip install -e .` there would fetch them: av (PyAV, ~35 MB; only LTX-2's image-to-video
# imports it, no part here), hatchling (the suite runs vidgen from the checkout on PYTHONPATH instead of
# installing it), typer 0.29 (it needs pydantic, which the machine lacks; its own typer ran vidgen's whole
# command in issue 12's round).
#
# imageio-ffmpeg's wheels hold an ffmpeg of 27 MB (0.5.1) to 68 MB (0.8.1) deflated, too much beside the checkout
# (the 64 MiB limit counts the tracked files, 33 MB now, and what is carried). So its 0.5.1 wheel is carried
# without the binary, and the binary (ffmpeg 4.2.2 with libx264, 74 MB) beside it compressed with xz (19 MB),
# unpacked there into /tmp and named by IMAGEIO_FFMPEG_EXE. When the total would pass LIMIT_MIB the binary is
# left out, and the suite's whole-command part writes a GIF instead of an MP4 (it says so in its results).
#
#   bash benchmarks/gpu_wheels.sh                  # fills .whl/, prints the sizes and the device command
#   FFMPEG=0 bash benchmarks/gpu_wheels.sh         # without the ffmpeg binary
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
limit_mib=${LIMIT_MIB:-60}  # the device's 64 MiB for everything that travels, less a margin
dest=.whl
git check-ignore -q "$dest/x.whl" || { echo "$dest/ is not ignored by git: it would travel twice" >&2; exit 1; }
rm -rf "$dest"
mkdir -p "$dest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fetch() {  # fetch FOLDER NAME==VERSION...: wheels for the device's CPython 3.12 on x86-64 Linux, none of their needs
    "$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux2010_x86_64 \
        --platform manylinux1_x86_64 -d "$@"
}
fetch "$dest" diffusers==0.42.1 torchao==0.18.0 gguf==0.19.0 ftfy==6.3.1 wcwidth==0.9.4 sageattention==1.0.6
fetch "$work" imageio-ffmpeg==0.5.1

"$python" - "$work"/imageio_ffmpeg-*.whl "$dest" "${FFMPEG:-1}" <<'PY'
# The wheel again without binaries/ffmpeg-* (and its RECORD line); the binary xz-compressed beside it.
import lzma, pathlib, sys, zipfile

source, dest, with_binary = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3] == "1"
binary = None
with zipfile.ZipFile(source) as wheel, zipfile.ZipFile(dest / source.name, "w", zipfile.ZIP_DEFLATED) as slim:
    for item in wheel.infolist():
        data = wheel.read(item)
        if "/binaries/ffmpeg-" in item.filename:
            binary = data
            continue
        if item.filename.endswith(".dist-info/RECORD"):
            data = b"".join(line for line in data.splitlines(True) if b"/binaries/ffmpeg-" not in line)
        slim.writestr(item, data)
if with_binary and binary:
    (dest / "ffmpeg.xz").write_bytes(lzma.compress(binary, preset=9 | lzma.PRESET_EXTREME))
PY

bytes_of() { if [ "$#" -gt 0 ]; then du -cb "$@" 2>/dev/null | tail -1 | cut -f1; else echo 0; fi; }
# What travels besides .whl/: tracked files and untracked ones git does not ignore (device README).
mapfile -d '' travelling < <(git ls-files -z --cached --others --exclude-standard)
code=$(bytes_of "${travelling[@]}")
total=$((code + $(bytes_of "$dest"/*)))
if [ "$total" -gt $((limit_mib * 1048576)) ] && [ -f "$dest/ffmpeg.xz" ]; then
    echo "over ${limit_mib} MiB with ffmpeg: leaving it out (the whole command then writes a GIF)" >&2
    rm "$dest/ffmpeg.xz"
    total=$((code + $(bytes_of "$dest"/*)))
fi
ls -l "$dest" | awk 'NR > 1 {printf "%8.2f MiB  %s\n", $5 / 1048576, $9}'
printf '%8.2f MiB  the checkout that travels (%d files)\n%8.2f MiB  in all (limit %d MiB; the device takes 64)\n' \
    "$(echo "$code / 1048576" | bc -l)" "${#travelling[@]}" "$(echo "$total / 1048576" | bc -l)" "$limit_mib"
[ "$total" -le $((limit_mib * 1048576)) ] || { echo "too large to carry" >&2; exit 1; }
cat <<'EOF'
device command (run tool, carry [".whl"], timeout_s 510):
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD && if [ -f .whl/ffmpeg.xz ]; then python3 -c "import lzma,shutil; shutil.copyfileobj(lzma.open('.whl/ffmpeg.xz'), open('/tmp/ffmpeg','wb'))" && chmod +x /tmp/ffmpeg && export IMAGEIO_FFMPEG_EXE=/tmp/ffmpeg; fi; PYTHONUNBUFFERED=1 python3 benchmarks/gpu_suite.py $OUT/r21 --deadline 450
EOF
