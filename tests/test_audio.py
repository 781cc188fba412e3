"""Sound: the `ltx2` preset's real command on a tiny random LTX2Pipeline (Gemma 3 text
encoder, audio VAE and vocoder built offline, once per session), each output read back.

The files are read with PyAV, not with vidgen's own reader, so a stream vidgen only thinks
it wrote fails here. The tiny vocoder makes 16 kHz stereo, like the real one's layout.
"""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from vidgen.media.audio import Audio, fit_to_video

PROMPT = "a red fox barking in the snow"
FPS = 8
FRAMES = 9  # 8k+1; 1.125 s at 8 fps
TINY_LTX2 = [
    "--preset",
    "ltx2",
    "--steps",
    "2",
    "--size",
    "32x32",
    "--frames",
    str(FRAMES),
    "--fps",
    str(FPS),
    "--device",
    "cpu",
    "--dtype",
    "float32",
    "--seed",
    "3",
]


@pytest.fixture
def generate_ltx2(run_cli, tiny_pipeline_dir):
    folder = tiny_pipeline_dir("LTX2Pipeline")

    def invoke(*args: str):
        return run_cli(PROMPT, "--model", folder, *TINY_LTX2, *args)

    return invoke


def read_streams(path: Path) -> dict:
    """The file's video frame count and its audio stream (codec, rate, channels, seconds), by PyAV."""
    import av

    with av.open(str(path)) as container:
        video_frames = sum(1 for _ in container.decode(video=0))
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return {"frames": video_frames, "audio": None}
        stream = container.streams.audio[0]
        codec, channels = stream.codec_context.name, stream.codec_context.channels
        frames = list(container.decode(audio=0))
        rate = frames[0].sample_rate
        samples = sum(frame.samples for frame in frames)
    return {"frames": video_frames, "audio": {"codec": codec, "rate": rate, "channels": channels, "seconds": samples / rate}}


def opus_input_rate(path: Path) -> int:
    """The rate the Opus encoder was given, from the stream's OpusHead (RFC 7845: bytes 12-15,
    little-endian). Opus always decodes at 48 kHz, so the decoded rate cannot tell."""
    import av

    with av.open(str(path)) as container:
        head = bytes(container.streams.audio[0].codec_context.extradata)
    assert head[:8] == b"OpusHead", head[:8]
    return int.from_bytes(head[12:16], "little")


def assert_same_length(seconds: float) -> None:
    """Audio and video end together, within one frame."""
    assert abs(seconds - FRAMES / FPS) <= 1 / FPS, seconds


def test_mp4_carries_aac_at_the_models_rate(generate_ltx2, run_cli):
    result = generate_ltx2("-o", "clip.mp4", "--json")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["audio"] is True

    streams = read_streams(Path("clip.mp4"))
    assert streams["frames"] == FRAMES
    audio = streams["audio"]
    assert (audio["codec"], audio["rate"], audio["channels"]) == ("aac", 16000, 2)
    assert_same_length(audio["seconds"])

    described = json.loads(run_cli("inspect", "clip.mp4", "--json").stdout)
    assert described["audio"]["codec"] == "aac" and described["audio"]["sample_rate"] == 16000
    assert described["audio"]["channels"] == 2
    assert_same_length(described["audio"]["seconds"])
    assert described["recipe"]["audio"] == {"codec": "aac", "sample_rate": 16000, "channels": 2}
    text = run_cli("inspect", "clip.mp4").stdout
    assert "audio: aac, 16000 Hz, 2 channel(s)" in text


def test_webm_carries_opus(generate_ltx2):
    from vidgen.media.readback import read_recipe

    result = generate_ltx2("-o", "clip.webm", "-q")
    assert result.exit_code == 0, result.stderr
    audio = read_streams(Path("clip.webm"))["audio"]
    # Opus always decodes at 48 kHz; it was encoded from the model's 16 kHz, which Opus takes
    # as it is: its header and the recipe both say so.
    assert (audio["codec"], audio["channels"]) == ("opus", 2)
    assert opus_input_rate(Path("clip.webm")) == 16000
    assert read_recipe(Path("clip.webm"))["audio"] == {"codec": "opus", "sample_rate": 16000, "channels": 2}
    assert_same_length(audio["seconds"])


def test_gif_gets_a_wav_beside_it_and_says_so(generate_ltx2, run_cli):
    result = generate_ltx2("-o", "clip.gif")
    assert result.exit_code == 0, result.stderr
    assert "a GIF carries no sound: the audio is in clip.wav" in result.stderr
    with wave.open("clip.wav") as file:
        assert (file.getframerate(), file.getnchannels(), file.getsampwidth()) == (16000, 2, 2)
        assert file.getnframes() == round(FRAMES / FPS * 16000)  # fitted exactly to the video
        samples = np.frombuffer(file.readframes(file.getnframes()), dtype="<i2")
    assert samples.std() > 0, "a silent WAV means the vocoder's output was lost"
    assert not [p.name for p in Path.cwd().iterdir() if p.name.startswith(".")], "temporary file left behind"
    described = json.loads(run_cli("inspect", "clip.gif", "--json").stdout)
    assert described["audio"]["file"] == str(Path("clip.wav").resolve())

    again = generate_ltx2("-o", "clip.gif", "--overwrite", "-q")
    assert again.exit_code == 0, again.stderr
    Path("clip.gif").unlink()  # the GIF may go, the WAV stays: it is refused too
    refused = generate_ltx2("-o", "clip.gif", "-q")
    assert refused.exit_code == 2
    assert refused.stderr.strip().splitlines() == ["Error: clip.wav already exists (pass --overwrite to replace it)"]
    assert not Path("clip.gif").exists()


def test_png_folder_gets_a_wav_beside_it(generate_ltx2):
    result = generate_ltx2("-o", "frames/", "-q")
    assert result.exit_code == 0, result.stderr
    assert "PNG frames carry no sound: the audio is in frames.wav" in result.stderr
    assert len(list(Path("frames").glob("frame_*.png"))) == FRAMES
    with wave.open("frames.wav") as file:
        assert file.getnframes() == round(FRAMES / FPS * 16000)


def test_no_audio_leaves_the_sound_out(generate_ltx2):
    result = generate_ltx2("-o", "quiet.mp4", "--no-audio", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["audio"] is False
    streams = read_streams(Path("quiet.mp4"))
    assert streams == {"frames": FRAMES, "audio": None}
    from vidgen.media.readback import read_recipe

    assert read_recipe(Path("quiet.mp4"))["audio"] is False


def test_standard_output_carries_the_audio(generate_ltx2, tmp_path):
    result = generate_ltx2("-o", "-", "-q")
    assert result.exit_code == 0, result.stderr
    piped = tmp_path / "piped.mp4"
    piped.write_bytes(result.stdout_bytes)
    audio = read_streams(piped)["audio"]
    assert audio["codec"] == "aac"
    assert_same_length(audio["seconds"])


def test_batch_carries_the_audio(run_cli, tiny_pipeline_dir, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a fox barking\na dog howling\n")
    folder = tiny_pipeline_dir("LTX2Pipeline")
    result = run_cli("batch", prompts, "-O", "out", "--model", folder, *TINY_LTX2[:-2], "--json", "-q")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 2
    for record in records:
        assert record["settings"]["audio"] == {"codec": "aac", "sample_rate": 16000, "channels": 2}
        audio = read_streams(Path(record["path"]))["audio"]
        assert audio["codec"] == "aac"
        assert_same_length(audio["seconds"])
    silent = run_cli("batch", prompts, "-O", "quiet", "--model", folder, *TINY_LTX2[:-2], "--json", "-q", "--no-audio")
    assert silent.exit_code == 0, silent.stderr
    for line in silent.stdout.splitlines():
        assert json.loads(line)["settings"]["audio"] is False
        assert read_streams(Path(json.loads(line)["path"]))["audio"] is None


def test_a_silent_model_writes_no_audio_stream(generate_tiny):
    result = generate_tiny("a red circle", "-o", "silent.mp4", "--json", "--seed", "1")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["audio"] is False
    assert read_streams(Path("silent.mp4"))["audio"] is None


def test_fit_to_video_pads_with_silence_or_trims():
    tone = np.ones((2, 100), dtype=np.float32)
    padded = fit_to_video(Audio(tone, 100), frames=12, fps=8)  # 1.5 s
    assert padded.samples.shape == (2, 150)
    assert padded.samples[:, :100].min() == 1 and not padded.samples[:, 100:].any()
    trimmed = fit_to_video(Audio(tone, 100), frames=4, fps=8)  # 0.5 s
    assert trimmed.samples.shape == (2, 50)


def _tone(seconds: float, rate: int) -> Audio:
    t = np.arange(round(seconds * rate)) / rate
    wave_ = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return Audio(np.stack([wave_, wave_]), rate)


def test_a_soundtrack_longer_than_the_video_is_refused_and_nothing_is_left(tmp_path):
    """write_video checks the encoded file: audio that outlasts the video by more than a
    frame (a caller that skipped fit_to_video) is an error, not a file."""
    from vidgen.errors import GenerationError
    from vidgen.media.video import write_video

    folder = tmp_path / "out"
    folder.mkdir()
    frames = np.zeros((FRAMES, 32, 32, 3), dtype=np.uint8)
    with pytest.raises(GenerationError, match="holds 3.125 s of audio for 1.125 s of video"):
        write_video(frames, folder / "long.mp4", fps=FPS, recipe={}, audio=_tone(FRAMES / FPS + 2, 16000))
    assert list(folder.iterdir()) == []  # neither the video nor the temporary WAV


def test_opus_takes_a_rate_it_cannot_encode_at_48k(tmp_path):
    from vidgen.media.video import write_video

    frames = np.zeros((FRAMES, 32, 32, 3), dtype=np.uint8)
    path = write_video(frames, tmp_path / "clip.webm", fps=FPS, recipe={}, audio=fit_to_video(_tone(1.0, 22050), FRAMES, FPS))
    audio = read_streams(path)["audio"]
    assert audio["codec"] == "opus"
    # Encoded at 48 kHz by vidgen's choice: left to itself, ffmpeg picks the nearest rate Opus
    # takes (24 kHz for this 22.05 kHz tone). The decoded rate is 48 kHz either way.
    assert opus_input_rate(path) == 48000
    assert_same_length(audio["seconds"])
