"""`dnswarden export`: the effective policy of one group as an RPZ zone, a hosts file or a list.

Agencies that keep BIND, Unbound or PowerDNS want the same decisions there, so the export is
computed from the compiled policy the server runs, for one group at one instant: the lists and
catalogue entries bound to the group (policies in force only), in precedence order, minus the
exemptions. Pure: the policy and the instant in, text lines out.

What the formats can say differs, and nothing is dropped silently (each loss is counted in the
header):

- RPZ (RFC-draft "DNS Response Policy Zones") says everything that matters: a rule ``x``
  becomes ``x`` and ``*.x``, each answer mode its RPZ action (``CNAME .`` NXDOMAIN, ``CNAME *.``
  NODATA, ``A 0.0.0.0`` + ``AAAA ::`` the null answer, the operator's addresses for `ip`), an
  exemption or allow rule ``rpz-passthru.``. RPZ lets the most specific trigger win, so every
  block rule inside an exempted subtree, and every rule of a later list already covered by an
  earlier one, is left out: re-importing the zone gives the same decisions (the round-trip
  test). `refused` has no RPZ action; it is written as NXDOMAIN.
- hosts files block single names: a rule ``x`` is written as ``0.0.0.0 x`` and its subdomains
  are lost (counted), which is why RPZ is the format to use.
- domain lists mean "this name and below" to most consumers: subtree rules only.

Label wildcards (``v*.x.com``) and regex rules have no equivalent in any of the three.

The header says on whose authority: for every list in force, where it comes from (catalogue
entry, file, directory or feed), the policy and its reference when a policy binds it, and each
decision a catalogue entry cites; and the catalogue entries a group exempts (`exempt_lists`,
written as passthru rules). Blocks exported to another resolver keep their provenance.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from resolver.config import Config
from resolver.lists.catalogue import reference_label
from resolver.lists.formats import (
    FLAG_ALLOW_BELOW,
    FLAG_ALLOW_SELF,
    FLAG_BELOW,
    FLAG_SELF,
    FLAG_WILD,
    answer_of,
)

__all__ = ["EXPORT_FORMATS", "Effective", "effective_policy", "render"]

EXPORT_FORMATS = ("rpz", "hosts", "domains")
DEFAULT_ORIGIN = "rpz.dnswarden.invalid"
_SELF, _BELOW, _WILD = FLAG_SELF, FLAG_BELOW, FLAG_WILD
_ALLOW_SELF, _ALLOW_BELOW = FLAG_ALLOW_SELF, FLAG_ALLOW_BELOW


@dataclass(slots=True)
class Effective:
    """The flat policy: name -> (FLAG_* bits, answer, list); answers are always explicit."""

    group: str
    names: dict[str, tuple[int, str, str]] = field(default_factory=dict)
    below: dict[str, str] = field(default_factory=dict)  # `*.x`'s answer where it is not x's
    unexportable: dict[str, int] = field(default_factory=dict)
    lists: list[str] = field(default_factory=list)
    addresses: tuple[str, ...] = ()
    citations: list[str] = field(default_factory=list)  # header comment lines, provenance

    def lost(self, reason: str, count: int = 1) -> None:
        self.unexportable[reason] = self.unexportable.get(reason, 0) + count


def _entries(matcher: Any) -> Iterator[tuple[str, int, str | None, str | None]]:
    """(name, FLAG_* bits, answer override, answer below it where that differs) of every
    exportable rule of a matcher; label wildcards and regexes come back with flags 0 and are
    counted by the caller."""
    rules = getattr(matcher, "rules", None)
    if rules is None:
        return
    if hasattr(matcher, "globs"):  # a CompiledMatcher
        for name, flags in rules():
            own = matcher.action(name) or answer_of(flags)
            below = (matcher.action(f"*.{name}") or answer_of(flags)) if flags & _BELOW else None
            yield name, flags, own, below if below != own else None
        for pattern, _, _ in matcher.globs():
            yield pattern, 0, None, None
        for pattern, _ in matcher.regexes():
            yield f"/{pattern}/", 0, None, None
        return
    for pattern, rule in rules():  # a DomainMatcher: every rule blocks its subtree
        first, _, parent = pattern.partition(".")
        if first == "*" and parent:
            yield parent, _BELOW | _WILD, rule.answer, None
        elif "*" in first:
            yield pattern, 0, rule.answer, None
        else:
            yield pattern, _SELF | _BELOW, rule.answer, None


def _covering(names: dict[str, tuple[int, str, str]], name: str, bits: int) -> bool:
    """Whether earlier decisions (blocks or exemptions) already decide every name the
    `bits` of `name` would cover: then an earlier list wins and this rule changes nothing."""
    own = names.get(name, (0, "", ""))[0]
    decided = own | ((own & (_ALLOW_SELF | _ALLOW_BELOW)) >> 3)  # allow bits as SELF/BELOW
    if not bits & ~decided & (_SELF | _BELOW):
        return True
    parts = name.split(".")
    for index in range(1, len(parts)):
        found = names.get(".".join(parts[index:]))
        if found is not None and found[0] & (_BELOW | _ALLOW_BELOW):
            return True
    return False


def effective_policy(config: Config, engine: Any, group_name: str, now: float) -> Effective:
    """Flatten what `group_name` gets at `now` (Unix seconds) from a `policy.PolicyEngine`
    built from `config` (whose exemptions and sinkhole addresses it reads)."""
    group = engine.groups.get(group_name)
    if group is None:
        known = ", ".join(sorted(engine.groups))
        raise ValueError(f"unknown group {group_name!r} (groups: {known})")
    addresses = tuple(str(address) for address in config.blocking.ip)
    result = Effective(group=group_name, addresses=addresses)
    group_config = next((g for g in config.groups if g.name == group_name), None)
    for rule in group_config.exempt if group_config is not None else ():
        _add_passthru(result, str(rule))
    for name, matcher in group.exemptions.lists:
        result.citations.append(f"group {group_name} exempts every name of catalogue entry {name}")
        _add_list_passthru(result, matcher)
    policies = {policy.name: policy for policy in config.policies}
    for binding in group.bindings:
        if not binding.in_force(now):
            continue
        result.lists.append(binding.list_name)
        result.citations.extend(_citations(binding))
        policy = policies.get(binding.policy) if binding.policy else None
        for rule in policy.exempt if policy is not None else ():
            _add_passthru(result, str(rule))
        for _, exempted in binding.exemptions.lists:
            _add_list_passthru(result, exempted)
        matcher = binding.matcher
        for allow in getattr(matcher, "allows", ()):  # global allow lists (`allow:`)
            for name, bits, _, _ in _entries(allow):
                if bits & (_SELF | _BELOW):
                    _add_passthru(result, name)
        inner = getattr(matcher, "inner", matcher)
        for name, bits, answer, below in _entries(inner):
            if not bits:
                result.lost("wildcard or regex rules")
                continue
            if bits & (_ALLOW_SELF | _ALLOW_BELOW) and name not in result.names:
                result.names[name] = (bits & (_ALLOW_SELF | _ALLOW_BELOW), "", binding.list_name)
            block = bits & (_SELF | _BELOW | _WILD)
            if not block & (_SELF | _BELOW):
                continue
            if _covering(result.names, name, block):
                continue
            own = result.names.get(name)
            if own is not None:  # keep what was decided earlier, add what it left open
                added = block & ~(own[0] | (own[0] >> 3)) & (_SELF | _BELOW | _WILD)
                if own[1]:
                    result.names[name] = (own[0] | added, own[1], own[2])
                else:  # only exemptions so far: the block's answer is this list's
                    chosen = answer or binding.answer
                    result.names[name] = (own[0] | added, chosen, binding.list_name)
                if below is not None and added & _BELOW:
                    result.below[name] = below
                continue
            result.names[name] = (block, answer or binding.answer, binding.list_name)
            if below is not None:
                result.below[name] = below
    return result


_KINDS = {"catalogue": "catalogue entry", "file": "list file", "dir": "list directory",
          "url": "list feed"}  # fmt: skip


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _citations(binding: Any) -> list[str]:
    """Comment lines saying where one bound list comes from and on whose authority."""
    source = binding.provenance
    where = f"{_KINDS.get(source.kind, source.kind)} {source.source}" if source else "unknown"
    lines = [f"list {binding.list_name}: {_one_line(where)}"]
    if binding.policy is not None:
        mandate = binding.reference if binding.censored else None
        lines.append(f"  policy {binding.policy}, reference: {_one_line(mandate or '(none)')}")
    for decision in source.decisions if source else ():
        verified = "" if decision.verified else " (not yet verified)"
        lines.append(
            f"  decision {reference_label(decision)}: {_one_line(decision.authority)}: "
            f"{_one_line(decision.url)}{verified}"
        )
    if binding.reference is None:
        lines.append("  cites no decision")
    return lines


def _add_list_passthru(result: Effective, matcher: Any) -> None:
    """Every rule of an exempted catalogue entry as passthru (its subtree, or below only for
    ``*.x``); label wildcards cannot be written and are counted."""
    for name, bits, _, _ in _entries(getattr(matcher, "inner", matcher)):
        if bits & (_SELF | _BELOW):
            _add_allow(result, name, (_ALLOW_SELF if bits & _SELF else 0) | _ALLOW_BELOW)
        else:
            result.lost("wildcard exemptions (exempt_lists)")


def _add_passthru(result: Effective, pattern: str) -> None:
    """An exemption (``x``: the name and below; ``=x``: the name alone) as allow bits."""
    if pattern.startswith("="):
        _add_allow(result, pattern[1:], _ALLOW_SELF)
    else:
        _add_allow(result, pattern, _ALLOW_SELF | _ALLOW_BELOW)


def _add_allow(result: Effective, name: str, bits: int) -> None:
    old = result.names.get(name)
    if old is None:
        result.names[name] = (bits, "", "exempt")
        return
    # An exact exemption of a blocked name keeps its subdomains blocked.
    kept = old[0] & ~(_SELF if bits & _ALLOW_SELF else 0) & ~(_BELOW if bits & _ALLOW_BELOW else 0)
    result.names[name] = (kept | bits, old[1], old[2])


def _rpz_records(answer: str, addresses: tuple[str, ...]) -> list[str]:
    if answer == "nodata":
        return ["CNAME *."]
    if answer in ("drop", "tcp_only"):
        return [f"CNAME rpz-{answer.replace('_', '-')}."]
    if answer == "null_ip":
        return ["A 0.0.0.0", "AAAA ::"]
    if answer == "ip" and addresses:
        return [f"{'AAAA' if ':' in a else 'A'} {a}" for a in addresses]
    return ["CNAME ."]


_HOSTS_LOST = "subdomain coverage (hosts files match single names)"
_ALONE_LOST = "rules for a name alone (domain lists mean the name and below)"
_ALLOW_LOST = "exemptions and allow rules (the rules they carve out are left out)"
_REFUSED = "refused answers, written as NXDOMAIN"
_LOCAL = "RPZ local data, written as NXDOMAIN"


def render(
    policy: Effective,
    fmt: str,
    *,
    origin: str = DEFAULT_ORIGIN,
    serial: int = 1,
    ttl: int = 60,
    generated: str = "",
) -> Iterator[str]:
    """The export as lines (no newlines), sorted by name so two exports diff cleanly."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r} (one of {', '.join(EXPORT_FORMATS)})")
    body = list(_rpz_body(policy) if fmt == "rpz" else _flat_body(policy, fmt))
    comment = ";" if fmt == "rpz" else "#"
    yield f"{comment} dnswarden export: effective policy of group {policy.group!r}"
    if generated:
        yield f"{comment} generated {generated}"
    yield f"{comment} lists, in precedence order: {', '.join(policy.lists) or '(none)'}"
    for reason, count in sorted(policy.unexportable.items()):
        yield f"{comment} not expressible in {fmt}: {count} x {reason}"
    for line in policy.citations:
        yield f"{comment} {line}"
    if fmt == "rpz":
        yield f"$ORIGIN {origin.rstrip('.')}."
        yield f"$TTL {ttl}"
        yield f"@ IN SOA localhost. hostmaster.localhost. {serial} 3600 600 86400 {ttl}"
        yield "@ IN NS localhost."
    yield from body


def _rpz_body(policy: Effective) -> Iterator[str]:
    for name, (bits, own, _) in sorted(policy.names.items()):
        for owner, blocks, allows, answer in (
            (name, bits & _SELF, bits & _ALLOW_SELF, own),
            (f"*.{name}", bits & _BELOW, bits & _ALLOW_BELOW, policy.below.get(name, own)),
        ):
            if allows:
                yield f"{owner} CNAME rpz-passthru."
            elif blocks:
                if answer == "refused":
                    policy.lost(_REFUSED)
                elif answer == "local":
                    policy.lost(_LOCAL)
                for record in _rpz_records(answer, policy.addresses):
                    yield f"{owner} {record}"


def _flat_body(policy: Effective, fmt: str) -> Iterator[str]:
    for name, (bits, _, _) in sorted(policy.names.items()):
        if bits & (_ALLOW_SELF | _ALLOW_BELOW):
            policy.lost(_ALLOW_LOST)
            continue
        if fmt == "hosts":
            if bits & _SELF:
                yield f"0.0.0.0 {name}"
            if bits & _BELOW:
                policy.lost(_HOSTS_LOST)
        elif bits & _SELF and bits & _BELOW:
            yield name
        elif bits & _BELOW:
            yield f"*.{name}"
        else:
            policy.lost(_ALONE_LOST)
