"""The repo's documentation is self-contained: every ``docs/<page>.md §N.M`` cited in the sources names a heading of
that page, every relative markdown link in README.md and docs/ resolves, and nothing outside docs/ cites the design
notes the docs replaced (issue 17)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE_SUFFIXES = (".py", ".yaml", ".yml", ".md", ".sh")

SECTION = r"§\d+(?:\.\d+)*"
# "docs/methods.md §3.2", "docs/methods.md §3.3-§3.6", "docs/methods.md §7.1 and §11.2", "docs/datasets.md §1.1, §1.2"
REFERENCE = re.compile(r"docs/([\w-]+\.md)((?:\s*(?:,|/|-|–|and)?\s*" + SECTION + r")+)")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*)$", re.MULTILINE)
CODE_SPAN = re.compile(r"`[^`\n]*`")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def repo_files() -> list[Path]:
    """Tracked files plus untracked ones that git does not ignore (new pages count before they are committed)."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return sorted({ROOT / p for p in out.split("\0") if p and (ROOT / p).is_file()})


def section_references(text: str) -> list[tuple[str, str]]:
    """(page, '§N.M') for every section cited after a ``docs/<page>.md``."""
    return [(m.group(1), s) for m in REFERENCE.finditer(text) for s in re.findall(SECTION, m.group(2))]


def heading_sections(page: Path) -> set[str]:
    """The § tokens of a page's headings ('### §1.1 Notation' -> '§1.1'; '## §1 PMRL' -> '§1')."""
    return {s for h in HEADING.findall(page.read_text(encoding="utf-8")) for s in re.findall(SECTION, h)}


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = CODE_SPAN.sub(lambda m: m.group(0).strip("`"), heading.strip()).lower()
    return re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text))


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {slug(h) for h in HEADING.findall(text)}


def broken_links(page: Path) -> list[str]:
    """Relative links of one markdown page whose file (or heading anchor) does not exist."""
    text = CODE_SPAN.sub("", FENCE.sub("", page.read_text(encoding="utf-8")))
    bad = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z+.-]*:", target):  # http:, https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{page.relative_to(ROOT)}: {target} (no heading with that anchor)")
    return bad


def test_reference_parser_reads_lists_and_ranges():
    refs = section_references("see docs/methods.md §3.3-§3.6 and docs/datasets.md §1.1, §1.2; docs/x.md §7.1 and §11.2")
    assert refs == [("methods.md", "§3.3"), ("methods.md", "§3.6"), ("datasets.md", "§1.1"), ("datasets.md", "§1.2"),
                    ("x.md", "§7.1"), ("x.md", "§11.2")]


def test_every_section_reference_names_a_heading():
    this = Path(__file__).resolve()  # its examples are not references
    refs = {(f.relative_to(ROOT), page, s) for f in repo_files() if f.suffix in SOURCE_SUFFIXES and f != this
            for page, s in section_references(f.read_text(encoding="utf-8", errors="replace"))}
    assert len(refs) > 50, f"only {len(refs)} section references found: is the pattern still right?"
    pages: dict[str, set[str] | None] = {}
    bad = []
    for where, page, s in sorted(refs):
        if page not in pages:
            p = ROOT / "docs" / page
            pages[page] = heading_sections(p) if p.exists() else None
        if pages[page] is None:
            bad.append(f"{where}: docs/{page} {s} (no such page)")
        elif s not in pages[page]:
            bad.append(f"{where}: docs/{page} {s} (no heading with {s})")
    assert not bad, "unresolved section references:\n" + "\n".join(bad)


def test_relative_links_in_readme_and_docs_resolve():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert len(pages) > 2
    bad = [b for p in pages for b in broken_links(p)]
    assert not bad, "broken links:\n" + "\n".join(bad)


def test_broken_link_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)  # messages name paths relative to it
    page = tmp_path / "a.md"
    (tmp_path / "b.md").write_text("# B\n## Some `code` heading\n")
    page.write_text("[ok](b.md) [ok](b.md#some-code-heading) [gone](c.md) [bad](b.md#nope) [web](https://x.org)\n")
    assert broken_links(page) == ["a.md: c.md (no such file)", "a.md: b.md#nope (no heading with that anchor)"]


def test_no_reference_to_the_replaced_notes_outside_docs():
    # built from parts so that this file does not match its own pattern
    names = ["METHODS", "DATASETS", "DESIGN", "RAY_" + "DEEPSPEED", "PERFORMANCE", "STYLE"]
    pattern = "|".join(n + r"\.md" for n in names) + r"|\.\./" + "shared"
    proc = subprocess.run(["git", "grep", "-n", "-E", "--untracked", "-e", pattern, "--", ".", ":(exclude)docs"],
                          cwd=ROOT, capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        pytest.fail(f"git grep failed: {proc.stderr.strip()}")
    assert proc.stdout == "", "references to notes that are not in the repo (cite docs/ instead):\n" + proc.stdout
