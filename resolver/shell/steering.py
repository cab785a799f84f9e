"""Receive queues per source address: one UDP listener becomes several sockets on the same address
and port, and the kernel puts each datagram in the queue its source address picks.

A flood fills the kernel's receive queue of the socket it arrives on, and a datagram that finds
it full is dropped, whoever sent it: with one queue per listener, a client asking cached names
loses its queries whenever a flood from another address bursts faster than it can be shed. With
queues per source, the flood fills only its own; the listeners read each queue in turn, a batch
at a time, so the other clients' queries wait behind at most a batch of the flood's.

How: the sockets share a port through SO_REUSEPORT, and a classic BPF program attached to the
group (SO_ATTACH_REUSEPORT_CBPF, Linux 4.5 and later) returns the queue's index: the source
address (its last 32 bits for IPv6) modulo the number of queues. The kernel's own spreading
would not do: it hashes the source port too, which a flood varies at will. Where the program
cannot be attached, the extra sockets are closed and the listener keeps its one queue.
"""

from __future__ import annotations

import ctypes
import socket
import struct

from resolver.shell.binding import listening

SO_ATTACH_REUSEPORT_CBPF = 51
_SKF_NET_OFF = -0x100000
"""Classic BPF's offset base for the network header (`SKF_NET_OFF` in linux/filter.h)."""
_SOURCE_WORD = {socket.AF_INET: 12, socket.AF_INET6: 20}
"""Offset of the source address's last 32 bits in the IPv4 and IPv6 headers."""
_LD_W_ABS, _ALU_MOD_K, _RET_A = 0x20, 0x94, 0x16


def steering_program(family: int, queues: int) -> bytes:
    """The `struct sock_filter` array: A = source word; A %= queues; return A."""
    load = (_SKF_NET_OFF + _SOURCE_WORD[family]) & 0xFFFFFFFF
    return b"".join(
        struct.pack("=HBBI", code, 0, 0, k)
        for code, k in ((_LD_W_ABS, load), (_ALU_MOD_K, queues), (_RET_A, 0))
    )


def queue_of(address: str, queues: int) -> int:
    """The queue `steering_program` picks for a datagram from `address`."""
    packed = socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)
    return int.from_bytes(packed[-4:], "big") % queues


def add_source_queues(
    primary: socket.socket, queues: int, receive_buffer: int
) -> list[socket.socket]:
    """`queues - 1` more UDP sockets bound where `primary` is (which must have SO_REUSEPORT set
    before its bind), steered by source address; [] when the kernel refuses any step. The
    primary is queue 0 (the group keeps the order in which its sockets were bound)."""
    if queues < 2:
        return []
    family = primary.family
    address = primary.getsockname()
    extra: list[socket.socket] = []
    try:
        for _ in range(queues - 1):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            extra.append(sock)
            listening(sock, True, receive_buffer).bind(address)
        code = steering_program(family, queues)
        program = ctypes.create_string_buffer(code, len(code))
        fprog = struct.pack("HL", len(code) // 8, ctypes.addressof(program))
        primary.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
    except OSError:
        for sock in extra:
            sock.close()
        return []
    return extra
