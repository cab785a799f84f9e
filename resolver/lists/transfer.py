"""RPZ zones by zone transfer: AXFR, then IXFR, with TSIG, and NOTIFY from the primaries.

National and commercial protective-DNS feeds are served this way, so dnswarden takes them as a
secondary would. The transfer is dnspython's (`dns.query.inbound_xfr`, which checks the TSIG
of every message), never a hand-written client; this module only decides what to ask whom:
IXFR from the serial of the last good copy when there is one, AXFR when there is none or a
primary refuses IXFR, each primary in turn until one answers.

A transfer does not go straight into the policy. `ZoneFetcher` has the shape of
`resolver.lists.fetch.fetch`, so `resolver.lists.feeds.refresh_source` runs it like the
download of a URL feed: the zone, written out as RPZ text, becomes a candidate in the state
directory that the normal list loading parses and judges (broken, shrunk) before it replaces
the last good copy. The serial travels as the copy's ETag; "up to date" is a 304.

NOTIFY (RFC 1996) is answered by `notify_reply`: only from an address a source allows (its
primaries by default) and only for that source's zone; anyone else gets REFUSED and triggers
nothing. A signed NOTIFY must verify (and the reply is signed with its key); an unsigned one
from an allowed address is accepted, as Unbound's `allow-notify` does: it only makes us ask,
and what we ask is authenticated by the transfer's own TSIG.

A copy ages: RFC 1034 (4.3.5) and RFC 1996 have a secondary stop using a zone once no primary
has confirmed it for the SOA's EXPIRE time. `ZoneExpiry` tells, from the copy's sidecar and a
`now` passed in, when that is; what an expired zone does is the source's `on_expire`
(`resolver.config.transfer.OnExpire`): by default its rules stay in force, loudly.

Blocking (sockets): run the fetcher in a thread. `notify_reply` and `ZoneExpiry` do no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.xfr
import dns.zone

from resolver.config import SourceConfig
from resolver.config.transfer import TransferConfig, TsigConfig, parse_tsig_secret
from resolver.lists.fetch import FetchError, FetchResult

__all__ = [
    "MAX_TIMER",
    "MIN_TIMER",
    "NOTIFY_OPCODE",
    "SoaTimers",
    "TransferReport",
    "ZoneExpiry",
    "ZoneFetcher",
    "is_notify",
    "notify_reply",
    "tsig_key",
]

NOTIFY_OPCODE: Final = 4
MIN_TIMER: Final = 5.0
MAX_TIMER: Final = 86400.0
"""SOA refresh and retry are used within these bounds: a zone with refresh 0 must not make us
hammer its primary, nor one with a refresh of a year stop us checking it."""
DEFAULT_RETRY: Final = 60.0
_FALL_BACK_TO_AXFR: Final = frozenset({dns.rcode.REFUSED, dns.rcode.NOTIMP, dns.rcode.FORMERR})
"""What a primary that does not serve IXFR (for us, or at all) answers (RFC 1995 4)."""


@dataclass(frozen=True, slots=True)
class SoaTimers:
    """The SOA's refresh and retry (seconds, bounded) and expire, as the primary set them."""

    refresh: float = 3600.0
    retry: float = DEFAULT_RETRY
    expire: float = 7 * 86400.0

    @classmethod
    def of(cls, soa: Any) -> SoaTimers:
        def bounded(value: int) -> float:
            return min(max(float(value), MIN_TIMER), MAX_TIMER)

        return cls(bounded(soa.refresh), bounded(soa.retry), float(soa.expire))


@dataclass(frozen=True, slots=True)
class ZoneExpiry:
    """When the copy in force of a transferred zone expires: `expire` seconds (its SOA's
    EXPIRE, at least `MIN_TIMER`) after `refreshed_at`, the last time a primary confirmed it
    (transferred it, or answered that it is current). A failed check, or a new version that was
    refused (broken, shrunk), confirms nothing: the copy in force keeps ageing."""

    refreshed_at: float
    expire: float

    @property
    def expires_at(self) -> float:
        return self.refreshed_at + self.expire

    def expired(self, now: float) -> bool:
        return now >= self.expires_at

    @classmethod
    def of(cls, meta: Mapping[str, Any]) -> ZoneExpiry | None:
        """From a last good copy's sidecar (`SourceStore.meta`): ``checked_at`` (written when a
        primary answers) and ``soa_expire`` (written with each transfer; a copy stored without
        it gets `SoaTimers`' default). None when there is no copy or no time."""
        refreshed = meta.get("checked_at", meta.get("fetched_at"))
        if not meta.get("sha256") or not isinstance(refreshed, int | float):
            return None
        expire = meta.get("soa_expire", SoaTimers().expire)
        if not isinstance(expire, int | float) or isinstance(expire, bool):
            expire = SoaTimers().expire
        return cls(float(refreshed), max(float(expire), MIN_TIMER))


@dataclass(frozen=True, slots=True)
class TransferReport:
    """What the last run of a `ZoneFetcher` did: ``ixfr``, ``axfr`` or ``current`` (the
    primary has our serial), from which primary, to which serial."""

    kind: str
    primary: str
    serial: int
    timers: SoaTimers


def tsig_key(tsig: TsigConfig | None) -> dns.tsig.Key | None:
    """The key as dnspython takes it, its secret read from its file now (so a rotated secret
    is used from the next transfer on)."""
    if tsig is None:
        return None
    with open(tsig.secret_file, "rb") as handle:
        secret = parse_tsig_secret(handle.read(4097))
    return dns.tsig.Key(tsig.name, secret, tsig.algorithm)


class _Zone(dns.zone.Zone):
    """A zone that remembers whether the transfer replaced it (AXFR, or an IXFR answered in
    full) or changed it in place (an incremental IXFR)."""

    replaced: bool | None = None

    def writer(self, replacement: bool = False) -> Any:
        self.replaced = replacement
        return super().writer(replacement)


class ZoneFetcher:
    """`fetch`-shaped: `feeds.refresh_source(config, name, fetcher=ZoneFetcher(source,
    store_dir))` transfers the zone and hands its RPZ text over like a downloaded feed.

    `etag` is the serial of the last good copy, whose text is read back (from `body`) to apply
    an IXFR to. `report` says what the last call did.
    """

    def __init__(self, source: SourceConfig, body: Path) -> None:
        if source.transfer is None:
            raise ValueError(f"{source.name}: not a zone-transfer source")
        self.source = source
        self.transfer: TransferConfig = source.transfer
        self.body = body
        self.report: TransferReport | None = None

    def __call__(
        self,
        location: str,
        *,
        etag: str | None = None,
        timeout: float = 30.0,
        max_bytes: int = 256 << 20,
        **_: Any,
    ) -> FetchResult:
        transfer = self.transfer
        try:
            key = tsig_key(transfer.tsig)
        except (OSError, ValueError) as error:
            raise FetchError(f"TSIG secret file: {error}") from None
        errors: list[str] = []
        for primary in transfer.primaries:
            stored = self._stored(etag)
            try:
                zone, kind = self._pull(primary.host, primary.port, stored, key, timeout)
            except (dns.exception.DNSException, OSError, EOFError, ValueError) as error:
                errors.append(f"{primary}: {_describe(error)}")
                continue
            soa = _soa(zone)
            self.report = TransferReport(kind, str(primary), soa.serial, SoaTimers.of(soa))
            if kind == "current":
                return FetchResult(304, None, str(soa.serial), None)
            text = zone_text(zone)
            if len(text) > max_bytes:
                raise FetchError(f"zone text of {len(text)} bytes is over max_bytes {max_bytes}")
            return FetchResult(200, text, str(soa.serial), None)
        raise FetchError("; ".join(errors) or "no primary")

    def _stored(self, etag: str | None) -> _Zone | None:
        """The last good copy as a zone to apply an IXFR to, or None (AXFR then)."""
        if not etag or not etag.isdigit():
            return None
        try:
            text = self.body.read_bytes()
            zone = dns.zone.from_text(
                text,
                origin=self.transfer.zone + ".",
                relativize=False,
                zone_factory=_Zone,
                check_origin=False,
            )
        except (OSError, dns.exception.DNSException, ValueError, UnicodeError):
            return None
        stored: _Zone = zone  # type: ignore[assignment]
        try:
            if _soa(stored).serial != int(etag):
                return None
        except (LookupError, dns.exception.DNSException):
            return None
        return stored

    def _pull(
        self,
        host: str,
        port: int,
        stored: _Zone | None,
        key: dns.tsig.Key | None,
        timeout: float,
    ) -> tuple[_Zone, str]:
        """(zone, kind): IXFR onto `stored` when there is one, AXFR when there is none or the
        primary refuses IXFR."""
        if stored is not None:
            before = _soa(stored).serial
            query, _ = dns.xfr.make_query(stored, serial=0, keyring=key)
            try:
                dns.query.inbound_xfr(
                    host, stored, query, port=port, timeout=timeout, lifetime=timeout
                )
            except dns.xfr.TransferError as error:
                if error.rcode not in _FALL_BACK_TO_AXFR:
                    raise
            else:
                if stored.replaced is None or _soa(stored).serial == before:
                    return stored, "current"
                return stored, "axfr" if stored.replaced else "ixfr"
        zone = _Zone(self.transfer.zone + ".", relativize=False)
        query, _ = dns.xfr.make_query(zone, serial=None, keyring=key)
        dns.query.inbound_xfr(host, zone, query, port=port, timeout=timeout, lifetime=timeout)
        return zone, "axfr"


def _soa(zone: dns.zone.Zone) -> Any:
    return zone.find_rdataset(zone.origin, dns.rdatatype.SOA)[0]  # type: ignore[arg-type]


def zone_text(zone: dns.zone.Zone) -> bytes:
    """The zone as an RPZ zone file: absolute names, sorted, so equal zones are equal bytes."""
    return zone.to_text(sorted=True, relativize=False).encode()  # type: ignore[no-any-return]


def _describe(error: BaseException) -> str:
    if isinstance(error, dns.xfr.TransferError):
        return f"transfer refused ({dns.rcode.to_text(error.rcode)})"
    if isinstance(error, dns.tsig.PeerError | dns.tsig.BadSignature | dns.message.UnknownTSIGKey):
        return f"TSIG: {type(error).__name__}: {error}"
    if isinstance(error, dns.exception.Timeout):
        return "timed out"
    return f"{type(error).__name__}: {error}"[:300]


# --- NOTIFY -----------------------------------------------------------------------------------


def is_notify(packet: bytes) -> bool:
    """Whether `packet` is a NOTIFY request (opcode 4, QR clear), from its header alone."""
    return len(packet) >= 12 and packet[2] & 0xF8 == NOTIFY_OPCODE << 3


@dataclass(frozen=True, slots=True)
class NotifyOutcome:
    """The reply to send (None: send nothing) and the source whose zone changed, if any."""

    reply: bytes | None
    source: str | None
    result: str  # accepted | refused | malformed


def notify_reply(packet: bytes, client: str, sources: Iterable[SourceConfig]) -> NotifyOutcome:
    """Answer a NOTIFY from `client`: accepted only for a zone-transfer source whose
    `allow_notify` holds the address, for that source's zone, with a good TSIG when signed."""
    allowed = [s for s in sources if s.transfer is not None and _allows(s.transfer, client)]
    if not allowed:
        return NotifyOutcome(_refused(packet), None, "refused")
    keys = {}
    for source in allowed:
        try:
            key = tsig_key(source.transfer.tsig if source.transfer else None)
        except (OSError, ValueError):
            continue
        if key is not None:
            keys[key.name] = key
    try:
        message = dns.message.from_wire(packet, keyring=keys or None)
    except (dns.exception.DNSException, ValueError):
        return NotifyOutcome(_refused(packet), None, "malformed")
    if len(message.question) != 1 or message.question[0].rdtype != dns.rdatatype.SOA:
        return NotifyOutcome(_answer(message, dns.rcode.FORMERR), None, "malformed")
    zone = message.question[0].name.to_text(omit_final_dot=True).lower()
    for source in allowed:
        transfer = source.transfer
        assert transfer is not None
        if transfer.zone != zone:
            continue
        return NotifyOutcome(_answer(message, dns.rcode.NOERROR), source.name, "accepted")
    return NotifyOutcome(_answer(message, dns.rcode.REFUSED), None, "refused")


def _allows(transfer: TransferConfig, client: str) -> bool:
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in transfer.allow_notify)


def _answer(message: dns.message.Message, rcode: int) -> bytes:
    """The reply to a parsed NOTIFY, signed with its key when it was signed (RFC 8945)."""
    response = dns.message.make_response(message)
    if rcode == dns.rcode.NOERROR:
        response.flags |= dns.flags.AA  # we take this zone: the reply speaks for it
    response.set_rcode(rcode)
    wire: bytes = response.to_wire()
    return wire


def _refused(packet: bytes) -> bytes | None:
    """REFUSED from the header and question alone, for a NOTIFY we will not even parse."""
    if len(packet) < 12:
        return None
    flags = 0x8000 | NOTIFY_OPCODE << 11 | dns.rcode.REFUSED
    question = _question(packet)
    qdcount = 1 if question else 0
    header = packet[:2] + flags.to_bytes(2, "big") + bytes((0, qdcount, 0, 0, 0, 0, 0, 0))
    return header + question


def _question(packet: bytes) -> bytes:
    """The first question's bytes when it is one plain (uncompressed) name, type and class."""
    if packet[4:6] == b"\x00\x00":
        return b""
    pos = 12
    end = len(packet)
    while pos < end and packet[pos] and packet[pos] < 64:
        pos += 1 + packet[pos]
    if pos >= end or packet[pos] or pos + 5 > end or pos - 12 > 255:
        return b""
    return packet[12 : pos + 5]


def zone_sources(sources: Sequence[SourceConfig]) -> tuple[SourceConfig, ...]:
    """The zone-transfer sources among `sources`."""
    return tuple(source for source in sources if source.transfer is not None)
