"""Tests for resolver/commands/export.py: the effective policy per group in three formats, and the
round trip that matters: export RPZ, import it again, get the same decision for every name."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from resolver.commands.export import effective_policy, render
from resolver.config import Config, load_config
from resolver.lists.catalogue import catalogue_ids, load_catalogue_entry, reference_label
from resolver.lists.compiled import from_parsed
from resolver.lists.formats import parse_rules
from resolver.policy.engine import Action
from resolver.protocol.names import from_text
from resolver.state import ResolverState, build_state

CLIENTS = {"default": "192.168.1.5", "press": "10.9.0.7", "newsroom": "10.8.0.7"}
NOW = time.time()


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Config, ResolverState]:
    (tmp_path / "ops.txt").write_text(
        "ops-one.example\nops-two.example\n*.wild.example\n0.0.0.0 hosts.example\n"
        "sub.ops-one.example\n"
    )
    (tmp_path / "zone.rpz").write_text(
        "$ORIGIN feed.rpz.\n@ SOA ns. h. 1 1 1 1 1\n@ NS ns.\n"
        "nx.example CNAME .\n*.nx.example CNAME .\n"
        "nodata.example CNAME *.\n"
        "only-below.example CNAME .\n*.only-below.example CNAME *.\n"
        "*.swapped.example CNAME *.\nswapped.example CNAME .\n"  # the same, in the other order
        "null.example A 0.0.0.0\n*.null.example A 0.0.0.0\n"
        "ops-two.example CNAME .\n"  # already blocked by ops, which comes first
        "deep.ops-one.example CNAME .\n"  # below an earlier list's rule: that list decides
        "x.sub.ops-one.example CNAME .\n"  # inside a subtree the press group is exempt from
    )
    (tmp_path / "ads.txt").write_text("||ads.example^\n@@||fine.ads.example^\n/^track/\n")
    (tmp_path / "ban.txt").write_text("banned.example\n")
    (tmp_path / "old.txt").write_text("expired.example\n")
    (tmp_path / "c.yaml").write_text(
        """
sources:
  ops: {path: ops.txt}
  zone: {path: zone.rpz, format: rpz}
  ads: {path: ads.txt, format: adblock}
  ban: {path: ban.txt}
  old: {path: old.txt}
blocking:
  lists: [tiktok, ops, zone, ads]
  answer: null_ip
groups:
  press:
    subnets: [10.9.0.0/16]
    exempt: [press.tiktok.com, "=tiktok.com", sub.ops-one.example]
  newsroom:
    subnets: [10.8.0.0/16]
    exempt_lists: [tiktok]
policies:
  current:
    block: [ban]
    groups: [default, press]
    answer: nodata
    reference: "Decision 1/2024"
  lapsed:
    block: [old]
    groups: [default]
    until: 2020-01-01
"""
    )
    config = load_config(tmp_path / "c.yaml", known_lists=catalogue_ids())
    return config, build_state(config)


def decision(state: ResolverState, group: str, name: str) -> tuple[bool, str]:
    result = state.policy.decide(CLIENTS[group], from_text(name), 1, NOW)
    return result.action is Action.BLOCK, result.answer if result.action is Action.BLOCK else ""


def probe_names(state: ResolverState) -> list[str]:
    names = {"press.tiktok.com", "a.press.tiktok.com", "tiktok.com", "www.tiktok.com"}
    names |= {"unlisted.example", "expired.example", "fine.ads.example", "x.fine.ads.example"}
    names |= {"only-below.example", "deep.a.only-below.example", "wild.example", "sub.wild.example",
              "swapped.example", "a.swapped.example"}  # fmt: skip
    for group in state.policy.groups.values():
        for binding in group.bindings:
            inner = getattr(binding.matcher, "inner", binding.matcher)
            for pattern, *_ in inner.rules():
                base = pattern.lstrip("*.")
                if "*" in base:
                    continue
                names |= {base, f"www.{base}", f"a.b.{base}"}
    return sorted(names)


@pytest.mark.parametrize("group", ["default", "press", "newsroom"])
def test_rpz_round_trip_gives_the_same_decisions(
    setup: tuple[Config, ResolverState], group: str
) -> None:
    config, state = setup
    zone = "\n".join(render(effective_policy(config, state.policy, group, NOW), "rpz"))
    imported = from_parsed(parse_rules(zone.encode(), "export.rpz", "rpz"), "export")
    checked = 0
    for name in probe_names(state):
        blocked, answer = decision(state, group, name)
        hit = imported.lookup(from_text(name))
        if name.startswith("track"):
            continue  # regex rules cannot be exported (counted in the header)
        assert (hit is not None) == blocked, (group, name)
        if hit is not None:
            assert hit[0].answer == answer, (group, name)
        checked += 1
    assert checked > 60


def test_header_counts_what_cannot_be_expressed(setup: tuple[Config, ResolverState]) -> None:
    config, state = setup
    lines = list(render(effective_policy(config, state.policy, "default", NOW), "rpz"))
    assert lines[0] == "; dnswarden export: effective policy of group 'default'"
    assert "; lists, in precedence order: ban, tiktok, ops, zone, ads" in lines
    assert any("wildcard or regex rules" in line for line in lines)
    assert "$ORIGIN rpz.dnswarden.invalid." in lines
    assert "old" not in lines[2]  # the lapsed policy is not in force


@pytest.mark.parametrize(
    ("fmt", "present", "absent"),
    [
        (
            "rpz",
            ["tiktok.com A 0.0.0.0", "*.tiktok.com AAAA ::", "banned.example CNAME *.",
             "nx.example CNAME .", "*.wild.example A 0.0.0.0",
             "fine.ads.example CNAME rpz-passthru."],
            ["wild.example A 0.0.0.0", "expired.example A 0.0.0.0"],
        ),
        (
            "hosts",
            ["0.0.0.0 tiktok.com", "0.0.0.0 nodata.example", "0.0.0.0 banned.example"],
            ["0.0.0.0 wild.example", "0.0.0.0 fine.ads.example"],
        ),
        (
            "domains",
            ["tiktok.com", "*.wild.example", "ops-one.example"],
            ["nodata.example", "fine.ads.example"],
        ),
    ],
)  # fmt: skip
def test_formats(
    setup: tuple[Config, ResolverState], fmt: str, present: list[str], absent: list[str]
) -> None:
    config, state = setup
    lines = list(render(effective_policy(config, state.policy, "default", NOW), fmt))
    for line in present:
        assert line in lines, line
    for line in absent:
        assert line not in lines, line


def test_exemptions_per_group(setup: tuple[Config, ResolverState]) -> None:
    config, state = setup
    press = list(render(effective_policy(config, state.policy, "press", NOW), "rpz"))
    assert "tiktok.com CNAME rpz-passthru." in press  # =tiktok.com: the name alone
    assert "*.tiktok.com A 0.0.0.0" in press  # its subdomains stay blocked
    assert "press.tiktok.com CNAME rpz-passthru." in press
    assert "*.press.tiktok.com CNAME rpz-passthru." in press
    assert not any(line.startswith("sub.ops-one.example A") for line in press)
    hosts = list(render(effective_policy(config, state.policy, "press", NOW), "hosts"))
    assert "0.0.0.0 tiktok.com" not in hosts


def test_output_is_sorted_and_stable(setup: tuple[Config, ResolverState]) -> None:
    config, state = setup
    first = list(render(effective_policy(config, state.policy, "default", NOW), "domains"))
    second = list(render(effective_policy(config, state.policy, "default", NOW), "domains"))
    assert first == second
    body = [line.removeprefix("*.") for line in first if not line.startswith("#")]
    assert body == sorted(body)


def test_unknown_group_and_format(setup: tuple[Config, ResolverState]) -> None:
    config, state = setup
    with pytest.raises(ValueError, match="unknown group 'nobody'"):
        effective_policy(config, state.policy, "nobody", NOW)
    with pytest.raises(ValueError, match="unknown export format"):
        list(render(effective_policy(config, state.policy, "default", NOW), "csv"))


def test_header_cites_every_list_and_its_decisions(
    setup: tuple[Config, ResolverState], tmp_path: Path
) -> None:
    """Blocks exported to another resolver keep their provenance, as comments."""
    config, state = setup
    for fmt, mark in (("rpz", ";"), ("hosts", "#"), ("domains", "#")):
        lines = list(render(effective_policy(config, state.policy, "default", NOW), fmt))
        header = [line for line in lines if line.startswith(mark)]
        entry = load_catalogue_entry("tiktok")
        expected = [
            f"{mark} list ban: list file {tmp_path / 'ban.txt'}",
            f"{mark}   policy current, reference: Decision 1/2024",
            f"{mark} list tiktok: catalogue entry {entry.path}",
            *(f"{mark}   decision {reference_label(r)}: {r.authority}: {r.url}"
              + ("" if r.verified else " (not yet verified)") for r in entry.references),
            f"{mark} list ops: list file {tmp_path / 'ops.txt'}",
            f"{mark} list zone: list file {tmp_path / 'zone.rpz'}",
            f"{mark} list ads: list file {tmp_path / 'ads.txt'}",
        ]  # fmt: skip
        assert [line for line in header if line in expected] == expected
        assert not any("old" in line.split(":")[0] for line in header)  # lapsed: not in force


def test_a_group_exempting_a_catalogue_entry_exports_its_names_as_passthru(
    setup: tuple[Config, ResolverState],
) -> None:
    config, state = setup
    lines = list(render(effective_policy(config, state.policy, "newsroom", NOW), "rpz"))
    assert "; group newsroom exempts every name of catalogue entry tiktok" in lines
    assert "tiktok.com CNAME rpz-passthru." in lines
    assert "*.tiktok.com CNAME rpz-passthru." in lines
    assert "tiktok.com A 0.0.0.0" not in lines
    assert any("wildcard exemptions (exempt_lists)" in line for line in lines)


def test_rpz_only_actions_survive_an_export(tmp_path: Path) -> None:
    zone = tmp_path / "national.rpz"
    zone.write_text(
        "$ORIGIN rpz.gov.\n@ SOA ns. h. 1 1 1 1 1\ndrop.example CNAME rpz-drop.\n"
        "tcp.example CNAME rpz-tcp-only.\nlocal.example A 192.0.2.1\n"
    )
    (tmp_path / "c.yaml").write_text(
        f"blocking: {{lists: [national]}}\nsources: {{national: {{path: {zone}, format: rpz}}}}\n"
    )
    config = load_config(tmp_path / "c.yaml", known_lists=catalogue_ids())
    state = build_state(config)
    lines = list(render(effective_policy(config, state.policy, "default", NOW), "rpz"))
    assert "drop.example CNAME rpz-drop." in lines
    assert "tcp.example CNAME rpz-tcp-only." in lines
    assert "local.example CNAME ." in lines
    assert any("RPZ local data, written as NXDOMAIN" in line for line in lines)
