"""A compiled, memory-mapped blocklist: millions of names in ~25 bytes each, shared by processes.

A Python set of two million names costs ~110 bytes per name and is rebuilt by every process that
needs it. The compiled form is one flat file instead, ~26 bytes per name: the names back to back
and a small index sorted by a 30-bit hash, used in place through `mmap`, so loading it is
opening a file, its pages are shared by every process that maps it, and the kernel may drop and
re-read them like any cache.

Layout (little-endian, every section 8-byte aligned)::

    b"DWLC0001"  u32 meta_len  u32 0  7 x (u64 offset, u64 size)  meta (JSON)  pad
    filter   u8[2**fbits / 8]   bit (hash mod 2**fbits) set for every name: ~8 bits per name
    buckets  u32[2**bits + 1]   index of the first name of each hash bucket (top `bits` bits)
    hashes   u32[n]             crc32(name) >> 2, ascending (stable across processes, unlike
                                `hash()`; fast in C; small enough to sort at full speed)
    starts   u32[n]             where each name starts in `names`
    lengths  u8[n]              its length (names are at most 253 octets)
    flags    u8[n]              FLAG_* bits and answer code per name (absent when all equal)
    names    bytes              the canonical names (ASCII, no final dot), each ending in "\\n";
                                a big list's are its cleaned text as parsed, other lines
                                (duplicates, comments' leftovers) in between, never indexed

The hash is ``crc32(name) >> 2``: stable across processes and Python versions (unlike
`hash()`), computed in C, and small enough that Python sorts the keys at full speed.

A lookup hashes each suffix of the query name (one per label, as `DomainMatcher` probes its
dict). The filter turns away ~88% of the suffixes that are not listed after one byte read (most
queries are not blocked); the others find their bucket, bisect a handful of names and compare
the stored name byte for byte, so a hash collision costs one extra comparison and never blocks
a wrong name: there are no false positives. Buckets hold ~4 names and the filter ~8 bits per
name whatever the list size, so a lookup costs the same for a thousand names as for millions.
Label wildcards (``v*.x.com``) and regex rules are few; they live in the JSON header and are
matched in memory.

`compile_rules` and `CompiledMatcher` are pure (bytes in, bytes out); `write_atomic` and
`open_compiled` are the thin file shell.
"""

from __future__ import annotations

import json
import mmap
import os
import re
import struct
import sys
import zlib
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import accumulate
from pathlib import Path
from typing import Any, Final
from zlib import crc32

from resolver.lists.formats import (
    FLAG_ALLOW_BELOW,
    FLAG_ALLOW_SELF,
    FLAG_BELOW,
    FLAG_SELF,
    FLAG_WILD,
    SUBTREE,
    IpRule,
    ParsedRules,
    Record,
    answer_of,
)
from resolver.lists.matcher import BlockRule, DomainMatcher, NetworkRules
from resolver.lists.nametable import NameTable, numpy_module
from resolver.protocol.names import FAST_LABEL, LENGTHS_TO_DOTS, MAX_LABEL, to_text

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "CompiledMatcher",
    "ListScreen",
    "compile_rules",
    "from_parsed",
    "open_compiled",
    "write_atomic",
]

MAGIC = b"DWLC0001"
FORMAT_VERSION = 1
_SECTIONS = 7
_PREFIX = struct.Struct(f"<8sII{2 * _SECTIONS}Q")
_FILTER_BITS_PER_ENTRY = 8
_NUMPY_FROM = 50_000  # below this, importing numpy costs more than it saves
_ALIGN = 8
_BUCKET_LOAD = 4
_MIN_BITS = 4
_MAX_BITS = 24
_ALLOWS = FLAG_ALLOW_SELF | FLAG_ALLOW_BELOW
# Query bytes that can appear in a listed name; any other byte means no listed name matches.
_NAME_CHARS = b"abcdefghijklmnopqrstuvwxyz0123456789-_."
_LABEL_CHARS = _NAME_CHARS[:-1]
# What the lookups use, as `Final` names: compiled, each is a C global read instead of a hash
# probe of the module's namespace (what an imported name costs at every use).
_crc32: Final = crc32
_TO_DOTS: Final = LENGTHS_TO_DOTS
_FAST: Final[int] = FAST_LABEL
_SELF: Final[int] = FLAG_SELF
_ALLOW_SELF: Final[int] = FLAG_ALLOW_SELF
_BELOW: Final[int] = FLAG_BELOW
_ALLOW_BELOW: Final[int] = FLAG_ALLOW_BELOW
_WILD: Final[int] = FLAG_WILD


def _bits_for(count: int) -> int:
    bits = _MIN_BITS
    while bits < _MAX_BITS and (1 << bits) * _BUCKET_LOAD < count:
        bits += 1
    return bits


def _pad(size: int) -> bytes:
    return b"\0" * (-size % _ALIGN)


def compile_rules(
    parsed: ParsedRules,
    list_name: str,
    meta: Mapping[str, Any] | None = None,
    *,
    accelerate: bool = True,
) -> list[bytes]:
    """The compiled file's bytes for `parsed`, as chunks to write (or join) in order.

    `meta` is stored in the header as is (the loader keeps the source's fingerprint there).
    The names are written in whatever order the set yields them and only the small per-entry
    index (hash, start, length, flags) is sorted, so no name is moved twice. With numpy
    installed (and `accelerate`), hashing, sorting and the index arrays are vectorised; the
    result means the same either way. A big list's names in a `NameTable` (``parsed.bulk``)
    are not even joined: its text is the names section, and its hashes are the index's.
    """
    plain = parsed.plain
    flagged = parsed.flagged
    bulk = parsed.bulk
    names = list(plain)
    if flagged:
        names.extend(name for name in flagged if not parsed.has_plain(name))
    # One newline after each name: numpy finds the lengths in the joined bytes at C speed,
    # without another pass over two million Python objects.
    blob = b"\n".join(names) + b"\n" if names else b""
    flag_bytes = b""
    if flagged:
        get = flagged.get
        flag_bytes = bytes(get(name, 0) | (SUBTREE if name in plain else 0) for name in names)
        if bulk is not None:
            flag_bytes = _bulk_flags(bulk, flagged) + flag_bytes
    count = len(names) + (len(bulk) if bulk is not None else 0)
    bits = _bits_for(count)
    fbits = 6
    while fbits < 30 and (1 << fbits) < _FILTER_BITS_PER_ENTRY * count:
        fbits += 1
    if bulk is not None:  # only ever built with numpy
        index = _index_table(bulk, names, blob, flag_bytes, bits, fbits)
        blob = bulk.text + blob
    else:
        numpy = numpy_module() if accelerate and count > _NUMPY_FROM else None
        build = _index_numpy if numpy is not None else _index_python
        index = build(names, blob, flag_bytes, bits, fbits)
    del names
    bloom, buckets, hashes, starts, lengths, flag_bytes = index
    header: dict[str, Any] = {
        "version": FORMAT_VERSION,
        "list": list_name,
        "count": count,
        "bits": bits,
        "fbits": fbits,
        "uniform": None if flagged else SUBTREE,
        "has_allow": bool(
            (flagged and any(flags & _ALLOWS for flags in flag_bytes))
            or any(glob.allow for glob in parsed.globs)
            or any(rule.allow for rule in parsed.regexes)
        ),
        "globs": [[glob.pattern, glob.allow, glob.answer] for glob in parsed.globs],
        "regexes": [[rule.pattern, rule.allow] for rule in parsed.regexes],
        "meta": dict(meta or {}),
    }
    rpz = _rpz_header(parsed)
    if rpz:
        header["rpz"] = rpz
    meta_bytes = json.dumps(header, separators=(",", ":")).encode()
    meta_bytes += b" " * len(_pad(_PREFIX.size + len(meta_bytes)))
    sections = (bloom, buckets, hashes, starts, lengths, flag_bytes, blob)
    layout: list[int] = []
    position = _PREFIX.size + len(meta_bytes)
    for section in sections:
        layout += [position, len(section)]
        position += len(section) + len(_pad(len(section)))
    chunks = [_PREFIX.pack(MAGIC, len(meta_bytes), 0, *layout), meta_bytes]
    for section in sections:
        chunks += [section, _pad(len(section))]
    return chunks


_Index = tuple[bytes, bytes, bytes, bytes, bytes, bytes]


def _rpz_header(parsed: ParsedRules) -> dict[str, Any]:
    """An RPZ zone's rules that are not names with flags, for the JSON header: the actions of
    owners the flags cannot say (local data), and the address triggers. Few, as globs are."""
    rpz: dict[str, Any] = {}
    if parsed.rpz_actions:
        rpz["actions"] = {
            pattern: [answer, _hex(records)]
            for pattern, (answer, records) in parsed.rpz_actions.items()
        }
    for key, rules in (("client_ip", parsed.client_ips), ("response_ip", parsed.response_ips)):
        if rules:
            rpz[key] = [_ip_entry(rule) for rule in rules.values()]
    return rpz


def _hex(records: Iterable[Record]) -> list[list[Any]]:
    return [[rtype, rdata.hex()] for rtype, rdata in records]


def _ip_entry(rule: IpRule) -> list[Any]:
    return [rule.network, rule.action, rule.owner, _hex(rule.records)]


def _records(entries: Iterable[list[Any]]) -> tuple[Record, ...]:
    return tuple((int(rtype), bytes.fromhex(rdata)) for rtype, rdata in entries)


def _network_rules(list_name: str, entries: list[list[Any]] | None) -> NetworkRules | None:
    if not entries:
        return None
    return NetworkRules(
        (network, BlockRule(list_name, owner, answer, _records(records)))
        for network, answer, owner, records in entries
    )


def _index_python(names: list[bytes], blob: bytes, flags: bytes, bits: int, fbits: int) -> _Index:
    """Filter, buckets, hashes, starts, lengths and flags in hash order, in plain Python."""
    keys = [crc >> 2 for crc in map(zlib.crc32, names)]
    order = sorted(range(len(names)), key=keys.__getitem__)
    lengths = bytes(map(len, names))
    starts = array("I", accumulate((size + 1 for size in lengths), initial=0))
    hashes = array("I", map(keys.__getitem__, order))
    del keys
    sorted_starts = _u32(map(starts.__getitem__, order))
    sorted_lengths = bytes(map(lengths.__getitem__, order))
    sorted_flags = bytes(map(flags.__getitem__, order)) if flags else b""
    shift = 30 - bits
    buckets = array("I", (bisect_left(hashes, b << shift) for b in range(1 << bits)))
    buckets.append(len(hashes))
    fmask = (1 << fbits) - 1
    bloom = bytearray(1 << (fbits - 3))
    for key in hashes:
        bloom[(key & fmask) >> 3] |= 1 << (key & 7)
    return (
        bytes(bloom),
        _u32(buckets),
        _u32(hashes),
        sorted_starts,
        sorted_lengths,
        sorted_flags,
    )


def _index_numpy(names: list[bytes], blob: bytes, flags: bytes, bits: int, fbits: int) -> _Index:
    """The same index as `_index_python`, vectorised with numpy."""
    np = numpy_module()
    count = len(names)
    keys = np.fromiter(map(zlib.crc32, names), dtype=np.uint32, count=count) >> np.uint32(2)
    starts, size = _spans(np, blob, count)
    return _sorted_index(np, keys, starts, size, flags, bits, fbits)


def _spans(np: Any, blob: bytes, count: int) -> tuple[Any, Any]:
    """Where each of the `count` names joined in `blob` (each ending in a newline) starts, and
    its length, as numpy arrays."""
    ends = np.flatnonzero(np.frombuffer(blob, dtype=np.uint8) == 0x0A).astype(np.uint32)
    starts = np.zeros(count, dtype=np.uint32)
    starts[1:] = ends[:-1] + np.uint32(1)
    return starts, (ends - starts).astype(np.uint8)


def _index_table(
    table: NameTable, names: list[bytes], blob: bytes, flags: bytes, bits: int, fbits: int
) -> _Index:
    """`_index_numpy` for a `NameTable`'s names (whose hashes, starts and lengths it has, in
    its text) followed by `names` (joined in `blob`, placed after the text)."""
    np = numpy_module()
    keys = table.crcs >> np.uint32(2)
    starts = table.starts
    size = table.lengths
    if names:
        more, more_size = _spans(np, blob, len(names))
        extra = np.fromiter(map(zlib.crc32, names), dtype=np.uint32, count=len(names))
        keys = np.concatenate([keys, extra >> np.uint32(2)])
        size = np.concatenate([size, more_size])
        starts = np.concatenate([starts, more + np.uint32(len(table.text))])
    return _sorted_index(np, keys, starts, size, flags, bits, fbits)


def _sorted_index(
    np: Any, keys: Any, starts: Any, size: Any, flags: bytes, bits: int, fbits: int
) -> _Index:
    """Filter, buckets, hashes, starts, lengths and flags in hash order, from the per-name
    arrays in name order. Each key is sorted with its position in its low bits: one plain
    sort of distinct numbers, in the order a stable sort by key gives."""
    count = len(keys)
    packed = keys.astype(np.uint64) << np.uint64(32) | np.arange(count, dtype=np.uint64)
    packed.sort()
    order = (packed & np.uint64(0xFFFFFFFF)).astype(np.intp)
    hashes = (packed >> np.uint64(32)).astype(np.uint32)
    del packed
    shift = 30 - bits
    bounds = np.arange(1 << bits, dtype=np.uint64) << np.uint64(shift)
    buckets = np.append(np.searchsorted(hashes, bounds, side="left"), count).astype(np.uint32)
    bitmap = np.zeros(1 << fbits, dtype=bool)
    bitmap[hashes & np.uint32((1 << fbits) - 1)] = True
    bloom = np.packbits(bitmap, bitorder="little")
    little = "<u4"
    sorted_flags = np.frombuffer(flags, dtype=np.uint8)[order].tobytes() if flags else b""
    return (
        bloom.tobytes(),
        buckets.astype(little).tobytes(),
        hashes.astype(little).tobytes(),
        starts[order].astype(little).tobytes(),
        size[order].tobytes(),
        sorted_flags,
    )


def _bulk_flags(table: NameTable, flagged: Mapping[bytes, int]) -> bytes:
    """The flags of a `NameTable`'s names: each blocks its subtree, with a flagged name's
    own flags added."""
    flags = bytearray([SUBTREE]) * len(table)
    for name, bits in flagged.items():
        at = table.index(name)
        if at >= 0:
            flags[at] |= bits
    return bytes(flags)


def _u32(values: Any) -> bytes:
    """Little-endian u32 bytes of an iterable of ints (or an array), built in C."""
    data = values if isinstance(values, array) else array("I", values)
    if data.itemsize != 4:  # pragma: no cover - every platform we run on has 4-byte int
        raise RuntimeError("array('I') is not 32-bit here")
    if struct.pack("=I", 1) != struct.pack("<I", 1):  # pragma: no cover - big-endian hosts
        data = array("I", data)
        data.byteswap()
    return data.tobytes()


_Split = tuple[bytes, list[int], int]
_last_query: tuple[bytes | None, _Split | None] = (None, None)


def _suffixes(qname: bytes) -> _Split | None:
    """(the name as text, the offset of each label, the first label from which on every label
    could appear in a listed name), or None for malformed input.

    Text offsets equal wire offsets (each length byte becomes the dot before its label), so
    ``text[offset:]`` is the suffix starting at wire offset `offset`. A label with a byte no
    listed name has (a dot, a control byte, upper case) only rules out the suffixes that
    contain it: ``bad\\001x.tiktok.com`` is still below ``tiktok.com``. The last result is
    kept: the policy asks every list of a group about the same query object in turn.
    """
    global _last_query
    if _last_query[0] is qname:
        return _last_query[1]
    offsets: list[int] = []
    pos = 0
    end = len(qname)
    longest = 0
    while pos < end:
        length = qname[pos]
        if not length:
            break
        if length > longest:
            longest = length
        offsets.append(pos)
        pos += 1 + length
    result: _Split | None = None
    if pos == end - 1 and offsets and longest <= MAX_LABEL:
        if longest <= FAST_LABEL:
            text = qname[1:pos].translate(LENGTHS_TO_DOTS)
        else:
            buffer = bytearray(qname[1:pos])
            for offset in offsets[1:]:
                buffer[offset - 1] = 0x2E
            text = bytes(buffer)
        first = 0
        # Only a dot or a control byte inside a label can make a suffix look like a listed
        # name it is not (every other odd byte simply matches nothing).
        if text.count(b".") != len(offsets) - 1:
            first = len(offsets)
            while first:
                start = offsets[first - 1] + 1
                if qname[start : start + qname[start - 1]].translate(None, _LABEL_CHARS):
                    break
                first -= 1
        result = (text, offsets, first)
    _last_query = (qname, result)
    return result


class CompiledMatcher:
    """A compiled list, in a buffer (bytes or a read-only mmap); `DomainMatcher`'s interface.

    Within one list the most specific listed suffix decides, and an allow rule that covers the
    name (``@@||x^``, ``rpz-passthru``) beats every block rule of the list, as in AdGuard.
    Label wildcards and regexes are consulted when no listed name blocks.
    """

    __slots__ = (
        "_allow_regex",
        "_block_regex",
        "_buckets",
        "_buffer",
        "_filter",
        "_flags",
        "_fmask",
        "_globs",
        "_has_allow",
        "_hashes",
        "_keep",
        "_lengths",
        "_names",
        "_names_at",
        "_regex_rules",
        "_rpz_actions",
        "_shift",
        "_starts",
        "_uniform",
        "_uniform_answer",
        "client_ips",
        "count",
        "header",
        "list_name",
        "meta",
        "response_ips",
    )
    # Typed, so that compiled code keeps the offsets and hashes as machine integers (inferred
    # from the JSON header they would be `Any`, and every `&` and `+` a generic call).
    _filter: memoryview
    _fmask: int
    _shift: int
    _buckets: memoryview
    _hashes: memoryview
    _starts: memoryview
    _lengths: memoryview
    _flags: memoryview
    _names_at: int
    _uniform: int | None
    _has_allow: bool

    def __init__(self, buffer: bytes | mmap.mmap, keep: object = None) -> None:
        view = memoryview(buffer)
        if len(view) < _PREFIX.size:
            raise ValueError("compiled list is truncated")
        magic, meta_len, _, *layout = _PREFIX.unpack_from(view, 0)
        if magic != MAGIC:
            raise ValueError("not a compiled dnswarden list (bad magic)")
        spans = [(layout[i], layout[i] + layout[i + 1]) for i in range(0, 2 * _SECTIONS, 2)]
        if max(end for _, end in spans) > len(view) or _PREFIX.size + meta_len > len(view):
            raise ValueError("compiled list is truncated")
        header = json.loads(bytes(view[_PREFIX.size : _PREFIX.size + meta_len]))
        if header.get("version") != FORMAT_VERSION:
            raise ValueError(f"compiled list version {header.get('version')} is not supported")
        bloom, buckets, hashes, starts, lengths, flags, names = (
            view[start:end] for start, end in spans
        )
        self._keep = (buffer, keep)
        self.header = header
        self.meta: dict[str, Any] = header.get("meta", {})
        self.list_name: str = header["list"]
        self.count: int = header["count"]
        self._filter = bloom
        self._fmask = (1 << int(header["fbits"])) - 1
        self._buckets = buckets.cast("I")
        self._hashes = hashes.cast("I")
        self._starts = starts.cast("I")
        self._lengths = lengths
        self._flags = flags
        self._names = names
        # The names again, as the buffer and where they start in it: slicing a bytes or mmap
        # object makes bytes, which compare in C at once; a memoryview slice is an object more
        # and compares item by item.
        self._buffer = buffer
        self._names_at = int(spans[6][0])
        self._uniform = header["uniform"]
        self._uniform_answer = answer_of(self._uniform) if self._uniform is not None else None
        self._has_allow = bool(header["has_allow"])
        self._shift = 30 - int(header["bits"])
        self._globs: tuple[DomainMatcher, DomainMatcher] | None = None
        if header["globs"]:
            block, allow = DomainMatcher(), DomainMatcher()
            for pattern, is_allow, answer in header["globs"]:
                target = allow if is_allow else block
                target.add(pattern, BlockRule(self.list_name, pattern, answer))
            self._globs = (block, allow)
        self._regex_rules: tuple[tuple[str, bool], ...] = tuple(
            (pattern, bool(is_allow)) for pattern, is_allow in header["regexes"]
        )
        self._block_regex = _RegexSet.of(self._regex_rules, allow=False)
        self._allow_regex = _RegexSet.of(self._regex_rules, allow=True)
        rpz = header.get("rpz") or {}
        self._rpz_actions: dict[str, tuple[str, tuple[Record, ...]]] | None = {
            pattern: (answer, _records(records))
            for pattern, (answer, records) in rpz.get("actions", {}).items()
        } or None
        # RPZ address triggers (None: the list has none, the policy never asks).
        self.client_ips = _network_rules(self.list_name, rpz.get("client_ip"))
        self.response_ips = _network_rules(self.list_name, rpz.get("response_ip"))

    def __len__(self) -> int:
        addresses = len(self.client_ips or ()) + len(self.response_ips or ())
        return self.count + len(self.header["globs"]) + len(self._regex_rules) + addresses

    def _find(self, suffix: bytes) -> int:
        """The index of the name `suffix` (exact bytes), or -1."""
        key = _crc32(suffix) >> 2
        if not self._filter[(key & self._fmask) >> 3] & (1 << (key & 7)):
            return -1
        return self._probe(suffix, key)

    def _probe(self, suffix: bytes, key: int) -> int:
        """`_find` past the filter: the index of `suffix`, whose hash is `key`, or -1.

        A bucket holds a few hashes (`_BUCKET_LOAD` on average), and every hash after it is
        larger: read in turn from the bucket's first until one is larger, they cost fewer
        reads than a `bisect` call over the bucket (and its end need not be read)."""
        hashes = self._hashes
        index: int = self._buckets[key >> self._shift]
        stop = self.count
        size = len(suffix)
        while index < stop:
            found: int = hashes[index]
            if found == key:
                if self._lengths[index] == size:
                    start = self._names_at + self._starts[index]
                    if self._buffer[start : start + size] == suffix:
                        return index
            elif found > key:
                break
            index += 1
        return -1

    def lookup(self, qname: bytes) -> tuple[BlockRule, int] | None:
        """The rule blocking `qname` (lowercase wire form) and the offset of the blocked zone,
        or None. Malformed input never raises."""
        hit = self._walk(qname)
        if self._has_allow and hit is not _ALLOWED and self._allowed_elsewhere(qname):
            return None
        if hit is _ALLOWED:
            return None
        if hit is not None:
            return hit  # type: ignore[return-value]
        if self._globs is not None:
            found = self._globs[0].lookup(qname)
            if found is not None:
                return found
        if self._block_regex is not None:
            index = self._block_regex.search(to_text(qname))
            if index is not None:
                pattern = self._regex_rules[index][0]
                return BlockRule(self.list_name, f"/{pattern}/"), 0
        return None

    def _walk(self, qname: bytes) -> tuple[BlockRule, int] | object | None:
        """The most specific listed suffix that blocks, `_ALLOWED` when a listed allow rule
        covers the name, else None.

        A plain name (labels of at most `FAST_LABEL` octets, no dot or control byte in one: all
        but a handful of queries) is walked here, straight from its wire form: one C-level
        translate makes its text, in which every label's suffix starts at the label's wire
        offset. Any other goes through `_suffixes` (`_walk_split`)."""
        if not self.count:
            return None
        end = len(qname) - 1
        if end < 1 or qname[end]:
            return self._walk_split(qname)
        text = qname[1:end].translate(_TO_DOTS)
        uniform = self._uniform
        bloom = self._filter
        fmask = self._fmask
        found: tuple[BlockRule, int] | None = None
        pos = 0
        above = 0  # the offset of the label before `pos`'s: a wildcard's zone
        while pos < end:
            length = qname[pos]
            if not length or length > _FAST:
                return self._walk_split(qname)
            suffix = text[pos:]
            key = _crc32(suffix) >> 2  # `_find`, inline: most suffixes end at the filter
            if bloom[(key & fmask) >> 3] & (1 << (key & 7)):
                index = self._probe(suffix, key)
                if index >= 0:
                    if found is None and not _plain_below(qname, pos, end, suffix):
                        return self._walk_split(qname)
                    flags = uniform if uniform is not None else self._flags[index]
                    if pos == 0:
                        blocks, allows = flags & _SELF, flags & _ALLOW_SELF
                    else:
                        blocks, allows = flags & _BELOW, flags & _ALLOW_BELOW
                    if allows:
                        return _ALLOWED
                    if blocks and found is None:
                        found = self._rule(suffix, flags, pos, above, uniform is not None)
                        if not self._has_allow:
                            break
            above = pos
            pos += length + 1
        return found

    def _rule(
        self, suffix: bytes, flags: int, offset: int, above: int, uniform: bool
    ) -> tuple[BlockRule, int]:
        """The rule (and zone offset) of a listed `suffix` at wire offset `offset` that blocks
        the name; `above` is the offset of the label before it."""
        if offset and flags & _WILD:
            pattern, zone = "*." + suffix.decode(), above
        else:
            pattern, zone = suffix.decode(), offset
        answer = self._uniform_answer if uniform else answer_of(flags)
        rule = BlockRule(self.list_name, pattern, answer)
        if self._rpz_actions is not None and pattern in self._rpz_actions:
            answer, data = self._rpz_actions[pattern]
            rule = BlockRule(self.list_name, pattern, answer, data)
        return rule, zone

    def _walk_split(self, qname: bytes) -> tuple[BlockRule, int] | object | None:
        """`_walk` for any name, through `_suffixes` (which copes with long labels and odd
        bytes)."""
        split = _suffixes(qname)
        if split is None or not self.count:
            return None
        text, offsets, depth = split
        uniform = self._uniform
        bloom = self._filter
        fmask = self._fmask
        found: tuple[BlockRule, int] | None = None
        while depth < len(offsets):
            offset = offsets[depth]
            suffix = text[offset:]
            depth += 1
            key = _crc32(suffix) >> 2  # `_find`, inline: most suffixes end at the filter
            if not bloom[(key & fmask) >> 3] & (1 << (key & 7)):
                continue
            index = self._probe(suffix, key)
            if index < 0:
                continue
            flags = uniform if uniform is not None else self._flags[index]
            if depth == 1:
                blocks, allows = flags & _SELF, flags & _ALLOW_SELF
            else:
                blocks, allows = flags & _BELOW, flags & _ALLOW_BELOW
            if allows:
                return _ALLOWED
            if blocks and found is None:
                above = offsets[depth - 2] if depth > 1 else 0
                found = self._rule(suffix, flags, offset, above, uniform is not None)
                if not self._has_allow:
                    break
        return found

    def passes(self, qname: bytes) -> bool:
        """An allow rule of the list (an RPZ PASSTHRU) covers `qname`: then the list's other
        rules, its rpz-ip rules too, do not apply to it."""
        if not self._has_allow:
            return False
        return self._walk(qname) is _ALLOWED or self._allowed_elsewhere(qname)

    def _allowed_elsewhere(self, qname: bytes) -> bool:
        """An allow rule among the wildcards or regexes covers `qname`."""
        if self._globs is not None and self._globs[1].lookup(qname) is not None:
            return True
        allow = self._allow_regex
        return allow is not None and allow.search(to_text(qname)) is not None

    def rules(self) -> Iterator[tuple[str, int]]:
        """Every listed name with its FLAG_* bits (for export), in hash order."""
        names = self._names
        starts = self._starts
        uniform = self._uniform
        for index in range(self.count):
            start = starts[index]
            name = bytes(names[start : start + self._lengths[index]]).decode()
            yield name, uniform if uniform is not None else self._flags[index]

    def action(self, pattern: str) -> str | None:
        """The answer of an RPZ owner (``x`` or ``*.x``) whose action its name's flags cannot
        carry (local data; ``x`` and ``*.x`` with different actions), else None (for export)."""
        actions = self._rpz_actions
        found = actions.get(pattern) if actions is not None else None
        return found[0] if found is not None else None

    def globs(self) -> list[tuple[str, bool, str | None]]:
        """The label-wildcard rules: (pattern, allow, answer)."""
        return [(pattern, bool(allow), answer) for pattern, allow, answer in self.header["globs"]]

    def regexes(self) -> tuple[tuple[str, bool], ...]:
        """The regex rules: (pattern, allow)."""
        return self._regex_rules


_ALLOWED = object()


def _plain_text(qname: bytes) -> bytes | None:
    """The text of the wire name `qname` when it is plain (labels of at most `FAST_LABEL`
    octets, no dot or control byte in one), in which each label's suffix starts at the
    label's wire offset; None for any other name (`_suffixes` copes with those)."""
    end = len(qname) - 1
    pos = 0
    labels = 0
    while pos < end:
        length = qname[pos]
        if not length or length > _FAST:
            return None
        pos += length + 1
        labels += 1
    if pos != end or not labels or qname[end]:
        return None
    text = qname[1:end].translate(_TO_DOTS)
    return text if text.count(b".") == labels - 1 else None


def _plain_below(qname: bytes, pos: int, end: int, suffix: bytes) -> bool:
    """Whether the wire name `qname` from `pos` on (its root at `end`) is labels of at most
    `FAST_LABEL` octets with no dot or control byte in one, so that `suffix`, its translated
    text, is its name: checked once a suffix is found, not for every name walked. (`count`
    is one method call compiled; a loop over the bytes, cheaper compiled, costs the pure core
    about 7k instructions a block.)"""
    labels = 0
    while pos < end:
        length = qname[pos]
        if not length or length > _FAST:
            return False
        pos += length + 1
        labels += 1
    return pos == end and suffix.count(b".") == labels - 1


SCREEN_SLOTS_PER_NAME = 16
"""Slots of a `ListScreen` per listed name (rounded up to a power of two, at most
`_SCREEN_MAX_BITS` bits): a byte each, few enough in use that a listed name seldom shares its
slot with another list's and most unlisted suffixes find theirs empty."""
_SCREEN_MAX_BITS = 24
_SCREEN_NUMPY_FROM = 1_000_000
_SCREEN_MANY = 255
"""A slot where several lists' names meet (the lists are listed aside); also the cap on lists."""
_SUBSETS_LIMIT = 1024


class ListScreen:
    """Which of a group's lists may match a name, from one probe per label for all of them.

    Asking twenty lists costs twenty walks over the name's suffixes (one hash, one filter probe
    each per list), so a group with many lists paid for each (~1 µs a list). The screen is one
    table for all of them, built once per engine (load, reload): a slot per hash of every name
    in every compiled list, holding the list that has it (or, where lists meet, "several",
    listed aside). A lookup hashes each suffix once, and a list whose slot it finds is asked
    only if its own filter has the hash too (so a suffix every query shares, like ``com``,
    cannot drag a list in for every name); those lists alone are asked, in their order, with
    their own `lookup`: the same decisions and the same provenance, since a list with no name
    equal to any suffix matches nothing. Lists it cannot see into (label wildcards, regexes,
    other matchers) are always asked. Pure: bytes in, items out.
    """

    __slots__ = ("_always", "_filters", "_items", "_many", "_mask", "_matchers", "_of", "_owners",
                 "_subsets", "_tops")  # fmt: skip
    _always: int
    _of: list[int]
    _mask: int
    _owners: bytes
    _many: dict[int, tuple[int, ...]]
    _filters: list[tuple[Any, int]]
    _matchers: list[CompiledMatcher | None]

    def __init__(
        self, items: Sequence[Any], matchers: Sequence[object], like: ListScreen | None = None
    ) -> None:
        """`matchers[i]` is what `items[i]` asks: a `CompiledMatcher` without wildcards or
        regexes is screened, anything else is always asked. `like`, a screen of the same
        matchers in the same order, lends its table."""
        self._items = tuple(items)
        self._subsets: dict[int, tuple[Any, ...]] = {}
        self._tops: dict[bytes, int] = {}
        if like is not None:
            self._always, self._of, self._mask, self._owners, self._many = (
                like._always, like._of, like._mask, like._owners, like._many
            )  # fmt: skip
            self._filters, self._matchers = like._filters, like._matchers
            return
        compiled: dict[int, tuple[int, CompiledMatcher]] = {}
        self._always = 0
        bits: dict[int, int] = {}
        for index, matcher in enumerate(matchers):
            if not screenable(matcher):
                self._always |= 1 << index
                continue
            assert isinstance(matcher, CompiledMatcher)
            owner, _ = compiled.setdefault(id(matcher), (len(compiled) + 1, matcher))
            bits[owner] = bits.get(owner, 0) | 1 << index
        if len(compiled) >= _SCREEN_MANY:
            raise ValueError("too many lists to screen")
        self._of = [0] * _SCREEN_MANY
        # Per owner: the items it stands for, and its list's own filter (bytes, mask).
        self._filters = [(b"", 0)] * _SCREEN_MANY
        self._matchers = [None] * _SCREEN_MANY
        for owner, matcher in compiled.values():
            self._of[owner] = bits[owner]
            self._filters[owner] = (matcher._filter, matcher._fmask)
            self._matchers[owner] = matcher
        total = sum(matcher.count for _, matcher in compiled.values())
        slots = 1 << min(max(10, (total * SCREEN_SLOTS_PER_NAME - 1).bit_length()),
                         _SCREEN_MAX_BITS)  # fmt: skip
        self._mask = slots - 1
        tables = [(owner, m._hashes) for owner, m in compiled.values()]
        self._owners, self._many = _owners(slots, tables)

    def _top(self, label: bytes) -> int:
        """The items whose lists have the one-label name `label` itself, found exactly once
        per label: every name shares its top-level domain, so a false positive there would
        drag a list into every lookup."""
        key = _crc32(label) >> 2
        owner = self._owners[key & self._mask]
        found = 0
        if owner:
            for one in (owner,) if owner != _SCREEN_MANY else self._many[key & self._mask]:
                matcher = self._matchers[one]
                if matcher is not None and matcher._find(label) >= 0:
                    found |= self._of[one]
        if len(self._tops) >= _SUBSETS_LIMIT:
            self._tops.clear()
        self._tops[label] = found
        return found

    def select(self, qname: bytes) -> tuple[Any, ...]:
        """The items whose lists may match `qname` (lowercase wire form), in their order."""
        found = self._always
        text = _plain_text(qname)
        if text is not None:  # the loop below, from the wire form (`CompiledMatcher._walk`)
            owners = self._owners
            mask = self._mask
            end = len(qname) - 1
            pos = 0
            while True:
                after = pos + qname[pos] + 1
                if after == end:
                    top = text[pos:]
                    known = self._tops.get(top)
                    found |= self._top(top) if known is None else known
                    break
                key = _crc32(text[pos:]) >> 2
                pos = after
                owner = owners[key & mask]
                if not owner:
                    continue
                for one in (owner,) if owner != _SCREEN_MANY else self._many[key & mask]:
                    bloom, fmask = self._filters[one]
                    if bloom[(key & fmask) >> 3] & (1 << (key & 7)):
                        found |= self._of[one]
            return self._subset(found)
        split = _suffixes(qname)
        if split is not None:
            text, offsets, depth = split
            owners = self._owners
            mask = self._mask
            last = len(offsets) - 1
            while depth < last:
                key = _crc32(text[offsets[depth] :]) >> 2
                depth += 1
                owner = owners[key & mask]
                if not owner:
                    continue
                for one in (owner,) if owner != _SCREEN_MANY else self._many[key & mask]:
                    bloom, fmask = self._filters[one]
                    if bloom[(key & fmask) >> 3] & (1 << (key & 7)):
                        found |= self._of[one]
            if depth == last:
                top = text[offsets[last] :]
                known = self._tops.get(top)
                found |= self._top(top) if known is None else known
        return self._subset(found)

    def _subset(self, found: int) -> tuple[Any, ...]:
        """The items whose bits are set in `found`, in their order (made once per set)."""
        subset = self._subsets.get(found)
        if subset is None:
            if len(self._subsets) >= _SUBSETS_LIMIT:
                self._subsets.clear()
            items = self._items
            subset = tuple(items[i] for i in range(len(items)) if found >> i & 1)
            self._subsets[found] = subset
        return subset


def screenable(matcher: object) -> bool:
    """Whether a `ListScreen` can tell when `matcher` cannot match: a compiled list whose
    every rule is a listed name (no label wildcards, no regexes)."""
    return (
        type(matcher) is CompiledMatcher
        and matcher._globs is None
        and matcher._block_regex is None
        and matcher._allow_regex is None
    )


def _owners(
    slots: int, tables: Sequence[tuple[int, Any]]
) -> tuple[bytes, dict[int, tuple[int, ...]]]:
    """The screen's slots: for each hash in each (owner, hashes) table, the owner in slot
    `hash % slots`, or `_SCREEN_MANY` where owners meet, with those owners listed aside."""
    mask = slots - 1
    many: dict[int, set[int]] = {}
    # Plain Python takes ~0.4 s a million names; importing numpy for fewer would cost the
    # server ~15 MB of memory it otherwise never pays (lists that size compile in a child).
    big = sum(len(hashes) for _, hashes in tables) > _SCREEN_NUMPY_FROM
    np = numpy_module() if big or "numpy" in sys.modules else None
    if np is not None:
        owners = np.zeros(slots, dtype=np.uint8)
        spots = [np.frombuffer(hashes, dtype=np.uint32) & np.uint32(mask) for _, hashes in tables]
        for (owner, _), at in zip(tables, spots, strict=True):
            current = owners[at]
            owners[at] = np.where((current == 0) | (current == owner), owner, _SCREEN_MANY)
        shared = np.flatnonzero(owners == _SCREEN_MANY)
        for (owner, _), at in zip(tables, spots, strict=True):
            for slot in np.unique(at[np.isin(at, shared)]).tolist():
                many.setdefault(slot, set()).add(owner)
        table = owners.tobytes()
    else:
        first = bytearray(slots)
        for owner, hashes in tables:
            for key in hashes:
                at = key & mask
                current = first[at]
                if current in (0, owner):
                    first[at] = owner
                    continue
                if current != _SCREEN_MANY:
                    many[at] = {current}
                    first[at] = _SCREEN_MANY
                many[at].add(owner)
        table = bytes(first)
    return table, {slot: tuple(sorted(found)) for slot, found in many.items()}


class _RegexSet:
    """Several regexes searched as one alternation (one C-level search per query instead of
    one per rule), with a group around each rule to tell which one matched."""

    __slots__ = ("_groups", "_pattern", "_singles")

    def __init__(self, rules: list[tuple[int, str]]) -> None:
        self._groups: dict[int, int] = {}
        parts: list[str] = []
        group = 1
        singles = []
        for index, pattern in rules:
            compiled = re.compile(pattern)
            singles.append((index, compiled))
            self._groups[group] = index
            parts.append(f"({pattern})")
            group += 1 + compiled.groups
        self._singles = tuple(singles)
        self._pattern: re.Pattern[str] | None
        try:
            self._pattern = re.compile("|".join(parts))
        except re.error:  # e.g. inline global flags, valid only at the start of one pattern
            self._pattern = None

    @classmethod
    def of(cls, rules: tuple[tuple[str, bool], ...], allow: bool) -> _RegexSet | None:
        chosen = [(index, pattern) for index, (pattern, kind) in enumerate(rules) if kind == allow]
        return cls(chosen) if chosen else None

    def search(self, text: str) -> int | None:
        """The index (in the list's regex rules) of the first rule that matches, or None."""
        if self._pattern is not None:
            match = self._pattern.search(text)
            return None if match is None else self._groups[match.lastindex or 1]
        for index, compiled in self._singles:
            if compiled.search(text):
                return index
        return None


def write_atomic(path: Path, chunks: Iterable[bytes]) -> None:
    """Write atomically (a temporary file renamed over `path`): a process that maps the old file
    keeps reading the old inode, and a crash never leaves half a list behind."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("wb") as out:
            for chunk in chunks:
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def open_compiled(path: Path) -> CompiledMatcher:
    """Map a compiled list read-only; raises OSError or ValueError for a missing or bad file."""
    with path.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size < _PREFIX.size:
            raise ValueError(f"{path}: compiled list is truncated")
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    return CompiledMatcher(mapped)


def from_parsed(
    parsed: ParsedRules, list_name: str, meta: Mapping[str, Any] | None = None
) -> CompiledMatcher:
    """Compile in memory (small lists, tests): the same matcher without a file."""
    return CompiledMatcher(b"".join(compile_rules(parsed, list_name, meta)))
