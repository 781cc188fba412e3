"""Frames -> files, with the recipe inside, written atomically.

Formats by the output's suffix:
- `.mp4`  H.264 (libx264), yuv420p, CRF, +faststart: plays in browsers and phones.
- `.webm` VP9 (libvpx-vp9), constant quality CRF.
- `.gif`  looping GIF (Pillow).
- a folder (no suffix, or a trailing slash): numbered PNG frames plus recipe.json.
The ffmpeg used is the one imageio-ffmpeg bundles, so nothing else needs installing.

The recipe (prompt, seed, model, settings, vidgen version) is JSON in the MP4/WebM
`comment` tag, the GIF comment and PNG text chunks; `vidgen.media.readback.read_recipe()`
gets it back. Each file is written under a temporary name in the target folder and renamed when
complete, so an interrupted run never leaves a truncated file under the final name.

The server's client (vidgen/cli/client.py) imports this module for `check_output_path()`
and `output_format()` and must stay light (no numpy): numpy, vidgen.media.audio (numpy),
Pillow and imageio-ffmpeg are imported inside the functions that write.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import unicodedata
import uuid
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from vidgen.media.audio import Audio

from vidgen.context import current
from vidgen.environment import variable
from vidgen.errors import GenerationError, Interrupted, UsageError, VidgenError, describe_os_error
from vidgen.threads import configured_threads

VIDEO_SUFFIXES = {".mp4": "mp4", ".webm": "webm", ".gif": "gif"}
RECIPE_FILE = "recipe.json"  # beside the frames in a PNG folder
PNG_RECIPE_KEY = "vidgen:recipe"


def output_format(path: Path | str) -> str:
    """mp4, webm, gif or png (a folder of frames)."""
    text = str(path)
    path = Path(text)
    if text.endswith(("/", os.sep)) or path.is_dir() or path.suffix == "":
        return "png"
    fmt = VIDEO_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise UsageError(f"cannot write {path.suffix} files: use .mp4, .webm, .gif, or a folder for PNG frames")
    return fmt


def prompt_slug(prompt: str, max_length: int = 48) -> str:
    """`A red ball, bouncing!` -> `a-red-ball-bouncing`."""
    ascii_text = unicodedata.normalize("NFKD", prompt).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:max_length].rstrip("-") or "video"


def check_output_path(path: Path, *, overwrite: bool) -> None:
    """Fail before any generation if `path` cannot be written or would be overwritten."""
    check_encoder(output_format(path))
    folder = path.parent
    if not folder.is_dir():
        raise UsageError(f"output folder does not exist: {folder}")
    if path.exists() and not overwrite:
        raise UsageError(f"{path} already exists (pass --overwrite to replace it)")
    if path.is_dir() and overwrite and any(path.iterdir()) and not (path / RECIPE_FILE).is_file():
        raise UsageError(f"{path} is a folder that vidgen did not write; refusing to replace it")
    # Really try: permission bits lie for root and read-only file systems.
    probe = folder / f".vidgen-probe-{uuid.uuid4().hex[:8]}"
    try:
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise UsageError(f"cannot write to output folder {folder}: {error.strerror}") from error


def _temporary_sibling(path: Path) -> Path:
    """A hidden name in the same folder (same file system, so os.replace is atomic)."""
    return path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.part{path.suffix}")


def _to_uint8_frames(frames: np.ndarray) -> np.ndarray:
    import numpy as np  # here, not at the top: keeps the server's client light (a call handed to `vidgen serve` never needs it)

    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    return np.ascontiguousarray(frames)


def _ffmpeg_codec(fmt: str, crf: int) -> tuple[str, list[str]]:
    """Codec and its options: H.264 for MP4; VP9 (constant quality needs -b:v 0) for WebM."""
    if fmt == "mp4":
        return "libx264", ["-crf", str(crf), "-preset", "medium", "-movflags", "+faststart"]
    return "libvpx-vp9", ["-crf", str(crf), "-b:v", "0", "-row-mt", "1"]


def ffmpeg_exe() -> str:
    """The ffmpeg to encode with: IMAGEIO_FFMPEG_EXE, else the one imageio-ffmpeg bundles.
    Missing or not runnable: GenerationError saying how to fix it."""
    import imageio_ffmpeg  # here, not at the top: keeps the server's client light (a GIF or PNG folder needs no ffmpeg)

    chosen = variable("IMAGEIO_FFMPEG_EXE") or None
    try:
        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:
        raise GenerationError(
            "no ffmpeg found to encode the video: reinstall imageio-ffmpeg "
            "(pip install --force-reinstall imageio-ffmpeg), install ffmpeg, or set IMAGEIO_FFMPEG_EXE to an ffmpeg binary"
        ) from None
    found = shutil.which(exe)
    if found is None:
        where = f"{exe} (from IMAGEIO_FFMPEG_EXE)" if chosen else exe
        raise GenerationError(
            f"ffmpeg not found or not executable: {where}; point IMAGEIO_FFMPEG_EXE at an ffmpeg binary, "
            "or unset it to use the one imageio-ffmpeg bundles"
        )
    return found


def check_encoder(fmt: str) -> None:
    """Before any generation: the encoder a format needs is there (GIF and PNG need none)."""
    if fmt in ("mp4", "webm"):
        ffmpeg_exe()


def _ffmpeg_failure(path: Path, exe: str, returncode: int, stderr: bytes) -> VidgenError:
    """One line for an ffmpeg that failed: killed by a file-size limit, or its own error."""
    if returncode in (255, -signal.SIGINT):
        # ffmpeg's exit after its own SIGINT (a Ctrl-C that reached it as well as us).
        return Interrupted("interrupted while writing the video; nothing was written")
    if returncode == -signal.SIGXFSZ:
        return GenerationError(f"cannot write {path}: file size limit exceeded (ulimit -f); nothing was written")
    if returncode < 0:
        return GenerationError(f"cannot write {path}: ffmpeg was stopped by signal {signal.Signals(-returncode).name}; nothing was written")
    reason = _last_line(stderr)
    return GenerationError(
        f"cannot write {path}: ffmpeg ({exe}) failed with exit {returncode}: {reason}; nothing was written "
        "(a full disk? if IMAGEIO_FFMPEG_EXE is set, check that ffmpeg has libx264 and libvpx-vp9, or unset it)"
    )


def _last_line(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode("utf-8", errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def run_ffmpeg(command: list[str], frames: np.ndarray | None, path: Path, exe: str) -> bytes:
    """Run ffmpeg, feeding `frames` as raw RGB on its standard input; return its stdout.

    ffmpeg runs in its own session, so a Ctrl-C at the terminal reaches only vidgen,
    which stops ffmpeg and goes on as interrupted (exit 130) instead of seeing a broken
    pipe. Every failure, the exit status included, raises GenerationError."""
    with tempfile.TemporaryFile() as stderr:  # a file, not a pipe: a chatty ffmpeg cannot block
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE if frames is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                start_new_session=True,
            )
        except OSError as error:
            raise GenerationError(
                f"cannot run ffmpeg ({exe}): {error.strerror or error}; point IMAGEIO_FFMPEG_EXE at an ffmpeg "
                "binary, or unset it to use the one imageio-ffmpeg bundles"
            ) from error
        try:
            if frames is not None:
                try:
                    for frame in frames:
                        process.stdin.write(frame.tobytes())
                    process.stdin.close()
                except BrokenPipeError:
                    pass  # ffmpeg stopped early; its exit status says why
            stdout = process.stdout.read()
            returncode = process.wait()
        except BaseException:
            process.kill()  # Ctrl-C, SIGTERM: stop the encoder, the caller removes its file
            process.wait()
            raise
        finally:
            for stream in (process.stdin, process.stdout):
                if stream is not None and not stream.closed:
                    try:
                        stream.close()
                    except BrokenPipeError:
                        pass
        if returncode != 0:
            stderr.seek(0)
            output = stderr.read()
            if frames is None and returncode > 0 and returncode != 255:
                # The decoding pass: ffmpeg itself works (it just encoded); the file does not.
                raise GenerationError(f"cannot write {path}: the encoded file does not decode ({_last_line(output)}); nothing was written")
            raise _ffmpeg_failure(path, exe, returncode, output)
        stderr.seek(0)
        errors = stderr.read().decode("utf-8", errors="replace").strip()
    if errors and frames is None:  # a decoding pass that complains found a damaged file
        raise GenerationError(f"cannot write {path}: the encoded file does not decode ({errors.splitlines()[-1]}); nothing was written")
    return stdout


def _write_with_ffmpeg(
    frames: np.ndarray, path: Path, fps: float, fmt: str, crf: int, comment: str, shown: Path | None = None, audio: Audio | None = None
) -> None:
    """Encode to `path` (the temporary file); messages name `shown`, the final name.
    A soundtrack is muxed from a temporary WAV beside it (vidgen.media.audio)."""
    exe = ffmpeg_exe()
    height, width = frames.shape[1:3]
    codec, output_params = _ffmpeg_codec(fmt, crf)
    audio_input, audio_params, wav = [], ["-an"], None
    if audio is not None:
        from vidgen.media.audio import (
            mux_arguments,
            write_wav,
        )  # here, not at the top: vidgen.media.audio imports numpy (the server's client)

        # A temporary name of the usual pattern, so a killed run's leftover is known as one.
        wav = _temporary_sibling((shown or path).with_suffix(".wav"))
        write_wav(audio, wav)
        audio_input, audio_params = mux_arguments(fmt, audio, wav)
    output_params += ["-metadata", f"comment={comment}"]
    if width % 2 or height % 2:  # yuv420p needs even sides: pad by one pixel
        output_params += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]
    output_params += encoder_thread_options()
    rate = str(Fraction(fps).limit_denominator())  # a rational, so 23.976 is not rounded
    command = [
        exe,
        "-nostdin",
        "-y",
        "-f",
        "rawvideo",
        "-vcodec",
        "rawvideo",
        "-s",
        f"{width}x{height}",
        "-pix_fmt",
        "rgb24",
        "-r",
        rate,
        "-i",
        "-",
        *audio_input,
        *audio_params,
        "-vcodec",
        codec,
        "-pix_fmt",
        "yuv420p",
        "-v",
        "error",
        *output_params,
        "-f",
        fmt,
        str(path),
    ]
    try:
        run_ffmpeg(command, frames, shown or path, exe)
    finally:
        if wav is not None:
            wav.unlink(missing_ok=True)
    _verify_video(path, len(frames), exe, shown or path)
    if audio is not None:
        _verify_audio(path, len(frames) / fps, fps, exe, shown or path)


def _verify_audio(path: Path, seconds: float, fps: float, exe: str, shown: Path) -> None:
    """The soundtrack decodes and lasts as long as the video, within one frame."""
    from vidgen.media.audio import probe_audio  # here, not at the top: vidgen.media.audio imports numpy (the server's client)

    try:
        stream = probe_audio(path, exe)
    except ValueError as error:
        raise GenerationError(f"cannot write {shown}: {error}; nothing was written") from error
    if stream is None or abs(stream["seconds"] - seconds) > 1 / fps:
        found = "no audio" if stream is None else f"{stream['seconds']} s of audio"
        raise GenerationError(f"cannot write {shown}: the encoded file holds {found} for {seconds:.3f} s of video; nothing was written")


def _verify_video(path: Path, expected_frames: int, exe: str, shown: Path) -> None:
    """Decode the finished file before it gets its name: a file cut short by a full disk
    or a file-size limit that ffmpeg did not notice must not be reported as a video."""
    command = [exe, "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0", "-f", "null", "-progress", "pipe:1", "-"]
    stdout = run_ffmpeg(command, None, shown, exe).decode("utf-8", errors="replace")
    counts = [line.partition("=")[2] for line in stdout.splitlines() if line.startswith("frame=")]
    decoded = int(counts[-1]) if counts and counts[-1].strip().isdigit() else -1
    if decoded != expected_frames:
        raise GenerationError(
            f"cannot write {shown}: the encoded file holds {max(decoded, 0)} of {expected_frames} frames; nothing was written"
        )


def encoder_thread_options() -> list[str]:
    """ffmpeg's own thread count follows --threads / VIDGEN_THREADS when set: libx264
    otherwise starts 1.5 threads per core, which oversubscribes a shared CPU too."""
    threads = configured_threads()
    return ["-threads", str(threads)] if threads else []


def _write_gif(frames: np.ndarray, path: Path, fps: float, comment: str) -> None:
    from PIL import Image  # here, not at the top: keeps the server's client light

    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(
        path,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=max(20, round(1000 / fps)),  # browsers clamp delays under 20 ms
        loop=0,
        comment=comment.encode("utf-8"),
    )


def _write_png_folder(frames: np.ndarray, folder: Path, recipe_json: str) -> None:
    # here, not at the top: keeps the server's client light
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    folder.mkdir()
    text = PngInfo()
    text.add_itxt(PNG_RECIPE_KEY, recipe_json)
    for index, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"frame_{index:05d}.png", pnginfo=text)
    (folder / RECIPE_FILE).write_text(recipe_json + "\n")


def write_video(
    frames: np.ndarray,
    path: Path,
    *,
    fps: float,
    crf: int = 18,
    recipe: dict[str, Any],
    overwrite: bool = False,
    audio: Audio | None = None,
) -> Path:
    """Write `frames` (uint8, T H W 3) to `path` atomically; return the final path.

    `audio` (fitted to the video's length) goes into an MP4 or WebM; a GIF or PNG folder
    gets it as a WAV beside it (`vidgen.media.audio.wav_beside`), written and renamed with it.

    The file gets its name only once it is whole: the encoder exited 0, the file
    decodes to every frame, and its bytes are on disk (fsync). Anything else (a full
    disk, a file-size limit, a failing ffmpeg, Ctrl-C) removes the temporary file and
    raises, so a damaged file is never reported as a video."""
    frames = _to_uint8_frames(frames)
    fmt = output_format(path)
    recipe_json = json.dumps(recipe, ensure_ascii=False, sort_keys=True)
    temporary = _temporary_sibling(path)
    wav = wav_temporary = None
    if audio is not None and fmt in ("gif", "png"):
        from vidgen.media.audio import wav_beside  # here, not at the top: vidgen.media.audio imports numpy (the server's client)

        wav = wav_beside(path)
        if wav.exists() and not overwrite:
            raise UsageError(f"{wav} already exists (pass --overwrite to replace it)")
        wav_temporary = _temporary_sibling(wav)
    try:
        if wav_temporary is not None:
            from vidgen.media.audio import write_wav  # here, not at the top: vidgen.media.audio imports numpy (the server's client)

            write_wav(audio, wav_temporary)
            _sync(wav_temporary)
        if fmt in ("mp4", "webm"):
            _write_with_ffmpeg(frames, temporary, fps, fmt, crf, recipe_json, path, audio=audio)
        elif fmt == "gif":
            _write_gif(frames, temporary, fps, recipe_json)
            _verify_gif(temporary, path)
        else:
            _write_png_folder(frames, temporary, recipe_json)
        _sync(temporary)
        if interruption := current().cancel.interruption("interrupted while writing the video; nothing was written"):
            # A served job's client interrupted while the file was being written: it is
            # not given its name, as in-process Ctrl-C during the write leaves nothing.
            raise interruption
        if path.exists() and not overwrite:
            raise UsageError(f"{path} appeared while generating (pass --overwrite to replace it)")
        if path.is_dir():
            shutil.rmtree(path)  # os.replace cannot replace a non-empty folder
        os.replace(temporary, path)
        if wav_temporary is not None:
            os.replace(wav_temporary, wav)
    except BaseException as error:
        _remove(temporary)
        if wav_temporary is not None:
            _remove(wav_temporary)
        if isinstance(error, OSError):
            raise GenerationError(f"cannot write {path}: {describe_os_error(error)}; nothing was written") from error
        if isinstance(error, RuntimeError):
            raise GenerationError(f"cannot write {path}: {error}") from error
        raise
    return path


def _sync(path: Path) -> None:
    """Flush a finished file (or a folder's files) to disk: a full disk can surface only
    here, when the file system allocates the blocks it promised."""
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    for file in files:
        fd = os.open(file, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _verify_gif(path: Path, shown: Path) -> None:
    """Read every frame back: a GIF cut short fails here instead of after the rename."""
    from PIL import Image, ImageSequence  # here, not at the top: keeps the server's client light

    try:
        with Image.open(path) as image:
            for frame in ImageSequence.Iterator(image):
                frame.load()
    except (OSError, EOFError, SyntaxError) as error:
        raise GenerationError(f"cannot write {shown}: the written GIF does not read back ({error}); nothing was written") from error


def encode_mp4_bytes(frames: np.ndarray, *, fps: float, crf: int = 18, recipe: dict[str, Any], audio: Audio | None = None) -> bytes:
    """The MP4 file as bytes (for `-o -`). A real file in between keeps +faststart."""
    with tempfile.TemporaryDirectory(prefix="vidgen-") as folder:
        path = write_video(frames, Path(folder) / "video.mp4", fps=fps, crf=crf, recipe=recipe, audio=audio)
        return path.read_bytes()


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
