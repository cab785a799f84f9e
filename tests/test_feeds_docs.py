"""The configuration snippets of docs/feeds.md are what they claim: dnswarden's validates, the
Knot DNS and BIND primaries' pass their own checkers, rsyslog's passes `rsyslogd -N1`, and
Vector's reads the socket dnswarden's writes to. (The Knot snippet also runs, as the primary of
tests/e2e/test_e2e_rpz_transfer.py, and the rsyslog one receives dnswarden's audit trail in
tests/e2e/test_e2e_telemetry.py.) Each checker is skipped when its tool is not installed
(Debian: knot, bind9-utils, rsyslog; `.ci/run` installs them)."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from doc_examples import DOCS, snippet

from resolver.config import parse_config

PAGE = DOCS / "feeds.md"
SECRET = base64.b64encode(bytes(range(32))).decode()


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


def dnswarden_snippet(tmp_path: Path) -> object:
    text = snippet(PAGE, "# dnswarden.yaml")
    key = tmp_path / "xfr.key"
    key.write_text(f'key "dnswarden-xfr" {{ algorithm hmac-sha256; secret "{SECRET}"; }};\n')
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    text = text.replace("/etc/dnswarden/xfr.key", str(key))
    text = text.replace("/etc/dnswarden/siem-ca.pem", str(ca))
    return parse_config(text, "feeds.md", known_lists=frozenset({"tiktok"}))


def test_the_dnswarden_snippet_validates(tmp_path: Path) -> None:
    config = dnswarden_snippet(tmp_path)
    (source,) = config.sources  # type: ignore[attr-defined]
    assert source.transfer is not None and source.transfer.zone == "rpz.example.gov"
    assert config.dnstap.socket == "/run/vector/dnstap.sock"  # type: ignore[attr-defined]
    assert config.syslog.parts[0] == "tls"  # type: ignore[attr-defined]


def test_vector_reads_the_socket_dnswarden_writes(tmp_path: Path) -> None:
    vector = yaml.safe_load(snippet(PAGE, "# vector.yaml"))
    source = vector["sources"]["dnswarden"]
    assert (source["type"], source["mode"]) == ("dnstap", "unix")
    assert source["socket_path"] == dnswarden_snippet(tmp_path).dnstap.socket  # type: ignore[attr-defined]
    assert vector["sinks"]["soc"]["inputs"] == ["dnswarden"]


def test_the_knot_snippet_passes_knotc_conf_check(tmp_path: Path) -> None:
    knotc = tool("knotc")
    text = snippet(PAGE, "# knot.conf").replace("SECRET", SECRET)
    text = text.replace("/var/lib/knot", str(tmp_path))
    conf = tmp_path / "knot.conf"
    conf.write_text(text)
    done = subprocess.run([knotc, "-c", str(conf), "conf-check"], capture_output=True, text=True,
                          timeout=30, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_bind_snippet_passes_named_checkconf(tmp_path: Path) -> None:
    checkconf = tool("named-checkconf")
    conf = tmp_path / "named.conf"
    conf.write_text(snippet(PAGE, 'zone "rpz.example.gov"').replace("SECRET", SECRET))
    done = subprocess.run([checkconf, str(conf)], capture_output=True, text=True, timeout=30,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_rsyslog_snippet_passes_rsyslogd_check(tmp_path: Path) -> None:
    rsyslogd = tool("rsyslogd")
    text = snippet(PAGE, 'module(load="imtcp")')
    text = text.replace("/var/log/siem/dnswarden.jsonl", str(tmp_path / "out.jsonl"))
    conf = tmp_path / "rsyslog.conf"
    conf.write_text(f'global(workDirectory="{tmp_path}")\n' + text)
    done = subprocess.run([rsyslogd, "-N1", "-f", str(conf)], capture_output=True, text=True,
                          timeout=30, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
