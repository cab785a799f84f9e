"""Queries that came over DoT or DoH: the device id picks the group (for the question and for
the names in the answer) and reaches the audit trail, the transport labels the metrics, and DDR
names our own endpoints before any policy or upstream sees the question."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import dns.message
import dns.rdatatype
import pytest
from test_pipeline import ScriptedPool

from resolver.cache import Cache
from resolver.config import parse_config
from resolver.lists.catalogue import catalogue_ids
from resolver.observe.audit import AuditLog
from resolver.observe.stats import Stats
from resolver.pipeline import FORWARDED, Channel, QueryPipeline
from resolver.state import build_state

CONFIG = """
listen: ["127.0.0.1:0"]
upstream: {{servers: ["127.0.0.1:5399"]}}
clients: {{allow: [127.0.0.0/8]}}
blocking: {{lists: [{lists}]}}
groups:
  phones:
    devices: [phone-1]
    block: [telegram]
{encrypted}
"""
ENCRYPTED = """
encrypted:
  dot: ["127.0.0.1:8853"]
  doh: ["127.0.0.1:8443"]
  certificate: cert.pem
  key: key.pem
  server_name: dns.example.gov
"""


class Env:
    def __init__(self, tmp_path: Path, encrypted: bool = False, lists: str = "tiktok") -> None:
        (tmp_path / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\n")
        (tmp_path / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
        text = CONFIG.format(lists=lists, encrypted=ENCRYPTED if encrypted else "")
        config = parse_config(text, "<test>", base_dir=tmp_path, known_lists=catalogue_ids())
        self.state = build_state(config, None)
        self.pool = ScriptedPool()
        self.stats = Stats()
        self.log = io.StringIO()
        audit = AuditLog(self.log, "info", allowed_queries=True, fold_window=0)
        self.pipeline = QueryPipeline(self.state, self.pool, self.stats, audit,  # type: ignore[arg-type]
                                      Cache(config.cache))  # fmt: skip

    def ask(self, name: str, rdtype: str = "A", channel: Channel | None = None,
            over_udp: bool = False) -> dns.message.Message:  # fmt: skip
        message = dns.message.make_query(name, rdtype)

        async def exchange() -> bytes | None:
            later: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
            outcome = self.pipeline.handle(message.to_wire(), "127.0.0.1", over_udp,
                                           later.set_result, channel)  # fmt: skip
            if outcome is FORWARDED:
                return await asyncio.wait_for(later, 5)
            return outcome  # type: ignore[return-value]

        outcome = asyncio.run(exchange())
        assert isinstance(outcome, bytes)
        return dns.message.from_wire(outcome)

    def events(self, name: str) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.log.getvalue().splitlines() if line]
        return [e for e in lines if e.get("event") == name]


def addresses(reply: dns.message.Message) -> list[str]:
    return [rd.to_text() for rrset in reply.answer for rd in rrset if rrset.rdtype == 1]


def test_a_listed_device_is_in_its_group_wherever_it_is(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.pool.records["telegram.org."] = ["telegram.org. 300 IN A 192.0.2.9"]
    phone = env.ask("telegram.org.", channel=Channel("dot", "phone-1"))
    other = env.ask("telegram.org.", channel=Channel("dot", "phone-2"))
    plain = env.ask("telegram.org.")
    assert addresses(phone) == ["0.0.0.0"]
    assert addresses(other) == addresses(plain) == ["192.0.2.9"]
    (blocked,) = env.events("blocked")
    assert (blocked["group"], blocked["device"], blocked["entry"]) == ("phones", "phone-1",
                                                                       "telegram")  # fmt: skip
    allowed = env.events("query")
    assert [e.get("device") for e in allowed] == ["phone-2", None]


def test_the_device_group_judges_the_names_in_the_answer_too(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.pool.records["cdn.example.net."] = [
        "cdn.example.net. 300 IN CNAME web.telegram.org.",
        "web.telegram.org. 300 IN A 192.0.2.10",
    ]
    assert addresses(env.ask("cdn.example.net.", channel=Channel("doh", "phone-1"))) == ["0.0.0.0"]
    assert addresses(env.ask("cdn.example.net.")) == ["192.0.2.10"]  # from the cache
    (blocked,) = env.events("blocked")
    assert blocked["cname"] == "web.telegram.org" and blocked["device"] == "phone-1"


def test_queries_are_counted_by_transport(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.ask("tiktok.com.", channel=Channel("dot"))
    env.ask("tiktok.com.", channel=Channel("doh", "phone-1"))
    env.ask("tiktok.com.", over_udp=True)
    env.ask("tiktok.com.")
    assert {protocol for protocol, _, _ in env.stats.queries} == {"dot", "doh", "udp", "tcp"}


def test_ddr_names_our_endpoints_before_any_policy(tmp_path: Path) -> None:
    env = Env(tmp_path, encrypted=True, lists="doh-bypass")
    reply = env.ask("_dns.resolver.arpa.", "SVCB", over_udp=True)
    (rrset,) = reply.answer
    assert rrset.rdtype == dns.rdatatype.SVCB
    assert sorted((rd.priority, rd.target.to_text()) for rd in rrset) == [
        (1, "dns.example.gov."), (2, "dns.example.gov.")]  # fmt: skip
    ours = env.ask("_dns.dns.example.gov.", "SVCB", channel=Channel("dot"))
    assert len(ours.answer[0]) == 2
    nodata = env.ask("_dns.resolver.arpa.", "A")
    assert nodata.rcode() == 0 and nodata.answer == []
    assert env.pool.calls == [] and env.events("blocked") == []
    assert env.stats.results()["ddr"] == 3
    # Every other name under resolver.arpa is still the doh-bypass entry's.
    other = env.ask("other.resolver.arpa.", "SVCB")
    assert other.answer == [] and env.events("blocked")[0]["entry"] == "doh-bypass"


@pytest.mark.parametrize("lists", ["doh-bypass", "tiktok"])
def test_without_encrypted_listeners_ddr_is_todays_behaviour(tmp_path: Path, lists: str) -> None:
    env = Env(tmp_path, encrypted=False, lists=lists)
    assert env.state.designated is None
    env.pool.records["_dns.resolver.arpa."] = []
    reply = env.ask("_dns.resolver.arpa.", "SVCB")
    assert reply.answer == [] and env.stats.results()["ddr"] == 0
    if lists == "doh-bypass":
        assert env.events("blocked")[0]["answer"] == "nodata" and env.pool.calls == []
    else:
        assert env.pool.calls == ["_dns.resolver.arpa."]
