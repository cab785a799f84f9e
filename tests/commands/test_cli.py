"""The `dnswarden` command as an operator runs it: a real subprocess, exit codes and output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from shipped import shipped_configs

from resolver import __version__

ROOT = Path(__file__).resolve().parents[2]


def dnswarden(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "resolver", *args],
        cwd=cwd or ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_repository_ships_configs() -> None:
    assert ROOT / "deploy" / "dnswarden.yaml" in shipped_configs()


@pytest.mark.parametrize("path", shipped_configs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_check_accepts_every_shipped_config(path: Path) -> None:
    result = dnswarden("check", str(path))
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_check_prints_every_problem_with_file_line_and_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "listen: ['127.0.0.1:99999']\n"
        "upstream:\n"
        "  servers: [not-an-ip]\n"
        "  timout: 2s\n"
        "clients:\n"
        "  allow: [10.0.0.1/8]\n"
        "blocking:\n"
        "  lists: [tiktk]\n"
        "  answer: sinkhole\n",
        encoding="utf-8",
    )
    result = dnswarden("check", str(config))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    expected = [
        (1, "listen[0]"),
        (3, "upstream.servers[0]"),
        (4, "upstream.timout"),
        (6, "clients.allow[0]"),
        (8, "blocking.lists[0]"),
        (9, "blocking.answer"),
    ]
    for line, key in expected:
        assert any(entry.startswith(f"{config}:{line}: {key}: ") for entry in lines), (line, key)
    assert len(lines) == len(expected)


def test_check_names_the_bad_line_of_a_local_list(tmp_path: Path) -> None:
    (tmp_path / "extra.txt").write_text("good.example\nbad..example\n", encoding="utf-8")
    config = tmp_path / "c.yaml"
    config.write_text("blocking: {lists: [extra.txt], }\nlimits: {max_bad_lines: 1}\n")
    result = dnswarden("check", str(config))
    assert result.returncode == 0, result.stderr  # one bad line is within max_bad_lines
    (tmp_path / "extra.txt").write_text("a..example\nb..example\n", encoding="utf-8")
    result = dnswarden("check", str(config))
    assert result.returncode == 1
    assert f"{tmp_path / 'extra.txt'}:1: 'a..example'" in result.stderr
    assert "refusing to load this list" in result.stderr


def test_serve_refuses_to_start_on_an_invalid_config(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("lisen: []\n", encoding="utf-8")
    result = dnswarden("serve", "-c", str(config))
    assert result.returncode == 1
    assert f"{config}:1: lisen:" in result.stderr
    assert "Traceback" not in result.stderr


def test_version_and_help() -> None:
    assert dnswarden("--version").stdout.strip() == f"dnswarden {__version__}"
    help_text = dnswarden("--help").stdout
    for command in ("serve", "check"):
        assert command in help_text
    serve_help = dnswarden("serve", "--help").stdout
    for option in ("--config", "--listen", "--upstream"):
        assert option in serve_help


# --- check tells the truth: what each group has blocked now, and what is not enforced --------

TRUTH_LISTS = {"national.txt": "a.example\nb.example\nc.example\n", "doh.txt": "d.example\n"}
TRUTH_CONFIG = """\
upstream: {servers: ["192.0.2.53"]}
blocking: {lists: []}
groups:
  officials: {subnets: [10.20.0.0/16], block: [doh.txt]}
  personal-wifi: {subnets: [10.30.0.0/16]}
policies:
  ban:
    block: [national.txt]
    groups: [officials]
    reference: "decision 1"
"""
LAPSED = '    from: 2023-03-10\n    until: 2023-09-10\n'
FUTURE = '    from: 2999-01-01\n'


def write_truth_config(directory: Path, window: str = "", extra: str = "") -> Path:
    for name, text in TRUTH_LISTS.items():
        (directory / name).write_text(text, encoding="utf-8")
    config = directory / "site.yaml"
    config.write_text(TRUTH_CONFIG + window + extra, encoding="utf-8")
    return config


@pytest.mark.parametrize(
    ("window", "strict", "code", "shown"),
    [
        ("", False, 0, ["group officials: 4 rules blocked now, from national, doh",
                        "group personal-wifi: nothing blocked now",
                        "group default: nothing blocked now"]),
        ("", True, 0, ["group officials: 4 rules blocked now"]),
        (LAPSED, False, 0, ["group officials: 1 rule blocked now, from doh",
                            "warning: {config}:7: policies.ban: lapsed on "
                            "2023-09-10T00:00:00+00:00 (window 2023-03-10T00:00:00+00:00 to "
                            "2023-09-10T00:00:00+00:00); it blocks nothing now (for officials)"]),
        (LAPSED, True, 1, ["warning: {config}:7: policies.ban: lapsed on"]),
        (FUTURE, False, 0, ["group officials: 1 rule blocked now, from doh",
                            "warning: {config}:7: policies.ban: not in force yet: starts on "
                            "2999-01-01T00:00:00+00:00 (window 2999-01-01T00:00:00+00:00 to "
                            "open); it blocks nothing now (for officials)"]),
        (FUTURE, True, 1, ["warning: {config}:7: policies.ban: not in force yet"]),
    ],
)  # fmt: skip
def test_check_prints_blocked_now_and_warns_of_policies_out_of_window(
    tmp_path: Path, window: str, strict: bool, code: int, shown: list[str]
) -> None:
    config = write_truth_config(tmp_path, window)
    result = dnswarden("check", *(["--strict"] if strict else []), str(config))
    assert result.returncode == code, result.stdout + result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    for expected in shown:
        assert expected.format(config=config) in lines or any(
            line.startswith(expected.format(config=config)) for line in lines
        ), (expected, lines)
    warnings = [line for line in lines if line.startswith("warning:")]
    assert len(warnings) == (1 if window else 0)
    if code:
        assert result.stderr.strip() == f"{config}: 1 warning(s), and --strict fails on warnings"
    else:
        assert result.stderr == ""


def test_check_strict_fails_on_list_warnings_too(tmp_path: Path) -> None:
    config = write_truth_config(tmp_path)
    (tmp_path / "national.txt").write_text("a.example\nbad..example\n", encoding="utf-8")
    assert dnswarden("check", str(config)).returncode == 0
    result = dnswarden("check", "--strict", str(config))
    assert result.returncode == 1
    assert "bad..example" in result.stdout
    assert "1 warning(s)" in result.stderr


def test_check_strict_is_documented_in_help() -> None:
    assert "--strict" in dnswarden("check", "--help").stdout


@pytest.mark.parametrize(
    ("servers", "resolv_conf", "warned"),
    [
        ("", "", True),  # nothing configured, nothing in resolv.conf: Quad9
        ("", "nameserver 127.0.0.1\n", True),  # only dnswarden itself (listens on :53)
        ("", "nameserver 192.0.2.1\n", False),
        ('upstream: {servers: ["192.0.2.53"]}\n', "", False),
        ('upstream: {servers: ["9.9.9.9", "149.112.112.112"]}\n', "", False),  # chosen, not fallen
    ],
)
def test_check_warns_of_the_public_fallback(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    servers: str,
    resolv_conf: str,
    warned: bool,
) -> None:
    from resolver.commands import cli

    config = tmp_path / "site.yaml"
    config.write_text(f'listen: ["127.0.0.1:53"]\n{servers}', encoding="utf-8")
    monkeypatch.setattr(cli, "read_resolv_conf", lambda: resolv_conf)
    assert cli.main(["check", str(config)]) == 0
    out = capsys.readouterr().out
    line = (
        f"  warning: {config}: upstream.servers: not set, and /etc/resolv.conf names no "
        "nameserver but dnswarden itself: allowed queries go to the built-in public resolvers "
        "udp://9.9.9.9:53, udp://149.112.112.112:53 (Quad9); set upstream.servers to your own"
    )
    assert (line in out.splitlines()) == warned, out
    assert cli.main(["check", "--strict", str(config)]) == (1 if warned else 0)


# --- check and the list guard: it fails on every version the server would refuse -------------

GUARD_GOOD = "banned.example\nalso-banned.example\nthird.example\nfourth.example\n"
GUARD_HTML = (
    "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<title>404 Not Found</title>\n</head>\n"
    "<body>\n<h1>Not Found</h1>\n<p>The requested URL was not found.</p>\n<hr>\n"
    "<address>Apache</address>\n</body>\n</html>\n"
)
GUARD_CASES = {  # what the list becomes: (content, reason; None: not refused without a last copy)
    "random bytes": (os.urandom(20000), "binary", "binary"),
    "HTML 404 page": (GUARD_HTML.encode(), "html", "html"),
    "0 bytes": (b"", "empty", None),
    "shrink": (b"banned.example\n", "shrink", None),
    "single label": (b"banned.example\ncom\n", "tld_rule", "tld_rule"),
}


def guard_config(tmp_path: Path, source: str = "{path: mylist.txt}") -> Path:
    config = tmp_path / "c.yaml"
    config.write_text(
        f"sources:\n  mylist: {source}\nblocking:\n  lists: [tiktok, mylist]\n"
        f"state_dir: {tmp_path / 'state'}\nupstream: {{servers: [192.0.2.53]}}\n"
    )
    return config


def run_check(
    config: Path, capsys: pytest.CaptureFixture[str], *flags: str
) -> tuple[int, str, str]:
    from resolver.commands import cli

    code = cli.main(["check", *flags, str(config)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", GUARD_CASES)
@pytest.mark.parametrize("last_good", [True, False], ids=["last good copy", "no copy"])
def test_check_fails_on_every_list_version_the_server_would_refuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, last_good: bool
) -> None:
    from resolver.config import load_config
    from resolver.lists.catalogue import catalogue_ids
    from resolver.lists.loading import load_lists

    data, with_copy, without_copy = GUARD_CASES[case]
    config = guard_config(tmp_path)
    path = tmp_path / "mylist.txt"
    path.write_text(GUARD_GOOD)
    assert run_check(config, capsys)[0] == 0
    if last_good:  # what a server that ran with the good version leaves in state_dir
        load_lists(load_config(config, known_lists=catalogue_ids()), keep=True)
    path.write_bytes(data)
    reason = with_copy if last_good else without_copy
    code, out, err = run_check(config, capsys)
    if reason is None:
        assert (code, err) == (0, ""), err
        return
    assert code == 1, out + err
    first = err.splitlines()[0]
    assert first.startswith(f"{path}: list mylist refused ({reason}): "), first
    kept = "its last good copy is used (4 rules)" if last_good else "there is no good copy"
    assert kept in first
    if reason == "tld_rule":
        assert f"{path}:2: 'com' blocks the whole top-level domain" in err.splitlines()
    assert out.startswith(f"{config}: refused: mylist ")
    assert "group default: " in out  # what is blocked now is still shown


def test_check_passes_single_label_rules_a_source_allows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "mylist.txt").write_text("banned.example\nzip\n")
    config = guard_config(tmp_path, "{path: mylist.txt, allow_tld_rules: true}")
    assert run_check(config, capsys)[0] == 0
    config = guard_config(tmp_path, "{path: mylist.txt, allow_tld_rules: yes please}")
    code, _, err = run_check(config, capsys)
    assert code == 1
    assert f"{config}:2: sources.mylist.allow_tld_rules: expected true or false" in err


def test_reload_accept_records_the_version_and_names_what_it_cannot_accept(
    tmp_path: Path,
) -> None:
    config = guard_config(tmp_path)
    (tmp_path / "mylist.txt").write_text("banned.example\n")
    pid_file = tmp_path / "none.pid"
    result = dnswarden("reload", "-c", str(config), "--pid-file", str(pid_file),
                       "--accept", "mylist")  # fmt: skip
    assert f"accepting {tmp_path / 'mylist.txt'} (15 bytes)" in result.stdout
    assert result.returncode == 2 and "no usable PID file" in result.stderr  # no server here
    assert list((tmp_path / "state" / "accept").glob("mylist-*.json"))
    result = dnswarden("reload", "-c", str(config), "--accept", "tiktok")
    assert result.returncode == 2
    assert "bundled catalogue entries change only with dnswarden itself" in result.stderr
    assert "--accept" in dnswarden("reload", "--help").stdout


@pytest.mark.parametrize(
    ("args", "env", "error_line"),
    [
        (("explain", "x.org", "--at", "tomorrow"), {},
         "dnswarden explain: error: argument --at: expected an ISO 8601 date or time (2024-05-01, "
         "2024-05-01T12:00, 2024-05-01T12:00+02:00; no offset means UTC), got 'tomorrow'"),
        (("serve", "--workers", "abc"), {},
         "dnswarden serve: error: argument --workers: expected a number from 1 to 256 or auto, "
         "got 'abc'"),
        (("serve", "--workers", "0"), {},
         "dnswarden serve: error: argument --workers: expected a number from 1 to 256 or auto, "
         "got '0'"),
        (("explain", "x.org", "--type", "FOO"), {},
         "dnswarden explain: error: argument --type: unknown query type 'FOO' (a name such as A, "
         "AAAA, MX, HTTPS, or a number: TYPE65 or 65)"),
        (("explain", "x.org", "--client", "nope"), {},
         "dnswarden explain: error: argument --client: expected an IPv4 or IPv6 address "
         "(192.0.2.7, 2001:db8::7), got 'nope'"),
        (("export", "--group", "nope"), {},
         "dnswarden export: error: argument --group: unknown group 'nope' (groups: default)"),
        (("serve",), {"DNSWARDEN_EVENT_LOOP": "trio"},
         "dnswarden serve: error: DNSWARDEN_EVENT_LOOP='trio': expected auto, asyncio or uvloop"),
    ],
    ids=["at", "workers-word", "workers-zero", "type", "client", "group", "event-loop"],
)  # fmt: skip
def test_usage_errors_read_like_argparse(
    args: tuple[str, ...], env: dict[str, str], error_line: str, tmp_path: Path
) -> None:
    """Exit 2 and `dnswarden CMD: error: ...` with the accepted forms, never a raw Python
    message (`Invalid isoformat string`, `invalid literal for int()`)."""
    result = subprocess.run(
        [sys.executable, "-m", "resolver", *args],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(f"usage: dnswarden {args[0]}"), lines
    assert lines[-1] == error_line
    assert result.stdout == ""


def test_catalogue_json_counts_are_numbers() -> None:
    rows = json.loads(dnswarden("catalogue", "--json").stdout)
    assert rows and all(type(row["domains"]) is int and row["domains"] > 0 for row in rows)
