"""The documentation as the tests read it: fenced blocks, shell examples, links and headings.

Shell examples in README.md, docs/ and bench/RESULTS.md come in two kinds of fenced block, so a
reader (and a test) can tell what may be run where:

- ```console: `$ ` starts a command, a trailing backslash continues it on the next line, and the
  lines up to the next command are its output as the doc shows it. A line `...` stands for any
  number of output lines and `...` inside a line for any text; blank lines and runs of whitespace
  do not count. A command shown without output may print anything. tests/e2e/test_e2e_docs.py
  runs every one.
- ```sh-host: commands that change the host (installing, systemd, containers, Kubernetes). They
  are only parsed (`bash -n`) and the repository paths they name must exist.

Any other shell fence (sh, bash, shell, zsh) is an error, so every example is one kind or the
other.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
RESULTS = ROOT / "bench" / "RESULTS.md"
CONSOLE = "console"
SH_HOST = "sh-host"
OTHER_SHELLS = frozenset({"sh", "bash", "shell", "zsh", "shell-session"})
ELLIPSIS = "..."

_FENCE = re.compile(r"^(```+)\s*([\w.+-]*)\s*$")
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
# A path inside the repository, as docs name them: deploy/..., bench/run, Dockerfile.
_REPO_PATH = re.compile(
    r"(?<![\w/.~$-])(?:(?:deploy|blocklists|bench|docs|tests|resolver|\.ci)/[\w./-]*"
    r"|Dockerfile(?![\w.-]))"
)


def doc_files() -> list[Path]:
    """Every page whose examples and links the tests check."""
    return [README, *sorted(DOCS.glob("*.md")), RESULTS]


def docs_pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@dataclass(frozen=True)
class Block:
    """One fenced block: where it starts (the fence's 1-based line), its language and text."""

    path: Path
    line: int
    lang: str
    text: str

    @property
    def id(self) -> str:
        return f"{relative(self.path)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    found: list[Block] = []
    fence: str | None = None
    lang = ""
    start = 0
    body: list[str] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = _FENCE.match(line)
        if fence is None:
            if match:
                fence, lang, start, body = match.group(1), match.group(2), number, []
        elif match and match.group(1) == fence and not match.group(2):
            found.append(Block(path, start, lang, "\n".join(body) + "\n"))
            fence = None
        else:
            body.append(line)
    if fence is not None:
        raise AssertionError(f"{relative(path)}:{start}: fenced block never closed")
    return found


def prose_lines(path: Path) -> Iterator[tuple[int, str]]:
    """The lines outside fenced blocks, numbered from 1."""
    fence: str | None = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = _FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)
        elif fence is not None and match and match.group(1) == fence and not match.group(2):
            fence = None
        elif fence is None:
            yield number, line


def headings(path: Path, level: int | None = None) -> list[str]:
    found = []
    for _, line in prose_lines(path):
        match = _HEADING.match(line)
        if match and (level is None or len(match.group(1)) == level):
            found.append(match.group(2))
    return found


def anchors(path: Path) -> set[str]:
    """The fragment identifiers GitHub gives a page's headings (duplicates get -1, -2...)."""
    seen: dict[str, int] = {}
    result = set()
    for heading in headings(path):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


def links(path: Path) -> list[tuple[int, str]]:
    """Link targets in prose, with their line numbers."""
    return [
        (number, target)
        for number, line in prose_lines(path)
        for target in _LINK.findall(line.replace("`", ""))
    ]


def repo_paths(text: str) -> list[str]:
    return [match.rstrip(".,:;") for match in _REPO_PATH.findall(text)]


@dataclass(frozen=True)
class Command:
    """One `$ ` command of a console block and the output the doc shows (None: not shown)."""

    line: int
    text: str
    output: tuple[str, ...] | None


def commands(block: Block) -> list[Command]:
    found: list[Command] = []
    current: list[str] | None = None
    start = 0
    output: list[str] = []
    continued = False

    def close() -> None:
        if current is not None:
            shown = tuple(line for line in output if line.strip())
            found.append(Command(start, "\n".join(current), shown or None))

    for offset, line in enumerate(block.text.splitlines(), start=1):
        if continued:
            assert current is not None
            current.append(line)
            continued = line.endswith("\\")
        elif line.startswith("$ "):
            close()
            current, start, output = [line[2:]], block.line + offset, []
            continued = line.endswith("\\")
        elif current is None:
            if line.strip():
                raise AssertionError(f"{block.id}: output before the first `$ ` command: {line!r}")
        else:
            output.append(line)
    close()
    return found


def _normal(line: str) -> str:
    return " ".join(line.split())


def output_pattern(expected: Sequence[str]) -> re.Pattern[str]:
    parts = []
    for line in expected:
        line = _normal(line)
        if not line:
            continue
        if line == ELLIPSIS:
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            pieces = [re.escape(piece.strip()) for piece in line.split(ELLIPSIS)]
            parts.append("[^\n]*".join(pieces) + r"\n")
    return re.compile("".join(parts))


def output_matches(expected: Sequence[str], actual: str) -> bool:
    """Whether `actual` is what the doc shows, by the rules in this module's docstring."""
    text = "".join(_normal(line) + "\n" for line in actual.splitlines() if line.strip())
    return output_pattern(expected).fullmatch(text) is not None


def section(path: Path, heading: str) -> str:
    """The text under a `## heading`, up to the next `## ` heading (fenced blocks included)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = lines.index(f"## {heading}") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "\n".join(lines[start:end])


def block_after(block: Block) -> Block | None:
    """The next fenced block of the same page, if any."""
    later = [b for b in blocks(block.path) if b.line > block.line]
    return later[0] if later else None


def snippet(path: Path, marker: str) -> str:
    """The text of the one fenced block of `path` that contains `marker` (a first-line comment
    such as ``# knot.conf``, or a line only that block has)."""
    found = [block.text for block in blocks(path) if marker in block.text]
    assert len(found) == 1, f"{relative(path)}: {len(found)} blocks contain {marker!r}"
    return found[0]
