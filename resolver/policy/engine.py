"""Who is blocked from what, when, and on whose authority: groups, dated policies, exemptions.

Government bans are scoped and dated (Belgium's 2023 TikTok ban covered federal officials' work
phones, "for a preliminary six months"), so a block is not a property of a name alone. `decide`
answers for one client, one name and one instant, and returns a `Decision` that carries its
cause: the group, the policy, the list (an operator list or a catalogue entry), the rule and the
reference. A block found in a forwarded answer (`resolver.policy.inspection`) is a `Decision` too.

Provenance: every block cites something. A policy's own `reference` comes first; otherwise the
list's citation (`resolver.lists.provenance`): a catalogue entry's decisions, an operator list's
file or URL. The citation strings, the decision labels and the EDE text are made once per
binding when the engine is built, so a block copies references and formats nothing.

Cost per query: the client's group is a longest-prefix match over per-prefix-length maps
(memoised), independent of the number of groups; then one O(labels) lookup per list bound to that
group, in precedence order — policies (in config order), the group's own lists, then the
`blocking.lists` every client gets — independent of the number of rules. Exemptions are looked
up only when something would block. Pure: `now` is passed in as Unix seconds.

A name that no list of a group matches is remembered for that group (at most
`UNLISTED_MEMO_LIMIT` names over all groups, forgotten all at once when full): lists only change
by a reload, which builds a new engine, and most queries repeat an allowed name asked recently
(every cache hit does). Only those: the memo is a set of `bytes` per group, which the cyclic GC
never tracks, so a flood of new names (unique subdomains, the benchmark's 200,000 blocked names)
does not fill the young generation and pause the loop for milliseconds. A listed name is looked
up again each time (a few microseconds), and whether a policy is in force and whether an
exemption applies are judged per query anyway: they depend on `now`.

A block's `Decision` depends only on the group, the binding (list, policy, reference, window,
EDE text) and the name (which of the list's rules matches it, and where the blocked zone starts
in it), so one is kept per group and name, with the binding that made it, and reused from the
name's second sight (at most `BLOCK_MEMO_LIMIT` over all groups, forgotten all at once when
full): a name asked again (by another client, with another type or flags) costs a dict lookup
instead of building a seventeen-field object. Keyed by the name the query carries, whose hash its
bytes keep, not by a tuple of binding, rule and zone: that key, made and hashed twice and
compared with the last on every first sight, cost more than the compiled `Decision` it could
save (~1.5k instructions against ~0.6k), and most blocked names are first sights. Seen once, only
the name's hash is kept (an int, which the cyclic GC never tracks), and the last decision made,
which an immediate repeat (the AAAA after an A) gets as it is: a stream of distinct blocked names
would otherwise leave thousands of decisions alive for a moment each, for the collector to walk
and the memo to clear. Decisions are never changed, so sharing them is safe.
"""

from __future__ import annotations

import enum
import ipaddress
import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from resolver.config import (
    DEFAULT_GROUP,
    REFUSE,
    Config,
    ExemptRule,
    GroupConfig,
    PolicyConfig,
)
from resolver.lists.compiled import CompiledMatcher, ListScreen, screenable
from resolver.lists.formats import PASSTHRU
from resolver.lists.matcher import BlockRule, DomainMatcher, Matcher, NetworkRules
from resolver.lists.provenance import Provenance
from resolver.policy.access import CLIENT_MEMO_LIMIT, client_address
from resolver.protocol.names import from_text

UNLISTED_MEMO_LIMIT = 16384
BLOCK_MEMO_LIMIT = 4096
SIGHTED_LIMIT = 2 * BLOCK_MEMO_LIMIT
"""Hashes of block keys seen once that the engine keeps (forgotten all at once when full)."""
EDE_TEXT_BUDGET = 160
"""Bytes of EDE EXTRA-TEXT a block's cause may take (the answer builder cuts at 200), leaving
room for " via CNAME name" after it; a longer reference is shortened to fit."""


class Action(enum.Enum):
    ALLOW = "allow"
    BLOCK = "block"
    REFUSE = "refuse"


@dataclass(slots=True, unsafe_hash=True, init=False)
class Decision:
    """What to do with one query, and exactly why: for its question (`PolicyEngine.decide`) or
    for the answer an upstream gave it (`resolver.policy.inspection.verdict`).

    Never changed once made (the engine and the pipeline's answer memo share them; make a new
    one with `dataclasses.replace`), but not a frozen dataclass: a frozen one's `__init__`
    sets each of its fields through `object.__setattr__`, about a fifth of the CPU
    of a block whose decision is new (a listed name asked for the first time). Its `__init__`
    is written out for the same reason: the one `dataclass` generates stays interpreted Python
    in the compiled core (mypyc leaves it to the dataclasses module); this one is compiled."""

    action: Action
    group: str
    policy: str | None = None  # None: blocked by blocking.lists or the group's own lists
    list_name: str | None = None  # the list (or catalogue entry) that matched
    rule: str | None = None  # the pattern that matched
    reference: str | None = None  # the policy's mandate, else the list's citation
    answer: str = ""  # answer mode for a block: the rule's, else the policy's, else the global one
    ttl: int = 0
    zone_offset: int = 0  # where the blocked zone starts inside the wire qname
    valid_from: float | None = None
    valid_until: float | None = None
    reason: str = ""  # the cause in words where the fields do not give it: a refusal, an IP block
    cname: bytes | None = None  # for a block found in an answer: the answer name that matched
    decisions: tuple[str, ...] = ()  # a catalogue entry's decisions, as short labels
    cause: str = ""  # the EDE EXTRA-TEXT of the blocked answer, made when the engine was built
    # A block mandated by an authority other than the operator (RFC 8914 EDE 16): through a
    # policy that carries a reference. A catalogue entry applied by the operator is EDE 15.
    censored: bool = False
    data: tuple[tuple[int, bytes], ...] = ()  # RPZ local data to answer with: (type, RDATA)

    def __init__(
        self,
        action: Action,
        group: str,
        policy: str | None = None,
        list_name: str | None = None,
        rule: str | None = None,
        reference: str | None = None,
        answer: str = "",
        ttl: int = 0,
        zone_offset: int = 0,
        valid_from: float | None = None,
        valid_until: float | None = None,
        reason: str = "",
        cname: bytes | None = None,
        decisions: tuple[str, ...] = (),
        cause: str = "",
        censored: bool = False,
        data: tuple[tuple[int, bytes], ...] = (),
    ) -> None:
        self.action = action
        self.group = group
        self.policy = policy
        self.list_name = list_name
        self.rule = rule
        self.reference = reference
        self.answer = answer
        self.ttl = ttl
        self.zone_offset = zone_offset
        self.valid_from = valid_from
        self.valid_until = valid_until
        self.reason = reason
        self.cname = cname
        self.decisions = decisions
        self.cause = cause
        self.censored = censored
        self.data = data


class Exemptions:
    """Allow rules: a domain exempts itself and its subdomains, `=name` only that name, and an
    exempted catalogue entry (`exempt_lists`) every name its rules cover."""

    __slots__ = ("_exact", "_suffixes", "active", "lists")

    def __init__(
        self, rules: Iterable[ExemptRule], lists: Sequence[tuple[str, Matcher]] = ()
    ) -> None:
        self._suffixes = DomainMatcher()
        self._exact: dict[bytes, str] = {}
        for rule in rules:
            if rule.exact:
                self._exact.setdefault(from_text(rule.pattern), "=" + rule.pattern)
            else:
                self._suffixes.add(rule.pattern, BlockRule("exempt", rule.pattern))
        self.lists = tuple(lists)
        # An attribute, not __bool__: every block asks, and a Python-level call costs more.
        self.active = bool(self._exact) or len(self._suffixes) > 0 or bool(self.lists)

    def __bool__(self) -> bool:
        return self.active

    def match(self, qname: bytes) -> str | None:
        """The exemption covering `qname` (as written in the config, or `exempt_lists: id
        (rule pattern)` for an exempted entry), or None."""
        exact = self._exact.get(qname)
        if exact is not None:
            return exact
        hit = self._suffixes.lookup(qname)
        if hit is not None:
            return hit[0].pattern
        for name, matcher in self.lists:
            found = matcher.lookup(qname)
            if found is not None:
                return f"exempt_lists: {name} (rule {found[0].pattern})"
        return None


NO_EXEMPTIONS = Exemptions(())


@dataclass(frozen=True, slots=True)
class Binding:
    """One list bound to a group: always (baseline, group lists) or through a dated policy."""

    list_name: str
    matcher: Matcher
    policy: str | None
    reference: str | None
    valid_from: float | None
    valid_until: float | None
    answer: str
    ttl: int
    exemptions: Exemptions
    provenance: Provenance | None = None
    decisions: tuple[str, ...] = ()  # the catalogue entry's decision labels
    cause: str = ""  # EDE text of its blocks
    censored: bool = False  # through a policy that carries a reference
    client_ips: NetworkRules | None = None  # the list's rpz-client-ip rules
    response_ips: NetworkRules | None = None  # the list's rpz-ip rules

    def in_force(self, now: float) -> bool:
        return (self.valid_from is None or self.valid_from <= now) and (
            self.valid_until is None or now < self.valid_until
        )


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    subnets: tuple[str, ...]
    bindings: tuple[Binding, ...]
    exemptions: Exemptions
    allow: Decision
    devices: tuple[str, ...] = ()
    client_ip: bool = False  # a list of the group has rpz-client-ip rules
    # Several lists: which of them may match a name, in one probe per label (None: ask all).
    screen: ListScreen | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    """A list that matches the name, and why it does or does not block (for `explain`)."""

    binding: Binding
    rule: BlockRule
    zone_offset: int
    applies: bool
    why_not: str


class PolicyEngine:
    """The compiled policy: immutable once built, swapped whole on reload."""

    def __init__(
        self,
        groups: Sequence[Group],
        default_group: str,
        policies: Sequence[PolicyConfig],
        domain_count: int,
    ) -> None:
        self.groups = {group.name: group for group in groups}
        self.default = self.groups.get(default_group)  # None: refuse clients in no group
        self.policies = tuple(policies)
        self.domain_count = domain_count
        self._prefixes: dict[int, list[tuple[int, dict[int, Group]]]] = {4: [], 6: []}
        by_length: dict[tuple[int, int], dict[int, Group]] = {}
        for group in groups:
            for text in group.subnets:
                net = ipaddress.ip_network(text)
                by_length.setdefault((net.version, net.prefixlen), {})[int(net.network_address)] = (
                    group
                )
        for (version, length), networks in sorted(by_length.items(), key=lambda kv: -kv[0][1]):
            self._prefixes[version].append((length, networks))
        self._memo: dict[str, Group | None] = {}
        # A device id (DoT server name, DoH path) listed in a group outranks any subnet.
        self._devices = {device: group for group in groups for device in group.devices}
        # Per group, names no list of it matches (module docstring); `_unlisted_count` in all.
        self._unlisted: dict[str, set[bytes]] = {group.name: set() for group in groups}
        self._unlisted_count = 0
        # Per group, the block decisions made so far, by name, each with the binding that
        # made it (docstring).
        self._blocks: dict[str, dict[bytes, tuple[Binding, Decision]]] = {
            group.name: {} for group in groups
        }
        self._blocks_count = 0
        # Hashes of blocked names seen once (ints: never tracked by the cyclic GC), and the last
        # decision made, which an immediate repeat (the AAAA after an A) gets as it is.
        self._sighted: set[int] = set()
        self._last_binding: Binding | None = None
        self._last_qname = b""
        self._last_group: Group | None = None
        self._last_block: Decision | None = None
        # Lists with rpz-ip rules: the inspector collects the addresses of every answer.
        self.response_ip = any(b.response_ips is not None for g in groups for b in g.bindings)
        # Every instant at which some binding starts or stops being in force, ascending.
        self._edges = sorted(
            {
                edge
                for group in groups
                for binding in group.bindings
                for edge in (binding.valid_from, binding.valid_until)
                if edge is not None
            }
        )

    def steady(self, now: float) -> tuple[float, float]:
        """The span [since, until) around `now` in which no decision changes (no policy window
        opens or closes; infinite without windows): within it `decide` answers the same
        question the same way, so an answer made from its decision may be reused (the
        pipeline's answer memo). `since` matters too: a wall clock may be set back."""
        edges = self._edges
        index = bisect_right(edges, now)
        since = edges[index - 1] if index else -math.inf
        return since, edges[index] if index < len(edges) else math.inf

    def group_of(self, client: str, device: str = "") -> Group | None:
        """The group that lists `device`, else the one whose subnet is the longest prefix of
        `client`, else the default group."""
        if device:
            listed = self._devices.get(device)
            if listed is not None:
                return listed
        try:
            return self._memo[client]
        except KeyError:
            pass
        group = self._longest_prefix(client)
        if group is None:
            group = self.default
        if len(self._memo) >= CLIENT_MEMO_LIMIT:
            self._memo.clear()
        self._memo[client] = group
        return group

    def _longest_prefix(self, client: str) -> Group | None:
        address = client_address(client)
        if address is None:
            return None
        bits = address.max_prefixlen
        value = int(address)
        for length, networks in self._prefixes[address.version]:
            group = networks.get(value >> (bits - length) << (bits - length))
            if group is not None:
                return group
        return None

    def decide(
        self, client: str, qname: bytes, qtype: int, now: float, device: str = ""
    ) -> Decision:
        """The decision for `client` (and the `device` id it presented, "" for none) asking
        `qname` (lowercase wire form) of type `qtype`."""
        listed_device = self._devices.get(device) if device else None
        if listed_device is not None:
            group: Group | None = listed_device
        else:
            try:  # `group_of`, inline, for a client seen before
                group = self._memo[client]
            except KeyError:
                group = self.group_of(client)
        if group is None:
            return _REFUSE_NO_GROUP
        if group.client_ip:
            return self._decide_by_client(group, client, qname, now)
        unlisted = self._unlisted[group.name]
        if qname in unlisted:
            return group.allow
        listed = False
        screen = group.screen
        for binding in group.bindings if screen is None else screen.select(qname):
            matcher = binding.matcher
            if isinstance(matcher, CompiledMatcher):  # compiled: a direct call, no method lookup
                hit = matcher.lookup(qname)
            else:
                hit = matcher.lookup(qname)
            if hit is None:
                continue
            listed = True
            valid_from, valid_until = binding.valid_from, binding.valid_until  # `in_force`
            if (valid_from is not None and now < valid_from) or (
                valid_until is not None and now >= valid_until
            ):
                continue
            if group.exemptions.active and group.exemptions.match(qname) is not None:
                return group.allow
            if binding.exemptions.active and binding.exemptions.match(qname) is not None:
                continue
            blocks = self._blocks[group.name]
            held = blocks.get(qname)
            if held is not None and held[0] is binding:
                return held[1]
            # Kept from the name's second sight (module docstring).
            last = self._last_block
            if (
                last is not None
                and binding is self._last_binding
                and group is self._last_group  # (bindings are shared between groups)
                and qname == self._last_qname
            ):
                decision = last
            else:
                rule, zone_offset = hit
                decision = self._block(group, binding, rule, zone_offset)
                self._last_binding, self._last_qname = binding, qname
                self._last_group, self._last_block = group, decision
                sighted = self._sighted
                mark = hash(qname)
                if mark not in sighted:
                    if len(sighted) >= SIGHTED_LIMIT:
                        sighted.clear()
                    sighted.add(mark)
                    return decision
            if held is None:  # (else another binding's, for the same name: replaced)
                if self._blocks_count >= BLOCK_MEMO_LIMIT:
                    for made in self._blocks.values():
                        made.clear()
                    self._blocks_count = 0
                self._blocks_count += 1
            blocks[qname] = (binding, decision)
            return decision
        if not listed:
            if self._unlisted_count >= UNLISTED_MEMO_LIMIT:
                for names in self._unlisted.values():
                    names.clear()
                self._unlisted_count = 0
            unlisted.add(qname)
            self._unlisted_count += 1
        return group.allow

    def _decide_by_client(self, group: Group, client: str, qname: bytes, now: float) -> Decision:
        """`decide` for a group with rpz-client-ip rules (no memo: the answer depends on the
        client). Within each list a client rule comes before the name rules, as RPZ orders
        triggers; a client PASSTHRU rule lets the client past the rest of that list."""
        address = client_address(client)
        for binding in group.bindings:
            clients = binding.client_ips
            if clients is not None and address is not None and binding.in_force(now):
                hit = clients.match(address.version, int(address))
                if hit is not None:
                    if hit[0].answer == PASSTHRU:
                        continue
                    if group.exemptions.active and group.exemptions.match(qname) is not None:
                        return group.allow
                    exempt = binding.exemptions.active and binding.exemptions.match(qname)
                    if not exempt and not _allow_listed(binding, qname):
                        return self._block(group, binding, hit[0], 0)
            found = binding.matcher.lookup(qname)
            if found is None or not binding.in_force(now):
                continue
            if group.exemptions.active and group.exemptions.match(qname) is not None:
                return group.allow
            if binding.exemptions.active and binding.exemptions.match(qname) is not None:
                continue
            return self._block(group, binding, found[0], found[1])
        return group.allow

    def response_block(
        self,
        client: str,
        qname: bytes,
        addresses: Sequence[tuple[int, int]],
        now: float,
        device: str = "",
    ) -> Decision | None:
        """The block the rpz-ip rules of `client`'s lists put on an answer to `qname` holding
        `addresses` ((version, value) of each A/AAAA), or None. The first list (in precedence
        order) with a rule covering one of them decides; within it the longest prefix wins,
        then the lowest address (RPZ). A PASSTHRU rule (for the address, the client or the name)
        passes the answer through that list."""
        group = self.group_of(client, device)
        if group is None:
            return None
        for binding in group.bindings:
            rules = binding.response_ips
            if rules is None or not binding.in_force(now):
                continue
            if binding.client_ips is not None and _passes(binding.client_ips, client):
                continue
            passes = getattr(getattr(binding.matcher, "inner", binding.matcher), "passes", None)
            if passes is not None and passes(qname):
                continue  # a PASSTHRU for the name: RPZ puts QNAME triggers before IP ones
            best: tuple[int, int, BlockRule] | None = None
            for version, value in addresses:
                hit = rules.match(version, value)
                if hit is not None and (best is None or (-hit[1], value) < best[:2]):
                    best = (-hit[1], value, hit[0])
            if best is None or best[2].answer == PASSTHRU:
                continue
            if group.exemptions.active and group.exemptions.match(qname) is not None:
                return None
            if binding.exemptions.active and binding.exemptions.match(qname) is not None:
                continue
            if _allow_listed(binding, qname):
                continue
            return self._block(group, binding, best[2], 0)
        return None

    @staticmethod
    def _block(group: Group, binding: Binding, rule: BlockRule, zone_offset: int) -> Decision:
        return Decision(
            _BLOCKS,
            group.name,
            binding.policy,
            binding.list_name,
            rule.pattern,
            binding.reference,
            rule.answer or binding.answer,
            binding.ttl,
            zone_offset,
            binding.valid_from,
            binding.valid_until,
            "",
            None,
            binding.decisions,
            binding.cause,
            binding.censored,
            rule.data,
        )

    def candidates(
        self, group: Group, qname: bytes, now: float, client: str = ""
    ) -> list[Candidate]:
        """Every list of `group` that matches `qname` (or, by an rpz-client-ip rule, `client`),
        with why each applies or not: the slow, complete view behind `dnswarden explain`."""
        found = []
        group_exempt = group.exemptions.match(qname) if group.exemptions else None
        address = client_address(client) if group.client_ip else None
        for binding in group.bindings:
            passed = ""  # a client PASSTHRU: the list's other rules do not apply
            clients = binding.client_ips
            by_client = None
            if clients is not None and address is not None:
                by_client = clients.match(address.version, int(address))
            if by_client is not None and by_client[0].answer == PASSTHRU:
                passed = f"client passed through this list by {by_client[0].pattern}"
                found.append(Candidate(binding, by_client[0], 0, False, passed))
                by_client = None
            for hit in (by_client, binding.matcher.lookup(qname)):
                if hit is None:
                    continue
                candidate = self._candidate(binding, hit, qname, now, group, group_exempt)
                if passed:
                    candidate = Candidate(binding, hit[0], hit[1], False, passed)
                found.append(candidate)
        return found

    @staticmethod
    def _candidate(
        binding: Binding,
        hit: tuple[BlockRule, int],
        qname: bytes,
        now: float,
        group: Group,
        group_exempt: str | None,
    ) -> Candidate:
        why_not = ""
        if not binding.in_force(now):
            why_not = "policy not in force at that time"
        elif group_exempt is not None:
            why_not = f"exempt for group {group.name} by {group_exempt}"
        elif binding.exemptions and (rule := binding.exemptions.match(qname)) is not None:
            why_not = f"exempt from policy {binding.policy} by {rule}"
        return Candidate(binding, hit[0], hit[1], not why_not, why_not)


def _allow_listed(binding: Binding, qname: bytes) -> bool:
    """A global allow list (`allow:`) covers `qname`: no rule of the list blocks it, its
    address rules neither (`resolver.lists.loading.AllowFiltered` does it for names)."""
    allows: tuple[Matcher, ...] = getattr(binding.matcher, "allows", ())
    return any(allow.lookup(qname) is not None for allow in allows)


def _passes(rules: NetworkRules, client: str) -> bool:
    """A PASSTHRU rpz-client-ip rule of the list covers `client`."""
    address = client_address(client)
    hit = None if address is None else rules.match(address.version, int(address))
    return hit is not None and hit[0].answer == PASSTHRU


_REFUSE_NO_GROUP = Decision(Action.REFUSE, "", reason="client in no group")
_BLOCKS = Action.BLOCK
"""`Action.BLOCK` as a plain global: an enum member read through its class is a descriptor call
(about half a microsecond on CPython 3.11), and every new block decision needs it."""


def _timestamp(value: object) -> float | None:
    return None if value is None else value.timestamp()  # type: ignore[attr-defined]


def _fit(text: str, budget: int) -> str:
    """`text` cut to `budget` UTF-8 bytes, never inside a character, marked by "..."."""
    raw = text.encode()
    if len(raw) <= budget:
        return text
    return raw[: max(budget - 3, 0)].decode("utf-8", "ignore").rstrip() + "..."


def _labels_within(labels: Sequence[str], budget: int) -> str:
    """As many decision labels as fit in `budget` bytes, then how many more there are."""
    for shown in range(len(labels), 0, -1):
        rest = len(labels) - shown
        text = "; ".join(labels[:shown]) + (f"; +{rest} more" if rest else "")
        if len(text.encode()) <= budget:
            return text
    return ""


def block_cause(
    list_name: str, policy: str | None, reference: str | None, provenance: Provenance | None
) -> str:
    """The EDE text of a block: who blocked it and, briefly, on whose authority.

    A policy's own reference comes first; else a catalogue entry's decision labels. An operator
    list's file or URL is left out: it is the server's business, not the client's (the audit
    event and `explain` cite it)."""
    head = f"blocked by policy {policy} ({list_name}" if policy else f"blocked by list {list_name}"
    close = ")" if policy else ""
    opening = "; ref: " if policy else " (ref: "
    fixed = len((head + opening).encode()) + 1
    budget = EDE_TEXT_BUDGET - fixed
    if reference is not None and policy:
        cited = _fit(reference, budget)
    elif provenance is not None and provenance.labels:
        cited = _labels_within(provenance.labels, budget)
    else:
        cited = ""
    if not cited or budget <= 0:
        return _fit(head + close, EDE_TEXT_BUDGET)
    return f"{head}{opening}{cited})"


def _screen(
    bindings: tuple[Binding, ...], made: dict[tuple[int, ...], ListScreen | None]
) -> ListScreen | None:
    """One `ListScreen` for a group's bindings when two or more of its lists can be screened
    (shared by groups with the same lists); None when asking each list costs no more."""
    matchers = [binding.matcher for binding in bindings]
    key = tuple(id(matcher) for matcher in matchers)
    if key in made:
        screen = made[key]
        return None if screen is None else ListScreen(bindings, matchers, screen)
    screen = None
    if sum(map(screenable, set(matchers))) >= 2:
        screen = ListScreen(bindings, matchers)
    made[key] = screen
    return screen


def build_engine(
    config: Config,
    matchers: Mapping[str, tuple[str, Matcher]],
    domain_count: int,
    provenance: Mapping[str, Provenance] | None = None,
) -> PolicyEngine:
    """Compile `config` against loaded lists: `matchers` maps each configured list item (id or
    path) to its name and matcher, `provenance` each list name to what its blocks cite (lists
    without one cite nothing but a policy's reference)."""
    blocking = config.blocking
    cited = provenance or {}

    def bind(
        item: str,
        policy: PolicyConfig | None,
        answer: str,
        ttl: int,
        exemptions: Exemptions,
    ) -> Binding:
        name, matcher = matchers[item]
        source = cited.get(name)
        own = policy.reference if policy is not None else None
        rpz = getattr(matcher, "inner", matcher)  # an AllowFiltered list: the list itself
        return Binding(
            name,
            matcher,
            policy.name if policy is not None else None,
            own if own is not None else (source.citation if source is not None else None),
            _timestamp(policy.valid_from) if policy is not None else None,
            _timestamp(policy.valid_until) if policy is not None else None,
            answer,
            ttl,
            exemptions,
            source,
            source.labels if source is not None else (),
            block_cause(name, policy.name if policy is not None else None, own, source),
            own is not None,
            getattr(rpz, "client_ips", None),
            getattr(rpz, "response_ips", None),
        )

    def always(item: str) -> Binding:
        return bind(item, None, blocking.answer.value, blocking.ttl, NO_EXEMPTIONS)

    def exemptions_of(rules: Sequence[ExemptRule], lists: Sequence[str]) -> Exemptions:
        if not rules and not lists:
            return NO_EXEMPTIONS
        return Exemptions(rules, [matchers[item] for item in lists])

    baseline = tuple(always(item) for item in blocking.lists)
    policy_bindings: dict[str, tuple[Binding, ...]] = {}
    for policy in config.policies:
        exemptions = exemptions_of(policy.exempt, policy.exempt_lists)
        policy_bindings[policy.name] = tuple(
            bind(
                item,
                policy,
                (policy.answer or blocking.answer).value,
                blocking.ttl if policy.ttl is None else policy.ttl,
                exemptions,
            )
            for item in policy.block
        )
    screens: dict[tuple[int, ...], ListScreen | None] = {}
    configured: list[GroupConfig] = list(config.groups)
    if not any(g.name == DEFAULT_GROUP for g in configured):
        configured.append(GroupConfig(name=DEFAULT_GROUP))
    groups = []
    for group in configured:
        own = tuple(always(item) for item in group.block)
        from_policies = tuple(
            binding
            for policy in config.policies
            if group.name in policy.groups
            for binding in policy_bindings[policy.name]
        )
        bindings = from_policies + own + baseline
        groups.append(
            Group(
                name=group.name,
                subnets=tuple(str(net) for net in group.subnets),
                devices=group.devices,
                bindings=bindings,
                exemptions=exemptions_of(group.exempt, group.exempt_lists),
                allow=Decision(Action.ALLOW, group.name),
                client_ip=any(b.client_ips is not None for b in bindings),
                screen=_screen(bindings, screens),
            )
        )
    default = config.clients.default_group
    return PolicyEngine(groups, "" if default == REFUSE else default, config.policies, domain_count)
