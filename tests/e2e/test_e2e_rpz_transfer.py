"""RPZ by zone transfer from a real primary: Knot DNS serves an RPZ zone with TSIG on loopback,
and dnswarden takes it as a secondary would.

Checked against the real thing: the first AXFR at start-up, an update committed on the primary
reaching dnswarden's answers within a second through NOTIFY and an IXFR, NOTIFY refused from
an address that is not a primary and for a zone we do not take, a wrong TSIG key refused (the
zone is then missing, and its groups fail closed), a restart while the primary is down
served from the last good copy with the failure in /readyz, and that copy expiring once the
primary has been away for the zone's SOA EXPIRE (set to a few seconds on the primary): its
rules kept in force by default, withdrawn with `on_expire: missing`.

Skipped when Knot DNS (knotd, knotc) is not installed (Debian: knot; `.ci/run` installs it).
knotd runs docs/feeds.md's Knot configuration, put on loopback, as a plain process with its own
storage and control socket in a temporary directory, and is stopped by its PID.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import pytest
import yaml
from doc_examples import DOCS, snippet
from fake_upstream import FakeUpstream
from harness import (
    ServerFactory,
    ServerProcess,
    ask,
    daemon,
    ede,
    free_port,
    make_config,
    query,
    run_cli,
)

pytestmark = pytest.mark.e2e

ZONE = "rpz.example.gov"  # as in docs/feeds.md, whose Knot config this test runs
KEY_NAME = "dnswarden-xfr"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
BLOCKED = 15  # EDE Blocked
NOT_READY = 14
INITIAL_ZONE = f"""$ORIGIN {ZONE}.
$TTL 60
@ SOA ns.{ZONE}. hostmaster.{ZONE}. 1 3600 60 86400 60
@ NS localhost.
evil.example CNAME .
*.evil.example CNAME .
nodata.example CNAME *.
"""


@dataclass
class Primary:
    """A running knotd: where it listens, its key, and how to change its zone."""

    port: int
    secret: str
    directory: Path
    knotc: str
    notify_port: int  # where it sends NOTIFY: the dnswarden under test

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def control(self, *args: str) -> str:
        done = subprocess.run(
            [self.knotc, "-s", str(self.directory / "knot.sock"), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        assert done.returncode == 0 and "error" not in done.stdout.lower(), (
            f"knotc {args}: {done.stdout} {done.stderr}"
        )
        return done.stdout

    def add(self, owner: str, rtype: str, rdata: str) -> None:
        """One committed change: knotd bumps the serial, journals it and sends NOTIFY."""
        self.control("zone-begin", ZONE)
        self.control("zone-set", ZONE, owner, "60", rtype, rdata)
        self.control("zone-commit", ZONE)

    def log(self) -> str:
        return (self.directory / "knot.log").read_text(errors="replace")


def knot_config(directory: Path, port: int, secret: str, notify_port: int) -> Path:
    """docs/feeds.md's Knot snippet, on loopback: our port, the NOTIFY target's, our paths,
    plus what a non-service knotd needs (run and storage directories, a log on stderr)."""
    (directory / "db").mkdir()
    (directory / f"{ZONE}.zone").write_text(INITIAL_ZONE)
    text = snippet(DOCS / "feeds.md", "# knot.conf")
    for documented, here in (
        ("SECRET", secret),
        ("192.0.2.53@53", f"127.0.0.1@{port}"),
        ("192.0.2.1@53", f"127.0.0.1@{notify_port}"),
        ("address: 192.0.2.1\n", "address: 127.0.0.1\n"),
        ("/var/lib/knot", str(directory)),
    ):
        assert documented in text, documented
        text = text.replace(documented, here)
    text = text.replace(
        "server:\n",
        f'server:\n    rundir: "{directory}"\n    udp-workers: 1\n    tcp-workers: 1\n'
        "    background-workers: 1\n",
        1,
    )
    text += f'log:\n  - target: stderr\n    any: info\ndatabase:\n    storage: "{directory}/db"\n'
    path = directory / "knot.conf"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def primary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Primary]:
    knotd, knotc = daemon("knotd"), daemon("knotc")
    if knotd is None or knotc is None:
        pytest.skip("not installed: knotd, knotc (Debian: knot)")
    directory = tmp_path_factory.mktemp("knot")
    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    port, notify_port = free_port(), free_port()
    config = knot_config(directory, port, secret, notify_port)
    with (directory / "knot.log").open("wb") as out:
        process = subprocess.Popen(
            [knotd, "-c", str(config)], stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
    try:
        keyring = dns.tsigkeyring.from_text({KEY_NAME: ("hmac-sha256", secret)})
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            request = dns.message.make_query(f"{ZONE}.", "SOA")
            request.use_tsig(keyring, KEY_NAME)
            try:
                reply = dns.query.tcp(request, "127.0.0.1", timeout=0.5, port=port)
                if reply.answer:
                    break
            except (OSError, dns.exception.DNSException):
                pass
            assert process.poll() is None and time.monotonic() < deadline, (
                (directory / "knot.log").read_text()[-2000:]
            )
            time.sleep(0.1)
        yield Primary(port, secret, directory, knotc, notify_port)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream(seed=5).start()
    try:
        yield fake
    finally:
        fake.stop()


def rpz_config(
    upstream: FakeUpstream,
    directory: Path,
    primaries: list[str],
    secret: str,
    *,
    listen: str = "127.0.0.1:0",
) -> dict[str, Any]:
    directory.mkdir(parents=True, exist_ok=True)
    secret_file = directory / "xfr.key"
    # A key file as BIND's tsig-keygen writes it: dnswarden takes the secret line.
    secret_file.write_text(
        f'key "{KEY_NAME}" {{\n\talgorithm hmac-sha256;\n\tsecret "{secret}";\n}};\n'
    )
    config = make_config([upstream.address], listen=[listen], lists=["national"])
    config["state_dir"] = str(directory / "state")
    config["sources"] = {
        "national": {
            "primaries": primaries,
            "zone": ZONE,
            "tsig": {"name": KEY_NAME, "algorithm": "hmac-sha256", "secret_file": str(secret_file)},
        }
    }
    return config


def health(server: ServerProcess, path: str) -> tuple[int, str]:
    url = f"http://{server.startup['metrics']}{path}"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def resolve(server: ServerProcess, name: str) -> dns.message.Message:
    return ask(query(name, "A", edns=True), server.address)[1]


def blocked(server: ServerProcess, name: str) -> bool:
    reply = resolve(server, name)
    return reply.rcode() == dns.rcode.NXDOMAIN and BLOCKED in [code for code, _ in ede(reply)]


def wait_until(check: Any, timeout: float, step: float = 0.02) -> float | None:
    """Seconds until `check()` held, or None when it did not within `timeout`."""
    started = time.monotonic()
    while True:
        if check():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            return None
        time.sleep(step)


@pytest.fixture(scope="module")
def secondary(
    launch: ServerFactory, primary: Primary, upstream: FakeUpstream, tmp_path_factory: Any
) -> ServerProcess:
    """dnswarden on the port the primary sends NOTIFY to, with the right key."""
    directory = tmp_path_factory.mktemp("secondary")
    config = rpz_config(upstream, directory, [primary.address], primary.secret,
                        listen=f"127.0.0.1:{primary.notify_port}")  # fmt: skip
    server = launch(config, "secondary")
    event = server.wait_for_event(lambda e: e.get("event") == "rpz_transferred", START_TIMEOUT)
    assert event is not None, server.stdout_text()[-3000:]
    return server


def test_the_first_transfer_is_an_axfr_and_its_rules_block(
    secondary: ServerProcess, primary: Primary
) -> None:
    event = secondary.wait_for_event(lambda e: e.get("event") == "rpz_transferred")
    assert event is not None
    assert (event["list"], event["zone"], event["transfer"]) == ("national", ZONE, "axfr")
    assert event["primary"] == primary.address
    assert wait_until(lambda: blocked(secondary, "www.evil.example."), 3.0) is not None
    reply = resolve(secondary, "nodata.example.")
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer
    assert BLOCKED in [code for code, _ in ede(reply)]
    code, body = health(secondary, "/readyz")
    assert code == 200, body
    zone = json.loads(body)["rpz_zones"]["national"]
    assert (zone["zone"], zone["serial"], zone["failures"]) == (ZONE, 1, 0)
    assert "AXFR, outgoing" in primary.log()


def test_an_update_reaches_answers_within_a_second_by_notify_and_ixfr(
    secondary: ServerProcess, primary: Primary
) -> None:
    name = f"late{secrets.token_hex(3)}.example"
    assert not blocked(secondary, f"{name}.")
    primary.add(name, "CNAME", ".")
    took = wait_until(lambda: blocked(secondary, f"{name}."), 5.0)
    assert took is not None, secondary.stdout_text()[-3000:]
    assert took < 1.0, f"the update took {took:.2f} s to reach answers"
    event = secondary.wait_for_event(
        lambda e: e.get("event") == "rpz_transferred" and e.get("transfer") == "ixfr"
    )
    assert event is not None and event["serial"] >= 2
    assert "IXFR, outgoing" in primary.log() and "notify, outgoing" in primary.log()
    _, metrics = health(secondary, "/metrics")
    assert 'dnswarden_rpz_zone_transfers_total{list="national",type="ixfr"}' in metrics
    assert 'dnswarden_notifies_total{result="accepted"}' in metrics
    assert f'dnswarden_rpz_zone_serial{{list="national"}} {float(event["serial"])}' in metrics


def notify(zone: str, server: ServerProcess, source: str) -> dns.message.Message | None:
    message = dns.message.make_query(f"{zone}.", "SOA")
    message.flags = dns.flags.AA  # no RD
    message.set_opcode(dns.opcode.NOTIFY)
    try:
        return dns.query.udp(message, server.address[0], port=server.address[1], timeout=2,
                             source=source)  # fmt: skip
    except dns.exception.Timeout:
        return None


@pytest.mark.parametrize(
    ("zone", "source", "rcode"),
    [
        (ZONE, "127.0.0.1", dns.rcode.NOERROR),  # the primary's address, the zone we take
        (ZONE, "127.0.0.2", dns.rcode.REFUSED),  # not a primary
        ("other.example", "127.0.0.1", dns.rcode.REFUSED),  # a zone we do not take
    ],
)
def test_notify_is_answered_only_from_a_primary_for_its_zone(
    secondary: ServerProcess, zone: str, source: str, rcode: int
) -> None:
    reply = notify(zone, secondary, source)
    assert reply is not None
    assert reply.opcode() == dns.opcode.NOTIFY and reply.rcode() == rcode
    assert bool(reply.flags & dns.flags.AA) == (rcode == dns.rcode.NOERROR)


def test_a_wrong_tsig_key_is_refused_and_the_zone_stays_missing(
    launch: ServerFactory, primary: Primary, upstream: FakeUpstream, tmp_path: Path
) -> None:
    wrong = base64.b64encode(secrets.token_bytes(32)).decode()
    server = launch(rpz_config(upstream, tmp_path / "wrong", [primary.address], wrong), "wrong")
    event = server.wait_for_event(lambda e: e.get("event") == "rpz_transfer_failed",
                                  START_TIMEOUT)  # fmt: skip
    assert event is not None, server.stdout_text()[-3000:]
    assert "TSIG" in event["problem"], event
    reply = resolve(server, "www.evil.example.")
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert [code for code, _ in ede(reply)] == [NOT_READY]
    code, body = health(server, "/readyz")
    assert code == 503
    detail = json.loads(body)
    assert detail["lists_missing"] == ["national"]
    assert detail["rpz_zones"]["national"]["failures"] >= 1
    assert not any(e.get("event") == "rpz_transferred" for e in server.events)


def test_a_primary_down_at_start_up_is_served_from_the_last_good_copy(
    launch: ServerFactory,
    secondary: ServerProcess,
    primary: Primary,
    upstream: FakeUpstream,
    tmp_path: Path,
) -> None:
    name = f"kept{secrets.token_hex(3)}.example"
    primary.add(name, "CNAME", ".")
    assert wait_until(lambda: blocked(secondary, f"{name}."), 5.0) is not None
    config = rpz_config(upstream, tmp_path / "down", [f"127.0.0.1:{free_port()}"], primary.secret)
    # The last good copy the running secondary keeps, as a new server's state directory.
    kept = Path(yaml.safe_load(secondary.config.read_text())["state_dir"]) / "sources"
    shutil.copytree(kept, Path(config["state_dir"]) / "sources")
    server = launch(config, "down")
    assert blocked(server, f"{name}.") and blocked(server, "www.evil.example.")
    event = server.wait_for_event(lambda e: e.get("event") == "rpz_transfer_failed",
                                  START_TIMEOUT)  # fmt: skip
    assert event is not None
    code, body = health(server, "/readyz")
    assert code == 200, body
    zone = json.loads(body)["rpz_zones"]["national"]
    assert zone["failures"] >= 1 and zone["serial"] >= 3 and "last_error" in zone


SHORT_EXPIRE = 10


def soa_serial(primary: Primary) -> int:
    request = dns.message.make_query(f"{ZONE}.", "SOA")
    request.use_tsig(dns.tsigkeyring.from_text({KEY_NAME: ("hmac-sha256", primary.secret)}),
                     KEY_NAME)  # fmt: skip
    reply = dns.query.tcp(request, "127.0.0.1", timeout=3, port=primary.port)
    return int(reply.answer[0][0].serial)


def set_expire(primary: Primary, expire: int) -> int:
    """A new SOA with this EXPIRE (and the next serial), committed on the primary; the serial."""
    serial = soa_serial(primary) + 1
    primary.control("zone-begin", ZONE)
    primary.control("zone-set", ZONE, "@", "60", "SOA",
                    f"ns.{ZONE}. hostmaster.{ZONE}. {serial} 3600 60 {expire} 60")  # fmt: skip
    primary.control("zone-commit", ZONE)
    return serial


def test_a_copy_the_primary_has_not_confirmed_for_its_soa_expire_expires(
    launch: ServerFactory,
    secondary: ServerProcess,
    primary: Primary,
    upstream: FakeUpstream,
    tmp_path: Path,
) -> None:
    serial = set_expire(primary, SHORT_EXPIRE)
    try:
        event = secondary.wait_for_event(
            lambda e: e.get("event") == "rpz_transferred" and e.get("serial") == serial, 5.0
        )
        assert event is not None, secondary.stdout_text()[-3000:]
        # Two restarts from that copy with every primary gone: the default keeps the rules,
        # on_expire: missing withdraws them (and blocking.missing_lists fails closed).
        kept = Path(yaml.safe_load(secondary.config.read_text())["state_dir"]) / "sources"
        dead = [f"127.0.0.1:{free_port()}"]
        servers = {}
        for mode in ("keep", "missing"):
            config = rpz_config(upstream, tmp_path / mode, dead, primary.secret)
            config["sources"]["national"]["on_expire"] = mode
            shutil.copytree(kept, Path(config["state_dir"]) / "sources")
            servers[mode] = launch(config, f"expire-{mode}")
            assert blocked(servers[mode], "www.evil.example."), mode  # not expired yet
        for mode, server in servers.items():
            expired = server.wait_for_event(lambda e: e.get("event") == "rpz_zone_expired",
                                            SHORT_EXPIRE + 5.0)  # fmt: skip
            assert expired is not None, server.stdout_text()[-3000:]
            assert (expired["level"], expired["list"], expired["serial"]) == (
                "error", "national", serial
            )  # fmt: skip
            assert expired["expire"] == SHORT_EXPIRE and expired["on_expire"] == mode
            _, metrics = health(server, "/metrics")
            assert 'dnswarden_rpz_zone_expired{list="national"} 1.0' in metrics
        keep, missing = servers["keep"], servers["missing"]
        assert blocked(keep, "www.evil.example.")  # the ban holds
        code, body = health(keep, "/readyz")
        assert code == 200, body
        zone = json.loads(body)["rpz_zones"]["national"]
        assert zone["expired"] is True and zone["expires_at"] < time.time()
        checked = run_cli("check", str(keep.config), cwd=keep.cwd)
        assert checked.returncode == 0, checked.stderr
        assert "RPZ zone rpz.example.gov of list national expired" in checked.stdout
        assert "its rules stay in force (on_expire: keep)" in checked.stdout

        def withdrawn() -> bool:
            reply = resolve(missing, "www.evil.example.")
            return reply.rcode() == dns.rcode.SERVFAIL and [c for c, _ in ede(reply)] == [
                NOT_READY
            ]

        assert wait_until(withdrawn, 5.0) is not None
        code, body = health(missing, "/readyz")
        assert code == 503
        detail = json.loads(body)
        assert detail["lists_missing"] == ["national"] and detail["rpz_zones"]["national"][
            "expired"
        ]
        assert missing.wait_for_event(
            lambda e: e.get("event") == "lists_missing" and e.get("level") == "error"
        )
        checked = run_cli("check", str(missing.config), cwd=missing.cwd)
        assert "expired, withdrawn (on_expire: missing)" in checked.stdout, checked.stdout
        assert "blocking.missing_lists applies (on_expire: missing)" in checked.stdout
    finally:
        set_expire(primary, 86400)
