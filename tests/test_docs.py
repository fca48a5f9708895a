"""Every relative link in README.md, CONTRIBUTING.md, docs/*.md and bench/RESULTS.md points to an existing
file, and a `#heading` part to a heading of that page (GitHub's anchor rules)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(
    [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "bench" / "RESULTS.md", *(ROOT / "docs").glob("*.md")]
)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)


def prose(text: str) -> str:
    """Markdown without fenced blocks and inline code (links there are not links)."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped (not - or _), spaces to -, repeats numbered."""
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", path.read_text()).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_slug_rules(tmp_path):
    p = tmp_path / "probe.md"
    p.write_text(
        "# The steps by hand\n## `faket qc`: figures and metrics\n```\n# not a heading\n```\n"
        "## Why (bench/realism.py)\n## Why (bench/realism.py)\n"
    )
    assert anchors(p) == {
        "the-steps-by-hand",
        "faket-qc-figures-and-metrics",
        "why-benchrealismpy",
        "why-benchrealismpy-1",
    }


def links(path: Path) -> list[str]:
    return LINK.findall(prose(path.read_text()))


def test_pages_exist_and_have_links():
    assert (ROOT / "docs").is_dir() and len(PAGES) > 3
    assert links(ROOT / "README.md"), "README.md links to nothing"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        if not dest.is_relative_to(ROOT):
            broken.append(f"{target} (outside the repository)")
        elif not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target} (no heading '#{anchor}' in {dest.relative_to(ROOT)})")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: " + "; ".join(broken)
