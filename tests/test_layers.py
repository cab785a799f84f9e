"""The architecture is held by a test: each folder (and each top-level module) of `resolver/`
says in its docstring what it may import and which of its modules do I/O, and the code must
agree. The declared imports must form layers (no cycles), so README's map of the layers, and its
claim of which modules are pure, stay true."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "resolver"
# The package root and its entry point belong to no layer: anything may import `__version__`.
ROOTS = {"__init__", "__main__"}
# Data folders shipped inside the package, not code layers.
DATA_FOLDERS = {"blocklists"}

IO_MODULES = {
    "asyncio", "socket", "_socket", "select", "selectors", "ssl", "uvloop", "subprocess", "mmap",
    "threading", "multiprocessing", "fcntl", "urllib.request", "http.client", "shutil",
    "tempfile", "signal",
}  # fmt: skip
IO_FUNCTIONS = {"open", "print", "input"}
IO_METHODS = {
    "read_text", "read_bytes", "write_text", "write_bytes", "open", "exists", "is_file",
    "is_dir", "iterdir", "glob", "rglob", "stat", "unlink", "mkdir", "touch", "listdir",
    "scandir", "makedirs", "fsync", "getenv", "urlopen",
}  # fmt: skip
# Names that are also str/list methods count only when called on `os` itself.
OS_ONLY_METHODS = {"replace", "rename", "remove"}
IO_ATTRIBUTES = {("os", "environ"), ("sys", "stdout"), ("sys", "stderr"), ("sys", "stdin")}
# "Does I/O:" may go on over indented lines.
DECLARATION = re.compile(r"^May import: (?P<imports>.+)\nDoes I/O: (?P<io>.+(?:\n +.+)*)$", re.M)


@dataclass(frozen=True)
class Unit:
    """A folder of `resolver/` or a module at its top: the thing the import rule speaks of."""

    name: str
    docstring_file: Path
    modules: tuple[Path, ...]
    may_import: frozenset[str]
    io_modules: frozenset[str] | None  # None: every module may do I/O


def _declaration(path: Path) -> tuple[frozenset[str], frozenset[str] | None]:
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    match = DECLARATION.search(docstring)
    assert match, f"{path.relative_to(PACKAGE.parent)}: no 'May import:'/'Does I/O:' lines"
    imports_text = match["imports"].strip()
    imports = (
        frozenset()
        if imports_text == "nothing of resolver"
        else frozenset(part.strip() for part in imports_text.split(","))
    )
    io_text = match["io"].strip()
    if io_text == "none":
        io: frozenset[str] | None = frozenset()
    elif io_text.startswith("all"):
        io = None
    else:
        io = frozenset(re.findall(r"(\w+) \(", io_text))
        assert io, f"{path}: 'Does I/O:' names no module: {io_text!r}"
    return imports, io


@cache
def units() -> dict[str, Unit]:
    found: dict[str, Unit] = {}
    for path in sorted(PACKAGE.iterdir()):
        if path.is_dir() and (path / "__init__.py").exists() and path.name not in DATA_FOLDERS:
            imports, io = _declaration(path / "__init__.py")
            modules = tuple(sorted(path.rglob("*.py")))
            found[path.name] = Unit(path.name, path / "__init__.py", modules, imports, io)
        elif path.suffix == ".py" and path.stem not in ROOTS:
            imports, io = _declaration(path)
            # A top-level module that does I/O names the function that does it, not a module.
            found[path.stem] = Unit(
                path.stem, path, (path,), imports, frozenset() if io == frozenset() else None
            )
    return found


def _unit_of(module: str) -> str | None:
    """`resolver.policy.engine` -> `policy`; `resolver` itself -> None."""
    parts = module.split(".")
    return parts[1] if parts[0] == "resolver" and len(parts) > 1 else None


def _imports(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            if node.module == "resolver":  # `from resolver import x` names submodules too
                names.extend(f"resolver.{alias.name}" for alias in node.names)
    return names


def _io_uses(tree: ast.AST) -> list[str]:
    uses = [
        f"import {name}"
        for name in _imports(tree)
        if name in IO_MODULES or name.split(".")[0] in IO_MODULES
    ]
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in IO_FUNCTIONS:
                uses.append(f"{func.id}() at line {node.lineno}")
            elif isinstance(func, ast.Attribute) and (
                func.attr in IO_METHODS
                or (
                    func.attr in OS_ONLY_METHODS
                    and isinstance(func.value, ast.Name)
                    and func.value.id == "os"
                )
            ):
                uses.append(f".{func.attr}() at line {node.lineno}")
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and (node.value.id, node.attr) in IO_ATTRIBUTES
        ):
            uses.append(f"{node.value.id}.{node.attr} at line {node.lineno}")
    return uses


def _parse(path: Path) -> ast.AST:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_every_folder_and_top_module_declares_its_layer() -> None:
    declared = units()
    assert {"protocol", "config", "lists", "policy", "observe", "upstream", "shell",
            "commands", "cache", "state", "pipeline"} <= set(declared)  # fmt: skip
    for unit in declared.values():
        unknown = unit.may_import - set(declared)
        assert not unknown, f"{unit.name} declares imports of unknown layers {sorted(unknown)}"


def test_declared_layers_have_no_cycle() -> None:
    graph = {unit.name: unit.may_import for unit in units().values()}
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as exc:  # pragma: no cover - the failure message is the point
        pytest.fail(f"the declared layers form a cycle: {exc.args[1]}")
    assert set(order) == set(graph)


@pytest.mark.parametrize("unit_name", sorted(units()))
def test_imports_only_what_the_layer_declares(unit_name: str) -> None:
    unit = units()[unit_name]
    offenders = []
    for module in unit.modules:
        for name in _imports(_parse(module)):
            target = _unit_of(name)
            if target is None or target.startswith("__") or target == unit.name:
                continue
            if target not in unit.may_import:
                offenders.append(f"{module.relative_to(PACKAGE.parent)} imports {name}")
    assert offenders == []


@pytest.mark.parametrize("unit_name", sorted(units()))
def test_only_declared_modules_do_io(unit_name: str) -> None:
    unit = units()[unit_name]
    if unit.io_modules is None:
        return
    offenders = []
    for module in unit.modules:
        if module.stem in unit.io_modules:
            continue
        offenders.extend(
            f"{module.relative_to(PACKAGE.parent)}: {use}" for use in _io_uses(_parse(module))
        )
    assert offenders == []


@pytest.mark.parametrize("unit_name", sorted(units()))
def test_declared_io_modules_exist_and_do_io(unit_name: str) -> None:
    """A module declared as doing I/O that does none makes the declaration a lie too."""
    unit = units()[unit_name]
    if not unit.io_modules:
        return
    stems = {module.stem: module for module in unit.modules}
    for name in unit.io_modules:
        assert name in stems, f"{unit_name} declares I/O in {name}, which does not exist"
        assert _io_uses(_parse(stems[name])), f"{unit_name}.{name} is declared I/O but does none"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import socket", ["import socket"]),
        ("from urllib.request import urlopen", ["import urllib.request"]),
        ("x = open('f')", ["open() at line 1"]),
        ("p.read_text()", [".read_text() at line 1"]),
        ("import os\nos.environ.get('A')", ["os.environ at line 2"]),
        ("import struct\nstruct.pack('!H', 1)", []),
        ("'a.b'.replace('.', '')", []),
        ("import os\nos.replace('a', 'b')", [".replace() at line 2"]),
        ("def f():\n    import mmap", ["import mmap"]),
    ],
)
def test_io_detector(source: str, expected: list[str]) -> None:
    assert _io_uses(ast.parse(source)) == expected


def test_import_detector_sees_function_level_and_package_imports() -> None:
    tree = ast.parse("def f():\n    from resolver import lists\n    import resolver.shell.httpd")
    assert {_unit_of(name) for name in _imports(tree)} >= {"lists", "shell"}
