"""The README and the docs: every relative link resolves, and nothing cites a document the
repository does not have."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.support.paths import REPO_ROOT

DOCUMENTS = sorted(
    [
        REPO_ROOT / "README.md",
        REPO_ROOT / "Data" / "README.md",
        REPO_ROOT / "bench" / "results.md",
        *(REPO_ROOT / "docs").glob("*.md"),
    ]
)
# [text](target) and <img src="target">; a target may carry a #fragment or a "title".
_LINK = re.compile(
    r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)"  # [text](target "title")
    r"|<img[^>]*\bsrc=\"([^\"]+)\""  # <img src="target">
)
_EXTERNAL = ("http://", "https://", "mailto:")


def relative_links(document: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", document.read_text(encoding="utf-8"), flags=re.DOTALL)
    targets = [a or b for a, b in _LINK.findall(text)]
    return [t for t in targets if not t.startswith(_EXTERNAL) and not t.startswith("#")]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_relative_link_resolves(document: Path) -> None:
    missing = [
        target
        for target in relative_links(document)
        if not (document.parent / target.split("#")[0]).exists()
    ]
    assert missing == [], f"{document.relative_to(REPO_ROOT)} links to what is not there"


def test_the_readme_links_every_page_in_docs() -> None:
    readme = set(relative_links(REPO_ROOT / "README.md"))
    pages = {f"docs/{page.name}" for page in (REPO_ROOT / "docs").glob("*.md")}
    assert sorted(pages - readme) == []


def test_the_readme_is_short() -> None:
    assert len((REPO_ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 200


def test_no_tracked_file_cites_a_document_the_repository_does_not_have() -> None:
    # The pattern is assembled here so that this file does not match itself.
    pattern = "|".join(["CONTRACT" + "S", "SPEC" + " §", "issue" + " [0-9]"])
    found = subprocess.run(
        ["git", "grep", "-n", "-E", pattern],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode not in (0, 1):
        pytest.skip(f"git grep is unavailable here: {found.stderr.strip()}")
    assert found.stdout == ""
