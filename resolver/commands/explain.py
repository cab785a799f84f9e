"""`dnswarden explain`: why a client gets the answer it gets, from the config alone.

An operator asked "why is this blocked for the press office?" needs the whole chain: the client's
group and the subnet that put it there, every list that matches the name, which of them applies
at that instant and why the others do not (window, exemption), the legal reference (the policy's,
then the catalogue entry's decisions in full, or the operator list's file or URL) and the answer
the device will see. This walks the same compiled policy the server uses, so it cannot disagree
with it. Pure: the config and the instant are passed in.
"""

from __future__ import annotations

import datetime
import ipaddress
from typing import Any

from resolver.config import ListKind
from resolver.lists.catalogue import ListError, load_catalogue_entry
from resolver.lists.provenance import decision_fields
from resolver.policy.engine import Action, Binding, Group
from resolver.protocol.names import from_text, to_text
from resolver.protocol.wire import TYPE_NAMES, type_name
from resolver.state import ResolverState

_TYPE_NUMBERS = {name: number for number, name in TYPE_NAMES.items()}


def qtype_number(text: str) -> int:
    """`A`, `aaaa`, `HTTPS`, `TYPE65` or `65` → the type number; ValueError otherwise."""
    upper = text.upper()
    if upper in _TYPE_NUMBERS:
        return _TYPE_NUMBERS[upper]
    digits = upper.removeprefix("TYPE")
    if digits.isdigit() and 0 <= int(digits) <= 65535:
        return int(digits)
    raise ValueError(f"unknown query type {text!r}")


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat()


def _matching_subnet(group: Group, client: str) -> str | None:
    address = ipaddress.ip_address(client)
    containing = [
        net
        for net in map(ipaddress.ip_network, group.subnets)
        if net.version == address.version and address in net
    ]
    return str(max(containing, key=lambda net: net.prefixlen)) if containing else None


def _catalogue_info(list_name: str, catalogue: frozenset[str]) -> dict[str, Any] | None:
    """What the catalogue says of `list_name`, when the config uses it as a catalogue entry."""
    if list_name not in catalogue:
        return None
    try:
        loaded = load_catalogue_entry(list_name)
    except ListError:
        return None
    return {
        "name": loaded.name,
        "vendor": loaded.vendor,
        "dns_coverage": loaded.dns_coverage,
        "coverage_note": loaded.coverage_note,
    }


def _provenance(binding: Binding) -> dict[str, Any]:
    """What a block through `binding` cites, and where that comes from."""
    source = binding.provenance
    cited_by = None
    if binding.reference is not None:
        cited_by = "policy" if binding.censored else "list"  # censored: the policy's own
    return {
        "reference": binding.reference,
        "reference_from": cited_by,
        "source": {"kind": source.kind, "location": source.source} if source else None,
        "decisions": [decision_fields(d) for d in source.decisions] if source else [],
    }


def _answer_text(state: ResolverState, mode: str, ttl: int, censored: bool, qtype: int) -> str:
    ede = "EDE 16 (Censored)" if censored else "EDE 15 (Blocked)"
    ips = state.config.blocking.ip
    if mode in ("null_ip", "ip") and qtype in (1, 28):
        version = 4 if qtype == 1 else 6
        if mode == "null_ip":
            addresses = ["0.0.0.0" if version == 4 else "::"]
        else:
            addresses = [str(a) for a in ips if a.version == version]
        if addresses:
            return f"{type_name(qtype)} {', '.join(addresses)} (TTL {ttl}), EDE 4 (Forged Answer)"
    if mode == "drop":
        return "no reply at all (RPZ DROP)"
    if mode == "tcp_only":
        return "over UDP an empty reply with TC set (RPZ TCP-only); over TCP, DoT, DoH forwarded"
    if mode == "local":
        return f"the rule's own records (RPZ local data, TTL {ttl}), EDE 4 (Forged Answer); " \
            "NODATA for a type it has none of"
    if mode == "nxdomain":
        return f"NXDOMAIN with a SOA (negative TTL {ttl}), {ede}"
    if mode == "refused":
        return f"REFUSED, {ede}"
    return f"NOERROR with no records (NODATA) and a SOA (negative TTL {ttl}), {ede}"


def explain(state: ResolverState, name: str, client: str, qtype: int,
            at: datetime.datetime, device: str = "") -> dict[str, Any]:  # fmt: skip
    """The full story for `client` (over DoT or DoH with `device`, "" for none) asking `name` at
    `at`, as a JSON-ready dict."""
    qname = from_text(name)
    now = at.timestamp()
    result: dict[str, Any] = {
        "name": to_text(qname),
        "qtype": type_name(qtype),
        "client": client,
        "at": at.astimezone(datetime.UTC).isoformat(),
    }
    if device:
        result["device"] = device
    if not state.access.allows(client):
        result.update(
            action="refuse",
            group=None,
            answer="REFUSED, EDE 18 (Prohibited): client not in clients.allow",
        )
        return result
    engine = state.policy
    group = engine.group_of(client, device)
    if group is None:
        result.update(
            action="refuse",
            group=None,
            answer="REFUSED, EDE 18 (Prohibited): client in no group and "
            "clients.default_group is refuse",
        )
        return result
    subnet = _matching_subnet(group, client)
    if device and device in group.devices:
        matched_by = f"device {device}"
    else:
        matched_by = subnet or f"clients.default_group ({group.name})"
    result["group"] = {"name": group.name, "matched_by": matched_by}
    decision = engine.decide(client, qname, qtype, now, device)
    result["action"] = decision.action.value
    catalogue = frozenset(
        ref.name for ref in state.config.list_refs if ref.kind is ListKind.CATALOGUE
    )
    matches = []
    for candidate in engine.candidates(group, qname, now, client):
        binding = candidate.binding
        matches.append(
            {
                "list": binding.list_name,
                "catalogue": _catalogue_info(binding.list_name, catalogue),
                "rule": candidate.rule.pattern,
                "policy": binding.policy,
                **_provenance(binding),
                "in_force": {"from": _iso(binding.valid_from), "until": _iso(binding.valid_until)},
                "applies": candidate.applies,
                "why_not": candidate.why_not or None,
            }
        )
    result["matches"] = matches
    if decision.action is Action.BLOCK:
        applied = next(m for m in matches if m["applies"])
        result["decision"] = {
            "policy": decision.policy,
            "list": decision.list_name,
            "rule": decision.rule,
            "reference": decision.reference,
            "reference_from": applied["reference_from"],
            "source": applied["source"],
            "decisions": applied["decisions"],
            "in_force": {"from": _iso(decision.valid_from), "until": _iso(decision.valid_until)},
        }
        result["answer"] = _answer_text(
            state, decision.answer, decision.ttl, decision.censored, qtype
        )
    else:
        result["answer"] = "forwarded upstream (not blocked)"
    return result


def render_text(result: dict[str, Any]) -> str:
    asker = result["client"] + (f" (device {result['device']})" if "device" in result else "")
    lines = [f"{result['name']} {result['qtype']} asked by {asker} at {result['at']}"]
    group = result.get("group")
    if group:
        lines.append(f"  group:   {group['name']} (matched by {group['matched_by']})")
    lines.append(f"  verdict: {result['action'].upper()}")
    decision = result.get("decision")
    if decision:
        by = f"policy {decision['policy']}" if decision["policy"] else "blocking lists"
        lines.append(f"  by:      {by}, list {decision['list']}, rule {decision['rule']}")
        lines.extend(_provenance_lines(decision))
        window = decision["in_force"]
        if window["from"] or window["until"]:
            lines.append(
                f"  in force: {window['from'] or '(open)'} → {window['until'] or '(open)'}"
            )
    lines.append(f"  answer:  {result['answer']}")
    for match in result.get("matches", []):
        state = "applies" if match["applies"] else f"does not apply: {match['why_not']}"
        via = f"policy {match['policy']}" if match["policy"] else "always"
        lines.append(f"  - list {match['list']} rule {match['rule']} ({via}): {state}")
        info = match["catalogue"]
        if info and info["dns_coverage"] == "partial":
            lines.append(f"    partial DNS coverage: {info['coverage_note']}")
    return "\n".join(lines)


_SOURCE_KINDS = {"catalogue": "catalogue entry", "file": "list file", "dir": "list directory",
                 "url": "list feed"}  # fmt: skip


def _provenance_lines(decision: dict[str, Any]) -> list[str]:
    """The reference of a block, where it comes from, and a catalogue entry's decisions."""
    lines = []
    source = decision["source"]
    where = f"{_SOURCE_KINDS.get(source['kind'], source['kind'])} {decision['list']}" if source \
        else f"list {decision['list']}"  # fmt: skip
    if decision["reference_from"] == "policy":
        lines.append(f"  reference: {decision['reference']} (policy {decision['policy']})")
    elif decision["reference_from"] == "list":
        lines.append(f"  reference: {decision['reference']} ({where})")
    else:
        lines.append(f"  reference: none ({where} cites no decision, and no policy reference)")
    if source and source["kind"] != "catalogue":
        lines.append(f"  source:  {source['location']}")
    if decision["decisions"]:
        lines.append(f"  decisions of {where} ({source['location']}):")
        for cited in decision["decisions"]:
            unverified = "" if cited["verified"] else " (not yet verified)"
            lines.append(f"    {cited['label']}: {cited['authority']}: {cited['url']}{unverified}")
    return lines
