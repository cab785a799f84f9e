"""The documentation holds together: README stays short, every docs/ page has the same sections,
links and named files exist, shell examples are of a known kind, and README's command table
covers the real command line. tests/e2e/test_e2e_docs.py runs the examples themselves."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from doc_examples import (
    CONSOLE,
    DOCS,
    OTHER_SHELLS,
    README,
    ROOT,
    SH_HOST,
    Block,
    anchors,
    blocks,
    commands,
    doc_files,
    docs_pages,
    headings,
    links,
    output_matches,
    relative,
    repo_paths,
    section,
)

from resolver.commands.cli import build_parser

README_LIMIT = 15 * 1024
SECTIONS = [("What",), ("Configuration", "Syntax"), ("Metrics",), ("Examples",)]

ALL_BLOCKS = [block for path in doc_files() for block in blocks(path)]
SH_HOST_BLOCKS = [block for block in ALL_BLOCKS if block.lang == SH_HOST]


def test_readme_is_at_most_15_kb() -> None:
    size = README.stat().st_size
    assert size <= README_LIMIT, f"README.md is {size} bytes; move detail to docs/"


def test_quick_start_is_two_commands_and_ci_runs_the_second() -> None:
    quick = section(README, "Quick start")
    fences = re.findall(r"^```([\w-]*)\n(.*?)^```$", quick, re.M | re.S)
    lines = [line for _, body in fences for line in body.splitlines() if line.strip()]
    assert len(lines) == 2, lines
    install_and_serve, install_and_test = lines
    assert install_and_serve.endswith("dnswarden serve")
    assert install_and_test.endswith("pytest")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert install_and_test in [line.strip() for line in ci]


def test_readme_links_the_latest_benchmark_table() -> None:
    targets = [target for _, target in links(README)]
    assert "bench/RESULTS.md#latest-run" in targets


def test_readme_maps_every_docs_page() -> None:
    targets = {target for _, target in links(README)}
    pages = {relative(page) for page in docs_pages()}
    assert pages <= targets


@pytest.mark.parametrize("page", docs_pages(), ids=relative)
def test_docs_page_has_the_four_sections_in_order(page: Path) -> None:
    found = headings(page, level=2)
    assert len(found) == len(SECTIONS), found
    for heading, allowed in zip(found, SECTIONS, strict=True):
        assert heading in allowed, f"{relative(page)}: `## {heading}` where {allowed} belongs"
    assert len(headings(page, level=1)) == 1


@pytest.mark.parametrize("path", doc_files(), ids=relative)
def test_relative_links_resolve(path: Path) -> None:
    broken = []
    for line, target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            if target.startswith("#") and target[1:] not in anchors(path):
                broken.append(f"{line}: {target} (no such heading)")
            continue
        file_part, _, fragment = target.partition("#")
        resolved = (path.parent / file_part).resolve()
        if not resolved.exists():
            broken.append(f"{line}: {target} (no such file)")
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            broken.append(f"{line}: {target} (no such heading)")
    assert broken == [], f"{relative(path)}: " + "; ".join(broken)


@pytest.mark.parametrize("path", doc_files(), ids=relative)
def test_repository_paths_named_in_docs_exist(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    missing = sorted({name for name in repo_paths(text) if not (ROOT / name).exists()})
    assert missing == []


def test_shell_examples_are_console_or_sh_host() -> None:
    other = [block.id for block in ALL_BLOCKS if block.lang in OTHER_SHELLS]
    assert other == [], "use ```console (run by the tests) or ```sh-host (see doc_examples.py)"


@pytest.mark.parametrize("block", SH_HOST_BLOCKS, ids=lambda block: block.id)
def test_sh_host_examples_are_valid_bash(block: Block) -> None:
    bash = shutil.which("bash")
    assert bash is not None
    result = subprocess.run([bash, "-n"], input=block.text, capture_output=True, text=True,
                            timeout=10, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_console_examples_have_commands() -> None:
    consoles = [block for block in ALL_BLOCKS if block.lang == CONSOLE]
    assert len(consoles) >= 10
    assert all(commands(block) for block in consoles)


# Pages about the machine dnswarden runs on and the network around it: their examples are the
# host's own commands (systemctl, kubectl, nft -f), which no test machine may run for real.
HOST_PAGES = {"docs/deploy.md", "docs/network-enforcement.md"}


def test_sh_host_stays_rare() -> None:
    """Outside the host pages, an example that a test cannot run must be the exception."""
    elsewhere = [block for block in ALL_BLOCKS if relative(block.path) not in HOST_PAGES]
    consoles = [block for block in elsewhere if block.lang == CONSOLE]
    assert len([block for block in elsewhere if block.lang == SH_HOST]) < len(consoles) / 2


def _subcommands(parser: argparse.ArgumentParser) -> dict[int, tuple[list[str], Any]]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    grouped: dict[int, tuple[list[str], Any]] = {}
    for name, sub in action.choices.items():
        grouped.setdefault(id(sub), ([], sub))[0].append(name)
    return grouped


def _mentions(text: str, word: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


def test_command_table_covers_every_command_and_option() -> None:
    rows = [line for line in section(README, "Commands").splitlines() if line.startswith("| `")]
    commands_cells = [row.split(" | ")[0] for row in rows]
    parser = build_parser()
    missing = []
    for names, sub in _subcommands(parser).values():
        cells = " ".join(c for c in commands_cells if any(_mentions(c, f"dnswarden {n}")
                                                           for n in names))  # fmt: skip
        if not cells:
            missing.append(f"dnswarden {names[0]}")
            continue
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
                continue
            words = action.option_strings or [action.metavar or action.dest]
            if not any(_mentions(cells, word) for word in words):
                missing.append(f"dnswarden {names[0]} {words[-1]}")
        for alias in names[1:]:
            if not _mentions(" ".join(rows), alias):
                missing.append(f"alias {alias}")
    if not any(_mentions(cell, "--version") for cell in commands_cells):
        missing.append("dnswarden --version")
    assert missing == []


def test_belgian_example_is_the_shipped_file() -> None:
    page = DOCS / "policies.md"
    shown = next(b for b in blocks(page) if b.lang == "yaml" and "be-tiktok-2023" in b.text)
    shipped = yaml.safe_load((ROOT / "deploy/examples/belgium-2023.yaml").read_text())
    shipped.pop("listen")
    assert yaml.safe_load(shown.text) == shipped


def test_yaml_examples_parse() -> None:
    for block in ALL_BLOCKS:
        if block.lang == "yaml":
            yaml.safe_load(block.text)


OUTPUT_CASES = [
    # (shown in the doc, printed, matches)
    (["0.0.0.0"], "0.0.0.0\n", True),
    (["0.0.0.0"], "0.0.0.0\n0.0.0.0\n", False),
    (["0.0.0.0"], "", False),
    (["a  b"], "a\tb\n\n", True),
    (["...", "x", "..."], "w\nx\ny\n", True),
    (["...", "x"], "w\nx\ny\n", False),
    (["x", "..."], "w\nx\n", False),
    (["...", "x", "...", "z"], "x\ny\nz\n", True),
    (["...", "z", "...", "x"], "x\ny\nz\n", False),
    (["# generated ..."], "# generated 2026-01-01T00:00:00+00:00\n", True),
    (["id ... notes"], "id   name  notes\n", True),
    (["id ... notes"], "name notes\n", False),
    (["PID ...; the end"], "PID 12; the end\n", True),
    (["a.b"], "axb\n", False),
]


@pytest.mark.parametrize(("shown", "printed", "expected"), OUTPUT_CASES)
def test_output_matching(shown: list[str], printed: str, expected: bool) -> None:
    assert output_matches(shown, printed) is expected


def test_commands_are_split_with_their_output() -> None:
    block = Block(
        ROOT / "README.md", 10, CONSOLE,
        "$ one \\\n  --more\nout 1\n\nout 2\n$ two\n$ three\n...\n",
    )  # fmt: skip
    found = [(c.line, c.text, c.output) for c in commands(block)]
    assert found == [
        (11, "one \\\n  --more", ("out 1", "out 2")),
        (16, "two", None),
        (17, "three", ("...",)),
    ]


def test_output_before_a_command_is_an_error() -> None:
    with pytest.raises(AssertionError, match="before the first"):
        commands(Block(ROOT / "README.md", 1, CONSOLE, "stray\n$ ok\n"))


def _agrees(shown: Any, real: Any) -> bool:
    """Every key the summary shows has the real value (the summary may leave keys out)."""
    if isinstance(shown, dict):
        return isinstance(real, dict) and all(
            key in real and _agrees(value, real[key]) for key, value in shown.items()
        )
    return bool(shown == real)


def test_default_config_summary_agrees_with_the_embedded_one() -> None:
    from resolver.config import default_yaml

    page = DOCS / "configuration.md"
    summary = next(b for b in blocks(page) if b.lang == "yaml" and "listen:" in b.text)
    assert _agrees(yaml.safe_load(summary.text), yaml.safe_load(default_yaml()))
