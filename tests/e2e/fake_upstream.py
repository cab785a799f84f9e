"""A scriptable DNS upstream on loopback for end-to-end tests.

The resolver under test must cope with upstreams that are slow, silent, lying or broken, and a mock
of the network cannot show that: only real datagrams and real TCP streams can. `FakeUpstream` is a
small asyncio name server (UDP and TCP on one port) running its own event loop in a background
thread, so synchronous pytest code can start it, point the resolver at it and inspect afterwards
every query it received and every reply it sent.

What it does for a query is a `Behaviour`, chosen per upstream and overridable per name subtree
(the nearest listed ancestor of the query name wins), so one pair of upstreams can serve many
scenarios at once: tests pick a scenario by picking a name. Answers come from a small in-memory
`Zone`; it is test code, so dnspython builds every reply. Given a server certificate (see
`make_test_pki`), it also serves DNS over TLS on a port of its own (`tls_port`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import random
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

FORGED_ADDRESS = "203.0.113.66"
"""The address every forged (decoy) reply carries; a client that sees it was fooled."""

LOCALHOST = "127.0.0.1"
_START_TIMEOUT = 5.0
_TCP_READ_TIMEOUT = 10.0
_MAX_PORT_TRIES = 20


class Reply(enum.StrEnum):
    """What the upstream finally does with a query."""

    ANSWER = "answer"
    SILENT = "silent"
    SERVFAIL = "servfail"
    REFUSED = "refused"
    GARBAGE = "garbage"


class Decoy(enum.StrEnum):
    """A bogus packet sent before the real reply, to test that the resolver ignores it.

    Decoys are sent over UDP only: on TCP the resolver talks to one peer on one stream, so
    off-path spoofing does not apply there.
    """

    WRONG_ID = "wrong_id"
    WRONG_QNAME = "wrong_qname"
    WRONG_QTYPE = "wrong_qtype"
    WRONG_SOURCE = "wrong_source"
    GARBAGE = "garbage"


@dataclass(frozen=True)
class Behaviour:
    """How the upstream treats one query.

    `delay` postpones the final reply (decoys go out at once); `truncate_udp` makes every UDP
    answer an empty TC=1 reply while TCP gets the full answer, as a server with a large RRset does.
    `authoritative` answers as an authoritative-only server (nsd, a domain controller) does:
    AA=1, RA=0. `validating` sets AD when the query set DO or AD, as a validating resolver does
    for data it has validated (RFC 6840 5.8). `ede` adds Extended DNS Errors (info-code, text)
    to the reply of a query that had EDNS (RFC 8914). `loss` drops that fraction of UDP queries
    unanswered, at random (seeded): a lossy link.
    """

    reply: Reply = Reply.ANSWER
    delay: float = 0.0
    decoys: tuple[Decoy, ...] = ()
    truncate_udp: bool = False
    authoritative: bool = False
    validating: bool = False
    ede: tuple[tuple[int, str], ...] = ()
    loss: float = 0.0


ANSWER = Behaviour()
SILENT = Behaviour(reply=Reply.SILENT)
SERVFAIL = Behaviour(reply=Reply.SERVFAIL)
REFUSED = Behaviour(reply=Reply.REFUSED)
GARBAGE = Behaviour(reply=Reply.GARBAGE)
TRUNCATE_UDP = Behaviour(truncate_udp=True)
AUTHORITATIVE = Behaviour(authoritative=True)
VALIDATING = Behaviour(validating=True)
BOGUS = Behaviour(reply=Reply.SERVFAIL, ede=((6, "signature crypto failed"),))
"""SERVFAIL with EDE 6 (DNSSEC Bogus), as a validating resolver answers a name whose signature
does not verify."""


@dataclass
class Received:
    """One query as the upstream saw it, and what it sent back (in order, decoys included)."""

    wire: bytes
    transport: str
    peer: tuple[str, int]
    at: float
    message: dns.message.Message | None
    replies: list[bytes] = field(default_factory=list)

    @property
    def qname(self) -> dns.name.Name | None:
        if self.message is None or not self.message.question:
            return None
        return self.message.question[0].name

    @property
    def query_id(self) -> int | None:
        return struct.unpack("!H", self.wire[:2])[0] if len(self.wire) >= 2 else None

    def last_reply(self) -> dns.message.Message:
        """The final (genuine) reply, parsed; decoys precede it in `replies`."""
        if not self.replies:
            raise AssertionError(f"upstream sent no reply to {self.qname}")
        return dns.message.from_wire(self.replies[-1])


class Zone:
    """A few records served by name and type, with wildcards, CNAMEs, SOA negatives and RRSIGs.

    A name without records is NXDOMAIN unless a `*.ancestor` wildcard covers it; negative replies
    carry the SOA of the closest enclosing apex. RRSIGs are returned only to queries with DO set,
    so tests can see the resolver pass the DO bit through and keep signatures.
    """

    def __init__(self, records: Iterable[str]) -> None:
        self._sets: dict[tuple[dns.name.Name, int], dns.rrset.RRset] = {}
        self._sigs: dict[tuple[dns.name.Name, int], dns.rrset.RRset] = {}
        self._names: set[dns.name.Name] = set()
        self._soas: dict[dns.name.Name, dns.rrset.RRset] = {}
        for line in records:
            rrset = dns.rrset.from_text(*_split_record(line))
            if rrset.rdtype == dns.rdatatype.RRSIG:
                covered = next(iter(rrset)).type_covered
                self._merge(self._sigs, (rrset.name, covered), rrset)
                continue
            self._merge(self._sets, (rrset.name, rrset.rdtype), rrset)
            self._names.add(rrset.name)
            if rrset.rdtype == dns.rdatatype.SOA:
                self._soas[rrset.name] = rrset

    @staticmethod
    def _merge(
        table: dict[tuple[dns.name.Name, int], dns.rrset.RRset],
        key: tuple[dns.name.Name, int],
        rrset: dns.rrset.RRset,
    ) -> None:
        if key in table:
            table[key].union_update(rrset)
        else:
            table[key] = rrset

    def _source(self, qname: dns.name.Name) -> dns.name.Name | None:
        if qname in self._names:
            return qname
        name = qname
        while len(name) > 1:
            name = name.parent()
            wildcard = dns.name.Name((b"*", *name.labels))
            if wildcard in self._names:
                return wildcard
        return None

    def soa_for(self, qname: dns.name.Name) -> dns.rrset.RRset:
        name = qname
        while True:
            if name in self._soas:
                return self._soas[name]
            if len(name) <= 1:
                return next(iter(self._soas.values()))
            name = name.parent()

    def resolve(
        self, qname: dns.name.Name, rdtype: int, dnssec: bool
    ) -> tuple[int, list[dns.rrset.RRset], list[dns.rrset.RRset]]:
        """Return (rcode, answer, authority) for a question, following CNAMEs inside the zone."""
        answer: list[dns.rrset.RRset] = []
        name = qname
        for _ in range(8):
            source = self._source(name)
            if source is None:
                return dns.rcode.NXDOMAIN, answer, [self.soa_for(qname)]
            types = [rdtype]
            if rdtype == dns.rdatatype.ANY:
                types = [t for (n, t) in self._sets if n == source]
            found = [self._sets[(source, t)] for t in types if (source, t) in self._sets]
            cname = self._sets.get((source, dns.rdatatype.CNAME))
            if not found and cname is not None and rdtype != dns.rdatatype.CNAME:
                found = [cname]
            for rrset in found:
                answer.append(_rename(rrset, name))
                sig = self._sigs.get((source, rrset.rdtype))
                if dnssec and sig is not None:
                    answer.append(_rename(sig, name))
            if found == [cname] and cname is not None:
                name = next(iter(cname)).target
                continue
            if not answer:
                return dns.rcode.NOERROR, [], [self.soa_for(qname)]
            return dns.rcode.NOERROR, answer, []
        return dns.rcode.SERVFAIL, [], []


def _split_record(line: str) -> tuple[str, int, str, str, str]:
    owner, ttl, rdclass, rdtype, rdata = line.split(maxsplit=4)
    return owner, int(ttl), rdclass, rdtype, rdata


def _rename(rrset: dns.rrset.RRset, name: dns.name.Name) -> dns.rrset.RRset:
    if rrset.name == name:
        return rrset
    out = dns.rrset.RRset(name, rrset.rdclass, rrset.rdtype, rrset.covers)
    out.update(rrset)
    return out


BIG_A_COUNT = 40
BIG_TXT_STRINGS = 4


SIGNATURE = (
    "13 3 300 20300101000000 20200101000000 12345 example.org. "
    "dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZSBidXQgaXQgbG9va3M="
)


def default_zone() -> Zone:
    """The records the e2e tests rely on.

    Wildcards give tests names nobody queried before (so a cache or merged query cannot hide what
    a test checks): `*.wild.example.org` answers A/AAAA/TXT/MX (A signed), `*.big.wild...` and
    `*.bigtxt.wild...` answer more than 512 bytes, `*.cname.example.org` is a CNAME to www.
    """
    text = " ".join(f'"{chr(ord("a") + i) * 200}"' for i in range(BIG_TXT_STRINGS))
    big = [f"198.51.100.{i}" for i in range(1, BIG_A_COUNT + 1)]
    return Zone(
        [
            "example.org. 3600 IN SOA ns.example.org. admin.example.org. 1 7200 900 86400 300",
            "example.org. 3600 IN NS ns.example.org.",
            "example.org. 300 IN A 192.0.2.1",
            "ns.example.org. 300 IN A 192.0.2.2",
            "www.example.org. 300 IN A 192.0.2.10",
            "www.example.org. 300 IN A 192.0.2.11",
            "www.example.org. 300 IN AAAA 2001:db8::10",
            "mail.example.org. 300 IN MX 10 mx1.example.org.",
            "mail.example.org. 300 IN MX 20 mx2.example.org.",
            'txt.example.org. 300 IN TXT "v=spf1 -all" "second string"',
            "alias.example.org. 120 IN CNAME www.example.org.",
            "*.cname.example.org. 120 IN CNAME www.example.org.",
            "signed.example.org. 300 IN A 192.0.2.30",
            f"signed.example.org. 300 IN RRSIG A {SIGNATURE}",
            *(f"big.example.org. 300 IN A {address}" for address in big),
            f"bigtxt.example.org. 300 IN TXT {text}",
            "tiktok.com.example.org. 300 IN A 192.0.2.21",
            "*.wild.example.org. 60 IN A 192.0.2.99",
            f"*.wild.example.org. 60 IN RRSIG A {SIGNATURE}",
            "*.wild.example.org. 60 IN AAAA 2001:db8::99",
            '*.wild.example.org. 60 IN TXT "wild" "second string"',
            "*.wild.example.org. 60 IN MX 10 mail.example.org.",
            "*.wild.example.org. 60 IN MX 20 mx2.example.org.",
            *(f"*.big.wild.example.org. 60 IN A {address}" for address in big),
            f"*.bigtxt.wild.example.org. 60 IN TXT {text}",
            "nottiktok.com. 3600 IN SOA ns.nottiktok.com. admin.nottiktok.com. 1 7200 900 86400 60",
            "nottiktok.com. 300 IN A 192.0.2.20",
            "www.nottiktok.com. 300 IN A 192.0.2.20",
        ]
    )


class FakeUpstream:
    """A UDP+TCP DNS server on one loopback port, run in a thread with its own event loop.

    `behaviour` applies to every query unless `by_name` maps the query name or one of its
    ancestors to another `Behaviour`. Everything received is kept (see `queries`).
    """

    def __init__(
        self,
        zone: Zone | None = None,
        behaviour: Behaviour = ANSWER,
        by_name: Mapping[str, Behaviour] | None = None,
        host: str = LOCALHOST,
        seed: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.zone = zone if zone is not None else default_zone()
        self.host = host
        self.port = 0
        self.tls_port = 0
        self._tls = tls
        self._default = behaviour
        self._by_name: dict[dns.name.Name, Behaviour] = {}
        for name, rule in (by_name or {}).items():
            self.set_behaviour(rule, name)
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._udp: asyncio.DatagramTransport | None = None
        self.errors: list[BaseException] = []

    @property
    def address(self) -> str:
        """`host:port` as the resolver's config wants it."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def set_behaviour(self, behaviour: Behaviour, name: str | None = None) -> None:
        """Change the default behaviour, or the one for `name` and its subdomains."""
        if name is None:
            self._default = behaviour
        else:
            self._by_name[dns.name.from_text(name)] = behaviour

    def behaviour_for(self, qname: dns.name.Name) -> Behaviour:
        name = qname
        while True:
            if name in self._by_name:
                return self._by_name[name]
            if len(name) <= 1:
                return self._default
            name = name.parent()

    def received_soon(self, qname: str, timeout: float = 2.0) -> list[Received]:
        """The queries for `qname`, waiting up to `timeout` for the first: this server records
        datagrams on a loop of its own, which a loaded machine may run a little after the
        resolver under test already answered from another upstream."""
        deadline = time.monotonic() + timeout
        while not (found := self.queries(qname)) and time.monotonic() < deadline:
            time.sleep(0.01)
        return found

    def queries(
        self,
        qname: str | dns.name.Name | None = None,
        transport: str | None = None,
        since: float = 0.0,
    ) -> list[Received]:
        """Queries received (in arrival order), optionally filtered; `since` is a monotonic time."""
        want = dns.name.from_text(qname) if isinstance(qname, str) else qname
        with self._lock:
            items = list(self._received)
        return [
            r
            for r in items
            if r.at >= since
            and (transport is None or r.transport == transport)
            and (want is None or r.qname == want)
        ]

    def clear(self) -> None:
        with self._lock:
            self._received.clear()

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._run, name="fake-upstream", daemon=True)
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT):
            raise RuntimeError("fake upstream did not start")
        if self._error is not None:
            raise RuntimeError("fake upstream failed to start") from self._error
        return self

    def stop(self) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            self._thread.join(_START_TIMEOUT)
            if self._thread.is_alive():
                raise RuntimeError("fake upstream thread did not stop")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        udp_sock, tcp_sock = _bind_pair(self.host)
        self.port = udp_sock.getsockname()[1]
        self._udp, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), sock=udp_sock
        )
        server = await asyncio.start_server(self._serve_tcp, sock=tcp_sock)
        tls_server = None
        if self._tls is not None:
            tls_server = await asyncio.start_server(
                functools.partial(self._serve_tcp, transport="tls"),
                self.host,
                0,
                ssl=self._tls,
                ssl_handshake_timeout=_START_TIMEOUT,
            )
            self.tls_port = tls_server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            if tls_server is not None:
                tls_server.close()
            self._udp.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """Keep a bug in the fake visible: tests assert `errors` is empty at teardown."""
        self._tasks.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            self.errors.append(error)

    def _record(self, wire: bytes, transport: str, peer: tuple[str, int]) -> Received:
        try:
            message: dns.message.Message | None = dns.message.from_wire(wire)
        except Exception:
            message = None
        item = Received(wire, transport, (peer[0], peer[1]), time.monotonic(), message)
        with self._lock:
            self._received.append(item)
        return item

    def _on_datagram(self, wire: bytes, peer: tuple[str, int]) -> None:
        item = self._record(wire, "udp", peer)
        if item.message is not None and item.message.question:
            loss = self.behaviour_for(item.message.question[0].name).loss
            if loss and self._random.random() < loss:
                return
            self._spawn(self._answer_udp(item, peer))

    async def _answer_udp(self, item: Received, peer: tuple[str, int]) -> None:
        assert item.message is not None and self._udp is not None
        rule = self.behaviour_for(item.message.question[0].name)
        for decoy in rule.decoys:
            packet = self._decoy(item.message, decoy)
            item.replies.append(packet)
            if decoy is Decoy.WRONG_SOURCE:
                _send_from_other_port(self.host, packet, peer)
            else:
                self._udp.sendto(packet, peer)
        for packet in await self._final(item.message, rule, "udp"):
            item.replies.append(packet)
            self._udp.sendto(packet, peer)

    async def _serve_tcp(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, transport: str = "tcp"
    ) -> None:
        """One TCP (or TLS) connection: every query on it answered concurrently, as RFC 7766
        allows, so a client pipelining queries sees them answered out of order."""
        peer = writer.get_extra_info("peername")
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            while True:
                prefix = await asyncio.wait_for(reader.readexactly(2), _TCP_READ_TIMEOUT)
                size = struct.unpack("!H", prefix)[0]
                wire = await asyncio.wait_for(reader.readexactly(size), _TCP_READ_TIMEOUT)
                item = self._record(wire, transport, peer)
                if item.message is not None and item.message.question:
                    self._spawn(self._answer_tcp(item, writer))
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        except Exception as exc:
            self.errors.append(exc)
        finally:
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _answer_tcp(self, item: Received, writer: asyncio.StreamWriter) -> None:
        assert item.message is not None
        rule = self.behaviour_for(item.message.question[0].name)
        for packet in await self._final(item.message, rule, "tcp"):
            item.replies.append(packet)
            if writer.is_closing():
                return
            writer.write(struct.pack("!H", len(packet)) + packet)
        if rule.reply is Reply.GARBAGE:
            writer.close()

    async def _final(
        self, query: dns.message.Message, rule: Behaviour, transport: str
    ) -> list[bytes]:
        if rule.delay:
            await asyncio.sleep(rule.delay)
        if rule.reply is Reply.SILENT:
            return []
        if rule.reply is Reply.GARBAGE:
            return self._garbage(query.id)
        response = dns.message.make_response(query, recursion_available=not rule.authoritative)
        if rule.authoritative:
            response.flags |= dns.flags.AA
        if rule.validating and (query.flags & dns.flags.AD or query.ednsflags & dns.flags.DO):
            response.flags |= dns.flags.AD
        if rule.ede and query.edns >= 0:
            options = [dns.edns.EDEOption(code, text) for code, text in rule.ede]
            response.use_edns(0, response.ednsflags, response.payload, options=options)
        if rule.reply is Reply.SERVFAIL:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif rule.reply is Reply.REFUSED:
            response.set_rcode(dns.rcode.REFUSED)
        else:
            question = query.question[0]
            dnssec = bool(query.ednsflags & dns.flags.DO)
            rcode, answer, authority = self.zone.resolve(question.name, question.rdtype, dnssec)
            response.set_rcode(rcode)
            response.answer.extend(answer)
            response.authority.extend(authority)
        if transport == "tcp":
            return [response.to_wire()]
        limit = max(512, query.payload) if query.edns >= 0 else 512
        if rule.truncate_udp:
            return [_truncated(response)]
        try:
            return [response.to_wire(max_size=limit)]
        except dns.exception.TooBig:
            return [_truncated(response)]

    def _garbage(self, query_id: int) -> list[bytes]:
        """Two kinds: random bytes, and a header that matches ID and QR over an unparsable body."""
        noise = bytes(self._random.randrange(256) for _ in range(23))
        header = struct.pack("!HHHHHH", query_id, 0x8180, 1, 1, 0, 0)
        body = bytes([63]) + b"x" * 10
        return [noise, header + body]

    def _decoy(self, query: dns.message.Message, decoy: Decoy) -> bytes:
        if decoy is Decoy.GARBAGE:
            return self._garbage(query.id)[1]
        question = query.question[0]
        qname, qtype = question.name, question.rdtype
        if decoy is Decoy.WRONG_QNAME:
            qname = dns.name.Name((b"forged", *qname.labels))
        if decoy is Decoy.WRONG_QTYPE:
            qtype = dns.rdatatype.TXT if qtype != dns.rdatatype.TXT else dns.rdatatype.MX
        forged = dns.message.make_query(
            qname, qtype, use_edns=query.edns if query.edns >= 0 else None
        )
        forged.id = query.id ^ 0x5A5A if decoy is Decoy.WRONG_ID else query.id
        forged.flags = dns.flags.QR | dns.flags.RD | dns.flags.RA
        forged.answer.append(dns.rrset.from_text(question.name, 300, "IN", "A", FORGED_ADDRESS))
        return forged.to_wire()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: FakeUpstream) -> None:
        self._owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        self._owner._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        """ICMP errors (a resolver socket already closed) are normal in these tests."""


def _truncated(response: dns.message.Message) -> bytes:
    """An empty TC=1 copy of the response, as servers send when the answer does not fit."""
    wire = response.to_wire(max_size=65535)
    header = bytearray(wire[:12])
    flags = struct.unpack("!H", header[2:4])[0] | dns.flags.TC
    struct.pack_into("!HHHHH", header, 2, flags, 1, 0, 0, 0)
    question_end = 12 + len(response.question[0].name.to_wire()) + 4
    return bytes(header) + wire[12:question_end]


def _bind_pair(host: str) -> tuple[socket.socket, socket.socket]:
    """Bind UDP and TCP sockets to the same free port (retrying when TCP's half is taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(_MAX_PORT_TRIES):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        udp.bind((host, 0))
        tcp = socket.socket(family, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            tcp.bind((host, udp.getsockname()[1]))
        except OSError:
            udp.close()
            tcp.close()
            continue
        tcp.listen(128)
        udp.setblocking(False)
        tcp.setblocking(False)
        return udp, tcp
    raise RuntimeError("no port free for both UDP and TCP")


def _send_from_other_port(host: str, packet: bytes, peer: tuple[str, int]) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        sock.sendto(packet, peer)


@dataclass(frozen=True)
class TestPki:
    """A throw-away CA and one server certificate signed by it, as PEM files."""

    __test__ = False  # not a pytest test class, whatever its name

    ca: Path
    cert: Path
    key: Path
    name: str

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


def make_test_pki(directory: Path, name: str = "dns.test") -> TestPki | None:
    """Make a CA and a certificate for `name` with the `openssl` command line (the project does
    not depend on `cryptography`); None when openssl is not installed, for tests to skip."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    ca_key, ca, key, csr, cert = (directory / n for n in ("ca.key", "ca.pem", "server.key",
                                                         "server.csr", "server.pem"))  # fmt: skip
    extensions = directory / "server.ext"
    extensions.write_text(
        f"subjectAltName=DNS:{name}\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    commands = [
        [openssl, "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2",
         "-subj", "/CN=dnswarden test CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        [openssl, "req", *ec, "-keyout", key, "-out", csr, "-subj", f"/CN={name}"],
        [openssl, "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", cert, "-days", "2", "-extfile", extensions],
    ]  # fmt: skip
    for command in commands:
        subprocess.run([str(part) for part in command], check=True, capture_output=True, timeout=30)
    return TestPki(ca, cert, key, name)
