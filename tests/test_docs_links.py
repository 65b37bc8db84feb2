"""The README and the docs site hold together where MkDocs cannot see, or before it runs.

``mkdocs build --strict`` (in scripts/test.sh) checks the links between docs pages with its
own heading ids; GitHub renders the same files with its own. This checks the README's links
(outside the site), that every linked anchor exists under both GitHub's and MkDocs' heading
ids, that the nav names every page, and that the README stays a five-minute read whose
targets table is the one on the site's home page.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)\)")


def _outside_fences(text: str) -> list[str]:
    """The lines of ``text`` outside fenced code blocks."""
    out, fence = [], None
    for line in text.splitlines():
        m = re.match(r"^\s*(`{3,}|~{3,})", line)
        if m and fence is None:
            fence = m.group(1)
        elif m and fence is not None and line.strip().startswith(fence):
            fence = None
        elif fence is None:
            out.append(line)
    return out


def _prose(text: str) -> str:
    """The text outside fenced blocks and inline code, where links are links."""
    return "\n".join(re.sub(r"`[^`]*`", "", line) for line in _outside_fences(text))


def _mkdocs_slug(title: str) -> str:  # Python-Markdown's toc.slugify, as MkDocs uses it
    value = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii")
    value = re.sub(r"[^\w\s-]", "", value).strip().lower()
    return re.sub(r"[-\s]+", "-", value)


def _github_slug(title: str) -> str:
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> tuple[set[str], set[str]]:
    """Heading ids of a page as MkDocs and as GitHub make them (duplicates numbered)."""
    mk: dict[str, int] = {}
    gh: dict[str, int] = {}
    mk_ids, gh_ids = set(), set()
    for line in _prose_with_headings(path.read_text()):
        title = re.sub(r"`([^`]*)`", r"\1", line.lstrip("#").strip())
        title = re.sub(r"\*\*([^*]*)\*\*|\*([^*]*)\*", lambda m: m.group(1) or m.group(2), title)
        for slug, seen, ids, sep in (
            (_mkdocs_slug(title), mk, mk_ids, "_"),
            (_github_slug(title), gh, gh_ids, "-"),
        ):
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            ids.add(slug if n == 0 else f"{slug}{sep}{n}")
    return mk_ids, gh_ids


def _prose_with_headings(text: str) -> list[str]:
    return [line for line in _outside_fences(text) if re.match(r"^#{1,6} ", line)]


def _broken_links(path: Path) -> list[str]:
    problems = []
    for target in LINK.findall(_prose(path.read_text())):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        where = f"{path.relative_to(ROOT)} -> {target}"
        if not dest.exists():
            problems.append(f"{where}: no such file")
        elif anchor:
            if dest.suffix != ".md":
                problems.append(f"{where}: an anchor into a file that is not a page")
                continue
            mk_ids, gh_ids = _anchors(dest)
            if anchor not in mk_ids:
                problems.append(f"{where}: no such heading on the MkDocs site")
            if anchor not in gh_ids:
                problems.append(f"{where}: no such heading on GitHub")
    return problems


def test_every_link_of_the_readme_and_the_docs_resolves_on_github_and_on_the_site():
    problems = [p for path in [ROOT / "README.md", *PAGES] for p in _broken_links(path)]
    assert problems == []


def test_the_link_check_sees_a_missing_page_and_a_heading_github_names_differently(
    tmp_path, monkeypatch
):
    (tmp_path / "a.md").write_text(
        "# A\n\n## `serverless` — reference model\n\n## Plain words\n\n```\n[x](nowhere.md)\n```\n"
    )
    (tmp_path / "b.md").write_text(
        "[ok](a.md#plain-words) [gone](c.md) [dash](a.md#serverless-reference-model) `[no](d.md)`\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert _broken_links(tmp_path / "a.md") == []
    assert _broken_links(tmp_path / "b.md") == [
        "b.md -> c.md: no such file",
        "b.md -> a.md#serverless-reference-model: no such heading on GitHub",
    ]


def test_the_nav_lists_every_page_once():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    listed = [next(iter(item.values())) for item in config["nav"]]
    assert sorted(listed) == sorted(p.name for p in PAGES)
    assert len(listed) == len(set(listed))


def test_the_readme_is_a_five_minute_read():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


def _targets_rows(text: str) -> list[list[str]]:
    section = text.split("## Where we stand against the targets")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    # the link's target differs (docs/x.md from the README, x.md on the site); the rest may not
    return [re.sub(r"\]\((?:docs/)?([^)]*)\)", r"](\1)", row).split(" | ") for row in rows]


def test_the_readme_and_the_site_show_the_same_targets_table():
    readme = _targets_rows((ROOT / "README.md").read_text())
    home = _targets_rows((ROOT / "docs" / "index.md").read_text())
    assert len(readme) > 10
    assert readme == home
    for row in readme[2:]:  # every target row links to the page that holds its figures
        assert re.search(r"\]\([a-z-]+\.md(#[a-z0-9-]+)?\) \|$", row[-1]), row
