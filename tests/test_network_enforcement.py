"""Tests for deploy/network/: the gateway's nftables ruleset that closes the DNS bypasses, and
the DHCP and router-advertisement examples that point official devices at dnswarden.

Each file is checked by its own tool (nft, kea-dhcp4, radvd, dnsmasq), skipped with the line that
installs it when the tool is missing. nft runs in a private network namespace (unshare: as root a
bare one, otherwise inside a user namespace), where it may load the ruleset for real: once to read
back what the kernel made of it, once under traffic, with a device, the gateway and a stand-in
internet as three namespaces joined by veth pairs, where the packets never leave the namespaces.
The cross-file checks hold the files to each other, to docs/network-enforcement.md and to the
doh-endpoints catalogue entry, because each file alone can be valid and the set wrong.

Run as a script, this file is also the small server and prober the traffic test starts inside
the namespaces (`serve READY_FILE`, `probe CASES_JSON`).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import selectors
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
NETWORK = ROOT / "deploy" / "network"
RULESET = NETWORK / "dnswarden.nft"
KEA = NETWORK / "kea-dhcp4.json"
RADVD = NETWORK / "radvd.conf"
DNSMASQ = NETWORK / "dnsmasq.conf"
DOC = ROOT / "docs" / "network-enforcement.md"
CATALOGUE = ROOT / "blocklists" / "doh-endpoints.yaml"
BYPASS_CATALOGUE = ROOT / "blocklists" / "doh-bypass.yaml"
TABLE = "dnswarden"
INSTALL = {
    "nft": "apt-get install nftables",
    "kea-dhcp4": "apt-get install kea-dhcp4-server",
    "radvd": "apt-get install radvd",
    "dnsmasq": "apt-get install dnsmasq-base",
    "ip": "apt-get install iproute2",
    "unshare": "apt-get install util-linux",
    "nsenter": "apt-get install util-linux",
}
# The services of the doh-endpoints catalogue entry and the names it blocks for each: a resolver
# blocked by name must be blocked by address too, and the other way round. Each element comment
# of the public_resolvers sets starts with one of these service names.
SERVICES = {
    "Cloudflare": {"cloudflare-dns.com", "one.one.one.one"},
    "Google Public DNS": {"dns.google", "dns.google.com"},
    "Quad9": {"dns.quad9.net", "dns9.quad9.net", "dns10.quad9.net", "dns11.quad9.net"},
    "OpenDNS": {"doh.opendns.com", "doh.familyshield.opendns.com"},
    "NextDNS": {"dns.nextdns.io"},
    "Mullvad DNS": {"dns.mullvad.net", "doh.mullvad.net"},
    "AdGuard DNS": {
        "dns.adguard-dns.com",
        "unfiltered.adguard-dns.com",
        "family.adguard-dns.com",
        "dns.adguard.com",
        "dns-family.adguard.com",
    },
    "CleanBrowsing": {"doh.cleanbrowsing.org"},
}
# Where the example values must come from: RFC 5737 and RFC 3849 documentation ranges.
DOCUMENTATION = [
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
]
SECTIONS = ["What", "Configuration", "Metrics", "Examples"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def sbin_path() -> str:
    return os.pathsep.join([os.environ.get("PATH", os.defpath), "/usr/sbin", "/sbin"])


def tool(name: str) -> str:
    """The executable on PATH or in the sbin folders (not on a user's PATH), else a skip."""
    found = shutil.which(name, path=sbin_path())
    if found is None:
        pytest.skip(f"{name} is not installed ({INSTALL[name]})")
    return found


def isolated(script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a shell script in fresh network and mount namespaces, gone when it exits.

    As root the namespaces need no more; anyone else gets a user namespace that maps them to
    root inside, which is enough for nft, ip and veth pairs in namespaces of their own."""
    unshare = tool("unshare")
    user = [] if os.geteuid() == 0 else ["--map-root-user"]
    command = [unshare, *user, "--net", "--mount", "--propagation", "private", "sh", "-euc"]
    environment = {**os.environ, "PATH": sbin_path()}
    return subprocess.run(
        [*command, script], cwd=ROOT, env=environment, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


# --- The ruleset as the kernel holds it -------------------------------------------------------


@dataclass(frozen=True)
class Element:
    network: Network
    comment: str


@dataclass(frozen=True)
class Ruleset:
    """`nft -j list ruleset` after loading the file, sorted into what the tests ask about."""

    sets: dict[str, list[Element]]
    counters: dict[str, dict[str, Any]]
    chains: dict[str, dict[str, Any]]
    rules: dict[str, list[list[dict[str, Any]]]]


def element(raw: Any) -> Element:
    comment = ""
    if isinstance(raw, dict) and "elem" in raw:
        comment = raw["elem"].get("comment", "")
        raw = raw["elem"]["val"]
    if isinstance(raw, dict) and "prefix" in raw:
        raw = f"{raw['prefix']['addr']}/{raw['prefix']['len']}"
    assert isinstance(raw, str), f"unexpected set element {raw!r}"
    return Element(ipaddress.ip_network(raw), comment)


def parse_listing(text: str) -> Ruleset:
    sets: dict[str, list[Element]] = {}
    counters: dict[str, dict[str, Any]] = {}
    chains: dict[str, dict[str, Any]] = {}
    rules: dict[str, list[list[dict[str, Any]]]] = {}
    for item in json.loads(text)["nftables"]:
        (kind, body), *_ = item.items()
        if body.get("table", TABLE) != TABLE or body.get("family", "inet") != "inet":
            continue
        if kind == "set":
            sets[body["name"]] = [element(e) for e in body.get("elem", [])]
        elif kind == "counter":
            counters[body["name"]] = body
        elif kind == "chain":
            chains[body["name"]] = body
            rules.setdefault(body["name"], [])
        elif kind == "rule":
            rules.setdefault(body["chain"], []).append(body["expr"])
    return Ruleset(sets, counters, chains, rules)


_LOADED: list[Ruleset] = []


def loaded() -> Ruleset:
    """The ruleset applied twice (re-applying must work: operators reload it) and read back."""
    if not _LOADED:
        tool("nft")
        result = isolated(f"nft -f {RULESET} && nft -f {RULESET} && nft -j list ruleset")
        assert result.returncode == 0, result.stderr
        _LOADED.append(parse_listing(result.stdout))
    return _LOADED[0]


def networks(name: str) -> list[Network]:
    return [e.network for e in loaded().sets[name]]


def hosts(name: str) -> list[str]:
    """The single addresses of a set (dnswarden's), as text."""
    found = networks(name)
    assert all(n.num_addresses == 1 for n in found), f"{name} must hold single addresses"
    return [str(n.network_address) for n in found]


def written(network: Network) -> str:
    """How the files write a set element: a bare address, or a network with its prefix."""
    return str(network.network_address) if network.num_addresses == 1 else str(network)


def covered(address: str, subnets: list[Network]) -> bool:
    return any(ipaddress.ip_address(address) in subnet for subnet in subnets)


def test_nft_checks_the_ruleset() -> None:
    tool("nft")
    result = isolated(f"nft -c -f {RULESET}")
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_nft_rejects_a_broken_copy(tmp_path: Path) -> None:
    """The check above can fail: a typo in an address set is caught."""
    tool("nft")
    broken = tmp_path / RULESET.name
    broken.write_text(RULESET.read_text("utf-8").replace("203.0.113.53", "203.0.113.530"), "utf-8")
    result = isolated(f"nft -c -f {broken}")
    assert result.returncode != 0 and "203.0.113.530" in result.stderr


def test_ruleset_declares_the_sets_counters_and_hooks() -> None:
    ruleset = loaded()
    assert set(ruleset.sets) == {
        "official_v4", "official_v6", "dnswarden_v4", "dnswarden_v6",
        "public_resolvers_v4", "public_resolvers_v6",
    }  # fmt: skip
    assert set(ruleset.counters) == {
        "dns_allowed", "dns_bypass_dropped", "dot_bypass_dropped", "doh_bypass_dropped",
    }  # fmt: skip
    hooks = {c["hook"]: c for c in ruleset.chains.values() if "hook" in c}
    assert set(hooks) == {"forward", "input"}
    for chain in hooks.values():
        assert chain["policy"] == "accept", "the table only drops; other tables decide the rest"
        assert chain["prio"] < 0, "before a default-priority firewall, so every try is counted"


def test_addresses_are_defined_once_in_their_sets() -> None:
    text = RULESET.read_text("utf-8")
    for name in ("official_v4", "official_v6", "dnswarden_v4", "dnswarden_v6"):
        for network in networks(name):
            literal = written(network)
            assert len(re.findall(rf"(?<![\w:.]){re.escape(literal)}(?![\w:./])", text)) == 1, (
                f"{literal} ({name}) must appear once, in its set"
            )
        references = re.findall(rf"@{name}\b", text)
        assert references, f"set {name} is declared but no rule uses it"


def test_example_addresses_are_documentation_ranges_and_do_not_overlap() -> None:
    official = networks("official_v4") + networks("official_v6")
    resolver = networks("dnswarden_v4") + networks("dnswarden_v6")
    public = networks("public_resolvers_v4") + networks("public_resolvers_v6")
    assert networks("official_v4") and networks("official_v6")
    assert hosts("dnswarden_v4") and hosts("dnswarden_v6")
    for network in official + resolver:
        assert any(network.subnet_of(d) for d in DOCUMENTATION if d.version == network.version)
    for network in resolver:
        assert not any(network.overlaps(o) for o in official if o.version == network.version), (
            "dnswarden inside a device subnet is never routed through the gateway"
        )
    for network in public:
        assert network.is_global, f"{network} is not a public address"
        assert not any(network.overlaps(r) for r in resolver + official
                       if r.version == network.version)  # fmt: skip


def test_every_drop_is_counted_and_logged_at_a_limited_rate() -> None:
    ruleset = loaded()
    drops = 0
    for chain, chain_rules in ruleset.rules.items():
        for index, expressions in enumerate(chain_rules):
            if not any("drop" in e for e in expressions):
                continue
            drops += 1
            counter = [e["counter"] for e in expressions if "counter" in e]
            assert counter and counter[0] in ruleset.counters, f"{chain}: an uncounted drop"
            assert index > 0, f"{chain}: the drop is not logged"
            kinds = [next(iter(e)) for e in chain_rules[index - 1]]
            assert kinds == ["limit", "log"], f"{chain}: the log before the drop is not limited"
            limit, log = (e[k] for e, k in zip(chain_rules[index - 1], kinds, strict=True))
            assert limit["per"] in ("second", "minute") and limit["rate"] <= 10
            assert log["prefix"].startswith("dnswarden-drop ")
    assert drops == 3


# --- The public resolvers, against the catalogue and the docs --------------------------------


def comment_service(comment: str) -> str:
    matches = [s for s in SERVICES if comment.startswith(s)]
    assert len(matches) == 1, f"set element comment {comment!r} names no known service"
    return matches[0]


def test_public_resolver_sets_cover_every_catalogue_service_in_both_families() -> None:
    catalogue = yaml.safe_load(CATALOGUE.read_text("utf-8"))
    assert {r["domain"] for r in catalogue["rules"]} == set().union(*SERVICES.values()), (
        "doh-endpoints changed: update SERVICES here and the public_resolvers sets"
    )
    seen: dict[str, set[int]] = {}
    for name in ("public_resolvers_v4", "public_resolvers_v6"):
        elements = loaded().sets[name]
        assert len({e.network for e in elements}) == len(elements), f"{name} repeats an address"
        for item in elements:
            seen.setdefault(comment_service(item.comment), set()).add(item.network.version)
    assert seen == {service: {4, 6} for service in SERVICES}


@dataclass(frozen=True)
class Section:
    title: str
    body: str


def doc_sections() -> list[Section]:
    text = DOC.read_text("utf-8")
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return [Section(t.strip(), b) for t, b in zip(parts[1::2], parts[2::2], strict=True)]


def doc_section(title: str) -> str:
    (section,) = [s.body for s in doc_sections() if s.title == title]
    return section


def code_blocks(language: str) -> list[str]:
    pattern = rf"^```{re.escape(language)}\n(.*?)^```$"
    return re.findall(pattern, DOC.read_text("utf-8"), flags=re.M | re.S)


def test_doc_has_the_four_sections() -> None:
    text = DOC.read_text("utf-8")
    assert text.startswith("# "), "a title first"
    assert [s.title for s in doc_sections()] == SECTIONS


def test_doc_names_every_service_counter_and_log_prefix() -> None:
    text = DOC.read_text("utf-8")
    for service in SERVICES:
        assert service in doc_section("What") + doc_section("Configuration"), service
    rows = re.findall(r"^\| `(\w+)` \|", doc_section("Metrics"), flags=re.M)
    assert sorted(rows) == sorted(loaded().counters), "the Metrics table lists the counters"
    prefixes = {e["log"]["prefix"] for r in loaded().rules.values() for x in r for e in x
                if "log" in e}  # fmt: skip
    assert all(p.strip() in text for p in prefixes), prefixes


def test_doc_shows_the_example_addresses_of_the_ruleset() -> None:
    configuration = doc_section("Configuration")
    for name in ("official_v4", "official_v6", "dnswarden_v4", "dnswarden_v6"):
        for network in networks(name):
            literal = written(network)
            assert literal in configuration, f"{literal} ({name}) is not in the docs"


def test_doc_cites_what_the_doh_bypass_entry_really_blocks() -> None:
    rules = {r["domain"]: r for r in yaml.safe_load(BYPASS_CATALOGUE.read_text("utf-8"))["rules"]}
    what = doc_section("What")
    for domain in ("use-application-dns.net", "mask.icloud.com", "resolver.arpa"):
        assert domain in rules, f"doh-bypass no longer blocks {domain}: fix the docs"
        assert domain in what
    assert "doh-bypass" in what and "doh-endpoints" in what


def test_doc_shell_examples_run() -> None:
    """The page's config checks (a ```sh-host block, as root on a gateway) run here too, in a
    namespace of their own."""
    blocks = [block for block in code_blocks("sh-host") if block.startswith("nft -c ")]
    assert blocks
    for command in ("nft", "radvd", "dnsmasq"):
        tool(command)
    for block in blocks:
        result = isolated(block)
        assert result.returncode == 0, f"{block}\n{result.stdout}{result.stderr}"


# --- DHCP and router advertisements ----------------------------------------------------------


def kea() -> dict[str, Any]:
    """kea-dhcp4.json without its comment lines (Kea reads //, # and /* */; JSON does not)."""
    lines = KEA.read_text("utf-8").splitlines()
    return json.loads("\n".join(x for x in lines if not x.lstrip().startswith(("//", "#"))))


def radvd() -> dict[str, dict[str, list[str]]]:
    """Each interface block of radvd.conf: its prefixes and RDNSS addresses."""
    text = re.sub(r"#.*", "", RADVD.read_text("utf-8"))
    blocks: dict[str, dict[str, list[str]]] = {}
    for name, body in re.findall(r"interface\s+(\S+)\s*\{(.*?)\n\};", text, flags=re.S):
        blocks[name] = {
            "prefix": re.findall(r"^\s*prefix\s+(\S+)", body, flags=re.M),
            "rdnss": [
                a
                for line in re.findall(r"^\s*RDNSS\s+([^{]+)\{", body, flags=re.M)
                for a in line.split()
            ],
        }
    return blocks


def dnsmasq() -> list[tuple[str, str]]:
    pairs = []
    for line in DNSMASQ.read_text("utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition("=")
            pairs.append((key, value))
    return pairs


def interfaces() -> set[str]:
    return set(kea()["Dhcp4"]["interfaces-config"]["interfaces"])


def test_kea_hands_out_dnswarden_to_the_official_subnets() -> None:
    config = kea()["Dhcp4"]
    servers = [o["data"] for o in config["option-data"] if o["name"] == "domain-name-servers"]
    assert [s.strip() for s in ",".join(servers).split(",")] == hosts("dnswarden_v4")
    subnets = [ipaddress.ip_network(s["subnet"]) for s in config["subnet4"]]
    assert sorted(subnets) == sorted(networks("official_v4"))
    for subnet in config["subnet4"]:
        names = {o["name"] for o in subnet.get("option-data", [])}
        assert "domain-name-servers" not in names, "one DNS server list, at the top"
        assert subnet["interface"] in interfaces()


def test_radvd_advertises_dnswarden_on_the_official_prefixes() -> None:
    blocks = radvd()
    assert set(blocks) == interfaces(), "the same interfaces as the DHCP server"
    prefixes = [ipaddress.ip_network(p) for b in blocks.values() for p in b["prefix"]]
    assert sorted(prefixes) == sorted(networks("official_v6"))
    assert all(b["rdnss"] == hosts("dnswarden_v6") for b in blocks.values())


def test_dnsmasq_serves_no_dns_and_hands_out_dnswarden() -> None:
    pairs = dnsmasq()
    assert ("port", "0") in pairs, "dnsmasq's own resolver would be a bypass"
    assert {v for k, v in pairs if k == "interface"} == interfaces()
    options = [v for k, v in pairs if k == "dhcp-option"]
    assert f"option:dns-server,{','.join(hosts('dnswarden_v4'))}" in options
    assert f"option6:dns-server,{','.join(f'[{a}]' for a in hosts('dnswarden_v6'))}" in options
    ranges = [v.split(",") for k, v in pairs if k == "dhcp-range" and not v.startswith("::")]
    starts = [r[1] if r[0].startswith("set:") else r[0] for r in ranges]
    assert len(starts) == len(networks("official_v4"))
    assert all(covered(s, networks("official_v4")) for s in starts)


def kea_in_namespace(config: Path) -> subprocess.CompletedProcess[str]:
    """`kea-dhcp4 -t` insists the interfaces exist: veth pairs of those names, in a namespace."""
    kea_dhcp4 = tool("kea-dhcp4")
    tool("ip")
    links = " && ".join(
        f"ip link add {name} type veth peer name peer{i}" for i, name in enumerate(interfaces())
    )
    return isolated(f"{links} && {kea_dhcp4} -t {config}")


def test_kea_checks_its_config() -> None:
    result = kea_in_namespace(KEA)
    assert result.returncode == 0, result.stdout + result.stderr


def test_radvd_checks_its_config() -> None:
    result = subprocess.run(
        [tool("radvd"), "--configtest", "-C", str(RADVD)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dnsmasq_checks_its_config() -> None:
    result = subprocess.run(
        [tool("dnsmasq"), "--test", "-C", str(DNSMASQ)], capture_output=True, text=True, timeout=30
    )
    assert (result.returncode, result.stderr.strip()) == (0, "dnsmasq: syntax check OK.")


def test_each_checker_rejects_a_wrong_dns_server(tmp_path: Path) -> None:
    """The three checks above can fail: each tool refuses its file with a malformed address."""
    v4, v6 = hosts("dnswarden_v4")[0], hosts("dnswarden_v6")[0]
    copies = {}
    for source, old, new in ((KEA, v4, "203.0.113.999"), (RADVD, v6, "2001:db8:53::zz"),
                             (DNSMASQ, v6, "2001:db8:53::zz")):  # fmt: skip
        copies[source] = tmp_path / source.name
        copies[source].write_text(source.read_text("utf-8").replace(old, new), "utf-8")
    assert kea_in_namespace(copies[KEA]).returncode != 0
    for command in ([tool("radvd"), "--configtest", "-C"], [tool("dnsmasq"), "--test", "-C"]):
        path = copies[RADVD] if "radvd" in command[0] else copies[DNSMASQ]
        result = subprocess.run([*command, str(path)], capture_output=True, text=True, timeout=30)
        assert result.returncode != 0, result.stdout + result.stderr


# --- Under traffic ----------------------------------------------------------------------------
#
# Three namespaces: `dev` (an official device, which also holds a guest-network address), the
# gateway (the unshared namespace itself, with the ruleset loaded and a stand-in resolver of its
# own) and `net` (dnswarden, another resolver, a public resolver and a web server, all answering
# on every port). Every probe either gets an answer or is met by silence (a dropped packet).

OPEN, DROPPED = "answered", "silent"
PORTS = (53, 80, 443, 853)
TRANSIT_V4, TRANSIT_V6 = ("198.18.0.1", "198.18.0.2"), ("fd00:7e57::1", "fd00:7e57::2")
GUEST_V4, GUEST_V6 = ("10.99.0.1", "10.99.0.10"), ("fd00:99::1", "fd00:99::10")
OTHER_RESOLVER_V4, WEB_V4, WEB_V6 = "198.18.1.53", "198.18.1.80", "fd00:7e57:1::80"


@dataclass(frozen=True)
class Probe:
    name: str
    protocol: str
    source: str
    target: str
    port: int
    expected: str


def scenario() -> tuple[dict[str, str], list[Probe]]:
    official_v4, official_v6 = networks("official_v4")[0], networks("official_v6")[0]
    public_v4, public_v6 = (
        str(next(n for n in networks(name) if n.num_addresses == 1).network_address)
        for name in ("public_resolvers_v4", "public_resolvers_v6")
    )
    addresses = {
        "gateway_v4": str(official_v4.network_address + 1),
        "gateway_v6": str(official_v6.network_address + 1),
        "device_v4": str(official_v4.network_address + 10),
        "device_v6": str(official_v6.network_address + 10),
        "dnswarden_v4": hosts("dnswarden_v4")[0],
        "dnswarden_v6": hosts("dnswarden_v6")[0],
        "public_v4": public_v4,
        "public_v6": public_v6,
    }
    a = addresses
    cases = [
        ("dnswarden udp 53", "udp", a["device_v4"], a["dnswarden_v4"], 53, OPEN),
        ("dnswarden tcp 53", "tcp", a["device_v4"], a["dnswarden_v4"], 53, OPEN),
        ("dnswarden DoT", "tcp", a["device_v4"], a["dnswarden_v4"], 853, OPEN),
        ("dnswarden DoQ", "udp", a["device_v4"], a["dnswarden_v4"], 853, DROPPED),
        ("dnswarden v6 udp 53", "udp", a["device_v6"], a["dnswarden_v6"], 53, OPEN),
        ("dnswarden v6 DoT", "tcp", a["device_v6"], a["dnswarden_v6"], 853, OPEN),
        ("hard-coded resolver udp 53", "udp", a["device_v4"], OTHER_RESOLVER_V4, 53, DROPPED),
        ("hard-coded resolver tcp 53", "tcp", a["device_v4"], OTHER_RESOLVER_V4, 53, DROPPED),
        ("hard-coded resolver DoT", "tcp", a["device_v4"], OTHER_RESOLVER_V4, 853, DROPPED),
        ("hard-coded resolver HTTPS", "tcp", a["device_v4"], OTHER_RESOLVER_V4, 443, OPEN),
        ("public resolver udp 53", "udp", a["device_v4"], public_v4, 53, DROPPED),
        ("public resolver DoT", "tcp", a["device_v4"], public_v4, 853, DROPPED),
        ("public resolver DoH", "tcp", a["device_v4"], public_v4, 443, DROPPED),
        ("public resolver DoH3", "udp", a["device_v4"], public_v4, 443, DROPPED),
        ("public resolver http", "tcp", a["device_v4"], public_v4, 80, OPEN),
        ("public resolver v6 udp 53", "udp", a["device_v6"], public_v6, 53, DROPPED),
        ("public resolver v6 DoH", "tcp", a["device_v6"], public_v6, 443, DROPPED),
        ("public resolver v6 DoH3", "udp", a["device_v6"], public_v6, 443, DROPPED),
        ("public resolver v6 http", "tcp", a["device_v6"], public_v6, 80, OPEN),
        ("web HTTPS", "tcp", a["device_v4"], WEB_V4, 443, OPEN),
        ("web v6 HTTP/3", "udp", a["device_v6"], WEB_V6, 443, OPEN),
        ("gateway's own resolver", "udp", a["device_v4"], a["gateway_v4"], 53, DROPPED),
        ("gateway's own resolver v6", "tcp", a["device_v6"], a["gateway_v6"], 53, DROPPED),
        ("guest to public resolver", "udp", GUEST_V4[1], public_v4, 53, OPEN),
        ("guest to public DoH", "tcp", GUEST_V4[1], public_v4, 443, OPEN),
        ("guest v6 to public DoT", "tcp", GUEST_V6[1], public_v6, 853, OPEN),
        ("guest to gateway's resolver", "udp", GUEST_V4[1], GUEST_V4[0], 53, OPEN),
    ]
    return addresses, [Probe(*case) for case in cases]


def topology_script(addresses: dict[str, str], probes: list[Probe], work: Path) -> str:
    """The shell script that builds the three namespaces, serves, probes and reads counters.

    It runs in the gateway's namespace; /run is a private tmpfs there, so `ip netns` names the
    other two without touching the host's /run/netns."""
    a = addresses
    me = f"{sys.executable} {Path(__file__).resolve()}"
    cases = work / "cases.json"
    cases.write_text(json.dumps([p.__dict__ for p in probes]), "utf-8")
    served = " ".join(
        f"{x}/32" for x in (a["dnswarden_v4"], OTHER_RESOLVER_V4, a["public_v4"], WEB_V4)
    )
    served += " " + " ".join(f"{x}/128" for x in (a["dnswarden_v6"], a["public_v6"], WEB_V6))
    return f"""
mount -t tmpfs tmpfs /run
ip netns add dev
ip netns add net
for ns in dev net; do
    nsenter --net=/run/netns/$ns sh -c \
        'echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad; ip link set lo up'
done
echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad
echo 1 > /proc/sys/net/ipv4/ip_forward
echo 1 > /proc/sys/net/ipv6/conf/all/forwarding
ip link set lo up
D='ip -n dev'
N='ip -n net'

# The gateway: d0 towards the device, n0 towards the stand-in internet.
ip link add d0 type veth peer name d1 netns dev
ip link add n0 type veth peer name n1 netns net
for x in {a["gateway_v4"]}/24 {a["gateway_v6"]}/64 {GUEST_V4[0]}/24 {GUEST_V6[0]}/64; do
    ip addr add $x dev d0
done
ip addr add {TRANSIT_V4[0]}/24 dev n0
ip addr add {TRANSIT_V6[0]}/64 dev n0
ip link set d0 up
ip link set n0 up
ip route add default via {TRANSIT_V4[1]}
ip -6 route add default via {TRANSIT_V6[1]}

# The device: an official address and a guest one in each family.
for x in {a["device_v4"]}/24 {a["device_v6"]}/64 {GUEST_V4[1]}/24 {GUEST_V6[1]}/64; do
    $D addr add $x dev d1
done
$D link set d1 up
$D route add default via {a["gateway_v4"]}
$D -6 route add default via {a["gateway_v6"]}

# The stand-in internet: every server address on one link.
$N addr add {TRANSIT_V4[1]}/24 dev n1
$N addr add {TRANSIT_V6[1]}/64 dev n1
for x in {served}; do
    $N addr add $x dev n1
done
$N link set n1 up
$N route add default via {TRANSIT_V4[0]}
$N -6 route add default via {TRANSIT_V6[0]}

nft -f {RULESET}
{me} serve {work}/gateway.ready &
gateway=$!
nsenter --net=/run/netns/net {me} serve {work}/net.ready &
net=$!
trap 'kill $gateway $net' EXIT
i=0
while [ ! -e {work}/gateway.ready ] || [ ! -e {work}/net.ready ] \
    || [ -n "$(ip -6 addr show tentative; $D -6 addr show tentative; $N -6 addr show tentative)" ]
do
    i=$((i + 1)); [ $i -lt 200 ]; sleep 0.05
done
echo PROBES $(nsenter --net=/run/netns/dev {me} probe {cases})
echo COUNTERS $(nft -j list counters table inet {TABLE})
"""


def test_gateway_drops_every_bypass_and_nothing_else(tmp_path: Path) -> None:
    for command in ("nft", "ip", "nsenter"):
        tool(command)
    addresses, probes = scenario()
    result = isolated(topology_script(addresses, probes, tmp_path), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines()
                 if line.startswith(("PROBES ", "COUNTERS ")))  # fmt: skip
    outcomes = json.loads(lines["PROBES"])
    assert outcomes == {p.name: p.expected for p in probes}
    counters = {c["counter"]["name"]: c["counter"]["packets"]
                for c in json.loads(lines["COUNTERS"])["nftables"] if "counter" in c}  # fmt: skip

    official = networks("official_v4") + networks("official_v6")

    def tried(*ports: int, expected: str = DROPPED) -> int:
        return sum(1 for p in probes if p.port in ports and p.expected == expected
                   and covered(p.source, official))  # fmt: skip

    assert counters["dns_bypass_dropped"] >= tried(53)
    assert counters["dot_bypass_dropped"] >= tried(853)
    assert counters["doh_bypass_dropped"] >= tried(443)
    assert counters["dns_allowed"] >= tried(53, 853, expected=OPEN)


# --- The helpers the traffic test runs inside the namespaces ---------------------------------


def serve(ready: Path, lifetime: float = 120) -> None:
    """Answer on every port of PORTS, over UDP (echo) and TCP (b'ok'), on all addresses; exit
    after `lifetime` seconds even if nobody stops it (the test kills it long before)."""
    deadline = time.monotonic() + lifetime
    selector = selectors.DefaultSelector()
    for port in PORTS:
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            sock = socket.socket(socket.AF_INET6, kind)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("::", port))
            if kind == socket.SOCK_STREAM:
                sock.listen(16)
            selector.register(sock, selectors.EVENT_READ)
    ready.write_text("ready", "utf-8")
    while (left := deadline - time.monotonic()) > 0:
        for key, _ in selector.select(left):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock.type == socket.SOCK_DGRAM:
                data, peer = sock.recvfrom(512)
                sock.sendto(data, peer)
            else:
                connection, _ = sock.accept()
                with connection:
                    connection.sendall(b"ok")


def attempt(case: dict[str, Any], timeout: float = 2.5) -> str:
    """One probe: UDP repeats its datagram every half second (a first one may wait on neighbour
    discovery), TCP has the kernel's own SYN retry inside the timeout."""
    family = socket.AF_INET6 if ":" in case["target"] else socket.AF_INET
    kind = socket.SOCK_DGRAM if case["protocol"] == "udp" else socket.SOCK_STREAM
    target = (case["target"], case["port"])
    with socket.socket(family, kind) as sock:
        sock.bind((case["source"], 0))
        try:
            if kind == socket.SOCK_STREAM:
                sock.settimeout(timeout)
                sock.connect(target)
                return OPEN if sock.recv(16) == b"ok" else "closed"
            sock.settimeout(0.5)
            for _ in range(int(timeout / 0.5)):
                sock.sendto(b"probe", target)
                try:
                    return OPEN if sock.recv(16) == b"probe" else "garbled"
                except TimeoutError:
                    continue
            return DROPPED
        except TimeoutError:
            return DROPPED
        except OSError as error:
            return f"error: {error}"


def probe(cases: Path) -> dict[str, str]:
    """Every case at once, so the silent ones cost one timeout together."""
    loaded_cases = json.loads(cases.read_text("utf-8"))
    with ThreadPoolExecutor(max_workers=len(loaded_cases)) as pool:
        results = pool.map(attempt, loaded_cases)
        return {case["name"]: result for case, result in zip(loaded_cases, results, strict=True)}


def main(arguments: Iterator[str]) -> None:
    command = next(arguments)
    if command == "serve":
        serve(Path(next(arguments)))
    elif command == "probe":
        print(json.dumps(probe(Path(next(arguments)))))
    else:
        raise SystemExit(f"unknown command {command!r}: serve READY_FILE | probe CASES_JSON")


if __name__ == "__main__":
    main(iter(sys.argv[1:]))
