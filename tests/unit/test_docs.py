"""The README and the pages under docs/: links that lead somewhere, a README that stays short."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.test_metrics import BACKUP_JOB

ROOT = Path(__file__).resolve().parent.parent.parent
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
# [text](target) and ![alt](target); the target ends at the first space or parenthesis.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```$", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")


def prose(text: str) -> str:
    """The text without its code: links inside code blocks or `code` are not links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the headings of a page (a repeated heading gets -1, -2...)."""
    seen: Counter[str] = Counter()
    found = set()
    for heading in re.findall(r"^#+ (.+)$", FENCE.sub("", page.read_text()), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        found.add(f"{slug}-{seen[slug]}" if seen[slug] else slug)
        seen[slug] += 1
    return found


def relative_links(page: Path) -> list[str]:
    return [t for t in LINK.findall(prose(page.read_text())) if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(page: Path) -> None:
    broken = []
    for link in relative_links(page):
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{link}: no file {target.relative_to(ROOT)}")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(f"{link}: no heading #{anchor} in {target.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_readme_stays_a_first_screen_and_links_to_every_page() -> None:
    assert len(README.read_text().splitlines()) < 220
    linked = {(ROOT / link.partition("#")[0]).resolve() for link in relative_links(README)}
    assert set(PAGES) <= linked


def test_the_readmes_install_command_is_one_the_install_test_runs() -> None:
    readme = re.search(r"^## Install on a server\n.*?^```sh\n(.*?)^```$", README.read_text(),
                       re.M | re.S)  # fmt: skip
    install = re.search(
        r"^<!-- install\.sh: install -->\n```sh\n(.*?)^```$",
        (ROOT / "docs" / "install.md").read_text(),
        re.M | re.S,
    )
    assert readme is not None
    assert install is not None
    assert set(readme[1].splitlines()) <= set(install[1].splitlines())


def test_the_job_metrics_snippet_of_the_docs_is_the_one_the_metrics_test_runs() -> None:
    snippet = BACKUP_JOB.partition("BACKUP_SIZE=123456\n")[2]
    assert f"```sh\n{snippet}```\n" in (ROOT / "docs" / "metrics.md").read_text()
