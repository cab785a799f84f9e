"""List references: every name under `blocking.lists`, `groups.*.block`, `policies.*.block` and
`allow` is a bundled catalogue id, the name of one of the config's `sources`, or the path of a
local list file. The rule that tells them apart lives here, once: the parser validates names
with it and `Config.list_refs` gives every consumer a `ListRef` that already knows its kind.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from resolver.config import files
from resolver.config.nodes import Entries, Item, Reader, line_of
from resolver.config.problems import describe, suggest
from resolver.config.sources import SourceConfig
from resolver.config.values import names_a_file


class ListKind(enum.Enum):
    CATALOGUE = "catalogue"  # a bundled catalogue entry, by id
    SOURCE = "source"  # one of the config's `sources`, by name
    FILE = "file"  # a local list file, by absolute path


@dataclass(frozen=True, slots=True)
class ListRef:
    """One list a config names, and what the name stands for.

    `name` is how the config refers to it (and the key of its matcher); `source` is the
    source's settings for kind SOURCE, None otherwise.
    """

    name: str
    kind: ListKind
    source: SourceConfig | None = None


def list_refs(names: Iterable[str], sources: Iterable[SourceConfig]) -> tuple[ListRef, ...]:
    """`names` (first-seen order, once each) as references, given the config's sources.

    Source names come first; then a name that looks like a path is a file; anything else is
    a catalogue id. The parser accepts only names that are what this rule says they are.
    """
    by_name: Mapping[str, SourceConfig] = {source.name: source for source in sources}
    refs: list[ListRef] = []
    for name in dict.fromkeys(names):
        source = by_name.get(name)
        if source is not None:
            refs.append(ListRef(name, ListKind.SOURCE, source))
        elif names_a_file(name):
            refs.append(ListRef(name, ListKind.FILE))
        else:
            refs.append(ListRef(name, ListKind.CATALOGUE))
    return tuple(refs)


class ListNames:
    """Checks the list names of one document against the catalogue and its sources.

    It remembers which references named a source, so that `allow_sources` can refuse a source
    that both allows and blocks.
    """

    def __init__(self, catalogue: frozenset[str], sources: frozenset[str]) -> None:
        self.catalogue = catalogue
        self.sources = sources
        self._source_refs: list[Item] = []

    def resolve(
        self, reader: Reader, entries: Entries, name: str, path: str, *, empty: str | None = None
    ) -> tuple[str, ...] | None:
        """List ids and paths under `name`, resolved and deduplicated; `None` when absent."""
        items = reader.items(entries, name, path, _list_name, empty=empty)
        if items is None:
            return None
        resolved = [item._replace(value=self._resolve_item(reader, item)) for item in items]
        return tuple(
            item.value for item in reader.unique([i for i in resolved if i.value is not None])
        )

    def _resolve_item(self, reader: Reader, item: Item) -> str | None:
        """A catalogue id or source name stays as is; a path becomes absolute and must name an
        existing file."""
        name: str = item.value
        if name in self.sources:
            self._source_refs.append(item)
            return name
        if not names_a_file(name):
            if name in self.catalogue:
                return name
            bundled = ", ".join(sorted(self.catalogue)) or "(none)"
            defined = ""
            if self.sources:
                defined = f"; sources are: {', '.join(sorted(self.sources))}"
            reader.problem(
                item.node,
                item.key,
                f"unknown list {name!r}: bundled lists are: {bundled}{defined}"
                f"{suggest(name, self.catalogue | self.sources)}; "
                "a local file needs a '/' in its path or a .txt/.hosts/.list/.conf name",
            )
            return None
        full = files.existing_file(reader, item.node, item.key, name, "list file")
        return None if full is None else str(full)

    def allow_sources(self, reader: Reader, top: Entries) -> tuple[str, ...]:
        """`allow`: sources whose entries are allowed everywhere; none may also be used to
        block (so call this after every block list was read)."""
        items = reader.items(top, "allow", "", _list_name) or []
        good: list[Item] = []
        for item in reader.unique(items):
            if item.value in self.sources:
                good.append(item)
                continue
            hint = ""
            if names_a_file(item.value):
                hint = "; for a local file, define a source with path: and name it here"
            reader.problem(
                item.node,
                item.key,
                f"unknown source {item.value!r}: allow takes names defined under sources"
                f"{hint}{suggest(item.value, self.sources)}",
            )
        allowed = {item.value: item for item in good}
        for ref in self._source_refs:
            first = allowed.get(ref.value)
            if first is not None:
                reader.problem(
                    ref.node,
                    ref.key,
                    f"source {ref.value!r} is an allow source ({first.key}, line "
                    f"{line_of(first.node)}); it cannot also block",
                )
        return tuple(allowed)


def _list_name(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"expected a list name or file path, got {describe(raw)}")
    if not raw.strip():
        raise ValueError("empty list name")
    return raw.strip()
