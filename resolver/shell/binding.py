"""Binding listeners: every listening socket set up alike (`listening`), and bind failures that
name the listener and say what to do.

The bare OSError (`[Errno 98] Address already in use`) says neither which of several listeners
failed (each DNS address has a UDP and a TCP socket, and there is the metrics endpoint) nor what
the operator can do about it; on a gateway the usual causes are few and each has one remedy.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sys

from resolver.config import Endpoint

UDP = "UDP"
TCP = "TCP"
METRICS = "metrics HTTP"


def listening(sock: socket.socket, reuse_port: bool, receive_buffer: int = 0) -> socket.socket:
    """`sock`, set up before its bind as every listener's is: IPv6 only on an IPv6 socket (IPv4
    has listeners of its own), non-blocking, SO_REUSEPORT when the port is shared, and the
    receive buffer asked for when one is (`ask_receive_buffer`)."""
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.setblocking(False)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if receive_buffer:
        ask_receive_buffer(sock, receive_buffer)
    return sock


SO_RCVBUFFORCE = 33
"""Linux's SO_RCVBUF past `net.core.rmem_max`, for a process with CAP_NET_ADMIN (Python's
socket module does not name it)."""
_LINUX = sys.platform.startswith("linux")


def ask_receive_buffer(sock: socket.socket, size: int) -> int:
    """Ask for `size` bytes of receive buffer and return what was granted. The kernel caps
    SO_RCVBUF at `net.core.rmem_max` without an error (212,992 bytes on a stock Linux, a tenth
    of the default `limits.udp_receive_buffer`), so a short grant is asked again with
    SO_RCVBUFFORCE, which root has before the privilege drop; the caller reports what is still
    short, since a smaller buffer drops more of a flood's bursts, the client's own queries
    among them (docs/hardening.md)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    if _LINUX and granted_receive_buffer(sock) < size:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    return granted_receive_buffer(sock)


def granted_receive_buffer(sock: socket.socket) -> int:
    """The receive buffer `sock` has, in the units it is asked in: Linux reports twice what
    was asked (the other half is its accounting of each datagram's overhead)."""
    reported = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    return reported // 2 if _LINUX else reported


class BindError(OSError):
    """`address` could not be bound for `protocol` (UDP, TCP or metrics HTTP); `hint` says what
    to do (empty when there is nothing useful to say)."""

    def __init__(self, endpoint: Endpoint, protocol: str, error: OSError) -> None:
        code = error.errno or 0
        super().__init__(code, os.strerror(code) if code else str(error))
        self.address = str(endpoint)
        self.protocol = protocol
        self.hint = bind_hint(code, endpoint, protocol)

    def __str__(self) -> str:
        return f"cannot listen on {self.address} ({self.protocol}): {self.strerror}"

    def fields(self) -> dict[str, object]:
        """For the `startup_failed` event."""
        fields: dict[str, object] = {
            "listener": self.address,
            "protocol": self.protocol,
            "errno": errno.errorcode.get(self.errno or 0, str(self.errno)),
        }
        if self.hint:
            fields["hint"] = self.hint
        return fields


def bind_hint(code: int, endpoint: Endpoint, protocol: str) -> str:
    if code in (errno.EACCES, errno.EPERM):
        if endpoint.port < 1024:
            python = os.path.realpath(sys.executable)
            return (
                f"port {endpoint.port} is below 1024 and needs the CAP_NET_BIND_SERVICE "
                "capability: run under systemd with AmbientCapabilities=CAP_NET_BIND_SERVICE "
                "(as deploy/systemd/dnswarden.service does), or grant it to this interpreter "
                f"(and so to all it runs) with `setcap cap_net_bind_service=+ep {python}`, or "
                "run as root"
            )
        return "the system refused it (a security policy such as SELinux or AppArmor?)"
    if code == errno.EADDRINUSE:
        flags = "-lunp" if protocol == UDP else "-ltnp"
        return (
            f"something else already listens there (`ss {flags} 'sport = :{endpoint.port}'` "
            "names it): another dnswarden, or a local resolver such as systemd-resolved or "
            "dnsmasq"
        )
    if code == errno.EADDRNOTAVAIL:
        return (
            f"{endpoint.host} is not an address of this host (`ip -brief address` lists them), "
            "or its interface is not up yet"
        )
    if code == errno.EAFNOSUPPORT:
        return "IPv6 is disabled on this host: listen on IPv4 addresses only"
    return ""
