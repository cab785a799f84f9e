"""Tests for resolver/policy/shedding.py: `question_key` agrees with the parse on everything it
reads and leaves everything else to it, and `flood_question`'s zone is `zone_of`'s."""

from __future__ import annotations

import random
import struct

import dns.edns
import dns.message
import pytest

from resolver.cache import cache_key
from resolver.policy import shedding
from resolver.policy.ratelimit import zone_of
from resolver.policy.shedding import flood_question, question_key
from resolver.protocol.wire import WireError, parse_query


def wire(name: str, rdtype: str = "A", **options: object) -> bytes:
    return dns.message.make_query(name, rdtype, **options).to_wire()  # type: ignore[arg-type]


PLAIN = wire("www.Example.org.", use_edns=False)
WITH_OPT = wire("www.example.org.", "AAAA", use_edns=0, payload=1232)
WITH_DO = wire("www.example.org.", use_edns=0, want_dnssec=True)


def with_cd(packet: bytes) -> bytes:
    return packet[:3] + bytes([packet[3] | 0x10]) + packet[4:]


def with_header(packet: bytes, **fields: int) -> bytes:
    names = ("id", "flags", "qd", "an", "ns", "ar")
    values = dict(zip(names, struct.unpack_from("!6H", packet), strict=True)) | fields
    return struct.pack("!6H", *(values[n] for n in names)) + packet[12:]


READABLE = {
    "plain, mixed case": PLAIN,
    "OPT": WITH_OPT,
    "OPT with DO": WITH_DO,
    "CD": with_cd(PLAIN),
    "the root": wire(".", "NS", use_edns=False),
}

UNREAD = {
    "short": PLAIN[:14],
    "a response": with_header(PLAIN, flags=0x8100),
    "NOTIFY": with_header(PLAIN, flags=0x2000),
    "two questions": with_header(PLAIN, qd=2),
    "an answer record": with_header(PLAIN, an=1),
    "trailing junk": PLAIN + b"\0",
    "truncated question": PLAIN[:-2],
    "a pointer in the name": PLAIN[:12] + b"\xc0\x0c" + PLAIN[-4:],
    "a label over 63": PLAIN[:12] + b"\x40" + b"a" * 64 + b"\0" + PLAIN[-4:],
    "an EDNS option": wire(
        "www.example.org.", use_edns=0, options=[dns.edns.GenericOption(10, b"12345678")]
    ),
    "EDNS version 1": wire("www.example.org.", use_edns=1),
    "two additional records": with_header(WITH_OPT, ar=2),
    "a later label over 63": PLAIN[:12] + b"\x03www\x40" + b"a" * 64 + b"\0" + PLAIN[-4:],
    "a first label past the name": PLAIN[:12] + b"\x30www\x07example\x03org\0" + PLAIN[-4:],
    "a label past the name": PLAIN[:12] + b"\x03www\x17example\x03org\0" + PLAIN[-4:],
    "the root, then labels": PLAIN[:12] + b"\0\x03org\0" + PLAIN[-4:],
    "no root label": PLAIN[:12] + b"\x03www\x07example\x03org" + PLAIN[-4:],
    "the root, short": PLAIN[:12] + b"\0\0\1\0\1\0",
    "the root, a short OPT": with_header(PLAIN[:12], ar=1) + b"\0\0\1\0\1\0\0\x29\x04",
}


@pytest.mark.parametrize("packet", READABLE.values(), ids=READABLE.keys())
def test_what_it_reads_is_the_parse_s_cache_key(packet: bytes) -> None:
    assert question_key(packet) == cache_key(parse_query(packet))


@pytest.mark.parametrize("packet", UNREAD.values(), ids=UNREAD.keys())
def test_what_is_not_plain_is_left_to_the_parse(packet: bytes) -> None:
    assert question_key(packet) is None


ZONES = {
    "x.y.co.uk.": b"\x01y\x02co\x02uk\x00",
    "X.Y.CO.UK.": b"\x01y\x02co\x02uk\x00",
    "co.uk.": b"\x02co\x02uk\x00",
    "a.www.gov.br.": b"\x03www\x03gov\x02br\x00",
    "www.gov.br.": b"\x03www\x03gov\x02br\x00",
    "x.y.example.uk.": b"\x07example\x02uk\x00",
    "x.co.example.": b"\x02co\x07example\x00",
    "r1.victim.example.": b"\x06victim\x07example\x00",
    "victim.example.": b"\x06victim\x07example\x00",
    "example.": b"\x07example\x00",
    ".": b"\x00",
}


@pytest.mark.parametrize(("name", "zone"), ZONES.items(), ids=ZONES.keys())
@pytest.mark.parametrize("edns", [False, True], ids=["plain", "OPT"])
def test_the_zone_read_with_the_key_is_the_registrable_zone(
    name: str, zone: bytes, edns: bool
) -> None:
    packet = wire(name, use_edns=0 if edns else False)
    read = flood_question(packet)
    assert read is not None
    assert read == (question_key(packet), zone)
    assert zone == zone_of(read[0][0])


def test_names_sharing_all_but_a_first_label_are_each_read_as_the_parse_reads_them() -> None:
    """What follows a first label is remembered once read (a flood's names share it): a new
    first label, well-formed or not, is still judged as the parse judges it."""
    rest = b"\x06victim\x07example\x00" + PLAIN[-4:]
    for first in (b"\x01a", b"\x03abc", b"\x3f" + b"x" * 63, b"\x40" + b"x" * 64, b"\x05ab",
                  b"\x02a.b", b"\x01", b""):  # fmt: skip
        packet = PLAIN[:12] + first + rest
        try:
            expected = cache_key(parse_query(packet))
        except WireError:
            expected = None
        assert question_key(packet) == expected, first


@pytest.mark.parametrize("opt", [False, True], ids=["plain", "OPT"])
def test_a_name_s_255_byte_bound_is_the_parse_s_whatever_its_first_label(opt: bool) -> None:
    """The tail is remembered with the longest first label it allows: names of 254, 255 and
    256 bytes, sharing the tail after their first label, are each judged as the parse judges
    them."""
    tail = PLAIN[-4:] + (WITH_OPT[-11:] if opt else b"")
    header = with_header(PLAIN[:12], ar=1) if opt else PLAIN[:12]
    rest = b"\x3f" + b"r" * 63 + b"\x3f" + b"s" * 63 + b"\x3f" + b"t" * 63 + b"\x00"  # 193 bytes
    for size in (59, 60, 61, 62, 63, 60, 61, 59):  # wire names of 254 to 257 bytes, then again
        packet = header + bytes([size]) + b"f" * size + rest + tail
        try:
            expected = cache_key(parse_query(packet))
        except WireError:
            expected = None
        assert question_key(packet) == expected, size
        assert (expected is None) == (1 + size + len(rest) > 255)


def test_what_is_remembered_of_names_and_tails_stays_bounded() -> None:
    for payload in range(512, 4096):
        for edns in (0, False):
            packet = wire(f"x{payload}.y{payload}.example.", use_edns=edns, payload=payload)
            assert flood_question(packet) is not None
    assert 0 < len(shedding._AFTER_PLAIN) <= shedding._REMEMBERED
    assert 0 < len(shedding._AFTER_OPT) <= shedding._REMEMBERED


def test_mutated_packets_are_read_as_the_parse_reads_them_or_not_at_all() -> None:
    rng = random.Random(19)
    seeds = [*READABLE.values(), *UNREAD.values()]
    read = 0
    for _ in range(20_000):
        packet = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            packet[rng.randrange(len(packet))] = rng.choice((0, 1, 0x29, 0x80, rng.randrange(256)))
        key = question_key(bytes(packet))
        if key is None:
            continue
        read += 1
        assert flood_question(bytes(packet)) == (key, zone_of(key[0]))
        try:
            parsed = parse_query(bytes(packet))
        except WireError as error:
            raise AssertionError(f"read {bytes(packet).hex()}, which the parse refuses") from error
        assert key == cache_key(parsed)
    assert read > 1000  # the mutations left many readable: the comparison was made
