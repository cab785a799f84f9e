"""The zone-transfer keys of a source: an RPZ zone pulled from its primaries by AXFR/IXFR.

National and commercial protective-DNS feeds are served as RPZ zones by zone transfer, signed
with TSIG, and their primaries send NOTIFY when the zone changes. A source with `primaries:`
is such a feed; the transfer itself happens in `resolver.lists.transfer`. The TSIG secret is
named by its file, never inlined, for the same reason as the metrics token: a config dump must
not leak it.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from dataclasses import dataclass
from typing import Any

from resolver.config import files
from resolver.config.nodes import MISSING, Entries, Reader, join
from resolver.config.problems import describe, suggest
from resolver.config.values import (
    Endpoint,
    IPNetwork,
    choice,
    network,
    parse_endpoint,
    path_text,
    zone_name,
)

TSIG_ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1")
"""What a primary may sign with; HMAC-SHA256 is the default, as `tsig-keygen` and Knot's
`keymgr -t` make it. HMAC-MD5 is refused (RFC 8945 says it must not be used any more)."""

MAX_SECRET_FILE = 4096
_SECRET_IN_FILE = re.compile(rb"""secret\s*[:=]?\s*["']?([A-Za-z0-9+/=]+)["']?""")


@dataclass(frozen=True, slots=True)
class TsigConfig:
    """A TSIG key: its name (as the primary knows it), algorithm and the file with the secret."""

    name: str
    algorithm: str = "hmac-sha256"
    secret_file: str = ""


class OnExpire(enum.Enum):
    """What becomes of a zone's rules once no primary has confirmed the copy for the SOA's
    EXPIRE time: `keep` them in force (the default: a ban must not lapse because a feed went
    quiet), or treat the zone as `missing`, a list with no valid copy, so that
    `blocking.missing_lists` decides (fail_closed: its groups stop answering what it might
    block; fail_open: its rules lapse). Either way the expiry is logged, counted and alerted."""

    KEEP = "keep"
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class TransferConfig:
    """Where an RPZ zone is transferred from: the zone's name, its primaries in the order to
    try them, the key, who may send NOTIFY for it (by default the primaries), and what an
    expired copy does (`OnExpire`)."""

    zone: str
    primaries: tuple[Endpoint, ...]
    tsig: TsigConfig | None = None
    allow_notify: tuple[IPNetwork, ...] = ()
    on_expire: OnExpire = OnExpire.KEEP

    @property
    def location(self) -> str:
        """A URL-like text for messages and the list's label: ``xfr://IP:port/zone``."""
        return f"xfr://{self.primaries[0]}/{self.zone}" if self.primaries else f"xfr:///{self.zone}"


TRANSFER_KEYS = ("primaries", "zone", "tsig", "allow_notify", "on_expire")
_TSIG_KEYS = ("name", "algorithm", "secret_file")
on_expire_mode = choice(OnExpire, "on_expire mode")


def parse_tsig_secret(data: bytes) -> bytes:
    """The key from a secret file: the base64 secret alone, or a key file that holds a
    ``secret`` line (BIND's `tsig-keygen` output, Knot's `keymgr -t` YAML)."""
    text = data.strip()
    found = _SECRET_IN_FILE.search(text)
    if found is not None:
        text = found.group(1)
    try:
        secret = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            "holds no base64 TSIG secret (give the secret alone, or a tsig-keygen key file)"
        ) from None
    if len(secret) < 16:
        raise ValueError(f"the secret is {len(secret)} bytes; a TSIG key needs at least 16")
    return secret


def read_transfer(reader: Reader, entries: Entries, path: str) -> TransferConfig | None:
    """The transfer keys of source `path` (its `primaries` are given); None when unusable."""
    primaries = reader.items(entries, "primaries", path, _primary, empty="list at least one")
    unique = [item.value for item in reader.unique(primaries or [])]
    zone = MISSING
    if "zone" not in entries:
        reader.problem(
            entries["primaries"][0],
            join(path, "zone"),
            "required with primaries: the RPZ zone's name, e.g. rpz.example.gov",
        )
    else:
        zone = reader.value(entries, "zone", path, zone_name, MISSING)
    tsig = _read_tsig(reader, entries, path) if "tsig" in entries else None
    notify = reader.items(entries, "allow_notify", path, network)
    on_expire = reader.value(entries, "on_expire", path, on_expire_mode, OnExpire.KEEP)
    if not unique or zone is MISSING or tsig is MISSING or on_expire is MISSING:
        return None
    allow = tuple(item.value for item in notify) if notify is not None else ()
    if notify is None:
        allow = tuple(network(endpoint.host) for endpoint in unique)
    return TransferConfig(zone=zone, primaries=tuple(unique), tsig=tsig, allow_notify=allow,
                          on_expire=on_expire)  # fmt: skip


def _read_tsig(reader: Reader, entries: Entries, path: str) -> Any:
    """The key, or MISSING (with problems noted)."""
    key = join(path, "tsig")
    fields = reader.mapping(entries["tsig"][1], key, _TSIG_KEYS)
    if fields is None:
        return MISSING
    missing = [name for name in ("name", "secret_file") if name not in fields]
    for name in missing:
        reader.problem(entries["tsig"][0], join(key, name), "required")
    name = reader.value(fields, "name", key, zone_name, MISSING)
    algorithm = reader.value(fields, "algorithm", key, _algorithm, "hmac-sha256")
    secret = None
    if "secret_file" in fields:
        node = fields["secret_file"][1]
        text = reader.convert(node, join(key, "secret_file"), path_text)
        if text is not MISSING:
            secret = files.secret_file(
                reader, node, join(key, "secret_file"), text, parse_tsig_secret, MAX_SECRET_FILE
            )
    if missing or MISSING in (name, algorithm) or secret is None:
        return MISSING
    return TsigConfig(name=name, algorithm=algorithm, secret_file=secret)


def _primary(raw: object) -> Endpoint:
    if not isinstance(raw, str):
        raise ValueError(f"expected a primary such as 192.0.2.53 or 192.0.2.53:5300, got "
                         f"{describe(raw)}")  # fmt: skip
    return parse_endpoint(raw, default_port=53)


def _algorithm(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"expected one of {', '.join(TSIG_ALGORITHMS)}, got {describe(raw)}")
    text = raw.strip().lower().rstrip(".")
    if text in ("hmac-md5", "hmac-md5.sig-alg.reg.int"):
        raise ValueError("hmac-md5 must not be used any more (RFC 8945); use hmac-sha256")
    if text not in TSIG_ALGORITHMS:
        raise ValueError(
            f"unknown TSIG algorithm {raw!r}: use one of {', '.join(TSIG_ALGORITHMS)}"
            f"{suggest(text, TSIG_ALGORITHMS)}"
        )
    return text
