"""Abuse hygiene, end to end: rate limits answered and logged, TCP caps per client, ANY answered
minimally, UDP answers without EDNS within 512 bytes, hostile names that never break a log
line, and root dropped after binding."""

from __future__ import annotations

import json
import os
import shutil
import signal
import site
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
import yaml
from fake_upstream import FakeUpstream
from harness import (
    ServerFactory,
    ServerProcess,
    ask,
    ede,
    exchange,
    fresh_name,
    make_config,
    query,
    server_env,
    tcp_frame,
    tcp_read_message,
    udp_exchange,
    write_config,
)
from test_e2e_flood import metric

pytestmark = pytest.mark.e2e

NOBODY = 65534


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream(seed=5).start()
    yield fake
    fake.stop()


def limited_config(upstream: FakeUpstream, **rate_limit: object) -> dict[str, object]:
    config = make_config([upstream.address])
    config["rate_limit"] = rate_limit
    config["log"] = {"level": "info", "allowed_queries": True}
    return config


# --- rate limits -------------------------------------------------------------------------------


def test_over_the_limit_is_refused_with_a_reason_and_logged_once_per_window(
    launch: ServerFactory, upstream: FakeUpstream
) -> None:
    server = launch(limited_config(upstream, rate=5, burst=10, action="refuse"), "refuse")
    rcodes = []
    for _ in range(40):
        _, reply = ask(query(fresh_name(), "A", edns=True), server.address)
        rcodes.append(reply.rcode())
    refused = [r for r in rcodes if r == dns.rcode.REFUSED]
    assert rcodes[:10] == [dns.rcode.NOERROR] * 10
    assert len(refused) >= 25
    _, last = ask(query(fresh_name(), "A", edns=True), server.address)
    assert last.rcode() == dns.rcode.REFUSED
    assert ede(last) == [(18, "rate limited (queries)")]
    events = [e for e in server.events if e.get("event") == "rate_limited"]
    assert len(events) == 1, events  # the rest are folded into the window's summary
    assert events[0]["limit"] == "queries" and events[0]["action"] == "refuse"
    assert events[0]["group"] == "default" and events[0]["client"] == "127.0.0.1"
    assert metric(server, "dnswarden_rate_limited_total", group="default", limit="queries",
                  action="refuse") == len(refused) + 1  # fmt: skip


def test_exempt_networks_and_cache_hits_are_not_limited(
    launch: ServerFactory, upstream: FakeUpstream
) -> None:
    server = launch(limited_config(upstream, upstream_rate=2, upstream_burst=3,
                                   exempt=["127.0.0.3/32"]), "exempt")  # fmt: skip
    names = [fresh_name() for _ in range(3)]
    for name in names:  # the whole upstream burst: these are cached now
        assert ask(query(name, "A"), server.address)[1].rcode() == dns.rcode.NOERROR
    for _ in range(5):  # cache hits cost no upstream budget
        for name in names:
            assert ask(query(name, "A"), server.address)[1].rcode() == dns.rcode.NOERROR
    wire = query(fresh_name(), "A").to_wire()
    assert udp_exchange(wire, server.address, timeout=0.5) is None  # over: dropped
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:  # an exempt relay
        sock.bind(("127.0.0.3", 0))
        sock.settimeout(3.0)
        for _ in range(6):
            sock.sendto(query(fresh_name(), "A").to_wire(), server.address)
            reply = dns.message.from_wire(sock.recv(4096))
            assert reply.rcode() == dns.rcode.NOERROR
    assert metric(server, "dnswarden_rate_limited_total", limit="upstream", action="drop") == 1


def udp_sockets_on(port: int) -> int:
    """Sockets bound to 127.0.0.1:`port`, as the kernel lists them (/proc/net/udp)."""
    local = f"0100007F:{port:04X}"
    with open("/proc/net/udp") as table:
        return sum(line.split()[1] == local for line in list(table)[1:])


@pytest.mark.parametrize(("queues", "sockets"), [(None, 8), (3, 3), (1, 1)])
def test_each_udp_listener_has_its_queues_per_source(
    launch: ServerFactory, upstream: FakeUpstream, queues: int | None, sockets: int
) -> None:
    config = make_config([upstream.address])
    if queues is not None:
        config["limits"] = {"udp_queues": queues}
    server = launch(config, f"queues-{queues}")
    assert udp_sockets_on(server.address[1]) == sockets
    name = fresh_name()
    for source in range(1, 10):  # every queue is read
        reply = dns.query.udp(query(name, "A"), server.address[0], port=server.address[1],
                              timeout=3.0, source=f"127.0.0.{source}")  # fmt: skip
        assert reply.rcode() == dns.rcode.NOERROR


# --- TCP per client ----------------------------------------------------------------------------


def test_tcp_connections_per_client_are_capped_and_counted(
    launch: ServerFactory, upstream: FakeUpstream
) -> None:
    config = make_config([upstream.address], tcp_idle_timeout="5s")
    config["limits"]["tcp_connections_per_client"] = 3  # type: ignore[index]
    server = launch(config, "tcp-cap")
    held = [socket.create_connection(server.address, timeout=3.0) for _ in range(3)]
    try:
        for sock in held:  # each of the three is served
            sock.sendall(tcp_frame(query(fresh_name(), "A").to_wire()))
            assert tcp_read_message(sock) is not None
        extra = socket.create_connection(server.address, timeout=3.0)
        with extra:
            try:
                extra.sendall(tcp_frame(query(fresh_name(), "A").to_wire()))
                answer = tcp_read_message(extra)
            except ConnectionResetError:  # aborted at once
                answer = None
            assert answer is None
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:  # another client
            other.bind(("127.0.0.4", 0))
            other.settimeout(3.0)
            other.connect(server.address)
            other.sendall(tcp_frame(query(fresh_name(), "A").to_wire()))
            assert tcp_read_message(other) is not None
    finally:
        for sock in held:
            sock.close()
    assert metric(server, "dnswarden_tcp_connections_total", event="rejected_client") == 1
    time.sleep(0.2)
    again = exchange(query(fresh_name(), "A").to_wire(), server.address, "tcp")
    assert again is not None  # closed connections no longer count


def test_pipelined_queries_beyond_the_cap_wait_and_are_counted(
    launch: ServerFactory, upstream: FakeUpstream
) -> None:
    config = make_config([upstream.address])
    config["limits"]["tcp_inflight_per_connection"] = 4  # type: ignore[index]
    server = launch(config, "tcp-pipeline")
    names = [fresh_name("slow") for _ in range(12)]
    with socket.create_connection(server.address, timeout=5.0) as sock:
        sock.sendall(b"".join(tcp_frame(query(n, "A").to_wire()) for n in names))
        replies = [tcp_read_message(sock) for _ in names]
    assert all(r is not None for r in replies)
    answered = {dns.message.from_wire(r).question[0].name.to_text() for r in replies if r}
    assert answered == set(names)
    assert metric(server, "dnswarden_tcp_connections_total", event="pipeline_full") >= 1


# --- amplification -----------------------------------------------------------------------------


@pytest.mark.parametrize("edns", [False, True])
def test_any_is_answered_minimally_and_never_forwarded(
    launch: ServerFactory, upstream: FakeUpstream, edns: bool
) -> None:
    server = launch(make_config([upstream.address]), f"any-{edns}")
    since = time.monotonic()
    raw, reply = ask(query("www.example.org.", "ANY", edns=edns), server.address)
    assert reply.rcode() == dns.rcode.NOERROR
    assert [(r.rdtype, r.to_text()) for rrset in reply.answer for r in rrset] == [
        (dns.rdatatype.HINFO, '"RFC8482" ""')
    ]
    assert len(raw) < 100
    assert (reply.edns >= 0) == edns
    assert upstream.queries("www.example.org.", since=since) == []


@pytest.mark.parametrize(
    ("scenario", "rdtype"), [("big", "A"), ("bigtxt", "TXT")]
)  # fmt: skip
def test_udp_answers_without_edns_stay_within_512_bytes(
    launch: ServerFactory, upstream: FakeUpstream, scenario: str, rdtype: str
) -> None:
    """Forwarded, then from the cache: truncated with TC, never over 512 bytes; with EDNS
    the whole answer comes over UDP, and over TCP without EDNS."""
    server = launch(make_config([upstream.address]), f"tc-{scenario}")
    name = fresh_name(scenario)
    for _ in ("forwarded", "cached"):
        raw, reply = ask(query(name, rdtype), server.address)
        assert len(raw) <= 512
        assert reply.flags & dns.flags.TC
    raw, reply = ask(query(name, rdtype, edns=True, payload=4096), server.address)
    assert len(raw) > 512 and not reply.flags & dns.flags.TC
    raw, reply = ask(query(name, rdtype), server.address, "tcp")
    assert len(raw) > 512 and not reply.flags & dns.flags.TC


# --- hostile names in the audit trail ----------------------------------------------------------

NASTY_LABELS = [
    b'quo"te', b"br{ace}s", b"new\nline", b"cr\rlf\n", b"tab\tbed", b"nul\x00byte",
    b"esc\x1b[31mred", b"del\x7f", b"back\\slash", b"ls\xe2\x80\xa8sep", b"\xff\xfe\xfd",
    b"</script>", b"';--", b"%s%n", b"\x01\x02\x03\x04\x05", b"{\"event\":\"forged\"}",
]  # fmt: skip


def raw_query(labels: list[bytes], query_id: int) -> bytes:
    name = b"".join(bytes([len(label)]) + label for label in labels) + b"\0"
    return struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + name + b"\0\1\0\1"


def test_hostile_names_never_break_a_log_line(
    launch: ServerFactory, upstream: FakeUpstream
) -> None:
    config = limited_config(upstream, rate=0, upstream_rate=0, zone_rate=0)
    server = launch(config, "nasty")
    parents = {"blocked": [b"tiktok", b"com"], "query": [b"wild", b"example", b"org"]}
    for number, label in enumerate(NASTY_LABELS):
        for event, parent in parents.items():
            reply = udp_exchange(raw_query([label, *parent], number), server.address)
            assert reply is not None, (event, label)
    assert server.wait_for_event(
        lambda e: e.get("event") == "query" and "event" in str(e.get("qname")), 5.0
    )
    server.stop(signal.SIGTERM)
    lines = server.stdout_text().splitlines()
    assert lines
    for line in lines:
        assert line.isascii() and line.isprintable(), repr(line)
        event = json.loads(line)
        assert isinstance(event, dict) and event.get("event") != "forged"
    for event in parents:
        logged = [e for e in map(json.loads, lines) if e.get("event") == event]
        assert len(logged) >= len(NASTY_LABELS), event


# --- the receive buffer -------------------------------------------------------------------------


def without_net_admin() -> tuple[str, ...]:
    """A command prefix under which SO_RCVBUFFORCE is refused, or a skip."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and setpriv (util-linux) is not installed")
    prefix = (setpriv, "--bounding-set", "-net_admin", "--inh-caps", "-net_admin")
    force = "import socket; socket.socket(2, 2).setsockopt(1, 33, 1 << 20)"  # SO_RCVBUFFORCE
    probe = subprocess.run(
        [*prefix, sys.executable, "-c", force], capture_output=True, text=True, timeout=30,
        check=False,
    )  # fmt: skip
    if "Operation not permitted" not in probe.stderr:
        pytest.skip(f"cannot drop CAP_NET_ADMIN here: {probe.stderr[-300:]}")
    return prefix


def buffer_warning(server: ServerProcess, timeout: float) -> dict[str, object] | None:
    return server.wait_for_event(lambda e: e.get("event") == "udp_receive_buffer_capped", timeout)


def test_a_receive_buffer_past_the_kernels_cap_is_taken_or_reported(
    launch: ServerFactory, upstream: FakeUpstream
) -> None:
    """net.core.rmem_max caps SO_RCVBUF silently: root asks past it (SO_RCVBUFFORCE) and gets
    the buffer; without CAP_NET_ADMIN the server gets the cap, and says so in a warning and in
    the metric the shipped alert compares."""
    rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
    wanted = 2 * rmem_max
    if not 64 << 10 <= wanted <= 1 << 30:
        pytest.skip(f"net.core.rmem_max {rmem_max}: twice it is no valid udp_receive_buffer")
    config = make_config([upstream.address])
    config["limits"] = {"udp_receive_buffer": wanted}
    config["metrics"] = {"listen": "127.0.0.1:0"}
    buffer = "dnswarden_udp_receive_buffer_bytes"
    if os.geteuid() == 0:
        server = launch(config, "buffer-root")
        # (said just before `running_as_root`, which a root server without a user says)
        assert server.wait_for_event(lambda e: e.get("event") == "running_as_root", 5.0)
        assert buffer_warning(server, 0.0) is None
        assert metric(server, buffer, buffer="granted") == wanted
    capped = launch(config, "buffer-capped", prefix=without_net_admin())
    warning = buffer_warning(capped, 5.0)
    assert warning is not None and warning["level"] == "warning"
    assert (warning["configured"], warning["granted"]) == (wanted, rmem_max)
    assert "net.core.rmem_max" in str(warning["remedy"])
    assert metric(capped, buffer, buffer="configured") == wanted
    assert metric(capped, buffer, buffer="granted") == rmem_max
    _, reply = ask(query("www.tiktok.com"), capped.address)  # and it serves
    assert reply.rcode() == dns.rcode.NOERROR and reply.answer


# --- privileges --------------------------------------------------------------------------------


def test_started_as_root_without_a_user_it_warns(
    launch: ServerFactory, upstream: FakeUpstream
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    server = launch(make_config([upstream.address]), "root-warning")
    warning = server.wait_for_event(lambda e: e.get("event") == "running_as_root", 3.0)
    assert warning is not None and warning["level"] == "warning"


def capability_lines(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def test_root_is_dropped_after_binding_and_reloads_still_work(upstream: FakeUpstream) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    base = Path(tempfile.mkdtemp(prefix="dnswarden-privs-", dir="/tmp"))
    base.chmod(0o755)
    try:
        state = base / "state"
        lists = base / "extra.txt"
        lists.write_text("first.example\n")
        lists.chmod(0o644)
        config = make_config([upstream.address], lists=["tiktok", str(lists)])
        config["privileges"] = {"user": "nobody"}
        config["state_dir"] = str(state)
        path = write_config(base, config)
        path.chmod(0o644)
        server = ServerProcess(path, base, env=server_env()).start()
        try:
            status = capability_lines(server.pid)
            assert status["Uid"].split() == [str(NOBODY)] * 4
            assert status["CapEff"] == "0000000000000000"
            assert status["CapPrm"] == "0000000000000000"
            assert server.startup["privileges"]["user"] == "nobody"
            assert os.stat(state).st_uid == NOBODY
            _, blocked = ask(query("first.example.", "A"), server.address)
            assert [r.to_text() for rrset in blocked.answer for r in rrset] == ["0.0.0.0"]
            lists.write_text("first.example\nsecond.example\n")
            os.kill(server.pid, signal.SIGHUP)
            assert server.wait_for_event(lambda e: e.get("event") == "reloaded", 20.0)
            _, second = ask(query("second.example.", "A"), server.address)
            assert [r.to_text() for rrset in second.answer for r in rrset] == ["0.0.0.0"]
            pid_file = state / "dnswarden.pid"
            assert pid_file.read_text().strip() == str(server.pid)
        finally:
            assert server.stop() == 0
        assert "Traceback" not in server.stderr_text()
        assert not pid_file.exists()  # removed at exit: nobody can still write the state dir
    finally:
        for item in sorted(base.rglob("*"), reverse=True):
            item.unlink() if not item.is_dir() or item.is_symlink() else item.rmdir()
        base.rmdir()


def assert_dropped(pid: int) -> None:
    status = capability_lines(pid)
    assert status["Uid"].split() == [str(NOBODY)] * 4, pid
    assert status["Gid"].split()[0] != "0", pid
    assert (status["CapEff"], status["CapPrm"]) == ("0000000000000000",) * 2, pid


def interpreter_for_nobody() -> str | None:
    """A Python that `nobody` can run dnswarden with (this one may live under /root), with
    this checkout and its installed packages on PYTHONPATH (`server_env`)."""
    for candidate in (sys.executable, "/usr/bin/python3"):
        try:
            probe = subprocess.run(
                [candidate, "-c", "import resolver.shell.workers, yaml"],
                env=server_env({"PYTHONPATH": os.pathsep.join(site.getsitepackages())}),
                user="nobody", cwd="/", capture_output=True, timeout=30, check=False,
            )  # fmt: skip
        except OSError:  # not even executable by nobody
            continue
        if probe.returncode == 0:
            return candidate
    return None


def test_with_workers_the_supervisor_drops_too_and_a_restarted_worker_serves(
    upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The supervisor of `--workers 2` ends with no capability either, yet restarts a killed
    worker on the sockets it bound for it (a privileged port could not be bound again), and
    still forwards a reload to both."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    interpreter = interpreter_for_nobody()
    if interpreter is None:
        pytest.skip("no Python here that the user nobody may run")
    monkeypatch.setattr(sys, "executable", interpreter)  # ServerProcess starts this one
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(site.getsitepackages()))
    base = Path(tempfile.mkdtemp(prefix="dnswarden-privs-", dir="/tmp"))
    base.chmod(0o755)
    try:
        config = make_config([upstream.address])
        config["privileges"] = {"user": "nobody"}
        config["state_dir"] = str(base / "state")
        path = write_config(base, config)
        path.chmod(0o644)
        server = ServerProcess(path, base, ["--workers", "2"], env=server_env()).start()
        try:
            assert server.startup["privileges"]["user"] == "nobody"
            assert not [e for e in server.events if e.get("event") == "workers_not_restartable"]
            workers = server.worker_pids()
            assert len(workers) == 2
            for pid in (server.pid, *workers):
                assert_dropped(pid)
            os.kill(workers[0], signal.SIGKILL)
            assert server.wait_for_event(lambda e: e.get("event") == "worker_died", 5.0)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                now = server.worker_pids()
                if len(now) == 2 and workers[0] not in now:
                    break
                time.sleep(0.1)
            assert len(now) == 2 and workers[0] not in now
            restarted = next(pid for pid in now if pid not in workers)
            # Each query from its own port, so the restarted worker gets some once it reads.
            for _ in range(30):
                _, reply = ask(query("tiktok.com.", "A"), server.address)
                assert reply.rcode() == dns.rcode.NOERROR
            assert_dropped(restarted)
            assert server.worker_pids() == now  # it bound nothing: it did not die again
            died = [e for e in server.events if e.get("event") == "worker_died"]
            assert len(died) == 1, died
            seen = len([e for e in server.events if e.get("event") == "reloaded"])
            os.kill(server.pid, signal.SIGHUP)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if len([e for e in server.events if e.get("event") == "reloaded"]) >= seen + 2:
                    break
                time.sleep(0.2)
            assert len([e for e in server.events if e.get("event") == "reloaded"]) == seen + 2
        finally:
            assert server.stop() == 0
        assert "Traceback" not in server.stderr_text()
    finally:
        for item in sorted(base.rglob("*"), reverse=True):
            item.unlink() if not item.is_dir() or item.is_symlink() else item.rmdir()
        base.rmdir()


def test_an_unknown_user_stops_start_up(upstream: FakeUpstream, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    config = make_config([upstream.address])
    config["privileges"] = {"user": "no-such-user-here"}
    path = tmp_path / "dnswarden.yaml"
    path.write_text(yaml.safe_dump(config))
    server = ServerProcess(path, tmp_path, env=server_env())
    with pytest.raises(Exception, match="no such user"):
        server.start()
    server.stop()

