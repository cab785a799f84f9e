"""RFC 5424 messages from audit lines (`resolver.observe.syslog`)."""

from __future__ import annotations

import json

import pytest

from resolver.observe.syslog import format_message, octet_counted, structured_data

LINE = json.dumps(
    {"timestamp": "2026-01-02T03:04:05.678Z", "level": "info", "event": "blocked",
     "client": "10.0.0.0/24", "qname": "x.tiktok.com", "policy": None, "qtypes": ["A", "AAAA"],
     "repeated": 2, "reference": 'decision "7" [annex] \\ B'},
    separators=(",", ":"),
)  # fmt: skip


def test_a_block_event_becomes_one_rfc5424_message() -> None:
    message = format_message(LINE, facility=16, hostname="gw1", app_name="dnswarden",
                             procid=42, sd_id="dnswarden@32473").decode()  # fmt: skip
    header, _, rest = message.partition(" [")
    assert header == "<134>1 2026-01-02T03:04:05.678Z gw1 dnswarden 42 blocked"
    assert rest.endswith("] " + LINE)
    assert (
        '[dnswarden@32473 client="10.0.0.0/24" qname="x.tiktok.com" policy="null" '
        'qtypes="[\\"A\\",\\"AAAA\\"\\]" repeated="2" '
        'reference="decision \\"7\\" [annex\\] \\\\ B"]'
    ) in message


@pytest.mark.parametrize(("level", "pri"), [("error", 131), ("warning", 132), ("debug", 135)])
def test_the_level_sets_the_severity(level: str, pri: int) -> None:
    line = json.dumps({"timestamp": "t", "level": level, "event": "x"})
    assert format_message(line, facility=16, hostname="h", app_name="a", procid=1,
                          sd_id="s@1").startswith(f"<{pri}>1 ".encode())  # fmt: skip


def test_header_fields_without_a_value_are_nil_and_names_are_cleaned() -> None:
    message = format_message("not json", facility=1, hostname="", app_name="a b",
                             procid=7, sd_id="s@1")  # fmt: skip
    assert message == b"<13>1 - - ab 7 - [s@1] not json"
    assert structured_data("s@1", {"a b=]": 1}) == '[s@1 ab="1"]'


def test_octet_counting() -> None:
    assert octet_counted(b"<13>1 - - a 1 - - hi") == b"20 <13>1 - - a 1 - - hi"
