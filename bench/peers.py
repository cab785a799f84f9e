"""How each server under test (and nsd, the upstream) is configured: text and argv, no I/O.

Every server gets the same blocklist, the same upstream (nsd on loopback) and its own loopback
port, and is configured the way an operator of that server would block a list: dnsmasq with
`address=/name/0.0.0.0`, unbound with `local-zone: "name." always_null`, dnsdist with a
`SuffixMatchNode` and `SpoofAction`, dnswarden with the list file itself.  Caches are on (and
sized alike) where the server has one; dnswarden's cache, when this checkout has one, runs with
its defaults, and while it has none its cached rows say so.

For the encrypted workloads (`dot`, `doh`) dnswarden, unbound and dnsdist also listen with DNS
over TLS and DNS over HTTPS on loopback ports of their own, all serving the same self-signed
certificate the run makes (`certificate_argv`); dnsmasq has neither.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.gen import ZONE

HOST = "127.0.0.1"
"""The only address the benchmark ever listens on or sends to."""

CACHE_ENTRIES = 10_000
MAX_FORWARDED = 10_000
"""Concurrent upstream queries: dnswarden's `limits.max_inflight` default, given to dnsmasq too
(its own default of 150 would measure drops, not speed)."""

SINKHOLE = "0.0.0.0"
PEERS = ("dnsmasq", "unbound", "dnsdist")
BARE = "bare-loop"
"""Not a peer: a bare CPython loop (bench/bare.py), the ceiling dnswarden is compared with."""
PYTHON_KINDS = ("dnswarden", BARE)
"""Servers run from this checkout with its PYTHONPATH."""
ENCRYPTED_MODES = ("dot", "doh")
"""dnsperf's `-m` modes of the encrypted workloads, each the name of its workload."""
ENCRYPTED_SERVERS = ("dnswarden", "unbound", "dnsdist")
"""The servers with DoT and DoH listeners (dnsmasq has neither; bench/bare.py is UDP only)."""
CERT_NAME = "bench.test"
DOH_PATH = "/dns-query"


@dataclass(frozen=True, slots=True)
class Tls:
    """The encrypted listeners of one server: a loopback port per mode, and the certificate."""

    ports: dict[str, int]  # "dot"/"doh" -> port
    certificate: str
    key: str


def certificate_argv(certificate: Path, key: Path) -> tuple[str, ...]:
    """openssl making the run's self-signed certificate (P-256, two days, for `bench.test`
    and 127.0.0.1); dnsperf does not verify it, so no CA is needed."""
    return (
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", str(key), "-out", str(certificate), "-days", "2",
        "-subj", f"/CN={CERT_NAME}", "-addext", f"subjectAltName=DNS:{CERT_NAME},IP:{HOST}",
    )  # fmt: skip


def dnsperf_mode_args(mode: str) -> list[str]:
    """dnsperf's transport options: none for UDP; DoH by POST to our path over HTTP/2 (what
    dnsperf speaks), the URI naming loopback only."""
    if mode == "udp":
        return []
    if mode == "doh":
        uri = f"https://{HOST}{DOH_PATH}"
        return ["-m", "doh", "-O", f"doh-uri={uri}", "-O", "doh-method=GET"]
    return ["-m", mode]


def dnsdist_transports(version_text: str) -> frozenset[str]:
    """The encrypted modes a dnsdist build serves, from `dnsdist --version`'s feature list
    (`dns-over-tls(openssl)`, `dns-over-https(DOH)`; `outgoing-...` is for backends)."""
    features = next(
        (line.split(":", 1)[1].split() for line in version_text.splitlines()
         if line.startswith("Enabled features:")),
        [],
    )  # fmt: skip
    found = set()
    for feature in features:
        if feature.startswith("dns-over-tls"):
            found.add("dot")
        elif feature.startswith("dns-over-https"):
            found.add("doh")
    return frozenset(found)


def unbound_transports(version_text: str) -> frozenset[str]:
    """The encrypted modes an unbound build serves, from `unbound -V`: DoT with OpenSSL linked,
    DoH only when also built `--with-libnghttp2`."""
    found = set()
    if any(line.startswith("Linked libs:") and "OpenSSL" in line
           for line in version_text.splitlines()):  # fmt: skip
        found.add("dot")
        if "--with-libnghttp2" in version_text:
            found.add("doh")
    return frozenset(found)


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """One server to start: its argv and the files to write first (name -> text)."""

    name: str
    kind: str
    argv: tuple[str, ...]
    port: int
    files: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    tls_ports: dict[str, int] = field(default_factory=dict)
    """The DoT/DoH ports ("dot"/"doh" -> port) when asked for; `port` is the UDP/TCP one."""

    def port_for(self, mode: str) -> int:
        """Where dnsperf sends in `mode` (udp, tcp, dot, doh)."""
        if mode in ENCRYPTED_MODES:
            if mode not in self.tls_ports:
                raise ValueError(f"{self.name} has no {mode} listener in this run")
            return self.tls_ports[mode]
        return self.port


def paths(files: str | Sequence[str]) -> tuple[str, ...]:
    """One list (a path) or several, as a tuple: every server takes the same lists."""
    return (files,) if isinstance(files, str) else tuple(files)


def nsd_spec(workdir: Path, port: int, zone_file: str) -> ServerSpec:
    """nsd in the foreground, one server process, no database, no remote control, no privileges
    dropped (it runs from the temp dir) and no transfers configured, so it never sends.

    Response rate limiting is off: nsd's default (200 qps per wildcard or name) would make the
    upstream, not the server under test, the limit of every forwarded workload."""
    conf = "\n".join(
        [
            "server:",
            f"  ip-address: {HOST}@{port}",
            f"  port: {port}",
            "  do-ip6: no",
            "  server-count: 1",
            "  reuseport: no",
            '  username: ""',
            '  chroot: ""',
            f'  zonesdir: "{workdir}"',
            '  database: ""',
            f'  pidfile: "{workdir}/nsd.pid"',
            f'  xfrdfile: "{workdir}/nsd-xfrd.state"',
            f'  zonelistfile: "{workdir}/nsd-zone.list"',
            f'  logfile: "{workdir}/nsd.log"',
            "  verbosity: 0",
            "  hide-version: yes",
            "  tcp-count: 200",
            "  rrl-ratelimit: 0",
            "  rrl-whitelist-ratelimit: 0",
            "remote-control:",
            "  control-enable: no",
            "zone:",
            f"  name: {ZONE}",
            f'  zonefile: "{zone_file}"',
            "",
        ]
    )
    path = workdir / "nsd.conf"
    return ServerSpec(
        name="nsd",
        kind="nsd",
        argv=("nsd", "-d", "-c", str(path)),
        port=port,
        files={str(path): conf},
    )


def dnswarden_config(
    port: int,
    upstream_port: int,
    blocklist: str | Sequence[str],
    level: str = "warning",
    metrics: bool = False,
    rate_limits: bool = False,
    state_dir: str | None = None,
    tls: Tls | None = None,
) -> dict[str, Any]:
    """The YAML config as a dict: one loopback listener, nsd as the only upstream, the lists.

    `metrics` off unless asked: the HTTP endpoint would take the fixed port 9153, and it is not
    what is measured.  `state_dir` (the run's temp dir) keeps the compiled lists and the PID
    file away from the default one, which another dnswarden on the machine may hold, and lets
    a restart row reuse what the first start compiled. Rate limits off unless asked:
    dnsperf is one client asking as fast as it can, which is what `rate_limit` exists to stop,
    and the peers run without theirs (`bench/flood.py` measures them, with the defaults).
    With `tls`, DoT and DoH listeners (`encrypted`), their other keys at the defaults.
    """
    config: dict[str, Any] = {
        "listen": [f"{HOST}:{port}"],
        "upstream": {"servers": [f"{HOST}:{upstream_port}"], "timeout": "1.5s", "deadline": "4s"},
        "clients": {"allow": ["127.0.0.0/8"]},
        "blocking": {"lists": list(paths(blocklist)), "answer": "null_ip"},
        "log": {"level": level},
    }
    if state_dir is not None:
        config["state_dir"] = state_dir
    if tls is not None:
        config["encrypted"] = {
            **{mode: [f"{HOST}:{port}"] for mode, port in tls.ports.items()},
            "certificate": tls.certificate,
            "key": tls.key,
            "server_name": CERT_NAME,
        }
    if not metrics:
        config["metrics"] = {"enabled": False}
    if not rate_limits:
        limits = ("rate", "upstream_rate", "client_zone_rate", "zone_rate")
        config["rate_limit"] = dict.fromkeys(limits, 0)
    return config


def dnswarden_spec(
    workdir: Path,
    name: str,
    port: int,
    upstream_port: int,
    blocklist: str | Sequence[str],
    python: str,
    level: str = "warning",
    workers: int | None = None,
    metrics_key: bool = True,
    module: str = "resolver",
    state_dir: str | None = None,
    tls: Tls | None = None,
) -> ServerSpec:
    """`python -m resolver serve -c FILE [--workers N]` from this checkout (the caller sets
    PYTHONPATH); `--workers` only when asked, so a checkout without the flag still runs."""
    config = dnswarden_config(
        port, upstream_port, blocklist, level, state_dir=state_dir, tls=tls
    )
    if not metrics_key:
        config.pop("metrics", None)
    path = workdir / f"{name}.yaml"
    return ServerSpec(
        name=name,
        kind="dnswarden",
        argv=(
            python,
            "-m",
            module,
            "serve",
            "-c",
            str(path),
            *(("--workers", str(workers)) if workers is not None else ()),
        ),
        port=port,
        files={str(path): yaml.safe_dump(config, sort_keys=False)},
        tls_ports=dict(tls.ports) if tls else {},
    )


def bare_spec(
    port: int, upstream_port: int, blocklist: str | Sequence[str], python: str
) -> ServerSpec:
    """`python -m bench.bare`: the bare-loop ceiling (no resolver; see bench/bare.py), reading
    the same list files as dnswarden, forwarding to the same nsd (the caller sets PYTHONPATH)."""
    argv = (
        python,
        "-m",
        "bench.bare",
        "--listen",
        f"{HOST}:{port}",
        "--upstream",
        f"{HOST}:{upstream_port}",
        *(word for path in paths(blocklist) for word in ("--blocklist", path)),
    )
    return ServerSpec(name=BARE, kind=BARE, argv=argv, port=port)


def dnsmasq_block_lines(domains: Iterable[str]) -> Iterable[str]:
    for domain in domains:
        yield f"address=/{domain}/{SINKHOLE}"


def dnsmasq_spec(
    workdir: Path, port: int, upstream_port: int, block_conf: str | Sequence[str]
) -> ServerSpec:
    """dnsmasq in the foreground: no /etc/hosts, no resolv.conf, nsd as its only server, one
    `--conf-file` per list."""
    argv = (
        "dnsmasq",
        "--keep-in-foreground",
        "--log-facility=-",
        "--no-hosts",
        "--no-resolv",
        "--no-poll",
        "--bind-interfaces",
        f"--listen-address={HOST}",
        f"--port={port}",
        f"--server={HOST}#{upstream_port}",
        f"--cache-size={CACHE_ENTRIES}",
        f"--dns-forward-max={MAX_FORWARDED}",
        f"--pid-file={workdir}/dnsmasq-{port}.pid",
        "--user=root",
        *(f"--conf-file={path}" for path in paths(block_conf)),
    )
    return ServerSpec(name="dnsmasq", kind="dnsmasq", argv=argv, port=port)


def unbound_block_lines(domains: Iterable[str]) -> Iterable[str]:
    for domain in domains:
        yield f'  local-zone: "{domain}." always_null'


def unbound_spec(
    workdir: Path,
    port: int,
    upstream_port: int,
    block_conf: str | Sequence[str],
    tls: Tls | None = None,
) -> ServerSpec:
    """unbound with one thread, no validator, forwarding everything to nsd, one `include` per
    list.

    `test.` is one of unbound's default local zones (RFC 6761), so it is released with
    `nodefault`; `do-not-query-localhost: no` lets it forward to nsd on 127.0.0.1. With `tls`,
    one more `interface` per encrypted port, named by `tls-port` (DoT) and `https-port` (DoH),
    and 100 TCP connections (default 10) like the others' uncapped ones.
    """
    encrypted: list[str] = []
    if tls is not None:
        encrypted = [f"  interface: {HOST}@{p}" for p in tls.ports.values()]
        names = {"dot": "tls-port", "doh": "https-port"}
        encrypted += [f"  {names[mode]}: {p}" for mode, p in tls.ports.items()]
        encrypted += [f'  tls-service-key: "{tls.key}"', f'  tls-service-pem: "{tls.certificate}"',
                      "  incoming-num-tcp: 100"]  # fmt: skip
        if "doh" in tls.ports:
            encrypted.append(f'  http-endpoint: "{DOH_PATH}"')
    conf = "\n".join(
        [
            "server:",
            f"  interface: {HOST}",
            f"  port: {port}",
            *encrypted,
            "  do-ip6: no",
            "  num-threads: 1",
            "  so-reuseport: no",
            '  username: ""',
            '  chroot: ""',
            f'  directory: "{workdir}"',
            '  pidfile: ""',
            "  use-syslog: no",
            '  logfile: ""',
            "  verbosity: 0",
            '  module-config: "iterator"',
            "  access-control: 127.0.0.0/8 allow",
            "  do-not-query-localhost: no",
            "  qname-minimisation: no",
            "  prefetch: no",
            "  msg-cache-size: 64m",
            "  rrset-cache-size: 128m",
            "  outgoing-range: 8192",
            "  num-queries-per-thread: 4096",
            '  local-zone: "test." nodefault',
            *(f'  include: "{path}"' for path in paths(block_conf)),
            "remote-control:",
            "  control-enable: no",
            "forward-zone:",
            '  name: "."',
            f"  forward-addr: {HOST}@{upstream_port}",
            "",
        ]
    )
    path = workdir / f"unbound-{port}.conf"
    return ServerSpec(
        name="unbound",
        kind="unbound",
        argv=("unbound", "-d", "-c", str(path)),
        port=port,
        files={str(path): conf},
        tls_ports=dict(tls.ports) if tls else {},
    )


def dnsdist_spec(
    workdir: Path,
    port: int,
    upstream_port: int,
    blocklist: str | Sequence[str],
    tls: Tls | None = None,
) -> ServerSpec:
    """dnsdist with one listener, one backend socket, one TCP worker and a packet cache; every
    list goes into the one `SuffixMatchNode`.

    Security polling (a DNS query to the outside world) is switched off: the benchmark only
    ever talks to loopback.  The backend is forced up, so no health-check race at start. With
    `tls`, `addTLSLocal` (served by the one TCP worker) and `addDOHLocal` on their ports.
    """
    encrypted: list[str] = []
    if tls is not None:
        files = f"{json.dumps(tls.certificate)}, {json.dumps(tls.key)}"
        if "dot" in tls.ports:
            encrypted.append(
                f'addTLSLocal("{HOST}:{tls.ports["dot"]}", {files}, {{reusePort=false}})'
            )
        if "doh" in tls.ports:
            encrypted.append(f'addDOHLocal("{HOST}:{tls.ports["doh"]}", {files}, '
                             f'"{DOH_PATH}", {{reusePort=false}})')  # fmt: skip
    conf = "\n".join(
        [
            'setSecurityPollSuffix("")',
            f'setLocal("{HOST}:{port}", {{reusePort=false}})',
            *encrypted,
            'setACL({"127.0.0.0/8"})',
            "setMaxTCPClientThreads(1)",
            f'newServer({{address="{HOST}:{upstream_port}", name="nsd", sockets=1,'
            f' checkName="{ZONE}.", checkType="SOA", mustResolve=true}})',
            "getServer(0):setUp()",
            f"pc = newPacketCache({CACHE_ENTRIES * 10}, {{maxTTL=86400, minTTL=0}})",
            'getPool(""):setCache(pc)',
            "blocked = newSuffixMatchNode()",
            *(
                f"for line in io.lines({json.dumps(path)}) do blocked:add(line) end"
                for path in paths(blocklist)
            ),
            f'addAction(SuffixMatchNodeRule(blocked, true), SpoofAction("{SINKHOLE}"))',
            "",
        ]
    )
    path = workdir / f"dnsdist-{port}.conf"
    return ServerSpec(
        name="dnsdist",
        kind="dnsdist",
        argv=("dnsdist", "--supervised", "--disable-syslog", "-C", str(path)),
        port=port,
        files={str(path): conf},
        tls_ports=dict(tls.ports) if tls else {},
    )


def pinned(argv: Sequence[str], cpus: str) -> tuple[str, ...]:
    """`taskset` execs the command, so the PID we get is the server's own."""
    return ("taskset", "-c", cpus, *argv)
