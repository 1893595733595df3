"""The repository stands on its own: no tracked file cites a document that is not in it, and
every citation of the project's docs points at something that exists.

Code, tests and docs cite a rule by its doc and heading, ``(docs/semantics.md, "Intensity")``
(several headings may follow one doc), or a numbered section, ``docs/runtime-contract.md §6``.
A bare section sign with a number, a research note, a design note kept outside the repository
or an issue number means nothing to a reader of the repository, so those are refused.

Every tracked text file is scanned, except this one (it has to spell the patterns out). A
pattern inside a URL is allowed: a link can be followed.
"""

from __future__ import annotations

import bisect
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SELF = Path(__file__).resolve().relative_to(ROOT).as_posix()

OUTSIDE = re.compile(
    # Written so that a plain grep for the citations finds nothing here either.
    r"(shared)/|otp-semantics|nats-notes|design\.md|user-stories|\bissue\s*#?\d+",
    re.IGNORECASE,
)
SECTION_SIGN = re.compile(r"§\s*(\d+)")
# A section number is a citation only right after the doc it belongs to.
SECTION_OF_DOC = re.compile(r"([\w-]+)\.md`?\s*$")
URL = re.compile(r"https?://\S+")
HEADING_CITATION = re.compile(r'docs/([\w-]+)\.md,\s*("[^"]+"(?:(?:,\s*|\s+and\s+)"[^"]+")*)')
QUOTED = re.compile(r'"([^"]+)"')
ANCHOR = re.compile(r"\]\(([\w./-]+\.md)#([\w-]+)\)")  # a markdown link to a heading
# What a line continues with when a citation is wrapped: indentation and a comment marker.
CONTINUATION = re.compile(r"^[ \t]*(?:#+|//|\*)?[ \t]*")


def tracked_files() -> list[str]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [p for p in out.decode().split("\0") if p and p != SELF]


def read_text(path: str) -> str | None:
    """The file's text, or None for a binary file or one deleted in the work tree."""
    try:
        data = (ROOT / path).read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return None
    if b"\0" in data:
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None


def texts() -> Iterator[tuple[str, str]]:
    for path in tracked_files():
        text = read_text(path)
        if text is not None:
            yield path, text


def in_url(line: str, start: int) -> bool:
    return any(m.start() <= start < m.end() for m in URL.finditer(line))


def outside_citations(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of every citation of something outside the repository."""
    for number, line in enumerate(text.splitlines(), 1):
        hits = [m.start() for m in OUTSIDE.finditer(line)]
        hits += [
            m.start()
            for m in SECTION_SIGN.finditer(line)
            if not SECTION_OF_DOC.search(line[: m.start()])
        ]
        if any(not in_url(line, start) for start in hits):
            yield number, line.strip()


def flowed(text: str) -> tuple[str, list[int]]:
    """The text as one line (a wrapped citation becomes whole again), and where each original
    line starts in it."""
    parts, starts, at = [], [], 0
    for index, line in enumerate(text.splitlines()):
        if index:
            line = CONTINUATION.sub("", line, count=1)
        starts.append(at)
        parts.append(line)
        at += len(line) + 1
    return " ".join(parts), starts


def squeeze(heading: str) -> str:
    return " ".join(heading.replace("`", "").split())


def headings(doc: Path) -> set[str]:
    """The headings of a markdown file, outside code blocks."""
    found, fenced = set(), False
    for line in doc.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            found.add(squeeze(line.lstrip("#").rstrip("#")))
    return found


def broken_doc_citations(text: str) -> Iterator[tuple[int, str]]:
    """(line number, what is wrong) for each citation of a doc that does not resolve."""
    whole, starts = flowed(text)
    for m in HEADING_CITATION.finditer(whole):
        number = bisect.bisect_right(starts, m.start())
        doc = ROOT / "docs" / f"{m.group(1)}.md"
        if not doc.is_file():
            yield number, f"docs/{m.group(1)}.md does not exist"
            continue
        known = headings(doc)
        for heading in QUOTED.findall(m.group(2)):
            if squeeze(heading) not in known:
                yield number, f'docs/{m.group(1)}.md has no heading "{squeeze(heading)}"'
    for m in SECTION_SIGN.finditer(whole):
        of = SECTION_OF_DOC.search(whole[: m.start()])
        if of is None:
            continue  # bare: outside_citations reports it
        number = bisect.bisect_right(starts, m.start())
        doc = ROOT / "docs" / f"{of.group(1)}.md"
        numbered = {h.split(".", 1)[0] for h in headings(doc)} if doc.is_file() else set()
        if m.group(1) not in numbered:
            yield number, f"docs/{of.group(1)}.md has no section {m.group(1)}"


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    kept = "".join(c for c in heading.lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


def broken_anchors(path: str, text: str) -> Iterator[tuple[int, str]]:
    """(line number, what is wrong) for each markdown link to a heading that does not exist."""
    for number, line in enumerate(text.splitlines(), 1):
        for m in ANCHOR.finditer(line):
            doc = (ROOT / path).parent / m.group(1)
            if not doc.is_file():
                yield number, f"{m.group(1)} does not exist"
            elif m.group(2) not in {slug(h) for h in headings(doc)}:
                yield number, f"{m.group(1)} has no heading with the anchor #{m.group(2)}"


def report(hits: list[str]) -> str:
    return f"{len(hits)} problem(s):\n" + "\n".join(hits)


def test_nothing_cites_documents_outside_the_repository() -> None:
    hits = [
        f"{path}:{number}: {line}"
        for path, text in texts()
        for number, line in outside_citations(text)
    ]
    assert not hits, report(hits)


def test_every_citation_of_the_docs_resolves() -> None:
    hits = [
        f"{path}:{number}: {problem}"
        for path, text in texts()
        for number, problem in [*broken_doc_citations(text), *broken_anchors(path, text)]
    ]
    assert not hits, report(hits)


@pytest.mark.parametrize(
    "line",
    [
        "Sections of ../shar" + "ed/otp-semantics.md are cited as §N.N",
        "# restart by the table (§1.4)",
        "see nats-notes §0.2",
        "(DESIGN.md's table)",
        "Issue 7's scale benchmark",
        "fixed in issue #12",
        "from the user-stories file",
    ],
)
def test_an_outside_citation_is_found(line: str) -> None:
    assert list(outside_citations(f"first line\n{line}\n")) == [(2, line)]


@pytest.mark.parametrize(
    "line",
    [
        "slot records (docs/runtime-contract.md §6)",
        "the slot's `Actor` object (`docs/runtime-contract.md` §1), so",
        "see https://example.org/shar" + "ed/issue/7",
        "the backend issues credentials",
    ],
)
def test_what_may_stay(line: str) -> None:
    assert list(outside_citations(line)) == []


def test_a_link_to_a_missing_heading_is_found() -> None:
    text = "[a](docs/architecture.md#exit-reasons), [b](docs/architecture.md#no-such-part)\n"
    assert list(broken_anchors("README.md", text)) == [
        (1, "docs/architecture.md has no heading with the anchor #no-such-part")
    ]


def test_a_wrapped_citation_is_checked_and_a_missing_heading_found() -> None:
    text = (
        'x = 1  # (docs/semantics.md, "Intensity",\n'
        '# "Start failures during a restart")\n'
        'y = 2  # (docs/semantics.md, "No such rule") and docs/runtime-contract.md §99\n'
    )
    assert list(broken_doc_citations(text)) == [
        (3, 'docs/semantics.md has no heading "No such rule"'),
        (3, "docs/runtime-contract.md has no section 99"),
    ]
