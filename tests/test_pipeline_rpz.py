"""The RPZ actions on the query path: what `handle` returns for each, over UDP and over TCP.

DROP returns nothing at all; TCP-only an empty TC reply over UDP and goes upstream over TCP;
local data answers with the rule's records; an rpz-ip rule judges the forwarded answer and,
through the cache, every later hit."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import pytest
from test_pipeline import Clock, ScriptedPool

from resolver.cache import Cache
from resolver.config import parse_config
from resolver.lists.catalogue import catalogue_ids
from resolver.observe.audit import AuditLog
from resolver.observe.stats import Stats
from resolver.pipeline import FORWARDED, QueryPipeline
from resolver.state import build_state

ZONE = """\
$ORIGIN rpz.test.
@ SOA ns.rpz.test. h.rpz.test. 1 3600 600 86400 300
drop.test CNAME rpz-drop.
tcp.test CNAME rpz-tcp-only.
local.test A 192.0.2.7
24.0.2.0.192.rpz-ip CNAME .
"""


class Env:
    def __init__(self, tmp_path: Path) -> None:
        (tmp_path / "national.rpz").write_text(ZONE)
        config = parse_config(
            "upstream: {servers: ['127.0.0.1:5399']}\nclients: {allow: [127.0.0.0/8]}\n"
            f"blocking: {{lists: [national], ttl: 42s}}\n"
            f"sources: {{national: {{path: {tmp_path / 'national.rpz'}, format: rpz}}}}\n",
            "<test>",
            known_lists=catalogue_ids(),
        )
        state = build_state(config, None)
        self.pool = ScriptedPool()
        self.log = io.StringIO()
        self.pipeline = QueryPipeline(
            state, self.pool, Stats(), AuditLog(self.log, "info", fold_window=0),  # type: ignore[arg-type]
            Cache(state.config.cache), Clock(),  # type: ignore[arg-type]
        )  # fmt: skip

    def handle(self, name: str, over_udp: bool) -> tuple[bool, bytes | None]:
        """(went upstream, the reply bytes or None)."""
        wire = dns.message.make_query(name, "A", use_edns=0).to_wire()

        async def exchange() -> tuple[bool, bytes | None]:
            later: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
            outcome = self.pipeline.handle(wire, "127.0.0.1", over_udp, later.set_result)
            if outcome is FORWARDED:
                return True, await asyncio.wait_for(later, 5)
            return False, outcome  # type: ignore[return-value]

        return asyncio.run(exchange())

    def blocked(self) -> list[dict[str, Any]]:
        events = [json.loads(line) for line in self.log.getvalue().splitlines() if line]
        return [e for e in events if e.get("event") == "blocked"]


def summary(reply: bytes | None) -> tuple[int, bool, list[str]] | None:
    if reply is None:
        return None
    message = dns.message.from_wire(reply)
    records = [rd.to_text() for rrset in message.answer for rd in rrset]
    return message.rcode(), bool(message.flags & dns.flags.TC), records


@pytest.mark.parametrize(
    ("name", "over_udp", "upstream", "expected"),
    [
        ("drop.test.", True, False, None),
        ("drop.test.", False, False, None),
        ("tcp.test.", True, False, (dns.rcode.NOERROR, True, [])),
        ("tcp.test.", False, True, (dns.rcode.NOERROR, False, ["198.51.100.200"])),
        ("local.test.", True, False, (dns.rcode.NOERROR, False, ["192.0.2.7"])),
        ("www.example.", True, True, (dns.rcode.NXDOMAIN, False, [])),  # rpz-ip 192.0.2.0/24
        ("ok.example.", True, True, (dns.rcode.NOERROR, False, ["198.51.100.1"])),
    ],
)
def test_rpz_actions_on_the_query_path(
    tmp_path: Path,
    name: str,
    over_udp: bool,
    upstream: bool,
    expected: tuple[int, bool, list[str]] | None,
) -> None:
    env = Env(tmp_path)
    env.pool.records["tcp.test."] = ["tcp.test. 60 IN A 198.51.100.200"]
    env.pool.records["www.example."] = ["www.example. 60 IN A 192.0.2.1"]
    env.pool.records["ok.example."] = ["ok.example. 60 IN A 198.51.100.1"]
    went, reply = env.handle(name, over_udp)
    assert (went, summary(reply)) == (upstream, expected)
    if expected is None or expected[0] == dns.rcode.NXDOMAIN:
        (event,) = env.blocked()
        assert event["entry"] == "national"


def test_an_rpz_ip_block_holds_for_cache_hits(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.pool.records["www.example."] = ["www.example. 60 IN A 192.0.2.1"]
    for went_upstream in (True, False, False):  # forwarded once, then cache hits
        went, reply = env.handle("www.example.", True)
        assert (went, summary(reply)) == (went_upstream, (dns.rcode.NXDOMAIN, False, []))
    assert env.pool.calls == ["www.example."]
    assert {e["rule"] for e in env.blocked()} == {"24.0.2.0.192.rpz-ip"}
