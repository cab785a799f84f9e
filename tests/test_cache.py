"""The pure answer cache, driven with an injected clock and replies built by dnspython."""

from __future__ import annotations

import dataclasses
import gc
import random
from collections.abc import Sequence

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from resolver.cache import (
    MAX_FAILURE_TTL,
    MAX_RECORDS,
    NXDOMAIN_TYPE,
    Cache,
    CacheKey,
    cache_key,
)
from resolver.config import CacheConfig
from resolver.policy.inspection import Findings
from resolver.protocol.edns import EdeCode, opt_record
from resolver.protocol.wire import (
    EDNS_PAYLOAD,
    HEADER_LEN,
    TCP_MAX_MESSAGE,
    Query,
    UpstreamReply,
    client_reply,
    parse_query,
)

SOA = "ns.example.org. admin.example.org. 1 7200 900 86400 {minimum}"


def make_query(
    name: str = "www.example.org.",
    rdtype: str = "A",
    *,
    edns: bool = True,
    dnssec: bool = False,
    cd: bool = False,
    query_id: int = 0x1234,
) -> tuple[dns.message.Message, Query]:
    message = dns.message.make_query(
        name, rdtype, use_edns=0 if edns else None, want_dnssec=dnssec, id=query_id
    )
    if cd:
        message.flags |= dns.flags.CD
    return message, parse_query(message.to_wire())


def make_reply(
    message: dns.message.Message,
    answer: Sequence[str] = (),
    authority: Sequence[str] = (),
    additional: Sequence[str] = (),
    *,
    rcode: int = dns.rcode.NOERROR,
    flags: int = 0,
) -> UpstreamReply:
    """An upstream reply to `message` with records given as `owner ttl IN type rdata` text."""
    response = dns.message.make_response(message, recursion_available=True)
    response.set_rcode(rcode)
    response.flags |= flags
    for section, lines in ((response.answer, answer), (response.authority, authority),
                           (response.additional, additional)):  # fmt: skip
        for line in lines:
            owner, ttl, rdclass, rdtype, rdata = line.split(maxsplit=4)
            section.append(dns.rrset.from_text(owner, int(ttl), rdclass, rdtype, rdata))
    return UpstreamReply(response.to_wire(max_size=65535), _qlen(message))


def _qlen(message: dns.message.Message) -> int:
    return len(message.question[0].name.to_wire()) + 4


def config(**changes: object) -> CacheConfig:
    return dataclasses.replace(CacheConfig(), **changes)  # type: ignore[arg-type]


def served(
    cache: Cache, key: CacheKey, query: Query, now: float, stale: bool = False
) -> dns.message.Message:
    entry = cache.lookup(key, now)
    assert entry is not None
    opt = opt_record(query.dnssec_ok) if query.has_edns else b""
    return dns.message.from_wire(cache.build_reply(entry, query, TCP_MAX_MESSAGE, opt, now, stale))


def ttls(message: dns.message.Message) -> list[int]:
    return [rrset.ttl for section in (message.answer, message.authority) for rrset in section]


# --- TTLs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "expected"),
    [(0.0, [300, 3600]), (0.9, [300, 3600]), (1.0, [299, 3599]), (100.5, [200, 3500]),
     (299.9, [1, 3301])],
)  # fmt: skip
def test_hits_serve_remaining_ttls(age: float, expected: list[int]) -> None:
    message, query = make_query()
    reply = make_reply(
        message,
        ["www.example.org. 300 IN A 192.0.2.1"],
        ["example.org. 7200 IN NS ns.example.org."],
    )
    cache = Cache(config(max_ttl=3600))
    assert cache.store(cache_key(query), reply, 1000.0) == 300
    got = served(cache, cache_key(query), query, 1000.0 + age)
    # authority TTLs are capped by the entry's lifetime, then count down with it
    assert ttls(got) == [expected[0], min(expected[1], 300 - int(age))]


def test_answers_asked_once_leave_nothing_for_the_cyclic_gc() -> None:
    """Every object the cyclic GC tracks is walked by each full collection, which pauses the
    event loop: a cache full of names asked once must cost those collections nothing, and an
    answer asked for again one object (two with findings). Stored from the wire as the
    pipeline does (the parsed reply then goes away), with inspection findings, and served."""
    cache = Cache(config())
    wires: list[tuple[CacheKey, bytes, int, Findings]] = []
    for i in range(300):
        message, query = make_query(f"n{i}.example.org.")
        answer = [f"n{i}.example.org. 300 IN CNAME m{i}.example.org.",
                  f"m{i}.example.org. 300 IN A 192.0.2.1"]  # fmt: skip
        reply = make_reply(message, answer, [], ["x.example.org. 300 IN A 192.0.2.9"])
        findings = Findings((f"\x01m{i}\x07example\x03org\x00".encode("latin-1"),))
        wires.append((cache_key(query), reply.raw, _qlen(message), findings))
    del reply, findings
    for _ in range(2):  # a tuple is untracked once what it holds is: two passes settle nesting
        gc.collect()
    before = len(gc.get_objects())
    for key, raw, question_len, found in wires:
        assert cache.store(key, UpstreamReply(raw, question_len), 1000.0, found) == 300
    del found
    for _ in range(2):
        gc.collect()
    assert len(gc.get_objects()) - before < 30  # as a CachedAnswer each, 300 or more
    for key, _, _, found in wires[:100]:
        hit = cache.lookup(key, 1001.0)
        assert hit is not None and hit.findings == found
    del hit, found
    for _ in range(2):
        gc.collect()
    assert 200 <= len(gc.get_objects()) - before < 230  # a CachedAnswer and its Findings each
    message, query = make_query("n7.example.org.")
    assert ttls(served(cache, cache_key(query), query, 1010.0)) == [290, 290]
    message, query = make_query("n207.example.org.")
    assert ttls(served(cache, cache_key(query), query, 1010.0)) == [290, 290]


def test_entry_expires_after_its_ttl() -> None:
    message, query = make_query()
    cache = Cache(config(serve_stale=False))
    cache.store(cache_key(query), make_reply(message, ["www.example.org. 60 IN A 192.0.2.1"]), 0.0)
    assert cache.lookup(cache_key(query), 59.9) is not None
    assert cache.lookup(cache_key(query), 60.0) is None
    assert len(cache) == 0


@pytest.mark.parametrize(
    ("answer_ttls", "min_ttl", "max_ttl", "expected"),
    [
        ([300, 60, 600], 0, 86400, 60),  # minimum over the answer section
        ([300], 0, 100, 100),  # clamped to max_ttl
        ([5], 30, 86400, 30),  # raised to min_ttl
        ([0], 0, 86400, None),  # TTL 0: not cached
        ([0x80000005, 300], 0, 86400, None),  # top bit set counts as 0 (RFC 2181 8)
        ([0x80000005], 10, 86400, 10),  # ... and min_ttl still applies
    ],
)
def test_positive_ttl(
    answer_ttls: list[int], min_ttl: int, max_ttl: int, expected: int | None
) -> None:
    message, query = make_query()
    lines = [f"www.example.org. {t} IN A 192.0.2.{i}" for i, t in enumerate(answer_ttls, 1)]
    reply = _with_raw_ttls(make_reply(message, lines), message, answer_ttls)
    cache = Cache(config(min_ttl=min_ttl, max_ttl=max_ttl))
    assert cache.store(cache_key(query), reply, 0.0) == expected
    if expected is not None:  # every record is served within min_ttl..the entry's lifetime
        normalised = [min(max(0 if t & 0x80000000 else t, min_ttl), expected) for t in answer_ttls]
        hit = cache.lookup(cache_key(query), 0.5)
        assert hit is not None
        wire = cache.build_reply(hit, query, TCP_MAX_MESSAGE, b"", 0.5)
        assert ttls(dns.message.from_wire(wire, one_rr_per_rrset=True)) == normalised


def _with_raw_ttls(
    reply: UpstreamReply, message: dns.message.Message, values: list[int]
) -> UpstreamReply:
    """dnspython refuses TTLs with the top bit set, so write them into the wire by hand."""
    raw = bytearray(reply.raw)
    pos = HEADER_LEN + _qlen(message)
    for value in values:
        assert raw[pos : pos + 2] == b"\xc0\x0c"
        raw[pos + 6 : pos + 10] = value.to_bytes(4, "big")
        pos += 12 + int.from_bytes(raw[pos + 10 : pos + 12], "big")
    return UpstreamReply(bytes(raw), _qlen(message))


# --- negative caching (RFC 2308) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("rcode", "soa_ttl", "minimum", "cap", "expected"),
    [
        (dns.rcode.NXDOMAIN, 3600, 300, 3600, 300),  # SOA MINIMUM below the SOA TTL
        (dns.rcode.NXDOMAIN, 60, 300, 3600, 60),  # SOA TTL below MINIMUM
        (dns.rcode.NXDOMAIN, 86400, 86400, 3600, 3600),  # capped by negative_max_ttl
        (dns.rcode.NOERROR, 3600, 2, 3600, 2),  # NODATA alike
        (dns.rcode.NXDOMAIN, None, None, 3600, None),  # no SOA: not cached
        (dns.rcode.NOERROR, None, None, 3600, None),
    ],
)
def test_negative_ttl(
    rcode: int, soa_ttl: int | None, minimum: int | None, cap: int, expected: int | None
) -> None:
    message, query = make_query("gone.example.org.")
    authority = [] if soa_ttl is None else [
        f"example.org. {soa_ttl} IN SOA {SOA.format(minimum=minimum)}"
    ]  # fmt: skip
    reply = make_reply(message, [], authority, rcode=rcode)
    cache = Cache(config(negative_max_ttl=cap))
    assert cache.store(cache_key(query), reply, 0.0) == expected
    if expected is not None:
        got = served(cache, cache_key(query), query, 1.0)
        assert got.rcode() == rcode
        assert ttls(got) == [expected - 1]  # the SOA counts down from the negative TTL


def test_nxdomain_is_per_name_nodata_per_type() -> None:
    soa = [f"example.org. 3600 IN SOA {SOA.format(minimum=300)}"]
    cache = Cache(config())
    a_msg, a_query = make_query("gone.example.org.", "A")
    cache.store(cache_key(a_query), make_reply(a_msg, [], soa, rcode=dns.rcode.NXDOMAIN), 0.0)
    _, txt_query = make_query("GONE.example.org.", "TXT", query_id=7)
    got = served(cache, cache_key(txt_query), txt_query, 5.0)
    assert got.rcode() == dns.rcode.NXDOMAIN
    assert got.question[0].rdtype == dns.rdatatype.TXT
    assert got.question[0].name.to_text() == "GONE.example.org."
    assert got.id == 7

    m_msg, m_query = make_query("here.example.org.", "MX")
    cache.store(cache_key(m_query), make_reply(m_msg, [], soa), 0.0)
    _, a_here = make_query("here.example.org.", "A")
    assert cache.lookup(cache_key(m_query), 1.0) is not None
    assert cache.lookup(cache_key(a_here), 1.0) is None


def test_nxdomain_after_a_cname_is_kept_per_type() -> None:
    """RFC 2308: the NXDOMAIN is about the chain's target, not the question name."""
    message, query = make_query("alias.example.org.")
    reply = make_reply(
        message,
        ["alias.example.org. 60 IN CNAME gone.example.net."],
        [f"example.net. 3600 IN SOA {SOA.format(minimum=120)}"],
        rcode=dns.rcode.NXDOMAIN,
    )
    cache = Cache(config())
    assert cache.store(cache_key(query), reply, 0.0) == 60  # the CNAME's TTL, below the SOA's
    cached = cache.lookup(cache_key(query), 0.0)
    assert cached is not None and cached.key == cache_key(query) and cached.ttl == 60
    nxdomain_key = (*cache_key(query)[:1], NXDOMAIN_TYPE, *cache_key(query)[2:])
    assert cache.lookup(nxdomain_key, 0.0) is None


@pytest.mark.parametrize(
    ("rcode", "flags"),
    [
        (dns.rcode.SERVFAIL, 0),
        (dns.rcode.REFUSED, 0),
        (dns.rcode.FORMERR, 0),
        (dns.rcode.NOTIMP, 0),
        (dns.rcode.NOERROR, dns.flags.TC),
    ],
)
def test_never_cached(rcode: int, flags: int) -> None:
    message, query = make_query()
    reply = make_reply(message, ["www.example.org. 300 IN A 192.0.2.1"], rcode=rcode, flags=flags)
    cache = Cache(config())
    assert cache.store(cache_key(query), reply, 0.0) is None
    assert len(cache) == 0


@pytest.mark.parametrize(("count", "cached"), [(MAX_RECORDS, True), (MAX_RECORDS + 1, False)])
def test_huge_replies_are_not_cached(count: int, cached: bool) -> None:
    message, query = make_query()
    answer = [f"www.example.org. 300 IN A 10.0.{i >> 8}.{i & 255}" for i in range(count)]
    entry = Cache(config()).store(cache_key(query), make_reply(message, answer), 0.0)
    assert (entry is not None) == cached


@pytest.mark.parametrize(
    ("first", "second", "shared"),
    [
        ({}, {"query_id": 9}, True),
        ({}, {"dnssec": True}, False),
        ({}, {"cd": True}, False),
        ({}, {"rdtype": "AAAA"}, False),
        ({}, {"name": "WWW.Example.ORG."}, True),
        ({}, {"edns": False}, True),
    ],
)
def test_key(first: dict[str, object], second: dict[str, object], shared: bool) -> None:
    message, query = make_query(**first)  # type: ignore[arg-type]
    _, other = make_query(**second)  # type: ignore[arg-type]
    cache = Cache(config())
    cache.store(cache_key(query), make_reply(message, ["www.example.org. 300 IN A 1.2.3.4"]), 0)
    assert (cache.lookup(cache_key(other), 1.0) is not None) == shared


# --- serving like a forwarded reply --------------------------------------------------------


@pytest.mark.parametrize("edns", [True, False])
@pytest.mark.parametrize("limit", [512, EDNS_PAYLOAD, TCP_MAX_MESSAGE])
@pytest.mark.parametrize("count", [1, 40])
def test_hit_at_age_zero_equals_the_forwarded_reply(edns: bool, limit: int, count: int) -> None:
    """Same bytes as `client_reply` gives the upstream's reply: ID, question case, EDNS and
    truncation all come from the one function."""
    message, query = make_query("www.example.org.", edns=edns)
    answer = [f"www.example.org. 300 IN A 198.51.100.{i}" for i in range(1, count + 1)]
    reply = make_reply(message, answer, [], ["ns.example.org. 300 IN A 192.0.2.53"])
    cache = Cache(config())
    key = cache_key(query)
    cache.store(key, reply, 0.0)
    _, client = make_query("wWw.ExAmPlE.oRg.", edns=edns, query_id=0xBEEF)
    opt = opt_record(False) if edns else b""
    entry = cache.lookup(key, 0.5)
    assert entry is not None
    got = cache.build_reply(entry, client, limit, opt, 0.5)
    assert got == client_reply(reply, client, limit, opt)
    assert got[HEADER_LEN : client.question_end] == client.question


def test_aa_is_cleared_and_rd_is_the_clients() -> None:
    message, query = make_query()
    reply = make_reply(message, ["www.example.org. 300 IN A 192.0.2.1"], flags=dns.flags.AA)
    cache = Cache(config())
    cache.store(cache_key(query), reply, 0.0)
    no_rd = dns.message.make_query("www.example.org.", "A", use_edns=0)
    no_rd.flags &= ~dns.flags.RD
    client = parse_query(no_rd.to_wire())
    got = served(cache, cache_key(client), client, 1.0)
    assert not got.flags & dns.flags.AA
    assert not got.flags & dns.flags.RD
    assert served(cache, cache_key(query), query, 1.0).flags & dns.flags.RD


def test_additional_ttls_count_down_and_opt_is_ours() -> None:
    message, query = make_query(dnssec=True)
    reply = make_reply(
        message,
        ["www.example.org. 300 IN A 192.0.2.1"],
        [],
        ["ns.example.org. 100 IN A 192.0.2.53"],
    )
    cache = Cache(config())
    cache.store(cache_key(query), reply, 0.0)
    got = served(cache, cache_key(query), query, 10.0)
    assert [rrset.ttl for rrset in got.additional] == [90]
    assert got.edns == 0 and got.ednsflags & dns.flags.DO


# --- serve-stale (RFC 8767) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("rcode", "ede"),
    [
        (dns.rcode.NOERROR, EdeCode.STALE_ANSWER),
        (dns.rcode.NXDOMAIN, EdeCode.STALE_NXDOMAIN_ANSWER),
    ],
)
def test_stale_entries_within_max_stale_age(rcode: int, ede: int) -> None:
    message, query = make_query()
    soa = [f"example.org. 60 IN SOA {SOA.format(minimum=60)}"]
    answer = ["www.example.org. 60 IN A 192.0.2.1"] if rcode == dns.rcode.NOERROR else []
    cache = Cache(config(max_stale_age=1000.0, stale_answer_ttl=30))
    assert cache.store(cache_key(query), make_reply(message, answer, soa, rcode=rcode), 0.0)
    stale = cache.lookup(cache_key(query), 500.0)
    assert stale is not None and stale.expires <= 500.0
    assert stale.nxdomain == (rcode == dns.rcode.NXDOMAIN)
    opt = opt_record(False, ede, b"stale")
    got = dns.message.from_wire(cache.build_reply(stale, query, TCP_MAX_MESSAGE, opt, 500.0, True))
    assert set(ttls(got)) == {30}
    assert [o.code for o in got.options if isinstance(o, dns.edns.EDEOption)] == [ede]
    assert cache.lookup(cache_key(query), 1060.0) is None  # past max_stale_age: gone


def test_without_serve_stale_expired_entries_are_gone() -> None:
    message, query = make_query()
    cache = Cache(config(serve_stale=False))
    cache.store(cache_key(query), make_reply(message, ["www.example.org. 60 IN A 1.2.3.4"]), 0)
    assert cache.lookup(cache_key(query), 61.0) is None


# --- failures (RFC 9520) -------------------------------------------------------------------


def test_failures_back_off_and_a_good_answer_clears_them() -> None:
    message, query = make_query()
    key = cache_key(query)
    cache = Cache(config(failure_ttl=5.0))
    assert cache.failure(key, 0.0) is None
    times = []
    now = 0.0
    for _ in range(10):
        backoff = cache.fail(key, now, EdeCode.NO_REACHABLE_AUTHORITY)
        times.append(backoff)
        assert cache.failure(key, now + backoff - 0.01) == EdeCode.NO_REACHABLE_AUTHORITY
        assert cache.failure(key, now + backoff) is None
        now += backoff
    assert times == [5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0, 300.0, 300.0]
    assert max(times) == MAX_FAILURE_TTL
    # long after the last failure, the next one starts over
    assert cache.fail(key, now + 10 * MAX_FAILURE_TTL, 23) == 5.0
    cache.store(key, make_reply(message, ["www.example.org. 60 IN A 1.2.3.4"]), now)
    assert cache.failure(key, now) is None


def _answerable_cache() -> Cache:
    """A fresh answer, an NXDOMAIN and a failure, each under its own name, at time 0."""
    soa = [f"example.org. 300 IN SOA {SOA.format(minimum=300)}"]
    cache = Cache(config(max_stale_age=1000.0, failure_ttl=5.0))
    here, here_query = make_query("here.example.org.")
    cache.store(cache_key(here_query), make_reply(here, ["here.example.org. 60 IN A 1.2.3.4"]), 0)
    gone, gone_query = make_query("gone.example.org.")
    cache.store(cache_key(gone_query), make_reply(gone, [], soa, rcode=dns.rcode.NXDOMAIN), 0)
    cache.fail(cache_key(make_query("fail.example.org.")[1]), 0.0, EdeCode.NO_REACHABLE_AUTHORITY)
    return cache


@pytest.mark.parametrize(
    ("name", "rdtype", "now", "expected"),
    [
        ("here.example.org.", "A", 10.0, True),  # fresh
        ("here.example.org.", "A", 500.0, True),  # stale, within max_stale_age
        ("here.example.org.", "A", 2000.0, False),  # past it
        ("here.example.org.", "AAAA", 10.0, False),
        ("gone.example.org.", "TXT", 10.0, True),  # NXDOMAIN holds for every type
        ("x.gone.example.org.", "A", 10.0, False),
        ("fail.example.org.", "A", 1.0, True),  # a cached failure
        ("fail.example.org.", "A", 6.0, False),  # expired
        ("new.example.org.", "A", 10.0, False),  # a flood's name
    ],
)
def test_answerable_is_lookup_or_failure_counted_alike(
    name: str, rdtype: str, now: float, expected: bool
) -> None:
    key = cache_key(make_query(name, rdtype)[1])
    fast, reference = _answerable_cache(), _answerable_cache()
    assert fast.answerable(key, now) is expected
    assert (reference.lookup(key, now) is not None or reference.failure(key, now) is not None) is (
        expected
    )
    assert (fast.hits, fast.misses, len(fast)) == (reference.hits, reference.misses, len(reference))


def test_answerable_never_misses_a_kept_name_however_entries_come_and_go() -> None:
    """`answerable`'s one probe of the name (`_names`) against the full lookup, through stores,
    failures, evictions (a cap of 40 entries), expiry and a flush: the same answer and counts
    every time, and the name set stays bounded (checked as it grows) although names leave it
    only on a rebuild."""
    fast, reference = Cache(config(max_entries=40, failure_ttl=5.0)), Cache(
        config(max_entries=40, failure_ttl=5.0)
    )
    rng = random.Random(5)
    now, rebuilds, before = 0.0, 0, 0
    for step in range(3000):
        now += 0.05
        label = f"n{rng.randrange(3000)}"
        key = (bytes((len(label),)) + label.encode() + b"\x04fill\x07example\x00", 1, 1,
               False, 0)  # fmt: skip
        action = rng.random()
        for cache in (fast, reference):
            if action < 0.4:
                _filler(cache, label, now)
            elif action < 0.5:
                cache.fail(key, now, EdeCode.NO_REACHABLE_AUTHORITY)
            elif step == 1500:
                cache.flush()
        asked = fast.answerable(key, now)
        expected = reference.lookup(key, now) is not None or reference.failure(key, now) is not None
        assert asked is expected, (step, key)
        assert (fast.hits, fast.misses) == (reference.hits, reference.misses)
        kept = [*fast._probation, *fast._protected, *fast._failures]
        assert {k[0] for k in kept} <= fast._names
        if action < 0.5:  # checked as it grows (the cap may then take one entry out)
            assert len(fast._names) <= 2 * (len(kept) + 1) + 64
        rebuilds += len(fast._names) < before and step != 1500
        before = len(fast._names)
    assert rebuilds >= 3  # names left the set, and never one still kept


# --- bounds --------------------------------------------------------------------------------


_TEMPLATE_MESSAGE, _ = make_query("x.fill.example.")
_TEMPLATE = make_reply(_TEMPLATE_MESSAGE, ["x.fill.example. 300 IN A 192.0.2.1"]).raw


def _filler(cache: Cache, label: str, now: float) -> CacheKey:
    """Store an answer for `<label>.fill.example.`, built by editing a template (dnspython is
    too slow for tens of thousands of messages)."""
    encoded = bytes((len(label),)) + label.encode()
    qname = encoded + b"\x04fill\x07example\x00"
    key = (qname, 1, 1, False, 0)
    cache.store(key, UpstreamReply(_TEMPLATE.replace(b"\x01x", encoded, 1), len(qname) + 4), now)
    return key


def drained_bytes(cache: Cache) -> int:
    """`cache.bytes` once every answer is evicted: 0 when it counted each answer's size once."""
    cache.configure(dataclasses.replace(cache.config, max_entries=0))
    assert len(cache) == 0
    return cache.bytes


def test_random_subdomain_flood_is_bounded_and_hot_names_keep_hitting() -> None:
    cap = 1000
    cache = Cache(config(max_entries=cap))
    rng = random.Random(7)
    hot = [_filler(cache, f"hot{i}", 0.0) for i in range(50)]
    for key in hot:
        assert cache.lookup(key, 0.0) is not None  # asked again: promoted
    misses = 0
    for i in range(100_000):
        _filler(cache, f"{rng.getrandbits(48):012x}", 1.0)
        if i % 5000 == 4999:  # rarer than `cap` new names: a plain LRU would lose them all
            for key in hot:
                misses += cache.lookup(key, 1.0) is None
        assert len(cache) <= cap
    assert misses == 0
    assert cache.evictions >= 100_000 - cap
    assert cache.bytes <= cache.config.max_bytes
    assert drained_bytes(cache) == 0


def test_byte_cap() -> None:
    cache = Cache(config(max_bytes=64 * 1024))
    for i in range(2000):
        _filler(cache, f"n{i}", 0.0)
        assert cache.bytes <= 64 * 1024
    assert 0 < len(cache) < 2000
    assert drained_bytes(cache) == 0


def test_plain_lru_within_probation() -> None:
    cache = Cache(config(max_entries=3))
    a = _filler(cache, "a", 0.0)
    b = _filler(cache, "b", 0.0)
    assert cache.lookup(a, 0.0) is not None  # a is protected now
    _filler(cache, "c", 0.0)
    _filler(cache, "d", 0.0)  # evicts b, the oldest on probation
    assert cache.lookup(b, 0.0) is None
    assert cache.lookup(a, 0.0) is not None


def test_shrinking_on_reconfigure_and_flush() -> None:
    cache = Cache(config(max_entries=100))
    for i in range(100):
        _filler(cache, f"n{i}", 0.0)
    cache.configure(config(max_entries=10))
    assert len(cache) == 10
    assert cache.flush() == 10
    assert len(cache) == 0 and cache.bytes == 0
    cache.configure(config(enabled=False))
    message, query = make_query()
    assert (
        cache.store(cache_key(query), make_reply(message, ["www.example.org. 9 IN A 1.1.1.1"]), 0)
        is None
    )


# --- prefetch, findings, counters ----------------------------------------------------------


@pytest.mark.parametrize(
    ("hits", "at", "ttl", "enabled", "due"),
    [
        (3, 95.0, 100, True, True),  # hot and in the last 10 %
        (2, 95.0, 100, True, False),  # not hot enough
        (3, 50.0, 100, True, False),  # not close to expiry
        (3, 95.0, 100, False, False),  # prefetch off
        (3, 4.9, 5, True, False),  # too short-lived to bother
    ],
)
def test_prefetch_due(hits: int, at: float, ttl: int, enabled: bool, due: bool) -> None:
    message, query = make_query()
    cache = Cache(config(prefetch=enabled))
    cache.store(cache_key(query), make_reply(message, [f"www.example.org. {ttl} IN A 1.1.1.1"]), 0)
    entry = None
    for _ in range(hits):
        entry = cache.lookup(cache_key(query), 1.0)
    assert entry is not None
    assert cache.prefetch_due(entry, at) is due
    assert cache.prefetch_due(entry, at) is False  # once per entry


def test_findings_are_kept_with_the_entry() -> None:
    message, query = make_query()
    findings = Findings((b"\x06tiktok\x03com\x00",))
    cache = Cache(config())
    cache.store(
        cache_key(query), make_reply(message, ["www.example.org. 9 IN A 1.1.1.1"]), 0, findings
    )
    entry = cache.lookup(cache_key(query), 1.0)
    assert entry is not None and entry.findings == findings


def test_stats() -> None:
    message, query = make_query()
    cache = Cache(config())
    cache.lookup(cache_key(query), 0.0)
    cache.store(cache_key(query), make_reply(message, ["www.example.org. 9 IN A 1.1.1.1"]), 0)
    cache.lookup(cache_key(query), 1.0)
    stats = cache.stats()
    assert {k: stats[k] for k in ("entries", "hits", "misses", "evictions")} == {
        "entries": 1, "hits": 1, "misses": 1, "evictions": 0}  # fmt: skip
    assert stats["bytes"] == cache.bytes > 0
