"""Reading YAML nodes into values, every problem collected with its line and key path.

The sections read PyYAML's node graph (`yaml.compose`) rather than constructed Python objects,
because only nodes remember where they came from. Unknown keys are errors (a typo must never
silently fall back to a default on a blocking resolver), and a bad value is reported and
replaced by a stand-in so that reading goes on and one run finds every problem.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeAlias

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from resolver.config.problems import ConfigProblem, suggest
from resolver.config.values import parse_datetime

TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{TAG}{t}" for t in ("str", "bool", "int", "float", "null")}
_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}", re.ASCII)

MISSING: Any = object()
"""What a reader returns for a bad value, whose problem it has already noted."""

Entries: TypeAlias = dict[str, tuple[Node, Node]]
"""A mapping's checked entries: key name -> (key node, value node)."""


class Item(NamedTuple):
    """One good item of a list, with where it stands (for problems about it)."""

    key: str
    node: Node
    value: Any


def describe_node(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == f"{TAG}bool":
        return f"a boolean ({node.value!r} is a boolean in YAML; quote it for text)"
    if node.tag == f"{TAG}null":
        return "nothing (null)"
    if node.tag == f"{TAG}int":
        return "an integer"
    if node.tag == f"{TAG}float":
        return "a number"
    if node.tag == f"{TAG}str":
        return "a string"
    return f"a value tagged {node.tag}"


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def line_of(node: Node) -> int:
    return node.start_mark.line + 1


class Reader:
    """Reads the nodes of one document; every check appends to `problems`.

    `base_dir` anchors the relative paths the document names (the config file's directory;
    the current directory when None).
    """

    def __init__(self, source: str, base_dir: Path | None) -> None:
        self.source = source
        self.base_dir = base_dir
        self.problems: list[ConfigProblem] = []
        self._constructor = SafeConstructor()

    def problem(self, where: Node | int, key: str, message: str) -> None:
        line = where if isinstance(where, int) else line_of(where)
        self.problems.append(ConfigProblem(self.source, line, key, message))

    def compose(self, text: str) -> Node | None:
        try:
            return yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            line = mark.line + 1 if mark is not None else 0
            what = " ".join(p for p in (e.context, e.problem) if p)
            hint = ""
            if e.problem and "':'" in e.problem:
                hint = ' (quote values that contain ":", e.g. "[::1]:5353" or "::1")'
            self.problem(line, "(document)", f"YAML syntax error: {what}{hint}")
        except yaml.reader.ReaderError as e:
            line = text[: e.position].count("\n") + 1
            self.problem(line, "(document)", f"YAML syntax error: {e.reason}")
        except yaml.YAMLError as e:
            self.problem(0, "(document)", f"YAML error: {e}")
        except RecursionError:
            self.problem(0, "(document)", "YAML nesting is too deep")
        return None

    def mapping(self, node: Node | None, path: str, known: Sequence[str]) -> Entries | None:
        """Check a mapping's keys (types, duplicates, unknown names); `None` value = empty."""
        if node is None or self.is_null(node):
            return {}
        label = path or "(document)"
        if not isinstance(node, MappingNode):
            self.problem(node, label, f"expected a mapping, got {describe_node(node)}")
            return None
        if node.tag != f"{TAG}map":
            self.problem(node, label, f"unsupported YAML tag {node.tag}")
            return None
        entries: Entries = {}
        for key_node, value_node in node.value:
            if key_node.tag == f"{TAG}merge":
                self.problem(key_node, label, "YAML merge keys (<<) are not supported")
                continue
            if not isinstance(key_node, ScalarNode) or key_node.tag != f"{TAG}str":
                self.problem(key_node, label, f"keys must be names, got {describe_node(key_node)}")
                continue
            name = key_node.value
            key = join(path, name)
            if name in entries:
                first = line_of(entries[name][0])
                self.problem(key_node, key, f"duplicate key (first given at line {first})")
                continue
            if name not in known:
                self.problem(key_node, key, f"unknown key{suggest(name, known)}")
                continue
            entries[name] = (key_node, value_node)
        return entries

    def section(self, top: Entries, name: str, cls: type) -> Entries:
        """The entries of top-level section `name`, whose keys are the fields of dataclass
        `cls` (empty when the section is absent or unusable)."""
        node = top[name][1] if name in top else None
        entries = self.mapping(node, name, [f.name for f in dataclasses.fields(cls)])
        return entries if entries is not None else {}

    def named(self, top: Entries, section: str, noun: str) -> list[tuple[str, Node, Node]]:
        """(name, key node, value node) of a `name -> settings` section, names validated."""
        if section not in top:
            return []
        node = top[section][1]
        if self.is_null(node):
            return []
        if not isinstance(node, MappingNode) or node.tag != f"{TAG}map":
            self.problem(
                node,
                section,
                f"expected a mapping of {noun} names to settings, got {describe_node(node)}",
            )
            return []
        found: list[tuple[str, Node, Node]] = []
        seen: dict[str, Node] = {}
        for key_node, value_node in node.value:
            if key_node.tag == f"{TAG}merge":
                self.problem(key_node, section, "YAML merge keys (<<) are not supported")
                continue
            if not isinstance(key_node, ScalarNode) or key_node.tag != f"{TAG}str":
                got = describe_node(key_node)
                hint = "" if "quote" in got else "; quote it"
                self.problem(key_node, section, f"a {noun} name must be text, got {got}{hint}")
                continue
            name = key_node.value
            key = join(section, name)
            if name in seen:
                first = line_of(seen[name])
                self.problem(
                    key_node, key, f"{noun} {name!r} is defined twice (first at line {first})"
                )
                continue
            seen[name] = key_node
            if not _NAME_RE.fullmatch(name):
                self.problem(
                    key_node,
                    key,
                    f"invalid {noun} name {name!r}: use 1 to 64 letters, digits, '_', '.' or '-'",
                )
                continue
            found.append((name, key_node, value_node))
        return found

    def sequence(self, node: Node, key: str) -> list[Node] | None:
        if isinstance(node, SequenceNode) and node.tag == f"{TAG}seq":
            return list(node.value)
        got = describe_node(node)
        if isinstance(node, ScalarNode) and node.tag == f"{TAG}str":
            got += f" (write [{node.value}] for a one-item list)"
        elif self.is_null(node):
            got += "; write [] for an empty list, or remove the key for the default"
        self.problem(node, key, f"expected a list, got {got}")
        return None

    @staticmethod
    def is_null(node: Node) -> bool:
        return isinstance(node, ScalarNode) and node.tag == f"{TAG}null"

    def scalar(self, node: Node, key: str) -> object:
        """The node's Python value, or `MISSING` (with a problem) if it is not a plain scalar."""
        if not isinstance(node, ScalarNode):
            self.problem(node, key, f"expected a single value, got {describe_node(node)}")
            return MISSING
        if node.tag not in _SCALAR_TAGS:
            self.problem(node, key, f"unsupported value {node.value!r} ({node.tag})")
            return MISSING
        try:
            return self._constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, OverflowError) as e:
            self.problem(node, key, f"cannot read value {node.value!r}: {e}")
            return MISSING

    def convert(self, node: Node, key: str, convert: Callable[[Any], Any]) -> Any:
        """Apply `convert` (which raises ValueError) to a scalar node; `MISSING` when bad."""
        raw = self.scalar(node, key)
        if raw is MISSING:
            return MISSING
        try:
            return convert(raw)
        except ValueError as e:
            message = str(e)
            if node.tag == f"{TAG}bool" and node.value.lower() not in ("true", "false"):
                message += f" (YAML reads {node.value!r} as {str(raw).lower()})"
            self.problem(node, key, message)
            return MISSING

    def value(
        self, entries: Entries, name: str, path: str, convert: Callable[[Any], Any], default: Any
    ) -> Any:
        """Entry `name` converted, `default` when absent, `MISSING` when bad (problem noted)."""
        if name not in entries:
            return default
        return self.convert(entries[name][1], join(path, name), convert)

    def items(
        self,
        entries: Entries,
        name: str,
        path: str,
        convert: Callable[[Any], Any],
        *,
        empty: str | None = None,
    ) -> list[Item] | None:
        """The good items of list entry `name`; `None` when absent or not a list.

        Bad items are reported and left out, so checks across items (duplicates) still run on
        the rest.  `empty`, when given, is the problem to report for an empty list.
        """
        if name not in entries:
            return None
        key = join(path, name)
        node = entries[name][1]
        nodes = self.sequence(node, key)
        if nodes is None:
            return None
        if not nodes and empty is not None:
            self.problem(node, key, empty)
        good: list[Item] = []
        for i, item_node in enumerate(nodes):
            item_key = f"{key}[{i}]"
            value = self.convert(item_node, item_key, convert)
            if value is not MISSING:
                good.append(Item(item_key, item_node, value))
        return good

    def unique(self, items: list[Item]) -> list[Item]:
        """Items whose value was not seen before; each repeat is reported where it stands."""
        seen: dict[Any, Item] = {}
        for item in items:
            first = seen.get(item.value)
            if first is None:
                seen[item.value] = item
            else:
                self.problem(
                    item.node,
                    item.key,
                    f"{item.value} is listed twice (first as {first.key}, line "
                    f"{line_of(first.node)})",
                )
        return list(seen.values())

    def instant(self, entries: Entries, name: str, path: str) -> Any:
        """A UTC datetime, `None` when absent, `MISSING` when bad.

        YAML reads an unquoted `2023-03-10` as a timestamp, which the general scalar reader
        refuses (a timestamp where a duration belongs is a mistake); here it is what we want.
        """
        if name not in entries:
            return None
        key = join(path, name)
        node = entries[name][1]
        if isinstance(node, ScalarNode) and node.tag == f"{TAG}timestamp":
            try:
                raw = self._constructor.construct_object(node, deep=True)
                return parse_datetime(raw)
            except (yaml.YAMLError, ValueError, OverflowError) as e:
                self.problem(node, key, f"cannot read time {node.value!r}: {e}")
                return MISSING
        return self.convert(node, key, parse_datetime)
