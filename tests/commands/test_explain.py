"""`dnswarden explain` on the Belgian worked example: text and JSON, as an operator runs it."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from resolver.commands.explain import explain, qtype_number, render_text
from resolver.config import load_config
from resolver.lists.catalogue import catalogue_ids
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
