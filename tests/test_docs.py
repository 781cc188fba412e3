"""The docs stay a front page and pages by task: README.md short, no title carrying the history of
the work (an issue, a session, a round, a target), and every relative link (file and #anchor)
leading somewhere. Pure file reading."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MOST_LINES = 210

HISTORY = re.compile(
    r"\bissues?\b|\bsessions?\b|\(target"
    r"|\b(first|second|third|fourth|fifth|sixth|next|last|later|earlier|new|\d+(st|nd|rd|th)?)\s+rounds?\b"
    r"|\brounds?\s+(\d+|one|two|three|of work)\b",
    re.IGNORECASE,
)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")


def _prose_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks: a `# comment` in a shell example is no title."""
    lines, fenced = [], False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def _titles(path: Path) -> list[tuple[int, str]]:
    return [(number, line) for number, line in _prose_lines(path) if re.match(r"#{1,6} ", line)]


def _slug(title: str) -> str:
    """GitHub's anchor for a Markdown title: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"^#{1,6} ", "", title).strip().lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a title anchors by its text
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@cache
def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for _, title in _titles(path):
        slug = _slug(title)
        anchors.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def test_the_readme_is_a_front_page():
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= README_MOST_LINES, f"README.md has {lines} lines: move the detail to a page of docs/ and link it"


def test_no_title_carries_the_history_of_the_work():
    found = [f"{path.relative_to(ROOT)}:{number}: {title}" for path in PAGES for number, title in _titles(path) if HISTORY.search(title)]
    assert not found, "titles name their subject, not an issue, session, round or target:\n" + "\n".join(found)


def test_every_relative_link_leads_to_a_file_and_its_title():
    broken = []
    for path in PAGES:
        for number, line in _prose_lines(path):
            for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):
                if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                    continue
                file, _, anchor = target.partition("#")
                linked = (path.parent / file).resolve() if file else path
                where = f"{path.relative_to(ROOT)}:{number}: {target}"
                if not linked.exists():
                    broken.append(f"{where} (no such file)")
                elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
                    broken.append(f"{where} (no such title in {linked.name})")
    assert not broken, "relative links that lead nowhere:\n" + "\n".join(broken)
