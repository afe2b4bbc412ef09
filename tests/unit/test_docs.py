"""The documentation a newcomer reads: a short README that links every page, and links that
lead somewhere."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def links(page: Path) -> list[str]:
    return [target for target in re.findall(r"\]\(([^)#\s]+)", page.read_text())
            if not target.startswith(("http://", "https://"))]


def test_the_readme_is_short_and_links_every_page_of_docs():
    assert len(README.encode()) <= 12 * 1024
    linked = {(ROOT / target).resolve() for target in links(ROOT / "README.md")}
    assert set((ROOT / "docs").glob("*.md")) <= linked


def test_every_relative_link_of_every_page_resolves():
    for page in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for target in links(page):
            assert (page.parent / target).exists(), f"{page.name}: {target}"
