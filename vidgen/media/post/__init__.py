"""After the decode: more frames a second (`--interpolate N`) and larger frames (`--upscale N`),
for `vidgen post` and for `generate`/`batch` (runner.render applies them before the write).

- `plan.py`     what to do, from settings or options: the factors, the methods, the model
                files and the checks of those files (light: the settings table imports it);
- `ffmpeg.py`   the methods that need no download: frame repetition, blending (`framerate`),
                motion-compensated interpolation (`minterpolate`) and Lanczos scaling, run by the
                ffmpeg that imageio-ffmpeg bundles;
- `rife.py`     the learned interpolator: ECCV2022-RIFE's HD IFNet, weights from a file;
- `upscaler.py` the learned upscaler: any architecture spandrel detects, in tiles, on the GPU
                when there is one;
- `apply.py`    a plan applied to frames in order, each step recorded for the recipe;
- `command.py`  `vidgen post IN -o OUT`: read any video vidgen reads, apply, write atomically
                with the recipe (the input's, with the steps added) and the sound kept.
"""
