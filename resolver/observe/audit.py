"""The audit trail: structured JSON lines on stdout (and optionally a rotated file) for the SIEM.

Every block is an event (who asked, what, under which policy, list and rule, on whose authority,
what we answered), as are upstream failures, start-up, reloads and shutdown. `reference` is the
policy's mandate when a policy with one blocked, else the list's citation: a catalogue entry's
decisions, an operator list's file or URL; `decisions` lists a catalogue entry's decisions.
Allowed queries are logged only when asked for. Three guarantees hold whatever clients send:

- One event is one line of printable ASCII JSON: names go through `names.to_text`, and
  ``ensure_ascii`` escapes every other character outside space..tilde (C0 controls, DEL, C1
  controls, U+2028), so no raw control character reaches a terminal, a file or a log shipper.
- Client privacy: ``raw``, ``truncate`` (IPv4 /24, IPv6 /48) or ``pseudonymise`` (keyed
  HMAC-SHA256, stable for one key so the SOC can correlate a device's events; a new key changes
  every pseudonym, which is how pseudonyms are rotated).
- Bounded volume: identical block events (same client, name, policy) within a window are folded
  into the first event plus one summary with a count, and a token bucket caps all events at a
  configured rate; what it drops is counted and reported once a second. The log cannot grow
  faster than that rate plus one line per second, whatever a flooding device does.

Blocks sit on the hot path, so a repeat inside its fold window costs a dict lookup, a count
and a clock reading (its timestamp is made only for the summary), and an event that is written
is rendered straight to its line (`_JsonLines.line`: a timestamp cached at 1 ms resolution, a
pre-built JSON encoder), with the same keys in the same order as the structlog chain (a single
processor behind a logger bound once) that writes the few events off the query path.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, TextIO

import structlog

from resolver.policy.engine import Decision
from resolver.protocol.names import to_text
from resolver.protocol.wire import Query, type_name

__all__ = [
    "FOLD_KEYS",
    "LEVELS",
    "MIN_KEY_BYTES",
    "PRIVACY_MODES",
    "TICK_INTERVAL",
    "AuditLog",
    "pseudonym",
    "truncate_address",
]

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}  # fmt: skip
PRIVACY_MODES = ("raw", "truncate", "pseudonymise")
# A key shorter than this could be guessed; with it, nobody without the key can map a pseudonym
# back to an address even though the address space is small enough to enumerate.
MIN_KEY_BYTES = 16
# Distinct (client, name, policy) folds held at once; beyond it events are written unfolded and
# the token bucket alone bounds them.
FOLD_KEYS = 10_000
INVALID_CLIENT = "invalid"
_CLIENT_CACHE = 4096
_MAX_QTYPES = 16
TICK_INTERVAL = 1.0
"""Seconds between the owner's calls of `AuditLog.tick`, which close fold windows and write the
suppression report (at most one per tick)."""


def _canonical(client: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address behind `client`; an IPv4-mapped IPv6 address is its IPv4 address, so a
    dual-stack listener does not give one device two identities."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def truncate_address(client: str) -> str:
    """The client's network: IPv4 /24 (``a.b.c.0/24``), IPv6 /48 (``x:y:z::/48``); anything
    that is not an address becomes ``invalid`` rather than leaking into a privacy-mode log."""
    address = _canonical(client)
    if address is None:
        return INVALID_CLIENT
    if address.version == 4:
        return f"{ipaddress.IPv4Address(int(address) & 0xFFFFFF00)}/24"
    return f"{ipaddress.IPv6Address(int(address) >> 80 << 80)}/48"


def pseudonym(key: bytes, client: str) -> str:
    """``h:`` and 64 bits of HMAC-SHA256(key, address): stable per key, useless without it.

    The address is canonicalised first, so spellings of one address share a pseudonym;
    a string that is not an address is hashed as it is (it still must not appear raw).
    """
    address = _canonical(client)
    text = client if address is None else address.compressed
    digest = hmac.new(key, text.encode("utf-8", "surrogatepass"), hashlib.sha256)
    return "h:" + digest.hexdigest()[:16]


def read_key(key_file: str | None, key_env: str | None) -> bytes | None:
    """The pseudonymisation key from its file or environment variable (None when neither is
    set). Read at start-up and at every reload, so a new key takes effect on SIGHUP."""
    if key_file:
        with open(key_file, "rb") as handle:
            return handle.read().strip()
    if key_env:
        value = os.environ.get(key_env, "")
        if not value:
            raise ValueError(f"environment variable {key_env} is empty or unset")
        return value.encode()
    return None


QUERY_DRIVEN_EVENTS = frozenset({"blocked", "query", "upstream_failed", "internal_error",
                                 "rate_limited"})  # fmt: skip
OPERATOR_EVENTS_PER_SECOND = 20.0


class _TokenBucket:
    """At most `rate` tokens a second, never more than one second's worth banked."""

    __slots__ = ("rate", "refilled", "tokens")

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.refilled = now

    def take(self, now: float) -> bool:
        rate = self.rate
        tokens = self.tokens + (now - self.refilled) * rate
        if tokens > rate:  # (`min` would cost more than the rest of this method)
            tokens = rate
        self.refilled = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return True
        self.tokens = tokens
        return False


def _fallback(value: object) -> str:
    return str(value)


class _JsonLines:
    """The whole structlog processor chain in one step: level, timestamp and JSON rendering.

    structlog's stock chain (add_log_level, TimeStamper, JSONRenderer) was most of the cost of a
    block event: a datetime per call and a new JSON encoder per call (``json.dumps`` with
    options). Here the encoder is built once and the timestamp string is reused within the same
    millisecond.
    """

    def __init__(self) -> None:
        self._millis = -1
        self._second = -1
        self._prefix = ""
        self.stamp = ""  # the last timestamp handed out: the one on the last line rendered
        # No circular-reference check (a large share of the encoding cost): the fallback below
        # catches the RecursionError a (never expected) self-referencing value would cause.
        encoder = json.JSONEncoder(ensure_ascii=True, check_circular=False, separators=(",", ":"),
                                   default=_fallback)  # fmt: skip
        self._encode = encoder.encode

    def timestamp(self) -> str:
        """UTC, ISO 8601, millisecond resolution: ``2025-01-31T12:00:00.123Z``."""
        return self.stamp_of(time.time())

    def stamp_of(self, moment: float) -> str:
        """`timestamp` for the Unix time `moment`: a fold keeps the time of its last repeat, a
        float, and makes its string only for the summary."""
        millis = int(moment * 1000)
        if millis != self._millis:
            self._millis = millis
            second, fraction = divmod(millis, 1000)
            if second != self._second:
                self._second = second
                self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self.stamp = f"{self._prefix}.{fraction:03d}Z"
        return self.stamp

    def __call__(
        self, logger: object, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> str:
        # The fields arrive as one mapping (passing them as keywords would copy them three times
        # on the way here). The bound context starts every event dict with timestamp, level and
        # event, so those lead each line, and a caller field of the same name cannot replace them.
        event_dict.update(event_dict.pop("fields"))
        event_dict["timestamp"] = self.timestamp()
        event_dict["level"] = method_name
        return self._render(event_dict)

    def line(self, level: str, event: str, fields: dict[str, Any], moment: float) -> str:
        """The line structlog would render for `event` with `fields` at `moment` (Unix time),
        without structlog: the hot events (blocks, allowed queries, their summaries) skip its
        context copy and calls. Keys in the same order, the same values, the same encoder."""
        event_dict: dict[str, Any] = {"timestamp": None, "level": None, "event": event}
        event_dict.update(fields)
        event_dict["timestamp"] = self.stamp_of(moment)
        event_dict["level"] = level
        return self._render(event_dict)

    def _render(self, event_dict: Mapping[str, Any]) -> str:
        try:
            return self._encode(event_dict)
        except Exception:
            return self._encode({key: _safe_str(value) for key, value in event_dict.items()})


def _safe_str(value: object) -> object:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    try:
        return repr(value)
    except Exception:
        return f"<unrenderable {type(value).__name__}>"


class _RotatingFile:
    """Append lines to `path`, rotating to ``path.1`` … ``path.N`` before a line would take the
    file past `max_bytes`, so a line is never split across files (``backups == 0`` truncates).

    Like `logging.handlers.RotatingFileHandler`'s naming, without its per-record LogRecord and
    stat cost. Write errors (a full disk) are counted, never raised: the audit trail on stdout
    and the queries being answered must not stop because a file cannot be written.
    """

    def __init__(self, path: str, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.errors = 0
        self._file = self._open(truncate=False)
        self._size = os.fstat(self._file.fileno()).st_size

    def _open(self, truncate: bool) -> TextIO:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
        # Client addresses are personal data: the file is not world-readable.
        descriptor = os.open(self.path, flags, 0o640)
        return open(descriptor, "a", encoding="ascii", errors="backslashreplace", newline="\n",
                    buffering=1)  # fmt: skip

    def write(self, line: str) -> None:
        """Write one ``\\n``-terminated ASCII line (so its length is its size in bytes)."""
        try:
            if self._size and self._size + len(line) > self.max_bytes:
                self._rotate()
            self._file.write(line)
            self._size += len(line)
        except (OSError, ValueError):
            self.errors += 1

    def _rotate(self) -> None:
        self._file.close()
        try:
            if self.backups:
                for index in range(self.backups - 1, 0, -1):
                    older = f"{self.path}.{index}"
                    if os.path.exists(older):
                        os.replace(older, f"{self.path}.{index + 1}")
                os.replace(self.path, f"{self.path}.1")
        finally:
            self._file = self._open(truncate=not self.backups)
            self._size = os.fstat(self._file.fileno()).st_size

    def close(self) -> None:
        self._file.close()


class _Sink:
    """What structlog calls the logger: takes a rendered line, writes it everywhere."""

    def __init__(self, stream: TextIO, file: _RotatingFile | None) -> None:
        self.stream = stream
        self.file = file
        self.forward: Callable[[str], None] | None = None  # e.g. the syslog output

    def msg(self, line: str) -> None:
        line += "\n"
        self.stream.write(line)
        # Flushed per event: the SIEM, and an operator tailing the log, see a block at once.
        self.stream.flush()
        if self.file is not None:
            self.file.write(line)
        if self.forward is not None:
            self.forward(line[:-1])

    # structlog calls the logger's method of the event's level; each is `msg` (spelt out, not
    # `info = warning = error = msg`, which the compiled core's class bodies cannot hold).
    def info(self, line: str) -> None:
        self.msg(line)

    def warning(self, line: str) -> None:
        self.msg(line)

    def error(self, line: str) -> None:
        self.msg(line)


class _Fold:
    """Repeats of one block event inside its window; the first was already written.

    Up to `FOLD_KEYS` of these live for a window each, so the query types are a tuple of ints,
    not a set: the cyclic GC stops tracking such a tuple at its first look (and never tracks the
    dict of strings), so a flood of distinct blocks leaves one object per fold for each of its
    collections to walk, not two.
    """

    __slots__ = ("client", "deadline", "decision", "device", "event", "fields", "first_seen",
                 "last_seen", "qname", "qtypes", "repeats")  # fmt: skip

    def __init__(self, deadline: float, fields: dict[str, Any] | None, moment: float,
                 qtype: int, event: str = "blocked") -> None:  # fmt: skip
        self.event = event
        self.deadline = deadline
        # None until a summary needs them when the rate cap dropped the first event: the
        # block's own (`client`, `qname`, `decision`, `device`) make them then, in slots of
        # this object, not a tuple the cyclic GC would track too.
        self.fields = fields
        self.client = ""
        self.qname = b""
        self.decision: Decision | None = None
        self.device = ""
        # Unix times, made into timestamps only for the summary: a repeat costs a count and a
        # clock reading, never a string.
        self.first_seen = moment
        self.last_seen = moment
        self.qtypes: tuple[int, ...] = (qtype,)
        self.repeats = 0

    def summary(self, stamp_of: Callable[[float], str]) -> dict[str, Any]:
        assert self.fields is not None
        fields = dict(self.fields)
        if self.event != "blocked":
            fields.pop("qname", None)  # the first query's, not the repeats'
        elif len(self.qtypes) > 1:
            fields["qtypes"] = sorted(type_name(qtype) for qtype in self.qtypes)
        fields["repeated"] = self.repeats
        fields["first_seen"] = stamp_of(self.first_seen)
        fields["last_seen"] = stamp_of(self.last_seen)
        return fields


class AuditLog:
    """The audit trail. One instance per process; not thread-safe (it runs on the event loop).

    `blocked`, `allowed` and `info`/`warning`/`error` may be called at any rate: folding and the
    rate cap keep the output bounded. The service calls `tick` every `TICK_INTERVAL` (it writes
    the summaries of closed fold windows and the suppression report) and `close` at shutdown,
    with the `shutdown` event, which it writes last.
    Counters for metrics: `dropped_total` (events the rate cap dropped) and `file_errors`.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        level: str = "info",
        allowed_queries: bool = False,
        *,
        privacy: str = "raw",
        key: bytes | None = None,
        file: str | None = None,
        file_max_bytes: int = 100 << 20,
        file_backups: int = 5,
        fold_window: float = 10.0,
        max_events_per_second: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if level not in LEVELS:
            raise ValueError(f"unknown log level {level!r}; expected one of {sorted(LEVELS)}")
        if fold_window < 0:
            raise ValueError(f"fold_window must be >= 0 (0 turns folding off), not {fold_window}")
        if max_events_per_second < 1:
            raise ValueError(f"max_events_per_second must be >= 1, not {max_events_per_second}")
        if file_max_bytes < 1 or file_backups < 0:
            raise ValueError("file_max_bytes must be >= 1 and file_backups >= 0")
        self._check_privacy(privacy, key)
        self.allowed_queries = allowed_queries
        # Checked before building an event, so a filtered event costs no name rendering.
        self.info_enabled = LEVELS[level] <= logging.INFO
        self._warning_enabled = LEVELS[level] <= logging.WARNING
        self.dropped_total = 0
        self._clock = clock
        self._fold_window = float(fold_window)
        # Keyed (client, name, policy, device) for blocks, (client, b"", limit) for rate limits.
        self._folds: dict[tuple[object, ...], _Fold] = {}
        self._expiry = math.inf  # the oldest fold's deadline: nothing expires before it
        self._query_bucket = _TokenBucket(float(max_events_per_second), clock())
        self._operator_bucket = _TokenBucket(OPERATOR_EVENTS_PER_SECOND, clock())
        self._dropped: dict[str, int] = {}
        self._reported = float("-inf")
        self._file = _RotatingFile(file, file_max_bytes, file_backups) if file else None
        self._sink = _Sink(stream or sys.stdout, self._file)
        self._lines = _JsonLines()
        logger: Any = structlog.wrap_logger(
            self._sink,
            processors=[self._lines],
            wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
            context_class=dict,
        ).bind(timestamp=None, level=None, event=None)  # bound once: no per-call construction
        self._write: dict[str, Callable[..., Any]] = {
            "info": logger.info, "warning": logger.warning, "error": logger.error,
        }  # fmt: skip
        self._set_privacy(privacy, key)

    # Privacy -----------------------------------------------------------------------------------

    @staticmethod
    def _check_privacy(privacy: str, key: bytes | None) -> None:
        if privacy not in PRIVACY_MODES:
            raise ValueError(f"unknown privacy mode {privacy!r}; expected one of {PRIVACY_MODES}")
        if privacy == "pseudonymise" and (key is None or len(key) < MIN_KEY_BYTES):
            raise ValueError(f"privacy 'pseudonymise' needs a key of >= {MIN_KEY_BYTES} bytes")

    def _set_privacy(self, privacy: str, key: bytes | None) -> None:
        self.privacy = privacy
        self._key = bytes(key) if privacy == "pseudonymise" and key is not None else None
        self._clients: dict[str, str] = {}

    def set_privacy(self, privacy: str, key: bytes | None = None) -> None:
        """Switch mode or key (on reload). Pending folds are summarised first, under the old
        pseudonyms; every event after this uses the new ones, so a new key rotates them all."""
        self._check_privacy(privacy, key)
        self._flush_folds(self._clock())
        self._set_privacy(privacy, key)

    def key_id(self) -> str | None:
        """A short one-way fingerprint of the pseudonymisation key, for the startup line: it
        tells which key made which pseudonyms without revealing the key."""
        if self._key is None:
            return None
        return hashlib.sha256(b"dnswarden audit key id\x00" + self._key).hexdigest()[:12]

    def _client(self, client: object) -> str:
        text = client if type(client) is str else str(client)
        if self.privacy == "raw":
            return text
        shown = self._clients.get(text)
        if shown is None:
            key = self._key
            shown = truncate_address(text) if key is None else pseudonym(key, text)
            if len(self._clients) >= _CLIENT_CACHE:
                self._clients.clear()
            self._clients[text] = shown
        return shown

    # Events ------------------------------------------------------------------------------------

    def info(self, event: str, **fields: object) -> None:
        if self.info_enabled:
            self._event("info", event, fields)

    def warning(self, event: str, **fields: object) -> None:
        if self._warning_enabled:
            self._event("warning", event, fields)

    def error(self, event: str, **fields: object) -> None:
        self._event("error", event, fields)

    def _device(self, device: str) -> str | None:
        """A device id as the privacy mode shows it: as it is (raw), not at all (truncate: the
        id would name the one phone the truncated address hides), or keyed like addresses."""
        if self.privacy == "raw":
            return device
        if self._key is None:
            return None
        return pseudonym(self._key, "device:" + device)

    def blocked(self, client: str, query: Query, decision: Decision, device: str = "") -> None:
        """One event per blocked query, folded when the same client repeats it within the window;
        `decisions` is written for a block through a catalogue entry, `cname` for a block found
        in an upstream answer's names, `device` for a client that presented a device id (DoT
        server name, DoH path)."""
        if not self.info_enabled:
            return
        now = self._clock()
        if now >= self._expiry:
            self._expire(now)
        folds = self._folds
        key = (client, query.qname, decision.policy, device)
        fold = folds.get(key)
        if fold is not None:
            fold.repeats += 1
            fold.last_seen = time.time()
            if query.qtype not in fold.qtypes and len(fold.qtypes) < _MAX_QTYPES:
                fold.qtypes += (query.qtype,)
            return
        # `_emit`, inline, with the fields made only for an event the rate cap lets through: a
        # flood of distinct blocks is mostly dropped, and its folds may never need them.
        fields: dict[str, Any] | None = None
        bucket = self._query_bucket  # `_TokenBucket.take`, inline: most of a flood is dropped
        rate = bucket.rate
        tokens = bucket.tokens + (now - bucket.refilled) * rate
        if tokens > rate:  # (`min`, spelt out: the builtin call costs a fifth of a dropped event)
            tokens = rate
        bucket.refilled = now
        if tokens >= 1.0:
            bucket.tokens = tokens - 1.0
            fields = self._block_fields(client, query.qname, query.qtype, decision, device)
            moment = time.time()
            self._sink.msg(self._lines.line("info", "blocked", fields, moment))
        else:
            bucket.tokens = tokens
            self.dropped_total += 1
            self._dropped["blocked"] = self._dropped.get("blocked", 0) + 1
            if not self._fold_window or len(folds) >= FOLD_KEYS:
                return
            moment = time.time()
        if self._fold_window and len(folds) < FOLD_KEYS:
            # first_seen is exactly the written event's timestamp, so the SOC can pair them.
            fold = _Fold(now + self._fold_window, fields, moment, query.qtype)
            if fields is None:
                fold.client, fold.qname, fold.decision, fold.device = (
                    client, query.qname, decision, device
                )  # fmt: skip
            self._fold(key, fold)

    def _fold(self, key: tuple[object, ...], fold: _Fold) -> None:
        if not self._folds:
            self._expiry = fold.deadline
        self._folds[key] = fold

    def _block_fields(self, client: str, qname: bytes, qtype: int, decision: Decision,
                      device: str) -> dict[str, Any]:  # fmt: skip
        """The fields of a block event (and of its fold's summary)."""
        fields: dict[str, Any] = {
            "client": self._client(client),
            "group": decision.group,
            "qname": to_text(qname),
            "qtype": type_name(qtype),
            "policy": decision.policy,
            "entry": decision.list_name,
            "rule": decision.rule,
            "reference": decision.reference,
            "answer": decision.answer,
        }
        if decision.decisions:
            fields["decisions"] = decision.decisions
        cname = decision.cname
        if cname is not None:
            fields["cname"] = to_text(cname)
        if device and (shown := self._device(device)) is not None:
            fields["device"] = shown
        return fields

    def rate_limited(self, client: str, group: str, limit: str, action: str,
                     qname: bytes | None, held: int = 0) -> None:  # fmt: skip
        """A query over a rate limit; repeats from the same client for the same limit within
        the fold window become one summary with a count (a flood is one event plus one
        summary per window, whatever names it sends). `qname` is the first one's, if parsed;
        `held` counts earlier repeats the caller held back rather than calling for each."""
        if not self.info_enabled:
            return
        now = self._clock()
        if now >= self._expiry:
            self._expire(now)
        folds = self._folds
        key = (client, b"", "rate_limited:" + limit)
        fold = folds.get(key)
        if fold is not None:
            fold.repeats += 1 + held
            fold.last_seen = time.time()
            return
        fields: dict[str, Any] = {
            "client": self._client(client),
            "group": group,
            "limit": limit,
            "action": action,
            "qname": None if qname is None else to_text(qname),
        }
        moment = time.time()
        self._emit("info", "rate_limited", fields, now, moment=moment)
        if self._fold_window and len(folds) < FOLD_KEYS:
            fold = _Fold(now + self._fold_window, fields, moment, -1, "rate_limited")
            fold.repeats = held
            self._fold(key, fold)

    def allowed(self, client: str, query: Query, rcode: int, device: str = "") -> None:
        if not self.info_enabled:
            return
        fields = {"client": self._client(client), "qname": to_text(query.qname),
                  "qtype": type_name(query.qtype), "rcode": rcode}  # fmt: skip
        if device and (shown := self._device(device)) is not None:
            fields["device"] = shown
        self._emit("info", "query", fields, self._clock())

    def upstream_failed(self, upstream: str, reason: str, query: Query) -> None:
        if not self._warning_enabled:
            return
        self._emit("warning", "upstream_failed", {"upstream": upstream, "reason": reason,
                                                  "qname": to_text(query.qname),
                                                  "qtype": type_name(query.qtype)},
                   self._clock())  # fmt: skip

    def tick(self) -> None:
        """Once a second: summaries of fold windows that have closed, then the suppression
        report if the rate cap dropped anything since the last one."""
        now = self._clock()
        if now >= self._expiry:
            self._expire(now)
        self._report(now, force=False)

    def close(self, event: str | None = None, **fields: object) -> None:
        """Summarise every pending fold, report what was dropped, write `event` (`shutdown`),
        close the file. `event` is the last line whatever the rate cap: a reader that waits for
        `shutdown` must have everything by then."""
        now = self._clock()
        self._flush_folds(now)
        self._report(now, force=True)
        if event is not None and self.info_enabled:
            self._write["info"](event, fields=fields)
        self._sink.stream.flush()
        if self._file is not None:
            self._sink.file = None
            self._file.close()

    def forward_to(self, write: Callable[[str], None] | None) -> None:
        """Hand every line written (without its newline) to `write` too, e.g. to syslog."""
        self._sink.forward = write

    @property
    def file_path(self) -> str | None:
        """The audit file being written (a worker's own `FILE.wN`), if any."""
        return self._file.path if self._file is not None else None

    @property
    def file_errors(self) -> int:
        return self._file.errors if self._file is not None else 0

    # Internals ---------------------------------------------------------------------------------

    def _event(self, level: str, event: str, fields: dict[str, Any]) -> None:
        if "client" in fields:
            fields["client"] = self._client(fields["client"])
        operator = event not in QUERY_DRIVEN_EVENTS
        self._emit(level, event, fields, self._clock(), operator)

    def _emit(self, level: str, event: str, fields: dict[str, Any], now: float,
              operator: bool = False, moment: float | None = None) -> bool:  # fmt: skip
        """Write one event if its token bucket has a token, else count it as dropped.

        Events that traffic drives (blocks, queries, upstream failures, internal errors) share
        `max_events_per_second`; operator events (start-up, reloads, lapsing policies...) have a
        budget of their own, so a flood of blocks can never hide a reload. `moment`: the Unix
        time of its timestamp, when the caller needs the same one (a fold's first_seen)."""
        bucket = self._operator_bucket if operator else self._query_bucket
        if bucket.take(now):
            when = time.time() if moment is None else moment
            self._sink.msg(self._lines.line(level, event, fields, when))
            return True
        self.dropped_total += 1
        self._dropped[event] = self._dropped.get(event, 0) + 1
        return False

    def _expire(self, now: float) -> None:
        # All windows have the same length, so insertion order is deadline order.
        folds = self._folds
        while folds:
            key, fold = next(iter(folds.items()))
            if fold.deadline > now:
                self._expiry = fold.deadline
                return
            del folds[key]
            if fold.repeats:
                self._emit("info", fold.event, self._summary(fold), now)
        self._expiry = math.inf

    def _flush_folds(self, now: float) -> None:
        folds, self._folds = self._folds, {}
        self._expiry = math.inf
        for fold in folds.values():
            if fold.repeats:
                self._emit("info", fold.event, self._summary(fold), now)

    def _summary(self, fold: _Fold) -> dict[str, Any]:
        if fold.fields is None:
            assert fold.decision is not None
            fold.fields = self._block_fields(
                fold.client, fold.qname, fold.qtypes[0], fold.decision, fold.device
            )
            fold.decision = None
        return fold.summary(self._lines.stamp_of)

    def _report(self, now: float, force: bool) -> None:
        """The suppression report, itself exempt from the cap: at most one line a second."""
        if not self._dropped or (not force and now - self._reported < TICK_INTERVAL):
            return
        dropped, self._dropped = self._dropped, {}
        self._reported = now
        level = "warning" if self._warning_enabled else "error"
        report = {"dropped": sum(dropped.values()), "events": dropped}
        self._write[level]("audit_suppressed", fields=report)
