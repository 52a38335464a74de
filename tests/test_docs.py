"""The docs a reader finds: the README fits a first visit, every relative link in the README, the changelog and
docs/ resolves, and every folder under docs/results stays small enough to read (one report per study)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
MAX_ENTRIES = 10


def relative_links(text: str) -> list[str]:
    """The link targets of a markdown text outside code blocks and inline code that point into the repository."""
    text = FENCE.sub("", text)
    text = re.sub(r"`[^`\n]*`", "", text)
    targets = [m.group(1) for m in LINK.finditer(text)]
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


def test_relative_links_finds_links_outside_code_only():
    text = "[a](x.md) ![b](img/y.png#top) [web](https://e.org) [here](#anchor)\n```\n[c](gone.md)\n```\n`[d](no.md)`"
    assert relative_links(text) == ["x.md", "img/y.png#top"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page):
    broken = [t for t in relative_links(page.read_text()) if not (page.parent / t.split("#")[0]).exists()]
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"


def test_readme_is_a_first_visit():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150 and len(text) <= 10_000
    first_block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    assert first_block.startswith("make demo") and "\nmake test" in first_block
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert pictures and all((ROOT / p).is_file() for p in pictures)


@pytest.mark.parametrize(
    "folder",
    sorted(p for p in (ROOT / "docs" / "results").rglob("*") if p.is_dir()) or [None],
    ids=lambda p: p.relative_to(ROOT).as_posix() if p else "none",
)
def test_every_results_folder_is_small(folder):
    if folder is None:
        pytest.skip("no results folders")
    entries = sorted(p.name for p in folder.iterdir() if p.name != "__pycache__")
    assert len(entries) <= MAX_ENTRIES, f"{folder.relative_to(ROOT)} holds {len(entries)} entries: {entries}"


def test_every_study_has_its_report():
    studies = [p for p in (ROOT / "docs" / "results").iterdir() if p.is_dir()]
    assert studies
    assert all((p / "report.md").is_file() for p in studies), [
        p.name for p in studies if not (p / "report.md").is_file()
    ]
