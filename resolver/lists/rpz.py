"""RPZ zone files (Response Policy Zones, draft-vixie-dnsop-dns-rpz): owner names are
triggers, record data are actions.

QNAME triggers become names with flags like any list's; `rpz-ip` and `rpz-client-ip` triggers
become address rules; actions with an answer of their own (DROP, TCP-only, local data) are kept
beside them. `rpz-nsdname`/`rpz-nsip` triggers cannot apply to a forwarder and are skipped and
counted. Files, HTTPS feeds and zone transfers all reach `parse_rpz` through
`formats.parse_rules`. Pure: bytes in, values out.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from resolver.lists.rules import (
    ANSWER_MASK,
    CLIENT_IP,
    DROP,
    FLAG_BELOW,
    FLAG_SELF,
    FLAG_WILD,
    LOCAL,
    NOT_APPLICABLE,
    PASSTHRU,
    RESPONSE_IP,
    TCP_ONLY,
    IpRule,
    ParsedRules,
    Record,
    add_pattern,
    answer_bits,
    answer_of,
    decode_line,
    is_address,
    list_name,
    show,
)
from resolver.protocol.names import BadName

_RPZ_CLASSES = frozenset({"in", "ch", "hs", "any"})
_TTL_RE = re.compile(r"\d+[smhdw]?(?:\d+[smhdw])*", re.I)
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|\S+')
# Zone structure and DNSSEC records: never a policy (Unbound ignores them too).
_RPZ_IGNORED_TYPES = frozenset({"NS", "DNAME", "DNSKEY", "DS", "RRSIG", "NSEC", "NSEC3",
                                "NSEC3PARAM"})  # fmt: skip
_CNAME_ACTIONS = {
    ".": "nxdomain",
    "*.": "nodata",
    "rpz-passthru.": PASSTHRU,
    "rpz-drop.": DROP,
    "rpz-tcp-only.": TCP_ONLY,
}



class _RpzState:
    """Where a zone file parse stands: origin, the zone apex, the owner of the last record."""

    __slots__ = ("apex", "last_owner", "origin")

    def __init__(self) -> None:
        self.origin: str | None = None
        self.apex: str | None = None
        self.last_owner: str | None = None


def _rpz_records(text_lines: list[str]) -> Iterable[tuple[int, str]]:
    """Logical records: comments (``;``) removed, parenthesised continuations joined (at most
    50 lines, so one stray parenthesis cannot swallow the rest of the file)."""
    pending: list[str] = []
    start = 0
    depth = 0
    for line_no, raw in enumerate(text_lines, start=1):
        line = _strip_rpz_comment(raw)
        if not pending:
            start = line_no
        opens, closes = line.count("("), line.count(")")
        if opens or closes:
            line = line.replace("(", " ").replace(")", " ")
        depth += opens - closes
        pending.append(line)
        if depth > 0 and len(pending) < 50:
            continue
        yield start, " ".join(pending) if len(pending) > 1 else line
        pending = []
        depth = 0
    if pending:
        yield start, " ".join(pending)


def _strip_rpz_comment(raw: str) -> str:
    if ";" not in raw:
        return raw.rstrip()
    if '"' not in raw:
        return raw.split(";", 1)[0].rstrip()
    quoted = False
    for index, char in enumerate(raw):
        if char == '"':
            quoted = not quoted
        elif char == ";" and not quoted:
            return raw[:index].rstrip()
    return raw.rstrip()


def _rpz_line(parsed: ParsedRules, state: _RpzState, line_no: int, line: str) -> None:
    if not line.strip():
        return
    if line.startswith("$"):
        fields = line.split()
        directive = fields[0].upper()
        if directive == "$ORIGIN" and len(fields) >= 2:
            state.origin = _absolute(fields[1], state.origin).rstrip(".").lower()
        elif directive == "$TTL":
            return
        else:
            parsed.rule_lines += 1
            parsed.bad(line_no, f"{show(fields[0])}: directive not supported here")
        return
    tokens = list(_TOKEN.finditer(line))
    if line[0] in " \t":
        owner = state.last_owner
        if owner is None:
            parsed.rule_lines += 1
            parsed.bad(line_no, "record without an owner name")
            return
    else:
        owner = _absolute(tokens.pop(0).group(), state.origin).rstrip(".").lower()
        state.last_owner = owner
    while tokens and (
        _TTL_RE.fullmatch(tokens[0].group()) or tokens[0].group().lower() in _RPZ_CLASSES
    ):
        tokens.pop(0)
    if not tokens:
        parsed.rule_lines += 1
        parsed.bad(line_no, "record without a type")
        return
    rtype = tokens[0].group().upper()
    rdata = line[tokens[1].start() :].strip() if len(tokens) > 1 else ""
    if rtype == "SOA":
        if state.apex is None:
            state.apex = owner
        return
    if rtype == "NS" and (owner == state.apex or (state.apex is None and owner == state.origin)):
        return
    parsed.rule_lines += 1
    apex = state.apex
    if apex:
        if owner == apex:
            parsed.skip(f"{rtype} record at the zone apex")
            return
        if not owner.endswith("." + apex):
            parsed.bad(line_no, f"{show(owner)} is outside the zone {apex!r}")
            return
        owner = owner[: -len(apex) - 1]
    trigger = owner.rsplit(".", 1)[-1]
    if trigger in NOT_APPLICABLE:
        parsed.skip(f"{trigger} trigger")
        return
    if rtype in _RPZ_IGNORED_TYPES:
        parsed.skip(f"{rtype} record")
        return
    action = _rpz_action(parsed, line_no, owner, rtype, rdata, state.origin)
    if action is None:
        return
    answer, record = action
    if trigger in (CLIENT_IP, RESPONSE_IP):
        _rpz_ip_rule(parsed, line_no, owner, trigger, answer, record)
    else:
        _rpz_name_rule(parsed, line_no, owner, answer, record)


def _absolute(name: str, origin: str | None) -> str:
    if name == "@":
        return (origin or "") + "."
    if name.endswith("."):
        return name
    return f"{name}.{origin}." if origin else name + "."


def _rpz_action(
    parsed: ParsedRules, line_no: int, owner: str, rtype: str, rdata: str, origin: str | None
) -> tuple[str, Record | None] | None:
    """(answer, local data record) of one policy record, as Unbound reads it: a CNAME to ``.``,
    ``*.``, ``rpz-passthru.``, ``rpz-drop.`` or ``rpz-tcp-only.`` is that action, ``A 0.0.0.0``
    / ``AAAA ::`` the null answer, any other record (a CNAME to a real name too) local data.
    None, with the line reported, for a record that is neither."""
    if rtype == "CNAME":
        target = rdata.lower()
        if " " in target or not target:
            parsed.bad(line_no, f"{show(owner)}: CNAME needs exactly one target name")
            return None
        known = _CNAME_ACTIONS.get(target if target.endswith(".") else target + ".")
        if known is not None:
            return known, None
        if target.rstrip(".").rsplit(".", 1)[-1].startswith("rpz-"):
            parsed.bad(
                line_no,
                f"{show(owner)}: CNAME {show(rdata)} is no RPZ action (known: rpz-passthru., "
                "rpz-drop., rpz-tcp-only.)",
            )
            return None
    elif (
        rtype in ("A", "AAAA") and is_address(rdata) and ipaddress.ip_address(rdata).is_unspecified
    ):
        return "null_ip", None
    try:
        return LOCAL, _local_record(rtype, rdata, origin)
    except ValueError as exc:
        parsed.bad(line_no, f"{show(owner)}: {rtype} {show(rdata)}: {exc}")
        return None


def _local_record(rtype: str, rdata: str, origin: str | None) -> Record:
    """The wire form of one record of local data; ValueError says why it has none. dnspython
    reads the RDATA (every type it knows, relative names against the zone's origin)."""
    import dns.exception
    import dns.name
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype

    try:
        code = dns.rdatatype.from_text(rtype)
        base = dns.name.from_text(origin) if origin else dns.name.root
        value = dns.rdata.from_text(dns.rdataclass.IN, code, rdata, origin=base, relativize=False)
        return int(code), value.to_wire()
    except dns.rdatatype.UnknownRdatatype:
        raise ValueError(f"unknown record type {rtype!r}") from None
    except (dns.exception.DNSException, ValueError, TypeError) as exc:
        raise ValueError(" ".join(str(exc).split()) or type(exc).__name__) from None


def _rpz_name_rule(
    parsed: ParsedRules, line_no: int, owner: str, answer: str, record: Record | None
) -> None:
    """A QNAME trigger: ``x`` for the name alone, ``*.x`` for every name below it. Each owner
    has one action (a later record with another one is skipped, as Unbound does); local data
    records of one owner add up."""
    if answer == PASSTHRU:
        add_pattern(parsed, line_no, owner, allow=True, answer=None, exact=True)
        return
    try:
        canonical, name = list_name(owner, allow_wildcard=True)
    except BadName as exc:
        parsed.bad(line_no, str(exc))
        return
    first, _, parent = canonical.partition(".")
    if first == "*":
        if not parent:
            parsed.bad(line_no, f"{show(owner)}: a wildcard at the top would match every name")
            return
        key, half, bits = parent.encode("ascii"), FLAG_BELOW, FLAG_BELOW | FLAG_WILD
    elif "*" in first:
        if answer == LOCAL:
            parsed.bad(line_no, f"{show(owner)}: local data needs a whole '*' label or none")
            return
        add_pattern(parsed, line_no, owner, allow=False, answer=answer, exact=True)
        return
    else:
        key, half, bits = name, FLAG_SELF, FLAG_SELF
    flags = parsed.flagged.get(key, 0)
    actions = parsed.rpz_actions
    if flags & half:
        before = actions.get(canonical)
        first_answer = before[0] if before is not None else answer_of(flags)
        if first_answer != answer:
            parsed.skip("record beside another action at its owner (the first is kept)")
        elif before is not None and record is not None and record not in before[1]:
            before[1].append(record)
        else:
            parsed.duplicates += 1
        return
    code = flags & ANSWER_MASK
    parsed.add(key, bits | answer_bits(answer))
    if record is not None:
        actions[canonical] = (answer, [record])
    elif code and code != answer_bits(answer):
        # `x` and `*.x` share the flags' one answer code, the first one read: the other
        # keeps its own action here (`x.test CNAME .` beside `*.x.test CNAME *.`).
        actions[canonical] = (answer, [])


def _rpz_ip_rule(
    parsed: ParsedRules,
    line_no: int,
    owner: str,
    trigger: str,
    answer: str,
    record: Record | None,
) -> None:
    try:
        network = rpz_network(owner[: -len(trigger) - 1] if owner != trigger else "")
    except ValueError as exc:
        parsed.bad(line_no, f"{show(owner)}: {exc}")
        return
    rules = parsed.client_ips if trigger == CLIENT_IP else parsed.response_ips
    before = rules.get(network)
    records = () if record is None else (record,)
    if before is None:
        rules[network] = IpRule(network, answer, owner, records)
    elif before.action != answer:
        parsed.skip("record beside another action at its owner (the first is kept)")
    elif record is not None and record not in before.records:
        rules[network] = IpRule(network, answer, before.owner, before.records + records)
    else:
        parsed.duplicates += 1


def rpz_network(labels_text: str) -> str:
    """The network an ``rpz-ip``/``rpz-client-ip`` owner encodes, given the labels before the
    trigger: the prefix length, then the address backwards, label by label
    (``24.0.2.0.192`` is 192.0.2.0/24; ``48.zz.db8.2001`` is 2001:db8::/48, ``zz`` standing
    for the longest run of zero groups). ValueError says what is wrong."""
    labels = labels_text.split(".") if labels_text else []
    if len(labels) < 2:
        raise ValueError(
            "an address trigger is PREFIX.ADDRESS-REVERSED.<trigger> (24.0.2.0.192.rpz-ip, "
            "48.zz.db8.2001.rpz-ip)"
        )
    length_text, parts = labels[0], labels[:0:-1]
    if not length_text.isdigit():
        raise ValueError(f"prefix length {length_text!r} is not a number")
    length = int(length_text)
    if len(parts) == 4 and all(part.isdigit() for part in parts):
        text, bits = ".".join(parts), 32
    else:
        if parts.count("zz") > 1:
            raise ValueError("'zz' may stand for one run of zero groups only")
        if "zz" in parts:
            at = parts.index("zz")
            text = ":".join(parts[:at]) + "::" + ":".join(parts[at + 1 :])
        elif len(parts) == 8:
            text = ":".join(parts)
        else:
            raise ValueError(
                f"{len(parts)} address labels: IPv4 takes 4, IPv6 8 (or fewer with 'zz')"
            )
        bits = 128
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address") from None
    if not 1 <= length <= bits:
        raise ValueError(f"prefix length {length} is outside 1-{bits}")
    try:
        return str(ipaddress.ip_network(f"{address}/{length}"))
    except ValueError:
        raise ValueError(f"{address}/{length} has address bits set beyond the prefix") from None


def parse_rpz(parsed: ParsedRules, data: bytes) -> None:
    """Add an RPZ zone file's rules to `parsed` (the one RPZ parser: files, feeds and
    transferred zones all come here through `formats.parse_rules`)."""
    state = _RpzState()
    lines = [decode_line(raw) for raw in data.split(b"\n")]
    for line_no, line in _rpz_records(lines):
        _rpz_line(parsed, state, line_no, line)
    if state.apex and not parsed.zone:
        parsed.zone = state.apex
