"""Step 0c: a flooding client's uncached names shed from their bytes, before any parse, and
what must still be answered beside them (its cached names, its other zones, the answer memo's
repeats); `question_key` agrees with the parse on everything it reads, and `flood_question`'s
zone with `zone_of`."""

from __future__ import annotations

import asyncio
import random
import struct
import time

import dns.edns
import dns.message
import dns.rcode
import pytest
from test_pipeline import Env, rdata, state_for

from resolver import pipeline
from resolver.cache import cache_key
from resolver.pipeline import flood_question, question_key
from resolver.policy.ratelimit import zone_of
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


def test_what_is_remembered_of_names_and_tails_stays_bounded() -> None:
    for payload in range(512, 4096):
        for edns in (0, False):
            packet = wire(f"x{payload}.y{payload}.example.", use_edns=edns, payload=payload)
            assert flood_question(packet) is not None
    assert 0 < len(pipeline._AFTER_PLAIN) <= pipeline._REMEMBERED
    assert 0 < len(pipeline._AFTER_OPT) <= pipeline._REMEMBERED


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


def flooding_env() -> Env:
    env = Env(state_for(more="rate_limit: {client_zone_rate: 1, client_zone_burst: 3}\n"))
    env.pool.records["www.victim.example."] = ["www.victim.example. 300 IN A 192.0.2.1"]
    env.pool.records["mail.victim.example."] = ["mail.victim.example. 300 IN A 192.0.2.2"]
    return env


def test_a_flooding_client_s_new_names_are_shed_unparsed_and_its_cached_names_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Over its budget for victim.example, the client's next uncached names there are dropped
    without a parse (step 0c); a cached name there, asked for the first time since, is still
    answered, and so are its names elsewhere and the memo's repeats."""
    env = flooding_env()
    assert rdata(env.ask("www.victim.example.", sync=False)) == ["192.0.2.1"]
    assert rdata(env.ask("mail.victim.example.", sync=False)) == ["192.0.2.2"]
    env.ask("r0.victim.example.", sync=False)  # the budget's third and last
    parses: list[bytes] = []
    real_parse = pipeline.parse_query

    def counted(packet: bytes) -> object:
        parses.append(packet)
        return real_parse(packet)

    monkeypatch.setattr(pipeline, "parse_query", counted)

    async def flood() -> list[object]:
        return [env.pipeline.handle(wire(f"r{i}.victim.example.", use_edns=False), "127.0.0.1",
                                    True, lambda _: None) for i in range(1, 48)]  # fmt: skip

    assert asyncio.run(flood()) == [None] * 47  # all dropped
    assert len(parses) == 1  # the first, refused upstream at 5a; the rest before any parse
    assert env.stats.limited[("default", "client_zone", "drop")] == 47
    assert rdata(env.ask("mail.victim.example.", sync=True)) == ["192.0.2.2"]
    for _ in range(3):  # the memo answers the repeats from their second sight on
        assert rdata(env.ask("www.victim.example.", sync=True)) == ["192.0.2.1"]
    assert env.ask("www.other.example.", sync=False).rcode() == dns.rcode.NOERROR


def test_a_shed_name_is_refused_when_the_action_says_so_and_audited_with_its_name() -> None:
    limits = "rate_limit: {action: refuse, client_zone_rate: 1, client_zone_burst: 1}\n"
    env = Env(state_for(more=limits))
    env.ask("r0.victim.example.", sync=False)
    assert env.ask("r1.victim.example.", edns=False).rcode() == dns.rcode.REFUSED  # 5a
    time.sleep(0.15)  # past the audit's hold-back for this client and limit (0.1 s)
    shed = env.ask("r2.victim.example.", edns=False, sync=True)  # 0c, then parsed to answer
    assert shed.rcode() == dns.rcode.REFUSED
    assert [e["qname"] for e in env.events("rate_limited")] == [
        "r1.victim.example", "r2.victim.example"
    ]


class RecordingTap:
    """Stands in for `DnstapOutput`: what the pipeline reports of each answer."""

    def __init__(self) -> None:
        self.responses: list[bytes] = []

    def client_query(self, packet: bytes, client: str, transport: str) -> float:
        return 0.0

    def client_response(self, reply: bytes, client: str, transport: str, received: float,
                        block: object) -> None:  # fmt: skip
        self.responses.append(reply)


@pytest.mark.parametrize("tapped", [False, True], ids=["untapped", "dnstap"])
@pytest.mark.parametrize(
    ("name", "forwarded"), [("www.victim.example.", True), ("tiktok.com.", False)]
)
def test_a_peer_is_handed_to_reply_to_only_when_the_answer_comes_later(
    tapped: bool, name: str, forwarded: bool
) -> None:
    """The UDP listener passes its peer's address rather than a closure per packet: a query
    that goes upstream has `reply_to(peer, reply)` called once; one answered at once (here a
    block) is returned, and `reply_to` is never called."""
    env = flooding_env()
    tap = RecordingTap()
    if tapped:
        env.pipeline.tap = tap  # type: ignore[assignment]
    peer = ("127.0.0.1", 5300)
    calls: list[tuple[object, bytes | None]] = []
    packet = wire(name)

    async def exchange() -> object:
        outcome = env.pipeline.handle(packet, peer[0], True,
                                      lambda *args: calls.append(args), None, peer)  # fmt: skip
        for _ in range(20):
            await asyncio.sleep(0)
        return outcome

    outcome = asyncio.run(exchange())
    if forwarded:
        assert outcome is pipeline.FORWARDED
        assert [p for p, _ in calls] == [peer]
        reply = calls[0][1]
    else:
        assert calls == []
        reply = outcome  # type: ignore[assignment]
    assert isinstance(reply, bytes) and reply[:2] == packet[:2]
    assert tap.responses == ([reply] if tapped else [])
