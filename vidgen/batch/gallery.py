"""A batch folder's gallery: DIR/index.html, one self-contained page of its videos.

Read from DIR's manifest (so it also works for a folder made before galleries existed):
for each video, its latest record, in the order of the prompts file's lines; a card with
the video (MP4, WebM) or GIF, its prompt, seed, the settings that differ from the batch's,
the time it took and a link to the file; a failed line's card holds its error. The page
(gallery.html beside this module: data) has no network, no external script or style and
relative links only, so it opens from file://; a filter narrows the cards by prompt.

Each video gets a poster (its middle frame, a small JPEG in DIR/.posters/, named after
the video's SHA-256, so a rewrite only makes the new ones), so the page of a 500-video
batch opens without loading any video; a video loads when it is hovered or clicked.

"The batch's settings" are, for each recipe key, the value most of the batch's videos
share; a card shows the keys where its video differs. Prompts, errors and every other
text from the manifest are escaped (html.escape), so a prompt is shown, never run.

`vidgen batch` writes the page when it ends (its main process, after every process is
done); `vidgen gallery DIR` writes it again.
"""

from __future__ import annotations

import html
import json
import os
import re
import secrets
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from string import Template
from typing import Any
from urllib.parse import quote

from PIL import Image

from vidgen import __version__
from vidgen.batch.folder import MANIFEST_NAME, Manifest, file_sha256
from vidgen.errors import UsageError, VidgenError
from vidgen.media.audio import wav_beside
from vidgen.media.readback import read_frames_at

INDEX_NAME = "index.html"
POSTERS = ".posters"  # hidden: the folder stays a folder of videos
POSTER_WIDTH = 320  # posters are scaled down to this; a card is about as wide
TEMPLATE = Path(__file__).with_name("gallery.html")  # the page, as data
# Recipe keys a card never lists as a difference: shown otherwise, or the same by nature.
_OWN_KEYS = {"prompt", "seed", "vidgen_version"}


@dataclass
class _Card:
    record: dict[str, Any]

    @property
    def settings(self) -> dict[str, Any]:
        settings = self.record.get("settings")
        return settings if isinstance(settings, dict) else {}

    @property
    def output(self) -> str | None:
        """The video's path relative to DIR; None when the record names none, or one that
        would lead out of DIR (a manifest is data: `vidgen gallery` reads any folder's)."""
        output = self.record.get("output")
        if not isinstance(output, str) or not output:
            return None
        path = PurePosixPath(output)
        return None if path.is_absolute() or ".." in path.parts or "\\" in output else output

    @property
    def done(self) -> bool:
        return self.record.get("status") == "done"


def _latest_records(manifest: Manifest, out_dir: Path) -> list[_Card]:
    """One card per line and video: its latest record (a failed line run again with
    --resume shows how it went then); and a video an earlier record made under another
    name (the line changed since, or another prompts file wrote into DIR) while its file
    is there. In the order of the lines, then videos; the manifest's order breaks ties."""
    by_slot: dict[Any, dict[str, Any]] = {}
    by_output: dict[str, dict[str, Any]] = {}
    for record in manifest.records():
        slot = (record.get("line"), record.get("video"))
        by_slot.pop(slot, None)  # a later record moves its video to where that record stands
        by_slot[slot] = record
        output = record.get("output")
        if isinstance(output, str) and output:
            by_output.pop(output, None)
            by_output[output] = record
    shown = list(by_slot.values())
    current = {record.get("output") for record in shown}
    shown += [
        record
        for output, record in by_output.items()
        if output not in current and record.get("status") == "done" and (out_dir / output).is_file()
    ]

    def order(record: dict[str, Any]) -> tuple[int, int]:
        line, video = record.get("line"), record.get("video")
        return (line if isinstance(line, int) else 1 << 62, video if isinstance(video, int) else 0)

    return [_Card(record) for record in sorted(shown, key=order)]


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def batch_settings(cards: list[_Card]) -> dict[str, Any]:
    """For each recipe key, the value most videos of the batch share (done videos first:
    a failed line's settings may be partial)."""
    sources = [card.settings for card in cards if card.done and card.settings] or [card.settings for card in cards if card.settings]
    counts: dict[str, Counter] = {}
    values: dict[tuple[str, str], Any] = {}
    for settings in sources:
        for name, value in settings.items():
            if name in _OWN_KEYS:
                continue
            counts.setdefault(name, Counter())[_key(value)] += 1
            values[name, _key(value)] = value
    return {name: values[name, counter.most_common(1)[0][0]] for name, counter in counts.items()}


def differences(settings: dict[str, Any], batch: dict[str, Any]) -> dict[str, Any]:
    """The settings of one video that are not the batch's."""
    return {name: value for name, value in settings.items() if name in batch and _key(value) != _key(batch[name])}


def _show(value: Any) -> str:
    return value if isinstance(value, str) else _key(value)


def _listing(settings: dict[str, Any]) -> str:
    return " · ".join(f"{name} {_show(value)}" for name, value in settings.items())


def _poster(out_dir: Path, card: _Card) -> str | None:
    """The card's poster (its video's middle frame), made if missing: its path relative to
    DIR, or None when the video cannot be read (the card then says so)."""
    path = out_dir / card.output
    sha256 = card.record.get("sha256")
    if not (isinstance(sha256, str) and re.fullmatch(r"[0-9a-f]{64}", sha256)):
        sha256 = file_sha256(path)  # a record without one (or not one: it names a file here)
    name = sha256[:24] + ".jpg"
    poster = out_dir / POSTERS / name
    if poster.is_file():
        return f"{POSTERS}/{name}"
    frames = card.settings.get("frames")
    try:
        try:
            frame = read_frames_at(path, [frames // 2 if isinstance(frames, int) and frames > 0 else 0])[0]
        except UsageError:  # the recipe's count is not the file's (an extended input video): the first frame
            frame = read_frames_at(path, [0])[0]
    except (VidgenError, OSError, ValueError):
        return None
    picture = Image.fromarray(frame)
    if picture.width > POSTER_WIDTH:
        picture = picture.resize((POSTER_WIDTH, max(1, round(picture.height * POSTER_WIDTH / picture.width))), Image.Resampling.LANCZOS)
    temporary = poster.with_name(f".{poster.stem}.{secrets.token_hex(4)}.part.jpg")  # folder.remove_stale_temp_files' pattern
    try:
        poster.parent.mkdir(exist_ok=True)
        picture.save(temporary, "JPEG", quality=85)
        os.replace(temporary, poster)
    except OSError:  # the card goes without (and says so); the page is still written
        temporary.unlink(missing_ok=True)
        return None
    return f"{POSTERS}/{name}"


def _href(relative: str) -> str:
    return html.escape(quote(relative))


def _card_html(out_dir: Path, card: _Card, batch: dict[str, Any]) -> tuple[str, str | None]:
    """One card's HTML, and the poster it uses."""
    record, settings = card.record, card.settings
    prompt = str(record.get("prompt") or "")
    width, height = settings.get("width"), settings.get("height")
    ratio = (
        f' style="--ratio: {width} / {height}"' if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0 else ""
    )
    meta = [f"seed {record['seed']}" if record.get("seed") is not None else None]
    if isinstance(record.get("seconds"), (int, float)) and record.get("seconds"):
        meta.append(f"{record['seconds']:.1f} s")
    meta.append(f"line {record.get('line')}" + (f" video {record.get('video')}" if record.get("video") not in (None, 1) else ""))
    parts = []
    poster = None
    path = out_dir / card.output if card.output else None
    if card.done and path is not None and path.is_file():
        poster = _poster(out_dir, card)
        href = _href(card.output)
        poster_attribute = f' poster="{_href(poster)}"' if poster else ""
        if path.suffix.lower() == ".gif":
            still = _href(poster) if poster else href
            parts.append(f'<img src="{still}" data-poster="{still}" data-animated="{href}" alt="">')
            wav = wav_beside(path)  # a GIF's soundtrack is a WAV beside it (vidgen.media.audio)
            if wav.is_file():
                parts.append(f'<audio src="{_href(wav.relative_to(out_dir).as_posix())}" loop preload="none"></audio>')
                meta.append("sound")
        else:
            parts.append(f'<video src="{href}"{poster_attribute} muted loop playsinline preload="none"></video>')
            if settings.get("audio"):  # the recipe says what was written: {"codec": ...} or false
                meta.append("sound")
        if poster is None:
            parts.append('<p class="error">no poster frame: this video could not be read, or its poster written</p>')
    elif card.done:
        parts.append(f'<div class="missing">{html.escape(card.output or "no file")} is missing</div>')
    else:
        parts.append('<div class="missing">failed</div>')
    caption = [f'<p class="prompt">{html.escape(prompt)}</p>', f'<p class="meta">{html.escape(" · ".join(m for m in meta if m))}</p>']
    if not card.done:
        caption.append(f'<p class="error">{html.escape(str(record.get("error") or record.get("status") or "failed"))}</p>')
    changed = differences(settings, batch)
    if changed:
        caption.append(f'<p class="diff">{html.escape(_listing(changed))}</p>')
    if card.done and card.output:
        caption.append(f'<a href="{_href(card.output)}">{html.escape(card.output)}</a>')
    classes = "card" if card.done else "card failed"
    return (
        f'<figure class="{classes}" data-prompt="{html.escape(prompt.lower())}"{ratio}>{"".join(parts)}'
        f"<figcaption>{''.join(caption)}</figcaption></figure>"
    ), poster


def _remove_old_posters(out_dir: Path, used: set[str]) -> None:
    """Posters of videos no longer in the page (made again, or gone)."""
    folder = out_dir / POSTERS
    if folder.is_dir():
        for poster in folder.glob("*.jpg"):
            if f"{POSTERS}/{poster.name}" not in used and not poster.name.startswith("."):
                poster.unlink(missing_ok=True)


def write_gallery(out_dir: Path | str) -> Path:
    """DIR/index.html (and DIR/.posters/) from DIR's manifest, replacing the page there."""
    out_dir = Path(out_dir).expanduser()
    if not out_dir.is_dir():
        raise UsageError(f"no such folder: {out_dir}")
    manifest = Manifest(out_dir)
    if not manifest.path.is_file():
        raise UsageError(f"{out_dir} has no {MANIFEST_NAME}: not a folder `vidgen batch` wrote")
    cards = _latest_records(manifest, out_dir)
    batch = batch_settings(cards)
    rendered, used = [], set()
    for card in cards:
        text, poster = _card_html(out_dir, card, batch)
        rendered.append(text)
        if poster:
            used.add(poster)
    failed = sum(1 for card in cards if not card.done)
    summary = f"{len(cards) - failed} videos" + (f", {failed} failed" if failed else "")
    shown = {name: value for name, value in batch.items() if value not in (None, "", [], {})}
    page = Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
        version=html.escape(__version__),
        title=html.escape(out_dir.resolve().name or str(out_dir)),
        summary=html.escape(summary),
        batch=html.escape(("batch: " + _listing(shown)) if shown else ""),
        cards="\n".join(rendered) if rendered else '<p class="meta">no videos yet</p>',
    )
    target = out_dir / INDEX_NAME
    temporary = out_dir / f".{INDEX_NAME}.{secrets.token_hex(4)}.part.html"
    try:
        temporary.write_text(page, encoding="utf-8")
        os.replace(temporary, target)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise UsageError(f"cannot write {target}: {error.strerror or error}") from error
    _remove_old_posters(out_dir, used)
    return target
