"""A bounded UDP flood from a chosen loopback address, run as its own process by the tests.

    python flooder.py SOURCE HOST PORT RATE SECONDS PARENT

Sends RATE queries a second (paced in 10 ms steps) for SECONDS, each for a name never sent
before under PARENT (`<hex>.PARENT`), from SOURCE (e.g. 127.0.0.2), and reads no replies.
Prints the number sent. Refuses any address outside 127.0.0.0/8.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct
import sys
import time

STEP = 0.01
MAX_RATE = 200_000
MAX_SECONDS = 30.0


def packet(index: int, parent: bytes) -> bytes:
    label = f"f{index:x}".encode()
    name = bytes([len(label)]) + label + parent
    return struct.pack("!HHHHHH", index & 0xFFFF, 0x0100, 1, 0, 0, 0) + name + b"\0\1\0\1"


def wire(parent: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in parent.strip(".").split(".")) + b"\0"


def main(argv: list[str]) -> int:
    source, host, port, rate, seconds, parent = argv
    for address in (source, host):
        if ipaddress.ip_address(address) not in ipaddress.ip_network("127.0.0.0/8"):
            raise SystemExit(f"{address}: loopback only")
    per_second = min(int(rate), MAX_RATE)
    duration = min(float(seconds), MAX_SECONDS)
    suffix = wire(parent)
    per_step = max(1, int(per_second * STEP))
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.setblocking(False)
        target = (host, int(port))
        began = time.monotonic()
        step = 0
        while True:
            now = time.monotonic()
            if now - began >= duration:
                break
            due = began + step * STEP
            if now < due:
                time.sleep(due - now)
                continue
            for _ in range(per_step):
                with contextlib.suppress(OSError):
                    sock.sendto(packet(sent, suffix), target)
                sent += 1
            step += 1
    print(sent, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
