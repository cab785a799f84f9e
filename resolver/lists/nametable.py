"""A big list's clean names as one buffer and three arrays, not two million Python objects.

A dict of two million names costs seconds to build (every name hashed into a table far larger
than the caches) and is then walked again to join, hash and sort the names for the compiled
file. The bulk parser (`resolver.lists.formats`) already has every name in one lowercased
buffer, one per line: a `NameTable` keeps that buffer and, per distinct name, where it starts,
its length and its crc32 (the compiled file's hash), found with numpy. Duplicates are found by
sorting the crc32s with the line numbers: equal names have equal hashes, so only the few lines
whose hash another line shares are compared as bytes. The compiled file then uses the buffer
itself as its names section and the arrays as its index, with no join and no second hashing.

Only with numpy (the ``speed`` extra) and for big lists; without it, the dict path is used and
means the same. Pure: bytes in, values out.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any
from zlib import crc32

__all__ = ["NameTable", "build_table", "numpy_module"]


def numpy_module() -> Any:
    """numpy, or None when it is not installed."""
    try:
        import numpy
    except ImportError:
        return None
    return numpy


class NameTable:
    """Distinct names: ``text[starts[i] : starts[i] + lengths[i]]`` is the i-th, in file order
    of first appearance, with hash ``crcs[i]`` (numpy uint32 arrays). `text` holds each name
    followed by a newline, among other lines (duplicates, lines parsed one by one)."""

    __slots__ = ("_by_crc", "_sorted", "crcs", "lengths", "starts", "text")

    def __init__(self, text: bytes, starts: Any, lengths: Any, crcs: Any) -> None:
        self.text = text
        self.starts = starts
        self.lengths = lengths
        self.crcs = crcs
        self._by_crc: Any = None
        self._sorted: Any = None

    def __len__(self) -> int:
        return len(self.starts)

    def index(self, name: bytes) -> int:
        """The position of `name` in the table, or -1."""
        if self._sorted is None:  # only lines parsed one by one ask: sorted on first use
            self._by_crc = self.crcs.argsort(kind="stable")
            self._sorted = self.crcs[self._by_crc]
        key = crc32(name)
        low = int(self._sorted.searchsorted(key, side="left"))
        high = int(self._sorted.searchsorted(key, side="right"))
        for at in self._by_crc[low:high].tolist():
            start = int(self.starts[at])
            if self.text[start : start + int(self.lengths[at])] == name:
                return int(at)
        return -1

    def __contains__(self, name: bytes) -> bool:
        return self.index(name) >= 0

    def __iter__(self) -> Iterator[bytes]:
        text = self.text
        for start, length in zip(self.starts.tolist(), self.lengths.tolist(), strict=True):
            yield text[start : start + length]


def build_table(
    low: bytes, lines: Sequence[bytes], excluded: Sequence[int], newlines: Any = None
) -> NameTable:
    """The distinct names of `lines` (``low.split(b"\\n")[1:-1]``: `low` starts and ends with a
    newline), skipping blank lines and the lines numbered (from 1) in `excluded`. `newlines`,
    where the newlines of `low` are, if known already."""
    np = numpy_module()
    count = len(lines)
    if newlines is None:
        newlines = np.flatnonzero(np.frombuffer(low, dtype=np.uint8) == 0x0A)
    ends = newlines.astype(np.uint32)
    # Line i (from 0) is low[ends[i] + 1 : ends[i + 1]]: in `low[1:]` it starts at ends[i].
    starts = ends[:-1]
    lengths = ends[1:] - starts - np.uint32(1)
    keep = lengths > 0
    if excluded:
        keep[np.asarray(excluded, dtype=np.int64) - 1] = False
    crcs = np.fromiter(map(crc32, lines), dtype=np.uint32, count=count)
    candidates = np.flatnonzero(keep)
    packed = crcs[candidates].astype(np.uint64) << np.uint64(32) | candidates.astype(np.uint64)
    packed.sort()
    hashes = (packed >> np.uint64(32)).astype(np.uint32)
    shared = np.flatnonzero(hashes[1:] == hashes[:-1])
    if len(shared):
        line_of = (packed & np.uint64(0xFFFFFFFF)).astype(np.int64)
        _drop_repeats(keep, line_of, shared.tolist(), lines)
    unique = np.flatnonzero(keep)
    return NameTable(low[1:], starts[unique], lengths[unique].astype(np.uint8), crcs[unique])


def _drop_repeats(keep: Any, line_of: Any, shared: list[int], lines: Sequence[bytes]) -> None:
    """Unmark each line that repeats an earlier one. `shared` holds the positions (in hash
    order) whose hash equals the previous position's; within a run of equal hashes the lines
    are in file order, so the first of each name is kept."""
    run: dict[bytes, None] = {}
    previous = -2
    for position in shared:
        if position != previous + 1:
            run = {lines[int(line_of[position])]: None}
        line = int(line_of[position + 1])
        if lines[line] in run:
            keep[line] = False
        else:
            run[lines[line]] = None
        previous = position
