"""The zone-transfer keys of a source (`primaries`, `zone`, `tsig`, `allow_notify`): what a good
one becomes, and every mistake reported with its line and key."""

from __future__ import annotations

import base64
import ipaddress
from pathlib import Path

import pytest

from resolver.config import ConfigError, Endpoint, ListFormat, parse_config
from resolver.config.transfer import OnExpire, TransferConfig, TsigConfig

SECRET = base64.b64encode(bytes(range(32))).decode()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "xfr.key"
    path.write_text(f'key "k" {{ algorithm hmac-sha256; secret "{SECRET}"; }};\n')
    return path


def parse(text: str, base: Path) -> object:
    return parse_config(text, "test.yaml", base_dir=base, known_lists=frozenset({"tiktok"}))


def problems(text: str, base: Path) -> list[tuple[int, str, str]]:
    with pytest.raises(ConfigError) as info:
        parse(text, base)
    return [(p.line, p.key, p.message) for p in info.value.problems]


def test_a_transfer_source_parses_to_its_zone_primaries_key_and_notifiers(
    key_file: Path, tmp_path: Path
) -> None:
    config = parse(
        f"""sources:
  national:
    primaries: ["192.0.2.53", "192.0.2.54:5300", "[2001:db8::53]"]
    zone: RPZ.Example.Gov.
    tsig: {{name: k, secret_file: {key_file.name}}}
    max_shrink: 20%
blocking:
  lists: [national]
""",
        tmp_path,
    )
    (source,) = config.sources  # type: ignore[attr-defined]
    assert source.format is ListFormat.RPZ and source.remote and source.url is None
    assert source.max_shrink == 0.2
    assert source.transfer == TransferConfig(
        zone="rpz.example.gov",
        primaries=(
            Endpoint("192.0.2.53", 53),
            Endpoint("192.0.2.54", 5300),
            Endpoint("2001:db8::53", 53),
        ),
        tsig=TsigConfig("k", "hmac-sha256", str(key_file)),
        allow_notify=tuple(
            ipaddress.ip_network(a) for a in ("192.0.2.53", "192.0.2.54", "2001:db8::53")
        ),
    )
    assert source.location == "xfr://192.0.2.53:53/rpz.example.gov"


def test_allow_notify_replaces_the_primaries_as_notifiers(tmp_path: Path) -> None:
    config = parse(
        "sources:\n  n:\n    primaries: [192.0.2.53]\n    zone: rpz.test\n"
        "    allow_notify: [10.0.0.0/8]\n",
        tmp_path,
    )
    (source,) = config.sources  # type: ignore[attr-defined]
    assert source.transfer.allow_notify == (ipaddress.ip_network("10.0.0.0/8"),)
    assert source.transfer.tsig is None


@pytest.mark.parametrize(
    ("line", "expected"),
    [("", OnExpire.KEEP), ("    on_expire: keep\n", OnExpire.KEEP),
     ("    on_expire: Missing\n", OnExpire.MISSING)],
)  # fmt: skip
def test_on_expire_keeps_the_rules_unless_it_says_missing(
    tmp_path: Path, line: str, expected: OnExpire
) -> None:
    config = parse(
        f"sources:\n  n:\n    primaries: [192.0.2.53]\n    zone: rpz.test\n{line}", tmp_path
    )
    (source,) = config.sources  # type: ignore[attr-defined]
    assert source.transfer.on_expire is expected


BAD = [
    (
        "sources:\n  n:\n    primaries: []\n    zone: rpz.test\n",
        [(3, "sources.n.primaries", "list at least one")],
    ),
    (
        "sources:\n  n:\n    primaries: [ns.example.gov]\n    zone: rpz.test\n",
        [(3, "sources.n.primaries[0]", "is a hostname")],
    ),
    (
        "sources:\n  n:\n    primaries: [192.0.2.1, 192.0.2.1]\n    zone: rpz.test\n",
        [(3, "sources.n.primaries[1]", "listed twice")],
    ),
    (
        "sources:\n  n:\n    primaries: [192.0.2.1]\n",
        [(3, "sources.n.zone", "required with primaries")],
    ),
    (
        "sources:\n  n:\n    primaries: [192.0.2.1]\n    zone: '*.x'\n",
        [(4, "sources.n.zone", "")],
    ),
    (
        "sources:\n  n:\n    primaries: [192.0.2.1]\n    zone: rpz.test\n    format: hosts\n",
        [(5, "sources.n.format", "an RPZ zone")],
    ),
    (
        "sources:\n  n:\n    primaries: [192.0.2.1]\n    zone: rpz.test\n    refresh: 1h\n",
        [(5, "sources.n.refresh", "SOA refresh")],
    ),
    (
        "sources:\n  n:\n    primaries: [192.0.2.1]\n    url: https://x.org/l\n    zone: z.t\n",
        [(4, "sources.n.url", "give only one of url, path, dir or primaries")],
    ),
    (
        "sources:\n  n:\n    path: /etc/hosts\n    zone: rpz.test\n",
        [(4, "sources.n.zone", "only used with primaries (this source is a path)")],
    ),
    (
        "sources:\n  n:\n    primaries: [192.0.2.1]\n    zone: rpz.test\n    tsig: {name: k}\n",
        [(5, "sources.n.tsig.secret_file", "required")],
    ),
    (
        "sources:\n  n:\n    primaries: [192.0.2.1]\n    zone: rpz.test\n"
        "    tsig: {name: k, algorithm: hmac-md5, secret_file: xfr.key}\n",
        [(5, "sources.n.tsig.algorithm", "hmac-md5 must not be used")],
    ),
    (
        "sources:\n  n:\n    primaries: [192.0.2.1]\n    zone: rpz.test\n"
        "    tsig: {name: k, secret_file: weak.key}\n",
        [(5, "sources.n.tsig.secret_file", "at least 16")],
    ),
    (
        "sources:\n  n:\n    primaries: [192.0.2.1]\n    zone: rpz.test\n"
        "    allow_notify: [10.0.0.1/8]\n",
        [(5, "sources.n.allow_notify[0]", "host bits set")],
    ),
    (
        "sources:\n  n:\n    primaries: [192.0.2.1]\n    zone: rpz.test\n"
        "    on_expire: drop\n",
        [(5, "sources.n.on_expire", "use one of keep, missing")],
    ),
    (
        "sources:\n  n:\n    url: https://x.org/l\n    on_expire: keep\n",
        [(4, "sources.n.on_expire", "only used with primaries (this source is a url)")],
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_each_mistake_is_reported_with_its_line_and_key(
    text: str, expected: list[tuple[int, str, str]], key_file: Path, tmp_path: Path
) -> None:
    (tmp_path / "weak.key").write_text(base64.b64encode(b"short").decode())
    found = problems(text, tmp_path)
    assert [(line, key) for line, key, _ in found] == [(line, key) for line, key, _ in expected]
    for (_, _, message), (_, _, part) in zip(found, expected, strict=True):
        assert part in message
