"""The soundtrack a pipeline returns with its frames (LTX-2), into and out of files.

- `audio_from_output()` takes the first video's audio from a pipeline output, at the
  sample rate the model's vocoder declares;
- `fit_to_video()` pads with silence or trims it to the video's length, so the two
  streams end together (the model's own audio can differ by a few milliseconds);
- `write_wav()` writes 16-bit PCM with the standard library (GIFs and PNG folders get
  a WAV beside them: neither format carries sound);
- `mux_arguments()` is what the ffmpeg of video.py adds to mux it: AAC in MP4, Opus
  in WebM;
- `probe_audio()` reads an audio stream back (codec, rate, channels, seconds) by
  decoding it with the same ffmpeg, since imageio-ffmpeg ships no ffprobe.
"""

from __future__ import annotations

import re
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Opus encodes only these rates; another model rate is resampled to 48 kHz for WebM.
OPUS_RATES = (48000, 24000, 16000, 12000, 8000)
CODECS = {"mp4": "aac", "webm": "libopus"}
BITRATES = {"mp4": "192k", "webm": "128k"}  # stereo speech and music without audible loss


@dataclass(frozen=True)
class Audio:
    samples: np.ndarray  # float32, (channels, samples), nominally in [-1, 1]
    rate: int  # samples per second

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def seconds(self) -> float:
        return self.samples.shape[1] / self.rate


def sample_rate_of(pipe: Any) -> int | None:
    """The rate of the waveform a pipeline returns: its vocoder's output rate (LTX-2),
    else its audio autoencoder's."""
    for component, key in (("vocoder", "output_sampling_rate"), ("audio_vae", "sample_rate")):
        config = getattr(getattr(pipe, component, None), "config", None)
        if config is not None and isinstance(config.get(key), int):
            return config[key]
    return None


def audio_from_output(output: Any, pipe: Any) -> Audio | None:
    """The first video's soundtrack, or None when the pipeline returns none."""
    waveform = getattr(output, "audio", None)
    if waveform is None:
        return None
    rate = sample_rate_of(pipe)
    if rate is None:
        raise ValueError(f"{type(pipe).__name__} returned audio but declares no sample rate")
    if hasattr(waveform, "detach"):
        waveform = waveform.detach().float().cpu().numpy()
    samples = np.asarray(waveform, dtype=np.float32)[0]  # batch of one
    if samples.ndim == 1:
        samples = samples[None, :]  # mono
    if samples.ndim != 2 or samples.shape[1] == 0:
        raise ValueError(f"{type(pipe).__name__} returned audio of shape {samples.shape}")
    if not np.isfinite(samples).all():
        raise ValueError("the model produced non-finite values (NaN or inf) in the audio")
    return Audio(np.ascontiguousarray(samples), rate)


def fit_to_video(audio: Audio, frames: int, fps: float) -> Audio:
    """Pad with silence or trim to exactly `frames / fps` seconds."""
    wanted = round(frames / fps * audio.rate)
    samples = audio.samples[:, :wanted]
    if samples.shape[1] < wanted:
        samples = np.pad(samples, ((0, 0), (0, wanted - samples.shape[1])))
    return Audio(np.ascontiguousarray(samples), audio.rate)


def write_wav(audio: Audio, path: Path) -> None:
    """16-bit PCM WAV, samples clipped to [-1, 1]."""
    pcm = (np.clip(audio.samples, -1.0, 1.0) * 32767.0).round().astype("<i2")
    with wave.open(str(path), "wb") as file:
        file.setnchannels(audio.channels)
        file.setsampwidth(2)
        file.setframerate(audio.rate)
        file.writeframes(pcm.T.tobytes())  # interleaved


def wav_beside(path: Path) -> Path:
    """Where a GIF's or PNG folder's soundtrack goes: clip.gif -> clip.wav, frames/ -> frames.wav."""
    path = Path(path)
    return path.with_name((path.stem if path.suffix.lower() == ".gif" else path.name) + ".wav")


def mux_arguments(fmt: str, audio: Audio, wav: Path) -> tuple[list[str], list[str]]:
    """ffmpeg arguments that add `wav` (input 1) to a video read from input 0: the extra
    input, and the stream mapping and codec options for the output."""
    options = ["-map", "0:v:0", "-map", "1:a:0", "-c:a", CODECS[fmt], "-b:a", BITRATES[fmt]]
    if fmt == "webm" and audio.rate not in OPUS_RATES:
        options += ["-ar", "48000"]
    return ["-i", str(wav)], options


_STREAM = re.compile(r"Stream #\d+:\d+.*?: Audio: (\w+).*?, (\d+) Hz, ([^,]+)")
_LAYOUTS = {"mono": 1, "stereo": 2}


def probe_audio(path: Path, exe: str) -> dict[str, Any] | None:
    """The first audio stream of `path`: codec, sample_rate, channels and seconds (by
    decoding every sample), or None when it has no audio stream."""
    header = subprocess.run([exe, "-nostdin", "-hide_banner", "-i", str(path)], capture_output=True, check=False)
    match = _STREAM.search(header.stderr.decode("utf-8", errors="replace"))
    if match is None:
        return None
    codec, rate, layout = match.group(1), int(match.group(2)), match.group(3).strip()
    counted = re.match(r"(\d+) channels", layout)
    channels = _LAYOUTS.get(layout) or (int(counted.group(1)) if counted else 0)  # 0: a layout such as 5.1, unnamed here
    decoded = subprocess.run(
        [exe, "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-ac", "1", "-f", "f32le", "-"],
        capture_output=True,
        check=False,
    )
    if decoded.returncode != 0:
        raise ValueError(f"the audio stream of {path} does not decode")
    samples = len(decoded.stdout) // 4
    return {"codec": codec, "sample_rate": rate, "channels": channels, "seconds": round(samples / rate, 3)}


def read_audio(path: Path, exe: str) -> Audio | None:
    """The first audio stream of `path` (a video or a WAV) as float samples at its own rate
    and channel count, or None when it has none (vidgen post keeps a video's sound)."""
    stream = probe_audio(path, exe)
    if stream is None:
        return None
    channels = stream["channels"] or 2  # a layout probe_audio does not name: down to stereo
    decoded = subprocess.run(
        [
            exe,
            "-nostdin",
            "-v",
            "error",
            "-i",
            str(path),
            "-map",
            "0:a:0",
            "-ac",
            str(channels),
            "-ar",
            str(stream["sample_rate"]),
            "-f",
            "f32le",
            "-",
        ],
        capture_output=True,
        check=False,
    )
    if decoded.returncode != 0:
        raise ValueError(f"the audio stream of {path} does not decode")
    samples = np.frombuffer(decoded.stdout, dtype="<f4")
    samples = samples[: len(samples) // channels * channels].reshape(-1, channels).T
    return Audio(np.ascontiguousarray(samples, dtype=np.float32), stream["sample_rate"])
