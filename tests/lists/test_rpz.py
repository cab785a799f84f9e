"""Tests for lists/rpz.py: RPZ zone files, triggers and actions, errors naming file and line."""

from __future__ import annotations

import pytest
from list_files import names_of, parse

from resolver.lists.formats import (
    ANSWER_CODES,
    FLAG_ALLOW_BELOW,
    FLAG_ALLOW_SELF,
    FLAG_BELOW,
    FLAG_SELF,
    FLAG_WILD,
    SUBTREE,
    answer_of,
    parse_rules,
)
from resolver.lists.rpz import rpz_network

# ----- RPZ ------------------------------------------------------------------------------------

RPZ_ZONE = """\
$TTL 300
$ORIGIN rpz.example.
@   IN SOA ns.rpz.example. hostmaster.rpz.example. (
        2024010101 ; serial
        3600 600 86400 300 )
    IN NS  ns.rpz.example.
tiktok.com          CNAME .
*.tiktok.com        CNAME .
nodata.test         CNAME *.
*.below.test        CNAME .
ok.tiktok.com       CNAME rpz-passthru.
*.ok.tiktok.com     CNAME rpz-passthru.
null.test   300 IN  A 0.0.0.0
null.test           AAAA ::
redirect.test       A 10.0.0.1
drop.test           CNAME rpz-drop.
abs.test.rpz.example. CNAME .
32.1.2.0.10.rpz-ip  CNAME .
ns.evil.rpz-nsdname CNAME .
walled.test         CNAME walled.garden.example.
txt.test            TXT "x ; y"
outside.example.    CNAME .
"""


def test_rpz_zone() -> None:
    parsed = parse(RPZ_ZONE, "rpz")
    nx, nodata, null, drop, local = (
        ANSWER_CODES[a] << 5 for a in ("nxdomain", "nodata", "null_ip", "drop", "local")
    )
    # DROP and local data (a redirect A, a CNAME to a name, TXT) are actions of their own now.
    assert names_of(parsed) == {
        "tiktok.com": SUBTREE | FLAG_WILD | nx,
        "nodata.test": FLAG_SELF | nodata,
        "below.test": FLAG_BELOW | FLAG_WILD | nx,
        "ok.tiktok.com": FLAG_ALLOW_SELF | FLAG_ALLOW_BELOW,
        "null.test": FLAG_SELF | null,
        "redirect.test": FLAG_SELF | local,
        "drop.test": FLAG_SELF | drop,
        "abs.test": FLAG_SELF | nx,
        "walled.test": FLAG_SELF | local,
        "txt.test": FLAG_SELF | local,
    }
    assert set(parsed.response_ips) == {"10.0.2.1/32"}
    assert parsed.skipped == {"rpz-nsdname trigger": 1}
    assert parsed.errors == ["f.txt:22: 'outside.example' is outside the zone 'rpz.example'"]
    assert parsed.duplicates == 1  # null.test A and AAAA are one rule


def test_rpz_fragment_without_soa_keeps_names() -> None:
    parsed = parse("x.com CNAME .\n*.x.com CNAME .\ny.org. IN CNAME *.\n", "rpz")
    assert set(names_of(parsed)) == {"x.com", "y.org"}
    assert answer_of(parsed.flagged[b"y.org"]) == "nodata"


@pytest.mark.parametrize(
    ("zone", "error"),
    [
        ("$INCLUDE other.zone\n", "f.txt:1: '$INCLUDE': directive not supported here"),
        ("x.com\n", "f.txt:1: record without a type"),
        ("  CNAME .\n", "f.txt:1: record without an owner name"),
        ("a..b CNAME .\n", "f.txt:1: 'a..b': empty label"),
    ],
)
def test_rpz_errors(zone: str, error: str) -> None:
    assert parse(zone, "rpz").errors == [error]


# ----- RPZ triggers and actions ---------------------------------------------------------------

RPZ_HEAD = (
    "$ORIGIN rpz.test.\n@ SOA ns.rpz.test. h.rpz.test. 1 3600 600 86400 300\n@ NS ns.rpz.test.\n"
)
A_1_2_3_4 = (1, bytes([1, 2, 3, 4]))


@pytest.mark.parametrize(
    ("record", "answer", "data"),
    [
        ("x.test CNAME .", "nxdomain", None),
        ("x.test CNAME *.", "nodata", None),
        ("x.test CNAME rpz-drop.", "drop", None),
        ("x.test CNAME rpz-tcp-only.", "tcp_only", None),
        ("x.test A 0.0.0.0", "null_ip", None),
        ("x.test AAAA ::", "null_ip", None),
        ("x.test A 1.2.3.4", "local", [A_1_2_3_4]),
        ("x.test 60 IN A 1.2.3.4", "local", [A_1_2_3_4]),
        ("x.test AAAA 2001:db8::1", "local", [(28, bytes.fromhex("20010db8" + "00" * 11 + "01"))]),
        ("x.test CNAME garden.example.", "local", [(5, b"\x06garden\x07example\x00")]),
        ("x.test CNAME garden", "local", [(5, b"\x06garden\x03rpz\x04test\x00")]),  # $ORIGIN
        ('x.test TXT "a b" c', "local", [(16, b"\x03a b\x01c")]),
        ("x.test MX 10 mx.example.", "local", [(15, b"\x00\x0a\x02mx\x07example\x00")]),
    ],
)
def test_rpz_qname_actions(record: str, answer: str, data: list[object] | None) -> None:
    parsed = parse(RPZ_HEAD + record + "\n", "rpz")
    assert parsed.errors == []
    assert answer_of(parsed.flagged[b"x.test"]) == answer
    assert parsed.flagged[b"x.test"] & (FLAG_SELF | FLAG_BELOW) == FLAG_SELF
    if data is None:
        assert "x.test" not in parsed.rpz_actions
    else:
        assert parsed.rpz_actions["x.test"] == (answer, data)


def test_rpz_passthru_is_an_allow_rule() -> None:
    parsed = parse(RPZ_HEAD + "ok.test CNAME rpz-passthru.\n*.ok.test CNAME rpz-passthru.\n", "rpz")
    assert parsed.flagged == {b"ok.test": FLAG_ALLOW_SELF | FLAG_ALLOW_BELOW}


def test_rpz_local_data_of_one_owner_adds_up_and_other_actions_are_skipped() -> None:
    zone = "x.test A 1.2.3.4\nx.test TXT t\nx.test A 1.2.3.4\nx.test CNAME .\n*.x.test CNAME .\n"
    parsed = parse(RPZ_HEAD + zone, "rpz")
    assert parsed.rpz_actions["x.test"] == ("local", [A_1_2_3_4, (16, b"\x01t")])
    assert parsed.duplicates == 1
    assert parsed.skipped == {"record beside another action at its owner (the first is kept)": 1}
    # `*.x.test` keeps its own action although the name's flags carry `x.test`'s (local).
    assert parsed.rpz_actions["*.x.test"] == ("nxdomain", [])
    assert parsed.flagged[b"x.test"] & SUBTREE == SUBTREE


@pytest.mark.parametrize(
    ("zone", "flag_answer", "actions"),
    [
        ("x.test CNAME .\n*.x.test CNAME *.\n", "nxdomain", {"*.x.test": ("nodata", [])}),
        ("*.x.test CNAME *.\nx.test CNAME .\n", "nodata", {"x.test": ("nxdomain", [])}),
        ("x.test CNAME rpz-drop.\n*.x.test CNAME rpz-tcp-only.\n", "drop",
         {"*.x.test": ("tcp_only", [])}),
        ("x.test CNAME .\n*.x.test CNAME .\n", "nxdomain", {}),
    ],
)  # fmt: skip
def test_a_name_and_its_wildcard_keep_their_own_actions(
    zone: str, flag_answer: str, actions: dict[str, tuple[str, list[object]]]
) -> None:
    parsed = parse(RPZ_HEAD + zone, "rpz")
    assert answer_of(parsed.flagged[b"x.test"]) == flag_answer
    assert parsed.rpz_actions == actions and not parsed.skipped


@pytest.mark.parametrize(
    ("owner", "network"),
    [
        ("32.1.2.0.192", "192.0.2.1/32"),
        ("24.0.2.0.192", "192.0.2.0/24"),
        ("8.0.0.0.10", "10.0.0.0/8"),
        ("128.1.zz.db8.2001", "2001:db8::1/128"),
        ("48.zz.db8.2001", "2001:db8::/48"),
        ("128.8.7.6.5.4.3.2.1", "1:2:3:4:5:6:7:8/128"),
        ("128.1.zz", "::1/128"),
        ("64.zz.1.2001", "2001:1::/64"),
    ],
)
def test_rpz_network(owner: str, network: str) -> None:
    assert rpz_network(owner) == network


@pytest.mark.parametrize(
    ("trigger", "key"),
    [("rpz-ip", "response_ips"), ("rpz-client-ip", "client_ips")],
)
def test_rpz_address_triggers(trigger: str, key: str) -> None:
    zone = (
        f"24.0.2.0.192.{trigger} CNAME .\n"
        f"32.5.2.0.192.{trigger} CNAME rpz-passthru.\n"
        f"32.6.2.0.192.{trigger} A 1.2.3.4\n"
        f"32.6.2.0.192.{trigger} A 1.2.3.4\n"
        f"48.zz.db8.2001.{trigger} CNAME rpz-drop.\n"
    )
    parsed = parse(RPZ_HEAD + zone, "rpz")
    assert parsed.errors == []
    rules = getattr(parsed, key)
    assert {net: (rule.action, rule.owner, rule.records) for net, rule in rules.items()} == {
        "192.0.2.0/24": ("nxdomain", f"24.0.2.0.192.{trigger}", ()),
        "192.0.2.5/32": ("passthru", f"32.5.2.0.192.{trigger}", ()),
        "192.0.2.6/32": ("local", f"32.6.2.0.192.{trigger}", (A_1_2_3_4,)),
        "2001:db8::/48": ("drop", f"48.zz.db8.2001.{trigger}", ()),
    }
    assert parsed.duplicates == 1
    assert parsed.flagged == {} and parsed.plain == {}
    assert parsed.accepted == 4


def test_rpz_name_server_triggers_are_counted_with_a_note() -> None:
    zone = "ns.evil.rpz-nsdname CNAME .\n*.evil.rpz-nsdname CNAME .\n32.1.1.1.1.rpz-nsip CNAME .\n"
    parsed = parse(RPZ_HEAD + zone, "rpz")
    assert parsed.errors == []
    assert parsed.skipped == {"rpz-nsdname trigger": 2, "rpz-nsip trigger": 1}
    summary = parsed.summary()
    assert summary["skipped"] == parsed.skipped
    assert str(summary["note"]).startswith("3 rpz-nsdname/rpz-nsip rules skipped")
    assert "note" not in parse(RPZ_HEAD + "x.test CNAME .\n", "rpz").summary()


@pytest.mark.parametrize(
    ("record", "error"),
    [
        ("bad.rpz-ip CNAME .", "f.txt:4: 'bad.rpz-ip': an address trigger is PREFIX."),
        ("rpz-ip CNAME .", "f.txt:4: 'rpz-ip': an address trigger is PREFIX."),
        ("x.1.2.0.192.rpz-ip CNAME .", "f.txt:4: 'x.1.2.0.192.rpz-ip': prefix length 'x' is"),
        ("33.1.2.0.192.rpz-ip CNAME .", "f.txt:4: '33.1.2.0.192.rpz-ip': prefix length 33 is"),
        ("0.1.2.0.192.rpz-ip CNAME .", "f.txt:4: '0.1.2.0.192.rpz-ip': prefix length 0 is"),
        ("24.1.2.0.192.rpz-client-ip CNAME .", "f.txt:4: '24.1.2.0.192.rpz-client-ip': 192.0.2"),
        ("32.1.2.300.192.rpz-ip CNAME .", "f.txt:4: '32.1.2.300.192.rpz-ip': '192.300.2.1' is"),
        ("64.zz.1.zz.rpz-ip CNAME .", "f.txt:4: '64.zz.1.zz.rpz-ip': 'zz' may stand for one"),
        ("64.1.db8.2001.rpz-ip CNAME .", "f.txt:4: '64.1.db8.2001.rpz-ip': 3 address labels"),
        ("128.g.zz.rpz-ip CNAME .", "f.txt:4: '128.g.zz.rpz-ip': '::g' is not an IP address"),
        ("x.test CNAME rpz-nope.", "f.txt:4: 'x.test': CNAME 'rpz-nope.' is no RPZ action"),
        ("x.test CNAME a b", "f.txt:4: 'x.test': CNAME needs exactly one target name"),
        ("x.test MX ten mx.example.", "f.txt:4: 'x.test': MX 'ten mx.example.': "),
        ("x.test A 1.2.3", "f.txt:4: 'x.test': A '1.2.3': "),
        ("x.test BOGUS data", "f.txt:4: 'x.test': BOGUS 'data': unknown record type 'BOGUS'"),
        ("v*.x.test A 1.2.3.4", "f.txt:4: 'v*.x.test': local data needs a whole '*' label"),
        ("*.rpz.test. CNAME .", "f.txt:4: '*': a wildcard at the top would match every name"),
    ],
)
def test_rpz_malformed_records_name_file_line_and_owner(record: str, error: str) -> None:
    parsed = parse(RPZ_HEAD + record + "\n", "rpz")
    assert len(parsed.errors) == 1, parsed.errors
    assert parsed.errors[0].startswith(error), parsed.errors
    assert parsed.accepted == 0


def test_rpz_structure_records_are_skipped() -> None:
    zone = "x.test NS ns.example.\nx.test DNAME y.example.\nx.test RRSIG A 8 2 300 1 2 3 x. AA==\n"
    assert parse(RPZ_HEAD + zone, "rpz").skipped == {
        "NS record": 1,
        "DNAME record": 1,
        "RRSIG record": 1,
    }


def test_a_transferred_zone_reads_as_its_file_does() -> None:
    """Zone transfers are written out as text (`transfer.zone_text`) for this very parser: the
    same zone by file and by transfer gives the same rules."""
    import dns.zone

    from resolver.lists.transfer import zone_text

    text = (
        "$ORIGIN rpz.test.\n$TTL 300\n@ SOA ns.rpz.test. h.rpz.test. 7 3600 600 86400 300\n"
        "@ NS ns.rpz.test.\nnx.test CNAME .\n*.nx.test CNAME .\nnd.test CNAME *.\n"
        "ok.nx.test CNAME rpz-passthru.\ndrop.test CNAME rpz-drop.\ntcp.test CNAME rpz-tcp-only.\n"
        "local.test A 192.0.2.1\nlocal.test TXT \"a b\"\ncname.test CNAME garden.example.\n"
        "24.0.2.0.192.rpz-ip CNAME .\n48.zz.db8.2001.rpz-ip AAAA 2001:db8::1\n"
        "32.2.0.0.127.rpz-client-ip CNAME rpz-drop.\nns.evil.rpz-nsdname CNAME .\n"
    )
    by_file = parse(text, "rpz")
    zone = dns.zone.from_text(text, origin="rpz.test.", relativize=False)
    by_transfer = parse_rules(zone_text(zone), "xfr", "rpz")
    assert by_file.errors == by_transfer.errors == []
    assert names_of(by_transfer) == names_of(by_file)
    assert by_transfer.rpz_actions == by_file.rpz_actions
    assert by_transfer.client_ips == by_file.client_ips
    assert by_transfer.response_ips == by_file.response_ips
    assert by_transfer.skipped == by_file.skipped == {"rpz-nsdname trigger": 1}


def test_the_documented_rpz_zone_parses_as_documented() -> None:
    from doc_examples import DOCS, snippet

    zone = snippet(DOCS / "feeds.md", "$ORIGIN rpz.example.gov.")
    parsed = parse_rules(zone.encode(), "feeds.md", "rpz")
    assert parsed.errors == []
    answers = {name.decode(): answer_of(flags) for name, flags in parsed.flagged.items()}
    assert answers == {
        "malware.example": "nxdomain",
        "tracker.example": "nodata",
        "c2.example": "drop",
        "amplifier.example": "tcp_only",
        "phish.example": "local",
        "lure.example": "local",
        "intranet.example": None,
    }
    assert parsed.flagged[b"intranet.example"] == FLAG_ALLOW_SELF
    assert len(parsed.rpz_actions["phish.example"][1]) == 2
    assert set(parsed.response_ips) == {"203.0.113.0/24", "2001:db8::/48"}
    assert {n: r.action for n, r in parsed.client_ips.items()} == {
        "192.0.2.7/32": "nxdomain",
        "192.0.2.8/32": "passthru",
    }
    assert parsed.skipped == {"rpz-nsdname trigger": 1}
