"""The gallery page beside a batch's manifest (DIR/index.html): what `vidgen batch` writes
when it ends, `--no-gallery`, `vidgen gallery DIR`, and the page in a real headless
Chromium (marked `browser`: `pytest -m browser` runs it alone).

One batch of the fake pipeline (tests/fake_pipeline.py; 3 videos, MP4 and WebM, and a line that fails, one
prompt hostile HTML) is made once for the module and only read by the tests."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.browser import Browser, file_url, find_chromium
from tests.conftest import FAKE_ARGS
from vidgen.batch import MANIFEST_NAME
from vidgen.media.readback import read_frames

HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)> a blue square"
LINES = [
    {"prompt": "a red circle moves left"},
    {"prompt": HOSTILE, "steps": 3},
    {"prompt": "a green triangle grows", "output": "triangle.webm"},
    {"prompt": "a line that cannot run", "steps": 0},
]


def _write_lines(path: Path, lines: list[dict]) -> None:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


@pytest.fixture(scope="module")
def batch_dir(tmp_path_factory, fake_model_dir) -> Path:
    """`vidgen batch` of LINES, run once for the module (its own home, no server)."""
    root = tmp_path_factory.mktemp("gallery")
    _write_lines(root / "prompts.jsonl", LINES)
    env = {"VIDGEN_HOME": str(root / "home"), "HF_HUB_OFFLINE": "1", "VIDGEN_NO_SERVER": "1"}
    from vidgen.cli.app import app

    result = CliRunner().invoke(
        app,
        ["batch", str(root / "prompts.jsonl"), "-O", str(root / "out"), "--model", str(fake_model_dir), *FAKE_ARGS],
        env=env,
        prog_name="vidgen",
    )
    assert result.exit_code == 1, result.stderr  # one line failed
    assert "gallery: " in result.stderr
    return root / "out"


class _Page(HTMLParser):
    """The page's cards as the browser would parse them: tag, attributes and text."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: list[dict] = []
        self.scripts = 0
        self._class: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if tag == "figure":
            self.cards.append(
                {"class": attributes.get("class"), "prompt_attribute": attributes.get("data-prompt"), "media": [], "text": {}, "links": []}
            )
        elif self.cards and tag in ("video", "img", "audio"):
            self.cards[-1]["media"].append((tag, attributes))
        elif self.cards and tag == "a":
            self.cards[-1]["links"].append(attributes.get("href"))
        self._class.append(attributes.get("class") or "")

    def handle_endtag(self, tag):
        if self._class:
            self._class.pop()

    def handle_data(self, data):
        if self.cards and self._class and self._class[-1]:
            texts = self.cards[-1]["text"]
            texts[self._class[-1]] = texts.get(self._class[-1], "") + data


def parse(page: Path) -> _Page:
    parser = _Page()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def test_a_batch_writes_a_page_of_its_videos_in_line_order(batch_dir):
    records = [json.loads(line) for line in (batch_dir / MANIFEST_NAME).read_text().splitlines()]
    page = parse(batch_dir / "index.html")

    assert page.scripts == 1  # the page's own; the hostile prompt added none
    assert [card["text"]["prompt"] for card in page.cards] == [line["prompt"] for line in LINES]
    assert HOSTILE.lower() == page.cards[1]["prompt_attribute"]  # the filter's copy, escaped too
    for card, record in zip(page.cards[:3], sorted(records, key=lambda r: r["line"])[:3]):
        ((tag, media),) = card["media"]
        assert tag == "video" and media["src"] == record["output"] and "muted" in media and "loop" in media
        assert (batch_dir / media["src"]).is_file()
        assert card["links"] == [record["output"]]
        assert f"seed {record['seed']}" in card["text"]["meta"] and f"{record['seconds']:.1f} s" in card["text"]["meta"]
        # the poster: a small JPEG of the middle frame, in the hidden folder
        poster = batch_dir / media["poster"]
        assert media["poster"].startswith(".posters/") and Image.open(poster).format == "JPEG"
        middle = read_frames(batch_dir / record["output"])[4].astype(int)  # 9 frames
        assert np.abs(np.asarray(Image.open(poster).convert("RGB")).astype(int) - middle).mean() < 8  # JPEG's loss
    assert page.cards[1]["text"]["diff"] == "steps 3"  # only the hostile line set steps
    assert "diff" not in page.cards[0]["text"] and "diff" not in page.cards[2]["text"]
    failed = page.cards[3]
    assert failed["class"] == "card failed" and failed["media"] == [] and failed["links"] == []
    assert failed["text"]["error"] == "--steps must be at least 1, got 0"


def test_no_gallery_leaves_it_out_and_vidgen_gallery_writes_it_later(run_cli, fake_model_dir):
    _write_lines(Path("prompts.jsonl"), LINES[:1])

    made = run_cli("batch", "prompts.jsonl", "-O", "out", "--model", fake_model_dir, *FAKE_ARGS, "--no-gallery")

    assert made.exit_code == 0, made.stderr
    out = Path("out")
    assert not (out / "index.html").exists() and not (out / ".posters").exists() and "gallery" not in made.stderr
    shutil.move(out, "old")  # any folder `vidgen batch` wrote: the page comes from the manifest alone

    written = run_cli("gallery", "old")

    assert written.exit_code == 0, written.stderr
    assert written.stdout.strip() == str(Path("old/index.html"))
    page = parse(Path("old/index.html"))
    assert [card["text"]["prompt"] for card in page.cards] == [LINES[0]["prompt"]]
    assert (Path("old") / page.cards[0]["media"][0][1]["poster"]).is_file()


def test_resume_writes_the_page_again_with_the_new_videos(run_cli, fake_model_dir):
    _write_lines(Path("prompts.jsonl"), [LINES[0], LINES[3]])
    first = run_cli("batch", "prompts.jsonl", "-O", "out", "--model", fake_model_dir, *FAKE_ARGS)
    assert first.exit_code == 1 and "gallery: " in first.stderr
    assert [card["class"] for card in parse(Path("out/index.html")).cards] == ["card", "card failed"]

    _write_lines(Path("prompts.jsonl"), [LINES[0], {"prompt": "a line that runs now"}])
    again = run_cli("batch", "prompts.jsonl", "-O", "out", "--model", fake_model_dir, *FAKE_ARGS, "--resume")

    assert again.exit_code == 0, again.stderr
    cards = parse(Path("out/index.html")).cards
    assert [(card["class"], card["text"]["prompt"]) for card in cards] == [("card", LINES[0]["prompt"]), ("card", "a line that runs now")]
    assert len(list(Path("out/.posters").iterdir())) == 2


def test_a_soundtrack_stays_on_the_page(run_cli, tiny_pipeline_dir):
    """ltx2 makes sound: an MP4 carries it (the card says so; a click unmutes it), a GIF has
    a WAV beside it, which the card plays on a click."""
    _write_lines(Path("prompts.jsonl"), [{"prompt": "a fox barking", "output": "fox.gif"}, {"prompt": "a dog howling"}])
    ltx2 = [
        "--preset",
        "ltx2",
        "--model",
        tiny_pipeline_dir("LTX2Pipeline"),
        "--steps",
        "2",
        "--size",
        "32x32",
        "--frames",
        "9",
        "--fps",
        "8",
        "--device",
        "cpu",
        "--dtype",
        "float32",
    ]

    result = run_cli("batch", "prompts.jsonl", "-O", "out", *ltx2)

    assert result.exit_code == 0, result.stderr
    assert Path("out/fox.wav").is_file()
    gif, mp4 = parse(Path("out/index.html")).cards
    assert [tag for tag, _ in gif["media"]] == ["img", "audio"] and gif["media"][1][1]["src"] == "fox.wav"
    assert gif["media"][0][1]["data-animated"] == "fox.gif" and gif["media"][0][1]["src"].startswith(".posters/")
    assert [tag for tag, _ in mp4["media"]] == ["video"]
    assert gif["text"]["meta"].endswith(" · sound") and mp4["text"]["meta"].endswith(" · sound")


def test_vidgen_gallery_refuses_a_folder_that_is_not_a_batch(run_cli):
    Path("plain").mkdir()
    for folder, message in [("missing", "no such folder: missing"), ("plain", "plain has no manifest.jsonl")]:
        result = run_cli("gallery", folder)
        assert result.exit_code == 2
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.stderr
    assert list(Path("plain").iterdir()) == []


def test_a_manifest_cannot_lead_the_page_out_of_its_folder(run_cli, batch_dir):
    """`vidgen gallery` reads any folder's manifest: names that lead out of DIR, or a
    checksum that is a path, neither link nor write outside it."""
    Path("dir").mkdir()
    video = next(batch_dir.glob("*.mp4"))
    shutil.copy(video, "outside.mp4")
    shutil.copy(video, "dir/inside.mp4")
    records = [
        {"line": 1, "video": 1, "prompt": "up", "seed": 1, "output": "../outside.mp4", "status": "done", "sha256": "0" * 64},
        {"line": 2, "video": 1, "prompt": "absolute", "seed": 2, "output": str(Path("outside.mp4").resolve()), "status": "done"},
        {"line": 3, "video": 1, "prompt": "in", "seed": 3, "output": "inside.mp4", "status": "done", "sha256": "../../escaped"},
    ]
    _write_lines(Path("dir") / MANIFEST_NAME, records)

    result = run_cli("gallery", "dir")

    assert result.exit_code == 0, result.stderr
    cards = parse(Path("dir/index.html")).cards
    assert [card["media"] for card in cards[:2]] == [[], []] and [card["links"] for card in cards] == [[], [], ["inside.mp4"]]
    assert cards[2]["media"][0][1]["poster"].startswith(".posters/") and (Path("dir") / cards[2]["media"][0][1]["poster"]).is_file()
    assert sorted(path.name for path in Path.cwd().rglob("*") if path.is_file()) == sorted(
        ["outside.mp4", "inside.mp4", MANIFEST_NAME, "index.html", Path(cards[2]["media"][0][1]["poster"]).name]
    )


# ---- in a real browser ----

# Resolves once every video element has its first frame (readyState >= 2) or has failed:
# each card is hovered, as a user would (the page loads a video only then).
_FIRST_FRAMES = """Promise.all(Array.from(document.querySelectorAll("video")).map(video => new Promise(done => {
  const report = () => done({state: video.readyState, error: video.error && video.error.code, muted: video.muted});
  if (video.readyState >= 2) return report();
  video.addEventListener("loadeddata", report);
  video.addEventListener("error", report);
  video.closest(".card").dispatchEvent(new MouseEvent("mouseenter"));
})))"""
_VISIBLE = """(text => { const filter = document.getElementById("filter"); filter.value = text;
  filter.dispatchEvent(new Event("input"));
  return Array.from(document.querySelectorAll(".card")).filter(card => card.offsetParent !== null)
    .map(card => card.querySelector(".prompt").textContent); })"""


@pytest.fixture(scope="module")
def chromium():
    executable, why = find_chromium()
    if executable is None:
        pytest.skip(f"no headless Chromium: {why}")
    browser = Browser(executable)
    yield browser
    browser.close()


@pytest.mark.browser
def test_the_page_in_headless_chromium(batch_dir, chromium):
    dialogs: list[str] = []

    def on_event(event):  # an alert() would block the page: record it and close it
        if event.get("method") == "Page.javascriptDialogOpening":
            dialogs.append(event["params"]["message"])
            chromium.send("Page.handleJavaScriptDialog", {"accept": True}, event.get("sessionId"))

    chromium.on_event = on_event
    session = chromium.page()
    chromium.send("Page.navigate", {"url": file_url(batch_dir / "index.html")}, session)
    chromium.wait_for("Page.loadEventFired", session)

    # the page opened without loading any video: each shows its poster until hovered
    opened = chromium.evaluate(
        session, 'Array.from(document.querySelectorAll("video")).map(v => [v.readyState, v.poster.endsWith(".jpg")])'
    )
    assert opened == [[0, True]] * 3
    # 3 videos whose first frame decodes (H.264 MP4 twice, VP9 WebM), muted until clicked
    videos = chromium.evaluate(session, _FIRST_FRAMES)
    assert [video["error"] for video in videos] == [None, None, None]
    assert len(videos) == 3 and all(video["state"] >= 2 and video["muted"] for video in videos), videos
    # the failed line in its place, with its error
    errors = chromium.evaluate(
        session, 'Array.from(document.querySelectorAll(".card")).map(c => c.querySelector(".error")?.textContent ?? null)'
    )
    assert errors == [None, None, None, "--steps must be at least 1, got 0"]
    # the hostile prompt is text: shown as written, nothing of it ran or was made an element
    assert chromium.evaluate(session, 'document.querySelectorAll(".card")[1].querySelector(".prompt").textContent') == HOSTILE
    assert chromium.evaluate(session, 'document.querySelectorAll("script").length + document.querySelectorAll("main img").length') == 1
    assert dialogs == []
    # the filter narrows by prompt text, in any case, and an empty one shows all
    assert chromium.evaluate(session, f"{_VISIBLE}('CIRCLE')") == ["a red circle moves left"]
    assert chromium.evaluate(session, f"{_VISIBLE}('script')") == [HOSTILE]
    assert chromium.evaluate(session, f"{_VISIBLE}('no such prompt')") == []
    assert len(chromium.evaluate(session, f"{_VISIBLE}('')")) == 4
    # a click plays it with its sound and the controls
    clicked = chromium.evaluate(session, 'const v = document.querySelector("video"); v.click(); [v.muted, v.controls]')
    assert clicked == [False, True]
