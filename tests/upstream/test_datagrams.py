"""UDP exchanges against a loopback socket the test owns: what counts as the reply (RFC 5452),
fresh ports and IDs, timeouts, cancelling, and the same without epoll."""

from __future__ import annotations

import asyncio
import itertools
import select
import socket
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from resolver.config import UpstreamServer
from resolver.observe.stats import Stats
from resolver.protocol.wire import HEADER_LEN, Query, UpstreamReply, parse_query
from resolver.upstream import datagrams
from resolver.upstream.datagrams import BadReply, RandomIds, UdpExchange, UdpExchanges

T = TypeVar("T")

# www.example.org. A, RD, no EDNS
QUERY = bytes.fromhex(
    "abcd01000001000000000000"  # ID abcd, RD, one question
    "03777777076578616d706c65036f726700"  # www.example.org.
    "00010001"  # A IN
)
# its answer: 192.0.2.1, TTL 300 (ID and question are patched in by `answer`)
ANSWER_RECORD = bytes.fromhex("c00c000100010000012c0004c0000201")


def answer(sent: bytes, *, query_id: int | None = None, tail: bytes = b"") -> bytes:
    """The reply a well-behaved server gives to `sent` (our upstream query), optionally with
    another ID or junk after the last record."""
    ident = sent[:2] if query_id is None else query_id.to_bytes(2, "big")
    question_end = len(QUERY)
    header = ident + b"\x81\x80" + b"\x00\x01\x00\x01\x00\x00\x00\x00"
    return header + sent[HEADER_LEN:question_end] + ANSWER_RECORD + tail


try:
    import uvloop
except ImportError:  # the `speed` extra is optional
    uvloop = None

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop if uvloop else None}
_loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop


@pytest.fixture(autouse=True, params=sorted(LOOPS))
def event_loop_kind(request: pytest.FixtureRequest) -> str:
    """Every test runs on both loops the server may use: they differ in what they hand back."""
    global _loop_factory
    factory = LOOPS[request.param]
    if factory is None:
        pytest.skip("uvloop is not installed")
    _loop_factory = factory
    return str(request.param)


def run(factory: Callable[[], Awaitable[T]], limit: float = 10.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(factory(), limit)

    with asyncio.Runner(loop_factory=_loop_factory) as runner:
        return runner.run(bounded())


class Upstream:
    """A loopback UDP socket standing in for a name server; the test decides every reply."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.server = UpstreamServer("udp", "127.0.0.1", self.sock.getsockname()[1])

    async def receive(self) -> tuple[bytes, Any]:
        """The next datagram (uvloop has no `sock_recvfrom`, so wait for readability)."""
        loop = asyncio.get_running_loop()
        readable = loop.create_future()
        loop.add_reader(self.sock.fileno(), readable.set_result, None)
        try:
            await readable
        finally:
            loop.remove_reader(self.sock.fileno())
        return self.sock.recvfrom(65535)

    def close(self) -> None:
        self.sock.close()


class Outcomes:
    def __init__(self) -> None:
        self.seen: list[tuple[UpstreamReply | None, BaseException | None, Any]] = []
        self.event = asyncio.Event()

    def __call__(self, reply: UpstreamReply | None, error: BaseException | None, ctx: Any) -> None:
        self.seen.append((reply, error, ctx))
        self.event.set()


def query() -> Query:
    return parse_query(QUERY)


async def exchange_once(
    without_epoll: bool, monkeypatch: pytest.MonkeyPatch, junk: list[str]
) -> tuple[Outcomes, Stats, UdpExchanges, UdpExchange]:
    if without_epoll:
        monkeypatch.delattr(select, "epoll", raising=False)
    stats = Stats()
    exchanges = UdpExchanges(asyncio.get_running_loop(), stats)
    upstream = Upstream()
    outcomes = Outcomes()
    try:
        pending = exchanges.send(upstream.server, query(), 2.0, outcomes, "ctx")
        sent, client = await upstream.receive()
        decoy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for kind in junk:
                if kind == "wrong-id":
                    wrong = (int.from_bytes(sent[:2], "big") ^ 0x5A5A).to_bytes(2, "big")
                    upstream.sock.sendto(answer(sent, query_id=int.from_bytes(wrong, "big")),
                                         client)  # fmt: skip
                elif kind == "wrong-source":
                    decoy.sendto(answer(sent), client)  # right ID, from another port
                elif kind == "not-a-reply":
                    upstream.sock.sendto(sent, client)  # our own query echoed: QR clear
            await asyncio.sleep(0.05)
            assert not outcomes.seen, "junk must not end the exchange"
            upstream.sock.sendto(answer(sent), client)
            await asyncio.wait_for(outcomes.event.wait(), 2.0)
        finally:
            decoy.close()
        return outcomes, stats, exchanges, pending
    finally:
        upstream.close()
        exchanges.close()


@pytest.mark.parametrize("without_epoll", [False, True], ids=["epoll", "loop-readers"])
@pytest.mark.parametrize(
    "junk",
    [[], ["wrong-id"], ["wrong-source"], ["not-a-reply"], ["wrong-id", "wrong-source"]],
    ids=lambda junk: "+".join(junk) or "clean",
)
def test_only_the_reply_from_the_upstream_with_our_id_counts(
    without_epoll: bool, junk: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> tuple[Outcomes, Stats, UdpExchanges, UdpExchange]:
        return await exchange_once(without_epoll, monkeypatch, junk)

    outcomes, stats, exchanges, pending = run(scenario)
    assert len(outcomes.seen) == 1
    reply, error, ctx = outcomes.seen[0]
    assert error is None and ctx == "ctx"
    assert reply is not None and reply.raw.endswith(ANSWER_RECORD)
    assert stats.counts["upstream.mismatch"] == len(junk)
    assert len(exchanges) == 0
    assert pending.sock.fileno() == -1  # closed once answered


def test_each_exchange_has_its_own_port_and_a_random_id() -> None:
    async def scenario() -> tuple[set[int], set[bytes]]:
        exchanges = UdpExchanges(asyncio.get_running_loop(), Stats())
        upstream = Upstream()
        try:
            pending = [exchanges.send(upstream.server, query(), 2.0, Outcomes()) for _ in range(32)]
            ports = {p.sock.getsockname()[1] for p in pending}
            ids = set()
            for _ in pending:
                sent, _ = await upstream.receive()
                ids.add(sent[:2])
            return ports, ids
        finally:
            upstream.close()
            exchanges.close()

    ports, ids = run(scenario)
    assert len(ports) == 32  # all open at once: 32 different source ports
    assert len(ids) >= 30  # 16 random bits each: a repeat or two at most


def test_silence_times_out_and_cancel_is_quiet() -> None:
    async def scenario() -> tuple[Outcomes, Outcomes, float]:
        loop = asyncio.get_running_loop()
        exchanges = UdpExchanges(loop, Stats())
        upstream = Upstream()
        silent, cancelled = Outcomes(), Outcomes()
        try:
            started = loop.time()
            exchanges.send(upstream.server, query(), 0.2, silent)
            doomed = exchanges.send(upstream.server, query(), 0.1, cancelled)
            exchanges.cancel(doomed)
            await asyncio.wait_for(silent.event.wait(), 2.0)
            elapsed = loop.time() - started
            await asyncio.sleep(0.2)
            return silent, cancelled, elapsed
        finally:
            upstream.close()
            exchanges.close()

    silent, cancelled, elapsed = run(scenario)
    assert len(silent.seen) == 1 and isinstance(silent.seen[0][1], TimeoutError)
    # On time, give or take the sweep and a busy machine; never early (the clock's last bit
    # aside: `loop.time()` is large after days of uptime, so expiry - start may round down).
    assert 0.2 - 1e-9 <= elapsed < 0.2 + 0.2
    assert cancelled.seen == []


def test_an_earlier_deadline_is_not_held_up_by_a_later_one() -> None:
    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        exchanges = UdpExchanges(loop, Stats())
        upstream = Upstream()
        short = Outcomes()
        try:
            exchanges.send(upstream.server, query(), 1.5, Outcomes())
            started = loop.time()
            exchanges.send(upstream.server, query(), 0.1, short)
            await asyncio.wait_for(short.event.wait(), 2.0)
            return loop.time() - started
        finally:
            upstream.close()
            exchanges.close()

    assert run(scenario) < 0.5


def test_a_burst_of_timeouts_is_handled_a_budget_per_turn_of_the_loop() -> None:
    """Exchanges timing out together end at most `EXPIRE_BUDGET` per turn: callbacks queued
    meanwhile (a client's answer) run between the batches, and every exchange still ends."""
    count = datagrams.EXPIRE_BUDGET * 3 + 5

    async def scenario() -> tuple[list[int], int]:
        loop = asyncio.get_running_loop()
        exchanges = UdpExchanges(loop, Stats())
        upstream = Upstream()
        turns: list[int] = []  # timeouts seen at each turn of a ticker callback
        ended: list[int] = []
        done = asyncio.Event()

        def outcome(reply: Any, error: BaseException | None, ctx: Any) -> None:
            ended.append(ctx)
            if len(ended) == count:
                done.set()

        def tick() -> None:
            turns.append(len(ended))
            if not done.is_set():
                loop.call_soon(tick)

        try:
            for index in range(count):
                exchanges.send(upstream.server, query(), 0.05, outcome, index)
            loop.call_soon(tick)
            await asyncio.wait_for(done.wait(), 5.0)
            return turns, len(ended)
        finally:
            upstream.close()
            exchanges.close()

    turns, ended = run(scenario)
    assert ended == count
    steps = [b - a for a, b in itertools.pairwise(turns) if b > a]
    assert max(steps) <= datagrams.EXPIRE_BUDGET
    assert len(steps) >= 4  # 3 full batches and the rest, each on its own turn


def test_an_fd_reused_after_an_answer_keeps_the_new_exchange_s_own_deadline() -> None:
    """The exchange now on an answered one's fd (a later deadline) must time out on its own
    deadline, not the answered one's; and after the sweep timer had nothing left to wait for,
    a new exchange must arm it again."""

    async def scenario() -> tuple[bool, float, float]:
        loop = asyncio.get_running_loop()
        exchanges = UdpExchanges(loop, Stats())
        upstream = Upstream()
        first, second, third = Outcomes(), Outcomes(), Outcomes()
        try:
            answered = exchanges.send(upstream.server, query(), 0.1, first)
            fd = answered.fd
            sent, client = await upstream.receive()
            upstream.sock.sendto(answer(sent), client)
            await asyncio.wait_for(first.event.wait(), 2.0)
            started = loop.time()
            reused = exchanges.send(upstream.server, query(), 0.4, second)
            await asyncio.wait_for(second.event.wait(), 2.0)
            elapsed = loop.time() - started
            await asyncio.sleep(0.05)
            started = loop.time()
            exchanges.send(upstream.server, query(), 0.05, third)
            await asyncio.wait_for(third.event.wait(), 2.0)
            return reused.fd == fd, elapsed, loop.time() - started
        finally:
            upstream.close()
            exchanges.close()

    same_fd, elapsed, after_idle = run(scenario)
    assert same_fd  # the kernel hands out the lowest free fd: the test tests what it says
    assert 0.4 - 1e-9 <= elapsed < 0.4 + 0.2
    assert 0.05 - 1e-9 <= after_idle < 0.05 + 0.2


def test_a_deadline_under_a_millisecond_then_another_send() -> None:
    """uvloop turns a timer due within a millisecond into a plain Handle (no `when()`): the
    next send must still work, and both exchanges must still time out."""

    async def scenario() -> list[Any]:
        exchanges = UdpExchanges(asyncio.get_running_loop(), Stats())
        upstream = Upstream()
        first, second = Outcomes(), Outcomes()
        try:
            exchanges.send(upstream.server, query(), 0.0001, first)
            exchanges.send(upstream.server, query(), 0.05, second)
            await asyncio.wait_for(second.event.wait(), 2.0)
            await asyncio.wait_for(first.event.wait(), 2.0)
            return [type(error) for _, error, _ in first.seen + second.seen]
        finally:
            upstream.close()
            exchanges.close()

    assert run(scenario) == [TimeoutError, TimeoutError]


def test_a_matching_but_malformed_reply_is_a_bad_reply() -> None:
    async def scenario() -> Outcomes:
        exchanges = UdpExchanges(asyncio.get_running_loop(), Stats())
        upstream = Upstream()
        outcomes = Outcomes()
        try:
            exchanges.send(upstream.server, query(), 2.0, outcomes)
            sent, client = await upstream.receive()
            upstream.sock.sendto(answer(sent, tail=b"\x00junk"), client)
            await asyncio.wait_for(outcomes.event.wait(), 2.0)
            return outcomes
        finally:
            upstream.close()
            exchanges.close()

    outcomes = run(scenario)
    assert len(outcomes.seen) == 1 and isinstance(outcomes.seen[0][1], BadReply)


def test_close_cancels_everything_in_flight() -> None:
    async def scenario() -> tuple[list[UdpExchange], Outcomes]:
        exchanges = UdpExchanges(asyncio.get_running_loop(), Stats())
        upstream = Upstream()
        outcomes = Outcomes()
        try:
            pending = [exchanges.send(upstream.server, query(), 2.0, outcomes) for _ in range(5)]
            exchanges.close()
            await asyncio.sleep(0.05)
            return pending, outcomes
        finally:
            upstream.close()

    pending, outcomes = run(scenario)
    assert all(p.sock.fileno() == -1 for p in pending)
    assert outcomes.seen == []


def test_random_ids_read_the_csprng_in_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int] = []
    real = datagrams.os.urandom

    def counting(size: int) -> bytes:
        reads.append(size)
        return real(size)

    monkeypatch.setattr(datagrams.os, "urandom", counting)
    ids = RandomIds()
    values = [ids() for _ in range(5000)]
    assert all(0 <= v <= 0xFFFF for v in values)
    assert len(reads) == 3  # 4 KiB, 2048 IDs, per read
    assert len(set(values)) > 4500  # birthday repeats only


def pooled(exchanges: UdpExchanges) -> bool:
    return exchanges._disconnect is not None


def test_a_socket_is_reused_with_a_fresh_random_port_each_time() -> None:
    """Where the disconnect works (Linux), one socket serves exchange after exchange, each
    from another random port: the kernel binds one at each send and lets it go at the end."""

    async def scenario() -> tuple[bool, list[int], list[int]]:
        exchanges = UdpExchanges(asyncio.get_running_loop(), Stats())
        upstream = Upstream()
        fds, ports = [], []
        try:
            for _ in range(6):
                outcomes = Outcomes()
                exchange = exchanges.send(upstream.server, query(), 2.0, outcomes)
                sent, client = await upstream.receive()
                upstream.sock.sendto(answer(sent), client)
                await asyncio.wait_for(outcomes.event.wait(), 2.0)
                assert outcomes.seen[0][1] is None
                assert exchange.sock.getsockname()[1] == 0  # its port let go once answered
                fds.append(exchange.fd)
                ports.append(client[1])
            return pooled(exchanges), fds, ports
        finally:
            upstream.close()
            exchanges.close()

    reused, fds, ports = run(scenario)
    if not reused:
        pytest.skip("no disconnect here: a socket per exchange")
    assert len(set(fds)) == 1
    assert len(set(ports)) >= 5  # random ports: a repeat at most


def test_a_socket_that_got_a_datagram_after_its_answer_is_not_reused() -> None:
    """A second datagram queued behind the answer rests on the socket: it is closed, never
    handed to the next exchange (whose ID and question it would be checked against)."""

    async def scenario() -> tuple[bool, UdpExchange, UdpExchange, int]:
        stats = Stats()
        exchanges = UdpExchanges(asyncio.get_running_loop(), stats)
        upstream = Upstream()
        try:
            first, second = Outcomes(), Outcomes()
            earlier = exchanges.send(upstream.server, query(), 2.0, first)
            sent, client = await upstream.receive()
            upstream.sock.sendto(answer(sent), client)
            upstream.sock.sendto(answer(sent), client)  # a duplicate, behind it
            await asyncio.wait_for(first.event.wait(), 2.0)
            later = exchanges.send(upstream.server, query(), 2.0, second)
            sent, client = await upstream.receive()
            upstream.sock.sendto(answer(sent), client)
            await asyncio.wait_for(second.event.wait(), 2.0)
            return pooled(exchanges), earlier, later, stats.counts["upstream.mismatch"]
        finally:
            upstream.close()
            exchanges.close()

    reused, earlier, later, mismatched = run(scenario)
    if not reused:
        pytest.skip("no disconnect here: a socket per exchange")
    assert earlier.sock is not later.sock
    assert mismatched == 0  # the duplicate never met the later exchange



class Attempts(UdpExchange):
    """A caller's own exchange object (as the pool's walk is), sent once per attempt."""

    __slots__ = ("ended",)

    def __init__(self) -> None:
        self.query = query()
        self.ended: list[tuple[UpstreamReply | None, BaseException | None, Any]] = []


def released_port(exchange: UdpExchange) -> int:
    """The local port the exchange's socket still holds (0: let go, or the socket closed)."""
    return 0 if exchange.sock.fileno() == -1 else int(exchange.sock.getsockname()[1])


@pytest.mark.parametrize(
    ("first_ends", "error"),
    [("answered", None), ("timed-out", TimeoutError), ("malformed", BadReply)],
)
def test_one_exchange_object_sent_again_gets_a_fresh_port_and_id_each_time(
    first_ends: str, error: type[BaseException] | None
) -> None:
    """`send_to` with the caller's own object: its outcome hears that object, each attempt's
    port is let go when it ends, and sending it again (to the next upstream) draws a new ID:
    a reply with the first attempt's ID is not accepted on the second."""

    async def scenario() -> tuple[Attempts, list[int], list[bytes], int]:
        loop = asyncio.get_running_loop()
        stats = Stats()
        exchanges = UdpExchanges(loop, stats)
        first, second = Upstream(), Upstream()
        attempts = Attempts()
        done = asyncio.Event()

        def ended(reply: UpstreamReply | None, error: BaseException | None, ex: Any) -> None:
            ex.ended.append((reply, error, ex))
            done.set()

        released: list[int] = []
        ids: list[bytes] = []
        try:
            for upstream, timeout in ((first, 0.05), (second, 2.0)):
                done.clear()
                server = upstream.server
                exchanges.send_to(attempts, socket.AF_INET, (server.host, server.port),
                                  loop.time() + timeout, ended)  # fmt: skip
                sent, client = await upstream.receive()
                ids.append(sent[:2])
                if upstream is first and first_ends == "answered":
                    upstream.sock.sendto(answer(sent), client)
                elif upstream is first and first_ends == "malformed":
                    upstream.sock.sendto(answer(sent)[:-3], client)
                elif upstream is second:
                    if ids[0] != ids[1]:  # the first attempt's ID, now stale
                        stale = int.from_bytes(ids[0], "big")
                        upstream.sock.sendto(answer(sent, query_id=stale), client)
                    upstream.sock.sendto(answer(sent), client)
                await asyncio.wait_for(done.wait(), 2.0)
                released.append(released_port(attempts))
            return attempts, released, ids, stats.counts["upstream.mismatch"]
        finally:
            first.close()
            second.close()
            exchanges.close()

    attempts, released, ids, mismatched = run(scenario)
    assert [ex for _, _, ex in attempts.ended] == [attempts, attempts]
    first_reply, first_error, _ = attempts.ended[0]
    assert type(first_error) is error if error else first_error is None
    assert (first_reply is not None) == (first_ends == "answered")
    last_reply, last_error, _ = attempts.ended[1]
    assert last_error is None and last_reply is not None and last_reply.raw[:2] == ids[1]
    assert mismatched == (ids[0] != ids[1])
    assert released == [0, 0]
    assert attempts.outcome is None
