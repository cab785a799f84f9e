"""`dnswarden explain` on the Belgian worked example: text and JSON, as an operator runs it."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from resolver.commands.explain import explain, qtype_number, render_text
from resolver.config import load_config
from resolver.lists.catalogue import catalogue_ids, load_catalogue_entry, reference_label
from resolver.lists.loading import load_lists
from resolver.policy.engine import build_engine
from resolver.state import build_state

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "examples" / "belgium-2023.yaml"
DURING = datetime.datetime(2023, 6, 1, 12, tzinfo=datetime.UTC)
AFTER = datetime.datetime(2023, 10, 1, tzinfo=datetime.UTC)


@pytest.fixture(scope="module")
def state():  # type: ignore[no-untyped-def]
    return build_state(load_config(EXAMPLE, known_lists=catalogue_ids()), None)


# client, name, type, time, action, group, text fragments expected in the rendered output
CASES = [
    ("10.20.1.1", "www.tiktok.com", "A", DURING, "block", "officials",
     ["policy be-tiktok-2023, list tiktok, rule tiktok.com", "National Security Council",
      "A 0.0.0.0 (TTL 60), EDE 4 (Forged Answer)"]),
    ("10.20.1.1", "www.tiktok.com", "HTTPS", DURING, "block", "officials",
     ["NODATA", "EDE 16 (Censored)"]),
    ("10.20.5.7", "www.tiktok.com", "A", DURING, "allow", "press-office",
     ["matched by 10.20.5.0/24", "exempt for group press-office by tiktok.com"]),
    ("10.30.0.7", "www.tiktok.com", "A", DURING, "allow", "personal-wifi",
     ["forwarded upstream"]),
    ("10.20.1.1", "www.tiktok.com", "A", AFTER, "allow", "officials",
     ["policy not in force at that time"]),
]  # fmt: skip


@pytest.mark.parametrize(("client", "name", "qtype", "at", "action", "group", "fragments"), CASES)
def test_explain_cases(  # type: ignore[no-untyped-def]
    state, client: str, name: str, qtype: str, at: datetime.datetime, action: str, group: str,
    fragments: list[str],
) -> None:  # fmt: skip
    result = explain(state, name, client, qtype_number(qtype), at)
    assert result["action"] == action
    assert result["group"]["name"] == group
    text = render_text(result)
    for fragment in fragments:
        assert fragment in text


def test_explain_refuses_clients_outside_the_allow_list(state) -> None:  # type: ignore[no-untyped-def]
    result = explain(state, "example.org", "192.0.2.1", 1, DURING)
    assert result["action"] == "refuse"
    assert "EDE 18" in result["answer"]


@pytest.mark.parametrize(("text", "number"), [("A", 1), ("aaaa", 28), ("TYPE65", 65), ("64", 64)])
def test_qtype_number(text: str, number: int) -> None:
    assert qtype_number(text) == number


def test_explain_cli_json() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable,
        "-m",
        "resolver",
        "explain",
        "WWW.TikTok.com.",
        "--client",
        "10.20.1.1",
        "--at",
        "2023-06-01T12:00:00Z",
        "-c",
        str(EXAMPLE),
        "--json",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["decision"]["policy"] == "be-tiktok-2023"
    assert data["decision"]["in_force"]["until"] == "2023-09-09T22:00:00+00:00"
    assert data["matches"][0]["catalogue"]["name"] == "TikTok"


def test_explain_cli_rejects_a_bad_client() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "resolver", "explain", "x.org", "--client", "nope"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "nope" in result.stderr


# --- provenance: what each block cites, and an exempted catalogue entry ----------------------

PROVENANCE_CONFIG = """
clients: {{allow: [10.0.0.0/8]}}
blocking: {{lists: [tiktok, {ops}]}}
groups:
  press: {{subnets: [10.9.0.0/16], exempt_lists: [tiktok]}}
"""


@pytest.fixture
def provenance_state(tmp_path: Path):  # type: ignore[no-untyped-def]
    ops = tmp_path / "ops.txt"
    ops.write_text("ops-banned.example\n")
    (tmp_path / "c.yaml").write_text(PROVENANCE_CONFIG.format(ops=ops))
    return build_state(load_config(tmp_path / "c.yaml", known_lists=catalogue_ids()), None)


def tiktok_labels() -> list[str]:
    return [reference_label(r) for r in load_catalogue_entry("tiktok").references]


def test_a_catalogue_block_explains_every_decision(provenance_state) -> None:  # type: ignore[no-untyped-def]
    result = explain(provenance_state, "www.tiktok.com", "10.1.1.1", 1, DURING)
    decision = result["decision"]
    assert decision["reference"] == "; ".join(tiktok_labels())
    assert decision["reference_from"] == "list"
    assert decision["source"]["kind"] == "catalogue"
    assert decision["source"]["location"].endswith("tiktok.yaml")
    entry = load_catalogue_entry("tiktok")
    assert [d["label"] for d in decision["decisions"]] == tiktok_labels()
    assert [(d["authority"], d["url"]) for d in decision["decisions"]] == [
        (r.authority, r.url) for r in entry.references
    ]
    assert result["matches"][0]["decisions"] == decision["decisions"]
    text = render_text(result)
    assert f"reference: {'; '.join(tiktok_labels())} (catalogue entry tiktok)" in text
    assert "decisions of catalogue entry tiktok (" in text
    for reference in entry.references:
        assert f"    {reference_label(reference)}: {reference.authority}: " in text


def test_an_operator_list_block_explains_its_file(provenance_state, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = explain(provenance_state, "ops-banned.example", "10.1.1.1", 1, DURING)
    decision = result["decision"]
    path = str(tmp_path / "ops.txt")
    assert (decision["reference"], decision["reference_from"]) == (path, "list")
    assert decision["source"] == {"kind": "file", "location": path}
    assert decision["decisions"] == []
    text = render_text(result)
    assert f"reference: {path} (list file ops)" in text
    assert f"source:  {path}" in text


def test_a_policy_block_cites_the_policy_first_then_the_entry(state) -> None:  # type: ignore[no-untyped-def]
    result = explain(state, "www.tiktok.com", "10.20.1.1", 1, DURING)
    decision = result["decision"]
    assert decision["reference_from"] == "policy"
    assert "National Security Council" in decision["reference"]
    assert [d["label"] for d in decision["decisions"]] == tiktok_labels()
    text = render_text(result)
    assert "(policy be-tiktok-2023)" in text
    assert "decisions of catalogue entry tiktok" in text


def test_a_block_citing_nothing_says_so(provenance_state) -> None:  # type: ignore[no-untyped-def]
    """An engine built without provenance (nothing to cite): explain says it, invents nothing."""
    config = provenance_state.config
    bare = build_engine(config, load_lists(config).matchers, 0)  # type: ignore[arg-type]
    result = explain(replace(provenance_state, policy=bare), "ops-banned.example", "10.1.1.1", 1,
                     DURING)  # fmt: skip
    assert (result["decision"]["reference"], result["decision"]["reference_from"]) == (None, None)
    assert "reference: none (list ops cites no decision, and no policy reference)" in render_text(
        result
    )


def test_an_exempted_catalogue_entry_is_shown(provenance_state) -> None:  # type: ignore[no-untyped-def]
    result = explain(provenance_state, "www.tiktok.com", "10.9.1.1", 1, DURING)
    assert result["action"] == "allow"
    (match,) = result["matches"]
    assert match["why_not"] == "exempt for group press by exempt_lists: tiktok (rule tiktok.com)"
    text = render_text(result)
    assert "does not apply: exempt for group press by exempt_lists: tiktok" in text
    # Outside the entry, the press office is blocked like everyone else.
    assert explain(provenance_state, "ops-banned.example", "10.9.1.1", 1, DURING)["action"] == (
        "block"
    )


def test_explain_cli_json_cites_the_decisions() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "resolver", "explain", "www.tiktok.com", "--json"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    decision = json.loads(result.stdout)["decision"]
    assert decision["reference"] == "; ".join(tiktok_labels())
    assert [d["label"] for d in decision["decisions"]] == tiktok_labels()


RPZ_ZONE = """\
$ORIGIN rpz.gov.
@ SOA ns.rpz.gov. h.rpz.gov. 1 3600 600 86400 300
blocked.example CNAME rpz-drop.
local.example A 192.0.2.80
32.2.0.0.10.rpz-client-ip CNAME .
32.3.0.0.10.rpz-client-ip CNAME rpz-passthru.
"""


@pytest.fixture
def rpz_state(tmp_path: Path):  # type: ignore[no-untyped-def]
    (tmp_path / "national.rpz").write_text(RPZ_ZONE)
    (tmp_path / "c.yaml").write_text(
        "clients: {allow: [10.0.0.0/8]}\nblocking: {lists: [national]}\n"
        "sources: {national: {path: national.rpz, format: rpz}}\n"
    )
    return build_state(load_config(tmp_path / "c.yaml", known_lists=catalogue_ids()), None)


@pytest.mark.parametrize(
    ("client", "name", "rule", "answer"),
    [
        ("10.0.0.1", "blocked.example", "blocked.example", "no reply at all (RPZ DROP)"),
        ("10.0.0.1", "local.example", "local.example", "the rule's own records (RPZ local"),
        ("10.0.0.2", "any.example", "32.2.0.0.10.rpz-client-ip", "NXDOMAIN with a SOA"),
    ],
)
def test_an_rpz_block_cites_the_zone_file_and_the_owner_name(  # type: ignore[no-untyped-def]
    rpz_state, tmp_path: Path, client: str, name: str, rule: str, answer: str
) -> None:
    result = explain(rpz_state, name, client, 1, DURING)
    assert result["action"] == "block"
    decision = result["decision"]
    assert (decision["list"], decision["rule"]) == ("national", rule)
    path = str(tmp_path / "national.rpz")
    assert decision["source"] == {"kind": "file", "location": path}
    assert decision["reference"] == f"{path} (RPZ zone rpz.gov)"
    assert result["answer"].startswith(answer)


def test_a_client_passthru_is_explained(rpz_state) -> None:  # type: ignore[no-untyped-def]
    result = explain(rpz_state, "blocked.example", "10.0.0.3", 1, DURING)
    assert result["action"] == "allow"
    assert [(m["rule"], m["applies"], m["why_not"]) for m in result["matches"]] == [
        ("32.3.0.0.10.rpz-client-ip", False,
         "client passed through this list by 32.3.0.0.10.rpz-client-ip"),
        ("blocked.example", False, "client passed through this list by 32.3.0.0.10.rpz-client-ip"),
    ]  # fmt: skip
