"""DNS over TLS and over HTTPS against the real server: kdig and dnspython as clients, a test CA
made here with openssl, device ids into the audit trail, DDR parsed by dnspython, HTTP statuses,
trusted and untrusted proxies, handshake failures by reason, and a certificate reload under load
that fails no query. Everything on loopback; every server is stopped by PID by the fixtures."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rdatatype
import dns.rdtypes.svcbbase
import httpx
import pytest
from fake_upstream import FakeUpstream
from harness import (
    BLOCK_TTL,
    ServerFactory,
    ServerProcess,
    fresh_name,
    make_config,
    query,
    run_cli,
    udp_exchange,
)
from prometheus_client.parser import text_string_to_metric_families

from resolver.protocol.proxy import PROXY_V2_SIGNATURE
from resolver.shell.tls import certificate_not_after

pytestmark = pytest.mark.e2e

SERVER_NAME = "dns.test"
PROXY = "127.0.0.2"  # a trusted reverse proxy: the tests connect from this source address
PROXIED_CLIENT = "10.99.0.1"  # the client a trusted proxy names (in the `proxied` group)
RELOAD_SECONDS = 3.0


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path
    directory: Path

    def issue(self, name: str) -> tuple[Path, Path]:
        """Another server certificate (new key, new serial) from the same CA."""
        return _issue(self.directory, name)


def _openssl(*args: object) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=30)


def _issue(directory: Path, stem: str, days: int = 2) -> tuple[Path, Path]:
    key, csr, cert = (directory / f"{stem}.{ext}" for ext in ("key", "csr", "pem"))
    ext = directory / f"{stem}.ext"
    ext.write_text(
        f"subjectAltName=DNS:{SERVER_NAME},DNS:*.{SERVER_NAME},IP:127.0.0.1\n"
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", *ec, "-keyout", key, "-out", csr, "-subj", f"/CN={SERVER_NAME}")
    _openssl("x509", "-req", "-in", csr, "-CA", directory / "ca.pem", "-CAkey",
             directory / "ca.key", "-CAcreateserial", "-out", cert, "-days", days,
             "-extfile", ext)  # fmt: skip
    return cert, key


def make_pki(directory: Path) -> Pki:
    directory.mkdir(exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", directory / "ca.key", "-out", directory / "ca.pem",
             "-days", "2", "-subj", "/CN=dnswarden encrypted test CA", "-addext",
             "basicConstraints=critical,CA:TRUE", "-addext",
             "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    cert, key = _issue(directory, "server")
    return Pki(directory / "ca.pem", cert, key, directory)


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def free_port() -> int:
    """A free TCP port below the kernel's ephemeral range (32768 and up), so that no socket
    bound to port 0 elsewhere takes it between this check and the server's bind."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


@pytest.fixture(scope="module")
def pki(workdir: Path) -> Pki:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (.ci/run installs it)")
    return make_pki(workdir / "pki")


@pytest.fixture(scope="module")
def encrypted(
    launch: ServerFactory, upstreams: tuple[FakeUpstream, FakeUpstream], pki: Pki, workdir: Path
) -> ServerProcess:
    config = make_config([upstreams[0].address, upstreams[1].address])
    tls_dir = workdir / "served"
    tls_dir.mkdir()
    shutil.copy(pki.cert, tls_dir / "cert.pem")
    shutil.copy(pki.key, tls_dir / "key.pem")
    config["encrypted"] = {
        # Fixed ports, picked free: DDR answers carry the configured port.
        "dot": [f"127.0.0.1:{free_port()}"]
        + ([f"[::1]:{free_port()}"] if ipv6_loopback() else []),
        "doh": [f"127.0.0.1:{free_port()}"],
        "certificate": str(tls_dir / "cert.pem"),
        "key": str(tls_dir / "key.pem"),
        "server_name": SERVER_NAME,
        "trusted_proxies": [f"{PROXY}/32"],
        "idle_timeout": "3s",
        "handshake_timeout": "1s",
        "max_connections": 40,
    }
    config["groups"] = {
        "phones": {"devices": ["phone-1"], "block": ["telegram"]},
        "proxied": {"subnets": ["10.99.0.0/16"], "block": ["wechat"]},
    }
    config["clients"]["allow"].append("10.99.0.0/16")
    return launch(config, "encrypted")


def dot_address(server: ServerProcess) -> tuple[str, int]:
    host, _, port = server.startup["dot"][0].rpartition(":")
    return host, int(port)


def doh_url(server: ServerProcess, path: str = "/dns-query") -> str:
    return f"https://{SERVER_NAME}:{server.startup['doh'][0].rpartition(':')[2]}{path}"


def client_context(pki: Pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.ca))


def dot_query(server: ServerProcess, pki: Pki, name: str, rdtype: str = "A",
              server_name: str = SERVER_NAME) -> dns.message.Message:  # fmt: skip
    host, port = dot_address(server)
    return dns.query.tls(query(name, rdtype), host, port=port, timeout=5,
                         ssl_context=client_context(pki), server_hostname=server_name)  # fmt: skip


def doh_client(pki: Pki, http2: bool = True, source: str | None = None) -> httpx.Client:
    transport = httpx.HTTPTransport(
        verify=client_context(pki), http2=http2, http1=not http2, local_address=source
    )
    return httpx.Client(transport=transport, timeout=5)


@contextlib.contextmanager
def resolving_to_loopback() -> Iterator[None]:
    """`dns.test` resolves to 127.0.0.1 for httpx inside the block (no DNS needed)."""
    original = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        return original("127.0.0.1" if host == SERVER_NAME else host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    try:
        yield
    finally:
        socket.getaddrinfo = original  # type: ignore[assignment]


def addresses(reply: dns.message.Message) -> list[str]:
    return [rd.to_text() for rrset in reply.answer for rd in rrset if rrset.rdtype in (1, 28)]


def metrics(server: ServerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    url = f"http://{server.startup['metrics']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def kdig() -> str:
    path = shutil.which("kdig")
    if path is None:
        pytest.skip("kdig is not installed (knot-dnsutils; .ci/run installs it)")
    return path


# --- DoT ---------------------------------------------------------------------------------------


def test_kdig_over_tls_gets_the_same_policy(encrypted: ServerProcess, pki: Pki) -> None:
    host, port = dot_address(encrypted)
    result = subprocess.run(
        [kdig(), f"@{host}", "-p", str(port), "+tls", f"+tls-ca={pki.ca}",
         f"+tls-hostname={SERVER_NAME}", "+short", "tiktok.com", "A"],
        capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0.0.0.0"]


def test_dnspython_dot_forwards_and_blocks(encrypted: ServerProcess, pki: Pki) -> None:
    allowed = dot_query(encrypted, pki, fresh_name())
    assert allowed.rcode() == 0 and addresses(allowed)
    assert addresses(dot_query(encrypted, pki, "tiktok.com.")) == ["0.0.0.0"]


def test_device_id_from_the_server_name_reaches_group_and_audit(
    encrypted: ServerProcess, pki: Pki
) -> None:
    name = "web.telegram.org."
    assert addresses(dot_query(encrypted, pki, name, server_name=f"phone-1.{SERVER_NAME}")) == [
        "0.0.0.0"
    ]
    event = encrypted.wait_for_event(
        lambda e: e.get("event") == "blocked" and e.get("device") == "phone-1"
    )
    assert event is not None
    assert (event["group"], event["entry"], event["qname"]) == ("phones", "telegram",
                                                                "web.telegram.org")  # fmt: skip
    # Another phone, and the bare name, are in no device group: telegram is not blocked.
    other = dot_query(encrypted, pki, name, server_name=f"phone-2.{SERVER_NAME}")
    assert addresses(other) != ["0.0.0.0"]


def test_dot_over_ipv6(encrypted: ServerProcess, pki: Pki) -> None:
    if len(encrypted.startup["dot"]) < 2:
        pytest.skip("no IPv6 loopback here")
    host, _, port = encrypted.startup["dot"][1].rpartition(":")
    reply = dns.query.tls(query("tiktok.com.", "AAAA"), host.strip("[]"), port=int(port),
                          timeout=5, ssl_context=client_context(pki),
                          server_hostname=SERVER_NAME)  # fmt: skip
    assert addresses(reply) == ["::"]


def test_pipelined_queries_are_answered_out_of_order(encrypted: ServerProcess, pki: Pki) -> None:
    slow = query(fresh_name("slow"))
    slow.id = 1
    fast = query("tiktok.com.")
    fast.id = 2
    with socket.create_connection(dot_address(encrypted), timeout=5) as raw, \
            client_context(pki).wrap_socket(raw, server_hostname=SERVER_NAME) as tls:  # fmt: skip
        tls.sendall(b"".join(struct.pack("!H", len(w)) + w
                             for w in (slow.to_wire(), fast.to_wire())))  # fmt: skip
        ids = []
        for _ in range(2):
            size = struct.unpack("!H", _read(tls, 2))[0]
            ids.append(dns.message.from_wire(_read(tls, size)).id)
    assert ids == [2, 1]


def _read(sock: ssl.SSLSocket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "connection closed"
        data += chunk
    return data


def test_an_idle_connection_is_closed(encrypted: ServerProcess, pki: Pki) -> None:
    with socket.create_connection(dot_address(encrypted), timeout=10) as raw, \
            client_context(pki).wrap_socket(raw, server_hostname=SERVER_NAME) as tls:  # fmt: skip
        started = time.monotonic()
        assert tls.recv(1) == b""  # closed by the server after idle_timeout (3 s)
        assert 2.0 < time.monotonic() - started < 8.0


def _client_hello(version: bytes) -> bytes:
    """A minimal ClientHello of `version` (no extensions): what an old client sends."""
    body = version + bytes(32) + b"\x00" + b"\x00\x04\x00\x2f\xc0\x09" + b"\x01\x00"
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(handshake).to_bytes(2, "big") + handshake


TLS11_CLIENT_HELLO = _client_hello(b"\x03\x02")


def test_handshake_failures_are_counted_by_reason(encrypted: ServerProcess, pki: Pki) -> None:
    before = metrics(encrypted)
    address = dot_address(encrypted)
    with socket.create_connection(address, timeout=5) as sock:  # plain DNS to the TLS port
        sock.sendall(struct.pack("!H", 29) + query("example.org.").to_wire()[:29])
        sock.recv(100)
    with socket.create_connection(address, timeout=5) as sock:  # a TLS 1.1 client
        sock.sendall(TLS11_CLIENT_HELLO)
        assert sock.recv(100)[:1] == b"\x15"  # an alert (protocol_version)
    strangers = ssl.create_default_context()  # trusts the system CAs, not our test CA
    with contextlib.suppress(ssl.SSLError, OSError), \
            socket.create_connection(address, timeout=5) as raw:  # fmt: skip
        strangers.wrap_socket(raw, server_hostname=SERVER_NAME)
    with socket.create_connection(address, timeout=5) as silent:  # says nothing: timeout (1 s)
        assert silent.recv(10) == b""
    after = metrics(encrypted)

    def grew(reason: str) -> float:
        key = ("dnswarden_tls_handshake_failures_total",
               (("reason", reason), ("transport", "dot")))  # fmt: skip
        return after.get(key, 0) - before.get(key, 0)

    assert grew("not_tls") == 1
    assert grew("protocol_version") == 1
    assert grew("certificate_rejected") == 1
    assert grew("timeout") == 1


def test_connections_over_the_cap_are_refused(encrypted: ServerProcess, pki: Pki) -> None:
    address = dot_address(encrypted)
    held = []
    try:
        for _ in range(40):
            held.append(socket.create_connection(address, timeout=5))
        extra = socket.create_connection(address, timeout=5)
        with extra, contextlib.suppress(ConnectionResetError):
            assert extra.recv(10) == b""
    finally:
        for sock in held:
            sock.close()
    samples = metrics(encrypted)
    key = ("dnswarden_encrypted_connections_total", (("event", "rejected"), ("transport", "dot")))
    assert samples[key] >= 1


# --- DoH ---------------------------------------------------------------------------------------


def test_kdig_over_https(encrypted: ServerProcess, pki: Pki) -> None:
    port = encrypted.startup["doh"][0].rpartition(":")[2]
    result = subprocess.run(
        [kdig(), "@127.0.0.1", "-p", port, "+https", f"+tls-ca={pki.ca}",
         f"+tls-hostname={SERVER_NAME}", "+short", "tiktok.com", "AAAA"],
        capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["::"]


@pytest.mark.parametrize("post", [True, False])
def test_dnspython_doh_over_http2(encrypted: ServerProcess, pki: Pki, post: bool) -> None:
    port = int(encrypted.startup["doh"][0].rpartition(":")[2])
    reply = dns.query.https(
        query("tiktok.com."), doh_url(encrypted), port=port, post=post, timeout=5,
        bootstrap_address="127.0.0.1", verify=client_context(pki),
        http_version=dns.query.HTTPVersion.H2,
    )  # fmt: skip
    assert addresses(reply) == ["0.0.0.0"]


@pytest.mark.parametrize("http2", [True, False])
def test_doh_statuses_and_caching(encrypted: ServerProcess, pki: Pki, http2: bool) -> None:
    blocked = query("tiktok.com.")
    blocked.id = 0
    wire = blocked.to_wire()
    post = {"content-type": "application/dns-message"}
    with resolving_to_loopback(), doh_client(pki, http2) as client:
        ok = client.post(doh_url(encrypted), content=wire, headers=post)
        assert ok.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
        assert ok.status_code == 200
        assert ok.headers["content-type"] == "application/dns-message"
        assert ok.headers["cache-control"] == f"max-age={BLOCK_TTL}"
        assert addresses(dns.message.from_wire(ok.content)) == ["0.0.0.0"]
        statuses = [
            client.put(doh_url(encrypted), content=wire, headers=post).status_code,
            client.post(doh_url(encrypted), content=wire,
                        headers={"content-type": "text/plain"}).status_code,
            client.post(doh_url(encrypted), content=wire + bytes(65536),
                        headers=post).status_code,
            client.get(doh_url(encrypted), params={"dns": "not base64!"}).status_code,
            client.post(doh_url(encrypted), content=b"\x00" * 5, headers=post).status_code,
            client.get(doh_url(encrypted, "/resolve"), params={"name": "x"}).status_code,
            client.get(doh_url(encrypted, "/dns-query/bad_id"), params={"dns": "AAAA"}).status_code,
        ]  # fmt: skip
        assert statuses == [405, 415, 413, 400, 400, 404, 400]
        # The connection survives the refusals: a refused body is read and dropped.
        again = client.post(doh_url(encrypted), content=wire, headers=post)
        assert again.status_code == 200


def test_device_id_from_the_doh_path(encrypted: ServerProcess, pki: Pki) -> None:
    message = query("telegram.org.")
    with resolving_to_loopback(), doh_client(pki) as client:
        reply = client.post(doh_url(encrypted, "/dns-query/phone-1"), content=message.to_wire(),
                            headers={"content-type": "application/dns-message"})  # fmt: skip
    assert reply.status_code == 200
    assert addresses(dns.message.from_wire(reply.content)) == ["0.0.0.0"]
    event = encrypted.wait_for_event(
        lambda e: e.get("event") == "blocked" and e.get("qname") == "telegram.org"
        and e.get("device") == "phone-1"
    )  # fmt: skip
    assert event is not None and event["group"] == "phones"


def test_forwarded_is_believed_only_from_a_trusted_proxy(
    encrypted: ServerProcess, pki: Pki
) -> None:
    claim = {"content-type": "application/dns-message", "forwarded": f"for={PROXIED_CLIENT}"}
    wire = query("wechat.com.").to_wire()
    with resolving_to_loopback():
        with doh_client(pki) as untrusted:
            ignored = untrusted.post(doh_url(encrypted), content=wire, headers=claim)
        with doh_client(pki, source=PROXY) as proxy:
            believed = proxy.post(doh_url(encrypted), content=wire, headers=claim)
    assert addresses(dns.message.from_wire(ignored.content)) != ["0.0.0.0"]
    assert addresses(dns.message.from_wire(believed.content)) == ["0.0.0.0"]
    event = encrypted.wait_for_event(
        lambda e: e.get("event") == "blocked" and e.get("client") == PROXIED_CLIENT
    )
    assert event is not None and event["group"] == "proxied"


def test_proxy_protocol_needs_its_own_config(encrypted: ServerProcess) -> None:
    """proxy_protocol is off here: a PROXY header, even from the trusted proxy, is not TLS."""
    before = metrics(encrypted)
    with socket.socket() as sock:
        sock.bind((PROXY, 0))
        sock.settimeout(5)
        sock.connect(dot_address(encrypted))
        sock.sendall(PROXY_V2_SIGNATURE + b"\x21\x11\x00\x0c" + bytes(12))
        with contextlib.suppress(ConnectionResetError):
            sock.recv(100)
    after = metrics(encrypted)
    key = ("dnswarden_tls_handshake_failures_total", (("reason", "not_tls"), ("transport", "dot")))
    assert after[key] - before.get(key, 0) == 1


# --- DDR, health, metrics ----------------------------------------------------------------------


def test_ddr_answers_name_our_endpoints(encrypted: ServerProcess) -> None:
    raw = udp_exchange(query("_dns.resolver.arpa.", "SVCB").to_wire(), encrypted.address)
    assert raw is not None
    reply = dns.message.from_wire(raw)
    (rrset,) = reply.answer
    keys = dns.rdtypes.svcbbase.ParamKey
    by_alpn = {rd.params[keys.ALPN].ids[0].decode(): rd for rd in rrset}
    doh_port = int(encrypted.startup["doh"][0].rpartition(":")[2])
    assert by_alpn["h2"].params[keys.PORT].port == doh_port
    assert by_alpn["h2"].params[keys.DOHPATH].value == b"/dns-query{?dns}"
    assert by_alpn["dot"].params[keys.PORT].port == dot_address(encrypted)[1]
    for rdata in rrset:
        assert rdata.target.to_text() == f"{SERVER_NAME}."
        assert [str(a) for a in rdata.params[keys.IPV4HINT].addresses] == ["127.0.0.1"]


def test_readyz_and_metrics_report_the_listeners(encrypted: ServerProcess, pki: Pki) -> None:
    dot_query(encrypted, pki, "tiktok.com.")
    with urllib.request.urlopen(f"http://{encrypted.startup['metrics']}/readyz",
                                timeout=5) as response:  # fmt: skip
        ready = json.loads(response.read())
    assert ready["ready"] is True
    assert ready["encrypted"]["dot"]["listening"] == encrypted.startup["dot"]
    assert ready["encrypted"]["doh"]["listening"] == encrypted.startup["doh"]
    samples = metrics(encrypted)
    assert samples[("dnswarden_queries_total", (("protocol", "dot"), ("qtype", "A"),
                                                ("result", "blocked")))] >= 1  # fmt: skip
    assert ("dnswarden_connections_open", (("transport", "doh"),)) in samples


# --- certificate reload under load -------------------------------------------------------------


def _serial(tls: ssl.SSLSocket) -> str:
    der = tls.getpeercert(binary_form=True)
    assert der is not None
    return ssl.DER_cert_to_PEM_cert(der)


def test_certificate_reload_under_load_fails_no_query(encrypted: ServerProcess, pki: Pki,
                                                      workdir: Path) -> None:  # fmt: skip
    served = workdir / "served"
    new_cert, new_key = pki.issue("renewed")
    address = dot_address(encrypted)
    context = client_context(pki)
    failures: list[str] = []
    answered = [0]
    stop = threading.Event()

    def load() -> None:
        """New connections and a long-lived one, asking all the while (bounded in time)."""
        deadline = time.monotonic() + RELOAD_SECONDS * 3
        with socket.create_connection(address, timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname=SERVER_NAME) as kept:  # fmt: skip
            while not stop.is_set() and time.monotonic() < deadline:
                for sock in (kept, None):
                    try:
                        reply = dns.query.tls(query("tiktok.com."), address[0], port=address[1],
                                              timeout=5, sock=sock, ssl_context=context,
                                              server_hostname=SERVER_NAME)  # fmt: skip
                        assert addresses(reply) == ["0.0.0.0"]
                        answered[0] += 1
                    except Exception as error:
                        failures.append(repr(error))

    with socket.create_connection(address, timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=SERVER_NAME) as tls:  # fmt: skip
        old_pem = _serial(tls)
    worker = threading.Thread(target=load)
    worker.start()
    try:
        time.sleep(RELOAD_SECONDS / 3)
        # A renewal as certbot does it: new files moved into place, then SIGHUP.
        shutil.copy(new_cert, served / "cert.new")
        shutil.copy(new_key, served / "key.new")
        os.replace(served / "key.new", served / "key.pem")
        os.replace(served / "cert.new", served / "cert.pem")
        os.kill(encrypted.pid, signal.SIGHUP)
        reloaded = encrypted.wait_for_event(lambda e: e.get("event") == "tls_reloaded", 10)
        assert reloaded is not None
        time.sleep(RELOAD_SECONDS / 3)
    finally:
        stop.set()
        worker.join(RELOAD_SECONDS * 4)
    assert not worker.is_alive()
    assert failures == []
    assert answered[0] > 20
    with socket.create_connection(address, timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=SERVER_NAME) as tls:  # fmt: skip
        assert _serial(tls) == new_cert.read_text() != old_pem


def test_a_broken_renewal_keeps_the_running_certificate(encrypted: ServerProcess, pki: Pki,
                                                        workdir: Path) -> None:  # fmt: skip
    served = workdir / "served"
    good_key = (served / "key.pem").read_bytes()
    other_cert, _ = pki.issue("mismatch")
    cert_text = (served / "cert.pem").read_bytes()
    try:
        shutil.copy(other_cert, served / "cert.pem")  # a key that does not match it
        os.kill(encrypted.pid, signal.SIGHUP)
        failed = encrypted.wait_for_event(lambda e: e.get("event") == "tls_reload_failed", 10)
        assert failed is not None and failed["level"] == "error"
        assert addresses(dot_query(encrypted, pki, "tiktok.com.")) == ["0.0.0.0"]
    finally:
        (served / "cert.pem").write_bytes(cert_text)
        (served / "key.pem").write_bytes(good_key)


def test_certificate_expiry_metric_follows_reloads(encrypted: ServerProcess, pki: Pki,
                                                   workdir: Path) -> None:  # fmt: skip
    """The expiry gauge is the served certificate's notAfter, moves with a good renewal, stays
    with a broken one; both reloads are counted by result."""
    served = workdir / "served"
    expiry = "dnswarden_tls_certificate_expiry_timestamp_seconds"
    reloads = "dnswarden_tls_certificate_reloads_total"

    def expiries() -> dict[str, float]:
        samples = metrics(encrypted)
        return {t: samples[(expiry, (("transport", t),))] for t in ("dot", "doh")}

    def reloaded(result: str) -> float:
        return metrics(encrypted)[(reloads, (("result", result),))]

    def settled(expected: dict[str, float]) -> dict[str, float]:
        deadline = time.monotonic() + 10  # a scrape may come before the reload is done
        while (seen := expiries()) != expected and time.monotonic() < deadline:
            time.sleep(0.1)
        return seen

    original = certificate_not_after((served / "cert.pem").read_bytes())
    assert settled({"dot": original, "doh": original}) == {"dot": original, "doh": original}
    ok, failed = reloaded("success"), reloaded("failure")
    good_cert, good_key = (served / "cert.pem").read_bytes(), (served / "key.pem").read_bytes()
    longer_cert, longer_key = _issue(pki.directory, "longer", days=9)
    renewed = certificate_not_after(longer_cert.read_bytes())
    assert renewed > original + 6 * 86400
    try:
        shutil.copy(longer_key, served / "key.pem")
        shutil.copy(longer_cert, served / "cert.pem")
        os.kill(encrypted.pid, signal.SIGHUP)
        assert encrypted.wait_for_event(lambda e: e.get("event") == "tls_reloaded"
                                        and e.get("not_after") == renewed, 10)  # fmt: skip
        assert settled({"dot": renewed, "doh": renewed}) == {"dot": renewed, "doh": renewed}
        assert reloaded("success") == ok + 1
        shutil.copy(pki.cert, served / "cert.pem")  # not the key's certificate: refused
        os.kill(encrypted.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while reloaded("failure") == failed and time.monotonic() < deadline:
            time.sleep(0.1)
        assert reloaded("failure") == failed + 1
        assert expiries() == {"dot": renewed, "doh": renewed}
    finally:
        (served / "cert.pem").write_bytes(good_cert)
        (served / "key.pem").write_bytes(good_key)


# --- provisioning and explain ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("server_name", "trust", "code", "said"),
    [
        (SERVER_NAME, True, 0, "certificate ok for phone-1.dns.test"),
        (SERVER_NAME, False, 1, "does not verify"),  # the phone would not trust our test CA
        ("dns.other.test", True, 1, "does not verify"),  # a name the certificate does not cover
    ],
)
def test_android_check_of_the_served_certificate(encrypted: ServerProcess, pki: Pki,
                                                 workdir: Path, server_name: str, trust: bool,
                                                 code: int, said: str) -> None:  # fmt: skip
    host, port = dot_address(encrypted)
    args = ["profile", "android", "--server-name", server_name, "--device-id", "phone-1",
            "--connect", f"{host}:{port}"]  # fmt: skip
    if trust:
        args += ["--ca-file", str(pki.ca)]
    result = run_cli(*args, cwd=workdir)
    assert result.returncode == code, result.stderr
    assert f"Private DNS hostname: phone-1.{server_name}" in result.stdout
    assert said in result.stdout + result.stderr


def test_explain_names_the_device_group(encrypted: ServerProcess, workdir: Path) -> None:
    result = run_cli("explain", "telegram.org", "--device", "phone-1", "--json",
                     "-c", str(encrypted.config), cwd=workdir)  # fmt: skip
    assert result.returncode == 0, result.stderr
    story = json.loads(result.stdout)
    assert story["device"] == "phone-1"
    assert story["group"] == {"name": "phones", "matched_by": "device phone-1"}
    assert story["action"] == "block" and story["decision"]["list"] == "telegram"


# --- behind a TCP load balancer: PROXY protocol v2 ---------------------------------------------


@pytest.fixture(scope="module")
def proxied(launch: ServerFactory, upstreams: tuple[FakeUpstream, FakeUpstream], pki: Pki,
            workdir: Path) -> ServerProcess:  # fmt: skip
    config = make_config([upstreams[0].address])
    config["encrypted"] = {
        "dot": ["127.0.0.1:0"],
        "certificate": str(pki.cert),
        "key": str(pki.key),
        "server_name": SERVER_NAME,
        "trusted_proxies": [f"{PROXY}/32"],
        "proxy_protocol": True,
        "handshake_timeout": "1s",
    }
    config["groups"] = {"proxied": {"subnets": ["10.99.0.0/16"], "block": ["wechat"]}}
    config["clients"]["allow"].append("10.99.0.0/16")
    return launch(config, "proxied")


def _proxy_header(client: str) -> bytes:
    body = socket.inet_aton(client) + socket.inet_aton("127.0.0.1") + struct.pack(">HH", 5, 853)
    return PROXY_V2_SIGNATURE + b"\x21\x11" + struct.pack(">H", len(body)) + body


def test_a_trusted_proxy_names_the_client_with_proxy_v2(proxied: ServerProcess, pki: Pki) -> None:
    with socket.socket() as raw:
        raw.bind((PROXY, 0))
        raw.settimeout(5)
        raw.connect(dot_address(proxied))
        raw.sendall(_proxy_header(PROXIED_CLIENT))
        with client_context(pki).wrap_socket(raw, server_hostname=SERVER_NAME) as tls:
            reply = dns.query.tls(query("wechat.com."), "", sock=tls, timeout=5)
    assert addresses(reply) == ["0.0.0.0"]
    event = proxied.wait_for_event(
        lambda e: e.get("event") == "blocked" and e.get("client") == PROXIED_CLIENT
    )
    assert event is not None and event["group"] == "proxied"


def test_a_client_cannot_send_a_proxy_header(proxied: ServerProcess, pki: Pki) -> None:
    """From an untrusted address the header is TLS garbage; from the trusted proxy, its
    absence is a failure too: nobody picks their own address."""
    before = metrics(proxied)
    with socket.create_connection(dot_address(proxied), timeout=5) as sock:
        sock.sendall(_proxy_header(PROXIED_CLIENT))
        with contextlib.suppress(ConnectionResetError):
            sock.recv(100)
    with socket.socket() as raw:
        raw.bind((PROXY, 0))
        raw.settimeout(5)
        raw.connect(dot_address(proxied))
        with contextlib.suppress(ssl.SSLError, OSError):
            client_context(pki).wrap_socket(raw, server_hostname=SERVER_NAME)
    after = metrics(proxied)

    def grew(reason: str) -> float:
        key = ("dnswarden_tls_handshake_failures_total",
               (("reason", reason), ("transport", "dot")))  # fmt: skip
        return after.get(key, 0) - before.get(key, 0)

    assert (grew("not_tls"), grew("proxy_header")) == (1, 1)


# --- HTTP limits -------------------------------------------------------------------------------


def _tls_to_doh(server: ServerProcess, pki: Pki, alpn: str) -> ssl.SSLSocket:
    context = client_context(pki)
    context.set_alpn_protocols([alpn])
    port = int(server.startup["doh"][0].rpartition(":")[2])
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    return context.wrap_socket(raw, server_hostname=SERVER_NAME)


def test_http1_request_head_over_the_limit_is_431(encrypted: ServerProcess, pki: Pki) -> None:
    with _tls_to_doh(encrypted, pki, "http/1.1") as tls:
        tls.sendall(b"GET /dns-query?dns=AAAB HTTP/1.1\r\nHost: dns.test\r\nX-Big: "
                    + b"a" * 20000 + b"\r\n\r\n")  # fmt: skip
        head = tls.recv(200)
    assert head.startswith(b"HTTP/1.1 431 ")


def test_http2_header_list_over_the_limit_ends_the_connection(encrypted: ServerProcess,
                                                               pki: Pki) -> None:  # fmt: skip
    before = metrics(encrypted)
    with resolving_to_loopback(), doh_client(pki) as client, pytest.raises(httpx.HTTPError):
        client.get(doh_url(encrypted), params={"dns": "AAAB"}, headers={"x-big": "a" * 20000})
    after = metrics(encrypted)
    key = ("dnswarden_encrypted_connections_total", (("event", "http_error"), ("transport", "doh")))
    assert after[key] - before.get(key, 0) == 1


def test_http2_streams_are_answered_concurrently(encrypted: ServerProcess, pki: Pki) -> None:
    """A slow upstream answer does not hold back the blocked ones asked after it on the same
    connection (HTTP/2 multiplexing)."""
    import h2.connection
    import h2.events

    slow = query(fresh_name("slow"))
    fast = query("tiktok.com.")
    with _tls_to_doh(encrypted, pki, "h2") as tls:
        conn = h2.connection.H2Connection()
        conn.initiate_connection()
        for stream_id, message in ((1, slow), (3, fast)):
            conn.send_headers(stream_id, [(":method", "POST"), (":scheme", "https"),
                                          (":authority", SERVER_NAME), (":path", "/dns-query"),
                                          ("content-type", "application/dns-message")])  # fmt: skip
            conn.send_data(stream_id, message.to_wire(), end_stream=True)
        tls.sendall(conn.data_to_send())
        finished = []
        while len(finished) < 2:
            data = tls.recv(65535)
            assert data, "connection closed"
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.StreamEnded):
                    finished.append(event.stream_id)
            tls.sendall(conn.data_to_send())
    assert finished == [3, 1]


# --- with workers --------------------------------------------------------------------------------


def test_workers_startup_line_lists_the_encrypted_listeners(
    launch: ServerFactory, upstreams: tuple[FakeUpstream, FakeUpstream], pki: Pki
) -> None:
    """The supervisor's start-up line names the DoT and DoH listeners as one process's does,
    and each is served (SO_REUSEPORT: any worker may take the connection)."""
    config = make_config([upstreams[0].address])
    dot, doh = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    config["encrypted"] = {"dot": [dot], "doh": [doh], "certificate": str(pki.cert),
                           "key": str(pki.key), "server_name": SERVER_NAME}  # fmt: skip
    server = launch(config, "encrypted-workers", ["--workers", "2"])
    assert server.startup["workers"] == 2
    assert (server.startup["dot"], server.startup["doh"]) == ([dot], [doh])
    for _ in range(4):  # fresh connections, spread over the workers
        assert addresses(dot_query(server, pki, "tiktok.com.")) == ["0.0.0.0"]
    with resolving_to_loopback(), doh_client(pki) as client:
        answer = client.post(doh_url(server), content=query("tiktok.com.").to_wire(),
                             headers={"content-type": "application/dns-message"})  # fmt: skip
    assert answer.status_code == 200
    assert addresses(dns.message.from_wire(answer.content)) == ["0.0.0.0"]
