"""The one path every query takes, declared in one place.

    receive → parse → access control → policy → cache → upstream → response inspection → reply
    → metrics/audit

`handle` runs the steps that need no I/O and returns their answer at once (most blocked and
refused queries never leave this function); only a query that must go upstream becomes a
coroutine. Each step is a small named unit elsewhere; here is only their order and why.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from resolver import answers
from resolver.audit import AuditLog
from resolver.edns import EdeCode, opt_record
from resolver.matcher import BlockRule
from resolver.state import ResolverState
from resolver.stats import Stats
from resolver.upstream import Overloaded, UpstreamFailure, UpstreamPool
from resolver.wire import (
    FORMERR,
    NOTIMP,
    TCP_MAX_MESSAGE,
    Query,
    WireError,
    client_reply,
    parse_query,
    udp_limit,
)

Outcome = bytes | None | Coroutine[Any, Any, bytes | None]

_ERROR_RESULTS = {FORMERR: "formerr", NOTIMP: "notimp"}


class QueryPipeline:
    def __init__(self, state: ResolverState, upstreams: UpstreamPool, stats: Stats,
                 audit: AuditLog) -> None:  # fmt: skip
        # Replaced whole by a reload; each query reads it once, so it sees one consistent state.
        self.state = state
        self.upstreams = upstreams
        self.stats = stats
        self.audit = audit

    def handle(self, packet: bytes, client: str, over_udp: bool) -> Outcome:
        """Answer `packet` from `client`: reply bytes, None (send nothing), or a coroutine that
        produces one of those after going upstream."""
        state = self.state
        # 1. Parse: hostile bytes become a Query, an error answer (FORMERR/NOTIMP/BADVERS) or
        #    nothing, before anything else looks at them.
        try:
            query = parse_query(packet)
        except WireError as error:
            return self._malformed(packet, error)
        # 2. Access control: clients outside clients.allow are refused before any lookup, and
        #    nothing of theirs goes upstream: never an open resolver.
        if not state.access.allows(client):
            self.stats.count("refused")
            return answers.refused(query, EdeCode.PROHIBITED, "client not allowed")
        # 3. Policy: a blocked name is answered here, from the query's bytes. It comes before the
        #    cache so that a new block takes effect at once.
        hit = state.blocking.lookup(query.qname)
        if hit is not None:
            return self._blocked(state, query, client, hit[0], hit[1])
        # 4. Cache: none yet; cached answers will be served here, after policy.
        # 5-8. Upstream, response inspection, reply, metrics/audit: see `_forward`.
        return self._forward(query, client, over_udp)

    async def _forward(self, query: Query, client: str, over_udp: bool) -> bytes | None:
        # 5. Upstream: failover across upstreams within the deadline, merged with identical
        #    queries already in flight.
        try:
            reply = await self.upstreams.resolve(query)
        except UpstreamFailure as failure:
            self.stats.count("servfail")
            return answers.servfail(query, failure.ede, failure.text)
        except Overloaded:
            self.stats.count("dropped")
            self.stats.count("dropped.overload")
            return None
        # 6. Response inspection: the reply already matched our question and parsed; deeper
        #    checks (CNAME chains into blocked names) will sit here.
        # 7. Reply: the client's ID, question and EDNS back, cut to what it can receive.
        opt = opt_record(query.dnssec_ok, ext_rcode=reply.ext_rcode) if query.has_edns else b""
        out = client_reply(reply, query, udp_limit(query) if over_udp else TCP_MAX_MESSAGE, opt)
        # 8. Metrics/audit: allowed queries are logged only when the operator asks for it.
        self.stats.count("forwarded")
        if self.audit.allowed_queries:
            self.audit.allowed(client, query, reply.rcode)
        return out

    def _blocked(self, state: ResolverState, query: Query, client: str, rule: BlockRule,
                 zone_offset: int) -> bytes:  # fmt: skip
        sinkhole = state.sinkholes.get(rule.answer) or state.sinkholes[None]
        self.stats.count("blocked")
        self.audit.blocked(client, query, rule.list_name, rule.pattern, sinkhole.mode)
        return sinkhole.build(query, zone_offset, "blocked by list " + rule.list_name)

    def _malformed(self, packet: bytes, error: WireError) -> bytes | None:
        self.stats.count("malformed." + error.reason)
        reply = answers.error_reply(packet, error)
        self.stats.count("dropped" if reply is None else _ERROR_RESULTS.get(error.rcode, "badvers"))
        return reply
