"""The configs the repository ships enforce the ban today, not only on the day they were written.

`dnswarden explain` is run on each, as an operator would, at the current time (no `--at`): asked
by an official device, `www.tiktok.com` must be blocked, and under deploy/ the DNS bypasses
(`doh-bypass`: the Firefox canary, iCloud Private Relay, DDR) must be closed too. A policy that
ended in 2023 blocks nothing, which once went unnoticed for years in the shipped example.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from harness import server_env
from shipped import ROOT, shipped_configs

OFFICIAL_CLIENTS = {
    "deploy/dnswarden.yaml": "10.20.1.1",
    "resolver/config/default.yaml": "10.1.2.3",  # every allowed client is in `default`
}
"""For each shipped config, the address of a device in its official-device group."""

WORKED_EXAMPLES = {
    "deploy/examples/belgium-2023.yaml": (
        "10.20.1.1",
        "the worked example of a policy window (docs/policies.md): its only policy lapsed on "
        "2023-09-10 by design, and tests/config/test_config.py pins its groups and policy; "
        "`check` warns that it blocks nothing now",
    ),
}
"""Shipped configs excluded from enforcing today: address of an official device, and why."""

BYPASS_EXEMPT = {
    "resolver/config/default.yaml": "the embedded default, not a deploy/ config; closing the "
    "bypass by default there is its own change",
}
BYPASS_CANARY = "use-application-dns.net"
CONFIG_KEY = "dnswarden.yaml"


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def embedded_configs() -> list[tuple[str, str]]:
    """(where, config text) of every config a Kubernetes ConfigMap under deploy/ carries."""
    found = []
    for path in sorted((ROOT / "deploy" / "kubernetes").rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if isinstance(document, dict) and document.get("kind") == "ConfigMap":
                text = document.get("data", {}).get(CONFIG_KEY)
                if text is not None:
                    found.append((f"{relative(path)}:{CONFIG_KEY}", text))
    return found


def enforcing_configs(tmp: Path) -> list[tuple[str, Path, str]]:
    """(id, file, official-device address) of every config that must enforce today."""
    cases = [
        (relative(p), p, OFFICIAL_CLIENTS[relative(p)])
        for p in shipped_configs()
        if relative(p) not in WORKED_EXAMPLES
    ]
    for index, (where, text) in enumerate(embedded_configs()):
        file = tmp / f"embedded-{index}.yaml"
        file.write_text(text, encoding="utf-8")
        cases.append((where, file, "10.20.1.1"))
    return cases


def dnswarden(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "resolver", *args],
        cwd=ROOT,
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def verdict(name: str, client: str, config: Path) -> str:
    result = dnswarden("explain", name, "--client", client, "-c", str(config))
    assert result.returncode == 0, result.stderr
    lines = [line.split(":", 1)[1].strip() for line in result.stdout.splitlines()
             if line.strip().startswith("verdict:")]  # fmt: skip
    assert len(lines) == 1, result.stdout
    return lines[0]


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, Path, str]]:
    return enforcing_configs(tmp_path_factory.mktemp("embedded"))


def test_every_shipped_config_names_an_official_device_or_why_not() -> None:
    shipped = {relative(p) for p in shipped_configs()}
    assert shipped == set(OFFICIAL_CLIENTS) | set(WORKED_EXAMPLES)
    assert not set(OFFICIAL_CLIENTS) & set(WORKED_EXAMPLES)
    assert len(embedded_configs()) >= 2  # the Deployment's and the gateway DaemonSet's


def test_every_shipped_config_blocks_tiktok_for_officials_now(
    cases: list[tuple[str, Path, str]],
) -> None:
    verdicts = {where: verdict("www.tiktok.com", client, file) for where, file, client in cases}
    assert verdicts == dict.fromkeys(verdicts, "BLOCK")


def test_deploy_configs_close_the_dns_bypass_for_officials(
    cases: list[tuple[str, Path, str]],
) -> None:
    checked = [(where, file, client) for where, file, client in cases
               if where not in BYPASS_EXEMPT]  # fmt: skip
    assert all(where.startswith("deploy/") for where, _, _ in checked)
    verdicts = {where: verdict(BYPASS_CANARY, client, file) for where, file, client in checked}
    assert verdicts == dict.fromkeys(verdicts, "BLOCK")
    assert len(verdicts) >= 3


@pytest.mark.parametrize("example", sorted(WORKED_EXAMPLES))
def test_a_worked_example_excluded_here_is_warned_about_by_check(example: str) -> None:
    """The exclusion must stay true: the example blocks nothing now, and `check` says so."""
    client, _reason = WORKED_EXAMPLES[example]
    assert verdict("www.tiktok.com", client, ROOT / example) == "ALLOW"
    result = dnswarden("check", example)
    assert result.returncode == 0, result.stderr
    assert any(line.strip().startswith(f"warning: {example}:") and "lapsed on" in line
               for line in result.stdout.splitlines()), result.stdout  # fmt: skip
    assert dnswarden("check", "--strict", example).returncode == 1
