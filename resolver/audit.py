"""The audit trail: structured JSON lines on stdout, one event per line, for the SOC's SIEM.

Every block is an event (who asked, what, which list and rule, what we answered), as are upstream
failures, start-up, reloads and shutdown. Allowed queries are logged only when asked for. Names are
rendered with `names.to_text`, which escapes every control character, and JSON encoding keeps one
event on one line whatever a client put in its packet.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from resolver.names import to_text
from resolver.wire import Query, type_name

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}  # fmt: skip


class AuditLog:
    def __init__(self, stream: TextIO | None = None, level: str = "info",
                 allowed_queries: bool = False) -> None:  # fmt: skip
        self.allowed_queries = allowed_queries
        # Checked before building an event, so a filtered event costs no name rendering.
        self.info_enabled = LEVELS[level] <= logging.INFO
        self._log: Any = structlog.wrap_logger(
            structlog.WriteLogger(stream or sys.stdout),
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.JSONRenderer(),
            ],
            wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        ).bind()  # the real logger now, not a proxy that rebuilds it on every call

    def info(self, event: str, **fields: object) -> None:
        self._log.info(event, **fields)

    def warning(self, event: str, **fields: object) -> None:
        self._log.warning(event, **fields)

    def error(self, event: str, **fields: object) -> None:
        self._log.error(event, **fields)

    def blocked(self, client: str, query: Query, list_name: str, rule: str, answer: str) -> None:
        if not self.info_enabled:
            return
        self._log.info("blocked", client=client, qname=to_text(query.qname),
                       qtype=type_name(query.qtype), list=list_name, rule=rule,
                       answer=answer)  # fmt: skip

    def allowed(self, client: str, query: Query, rcode: int) -> None:
        if not self.info_enabled:
            return
        self._log.info("query", client=client, qname=to_text(query.qname),
                       qtype=type_name(query.qtype), rcode=rcode)  # fmt: skip

    def upstream_failed(self, upstream: str, reason: str, query: Query) -> None:
        self._log.warning("upstream_failed", upstream=upstream, reason=reason,
                          qname=to_text(query.qname), qtype=type_name(query.qtype))  # fmt: skip
