"""`python -m bench.bare`: a bare CPython DNS loop for the benchmark's `bare-loop` row.

This is NOT a resolver and must never serve anyone: it is a ceiling.  It does only what
dnswarden's hot path cannot avoid (parse the question by hand, walk the name's suffixes over a
`set`, answer from a dict of raw replies, forward with a fresh socket, so a fresh random source
port, and a fresh random ID per upstream query, as RFC 5452 and issue 2 require of dnswarden) and
none of its features: no TCP, no EDNS, no TTLs (cached replies never expire), no upstream reply
checks beyond address and ID, no retries, no policy, no logs, no metrics.  The gap between
dnswarden and this row is what dnswarden's features cost on this machine and this Python.
Several `--blocklist` files go into the one `set`: one lookup per suffix, however many lists.
"""

from __future__ import annotations

import _socket
import argparse
import asyncio
import ipaddress
import os
import select
import signal
from collections.abc import Sequence
from pathlib import Path

MAX_NAME = 255
BATCH = 64
CACHE_MAX = 10_000
"""Like the peers' caches; once full, new replies are simply not stored (no eviction cost)."""
MAX_PENDING = 10_000
STALE_AFTER, SWEEP_EVERY, SWEEP_MAX = 2.0, 0.1, 10_000
SINKHOLE_A = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x00\x00\x00\x00"
"""One answer: pointer to the question name, A, IN, TTL 60, 0.0.0.0."""
TYPE_A = b"\x00\x01"


def question_end(packet: bytes) -> int:
    """Offset just past the question of a one-question query, or 0 for anything else (a
    response, a short or malformed packet, a compressed or over-long name)."""
    if len(packet) < 17 or packet[2] & 0x80 or packet[4:6] != b"\x00\x01":
        return 0
    pos, limit = 12, min(len(packet) - 4, 12 + MAX_NAME)
    while pos < limit:
        length = packet[pos]
        if length == 0:
            return pos + 5
        if length > 63:
            return 0
        pos += length + 1
    return 0


def is_blocked(name: bytes, blocked: set[bytes] | frozenset[bytes]) -> bool:
    """Whether the wire-form `name` or one of its parents is in `blocked` (wire form too): each
    suffix of a wire-form name that starts at a label is the wire form of that parent."""
    pos = 0
    while name[pos]:
        if name[pos:] in blocked:
            return True
        pos += name[pos] + 1
    return False


def blocked_reply(packet: bytes, end: int) -> bytes:
    """The sinkhole answer to the query `packet` (question ending at `end`): its ID, opcode, RD
    and question, QR and RA set; 0.0.0.0 for type A, an empty NOERROR answer for other types."""
    answer = packet[end - 4 : end - 2] == TYPE_A
    flags = bytes((0x80 | (packet[2] & 0x79), 0x80))
    counts = b"\x00\x01\x00\x01\x00\x00\x00\x00" if answer else b"\x00\x01\x00\x00\x00\x00\x00\x00"
    return packet[:2] + flags + counts + packet[12:end] + (SINKHOLE_A if answer else b"")


def wire_names(text: str) -> set[bytes]:
    """Lower-cased wire forms of a one-domain-per-line list; `#` comments; bad lines skipped."""
    names: set[bytes] = set()
    for line in text.splitlines():
        domain = line.split("#", 1)[0].strip().rstrip(".").lower()
        labels = domain.split(".")
        if not domain or not domain.isascii() or any(not 0 < len(x) < 64 for x in labels):
            continue
        wire = b"".join(bytes((len(x),)) + x.encode() for x in labels) + b"\x00"
        if len(wire) <= MAX_NAME:
            names.add(wire)
    return names


def loopback(text: str) -> tuple[str, int]:
    """`127.0.0.1:PORT` -> (host, port); raises ValueError for anything but IPv4 loopback."""
    host, _, port = text.rpartition(":")
    if not ipaddress.IPv4Address(host).is_loopback or not 0 < int(port) < 65536:
        raise ValueError(f"{text}: only an IPv4 loopback address with a port is allowed")
    return host, int(port)


def serve(listen: tuple[str, int], upstream: tuple[str, int], blocked: set[bytes]) -> None:
    """Answer on `listen` until SIGTERM or SIGINT: sinkhole, cache hit, or forward."""
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    lsock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM | _socket.SOCK_NONBLOCK)
    lsock.bind(listen)
    poller = select.epoll()
    pending: dict[int, tuple[_socket.socket, bytes, object, bytes, bytes, float]] = {}
    cache: dict[bytes, bytes] = {}
    buf = memoryview(bytearray(65535))
    ids, used = os.urandom(4096), 0

    def on_client() -> None:
        nonlocal ids, used
        for _ in range(BATCH):
            try:
                size, client = lsock.recvfrom_into(buf)
            except OSError:
                return
            packet = bytes(buf[:size])
            end = question_end(packet)
            if not end:
                continue
            name = packet[12 : end - 4].lower()
            if is_blocked(name, blocked):
                lsock.sendto(blocked_reply(packet, end), client)
                continue
            key = name + packet[end - 4 : end]
            hit = cache.get(key)
            if hit is not None:
                lsock.sendto(packet[:2] + hit[2:], client)
                continue
            if len(pending) >= MAX_PENDING:
                continue
            if used >= len(ids):
                ids, used = os.urandom(4096), 0
            qid, used = ids[used : used + 2], used + 2
            try:
                sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM | _socket.SOCK_NONBLOCK)
            except OSError:
                continue
            poller.register(sock.fileno(), select.EPOLLIN)
            sock.sendto(qid + packet[2:], upstream)
            pending[sock.fileno()] = (sock, qid, client, packet[:2], key, loop.time())

    def on_upstream() -> None:
        for fd, _ in poller.poll(0, 256):
            entry = pending.get(fd)
            if entry is None:
                continue
            sock, qid, client, client_id, key, _born = entry
            try:
                data, source = sock.recvfrom(65535)
            except OSError:
                continue
            if source != upstream or data[:2] != qid:
                continue
            del pending[fd]
            sock.close()
            if len(cache) < CACHE_MAX:
                cache[key] = data
            lsock.sendto(client_id + data[2:], client)

    def sweep() -> None:
        cutoff, stale = loop.time() - STALE_AFTER, []
        for fd, entry in pending.items():
            if entry[5] > cutoff or len(stale) >= SWEEP_MAX:
                break
            stale.append(fd)
        for fd in stale:
            pending.pop(fd)[0].close()
        loop.call_later(SWEEP_EVERY, sweep)

    loop.add_reader(lsock.fileno(), on_client)
    loop.add_reader(poller.fileno(), on_upstream)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, loop.stop)
    loop.call_later(SWEEP_EVERY, sweep)
    print(f"bare: {len(blocked):,} names, {type(loop).__module__} loop, {listen}", flush=True)
    loop.run_forever()  # until SIGTERM/SIGINT; the process exit closes every socket


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bare", description=__doc__)
    for flag in ("--listen", "--upstream"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--blocklist", required=True, action="append", help="repeat for more")
    args = parser.parse_args(argv)
    try:
        listen, upstream = loopback(args.listen), loopback(args.upstream)
    except ValueError as error:
        parser.error(str(error))
    blocked: set[bytes] = set()
    for path in args.blocklist:
        blocked |= wire_names(Path(path).read_text(errors="replace"))
    serve(listen, upstream, blocked)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
