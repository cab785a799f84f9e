"""Step 0c: a flooding client's uncached names shed from their bytes, before any parse, and
what must still be answered beside them (its cached names, its other zones, the answer memo's
repeats). The reading of the bytes itself: tests/policy/test_shedding.py."""

from __future__ import annotations

import asyncio
import time

import dns.edns
import dns.message
import dns.rcode
import pytest
from test_pipeline import Env, rdata, state_for

from resolver import pipeline


def wire(name: str, rdtype: str = "A", **options: object) -> bytes:
    return dns.message.make_query(name, rdtype, **options).to_wire()  # type: ignore[arg-type]


def flooding_env() -> Env:
    env = Env(state_for(more="rate_limit: {client_zone_rate: 1, client_zone_burst: 3}\n"))
    env.pool.records["www.victim.example."] = ["www.victim.example. 300 IN A 192.0.2.1"]
    env.pool.records["mail.victim.example."] = ["mail.victim.example. 300 IN A 192.0.2.2"]
    return env


def test_a_flooding_client_s_new_names_are_shed_unparsed_and_its_cached_names_answered() -> None:
    """Over its budget for victim.example, the client's next uncached names there are dropped
    without a parse (step 0c); a cached name there, asked for the first time since, is still
    answered, and so are its names elsewhere and the memo's repeats."""
    env = flooding_env()
    assert rdata(env.ask("www.victim.example.", sync=False)) == ["192.0.2.1"]
    assert rdata(env.ask("mail.victim.example.", sync=False)) == ["192.0.2.2"]
    env.ask("r0.victim.example.", sync=False)  # the budget's third and last
    parses: list[bytes] = []
    real_parse = pipeline.parse_query

    def counted(packet: bytes) -> object:
        parses.append(packet)
        return real_parse(packet)

    env.pipeline.parse = counted  # type: ignore[assignment]

    async def flood() -> list[object]:
        return [env.pipeline.handle(wire(f"r{i}.victim.example.", use_edns=False), "127.0.0.1",
                                    True, lambda _: None) for i in range(1, 48)]  # fmt: skip

    assert asyncio.run(flood()) == [None] * 47  # all dropped
    assert len(parses) == 1  # the first, refused upstream at 5a; the rest before any parse
    assert env.stats.limited[("default", "client_zone", "drop")] == 47
    assert rdata(env.ask("mail.victim.example.", sync=True)) == ["192.0.2.2"]
    for _ in range(3):  # the memo answers the repeats from their second sight on
        assert rdata(env.ask("www.victim.example.", sync=True)) == ["192.0.2.1"]
    assert env.ask("www.other.example.", sync=False).rcode() == dns.rcode.NOERROR


def test_a_shed_name_is_refused_when_the_action_says_so_and_audited_with_its_name() -> None:
    limits = "rate_limit: {action: refuse, client_zone_rate: 1, client_zone_burst: 1}\n"
    env = Env(state_for(more=limits))
    env.ask("r0.victim.example.", sync=False)
    assert env.ask("r1.victim.example.", edns=False).rcode() == dns.rcode.REFUSED  # 5a
    time.sleep(0.15)  # past the audit's hold-back for this client and limit (0.1 s)
    shed = env.ask("r2.victim.example.", edns=False, sync=True)  # 0c, then parsed to answer
    assert shed.rcode() == dns.rcode.REFUSED
    assert [e["qname"] for e in env.events("rate_limited")] == [
        "r1.victim.example", "r2.victim.example"
    ]


class RecordingTap:
    """Stands in for `DnstapOutput`: what the pipeline reports of each answer."""

    def __init__(self) -> None:
        self.responses: list[bytes] = []

    def client_query(self, packet: bytes, client: str, transport: str) -> float:
        return 0.0

    def client_response(self, reply: bytes, client: str, transport: str, received: float,
                        block: object) -> None:  # fmt: skip
        self.responses.append(reply)


@pytest.mark.parametrize("tapped", [False, True], ids=["untapped", "dnstap"])
@pytest.mark.parametrize(
    ("name", "forwarded"), [("www.victim.example.", True), ("tiktok.com.", False)]
)
def test_a_peer_is_handed_to_reply_to_only_when_the_answer_comes_later(
    tapped: bool, name: str, forwarded: bool
) -> None:
    """The UDP listener passes its peer's address rather than a closure per packet: a query
    that goes upstream has `reply_to(peer, reply)` called once; one answered at once (here a
    block) is returned, and `reply_to` is never called."""
    env = flooding_env()
    tap = RecordingTap()
    if tapped:
        env.pipeline.tap = tap  # type: ignore[assignment]
    peer = ("127.0.0.1", 5300)
    calls: list[tuple[object, bytes | None]] = []
    packet = wire(name)

    async def exchange() -> object:
        outcome = env.pipeline.handle(packet, peer[0], True,
                                      lambda *args: calls.append(args), None, peer)  # fmt: skip
        for _ in range(20):
            await asyncio.sleep(0)
        return outcome

    outcome = asyncio.run(exchange())
    if forwarded:
        assert outcome is pipeline.FORWARDED
        assert [p for p, _ in calls] == [peer]
        reply = calls[0][1]
    else:
        assert calls == []
        reply = outcome  # type: ignore[assignment]
    assert isinstance(reply, bytes) and reply[:2] == packet[:2]
    assert tap.responses == ([reply] if tapped else [])
