"""The `dnswarden` command. The only place that prints problems and chooses exit codes."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import ipaddress
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from resolver import __version__
from resolver.commands import profile
from resolver.config import Config, ConfigError, load_config, with_overrides
from resolver.config.problems import ordered_problems
from resolver.lists.catalogue import ListError, catalogue_ids
from resolver.observe.audit import AuditLog, read_key
from resolver.protocol.devices import parse_device_id
from resolver.shell.binding import BindError
from resolver.shell.pidfile import PidFile, PidFileBusy, is_dnswarden_server
from resolver.shell.workers import worker_count
from resolver.state import ResolverState, build_state, read_resolv_conf

EXIT_OK = 0
EXIT_INVALID = 1
"""An invalid config or list: restarting cannot help."""
EXIT_USAGE = 2
"""A bad argument or environment variable (argparse's own code); `reload` and `export` also
use it when they cannot act (no running server, a file that cannot be written)."""
EXIT_CANNOT_START = 3
"""`serve` cannot start: an address in use or not (yet) on this host, no permission for the
port, the PID file of a server still running. A later retry may work (an interface coming up),
so the systemd unit retries, a few times."""
EVENT_LOOP_VARIABLE = "DNSWARDEN_EVENT_LOOP"
MAX_SHOWN_PROBLEMS = 5
MAX_PROBLEM_CHARS = 200

class UsageError(Exception):
    """A bad argument found only after parsing (a group the config does not define, an
    environment variable): reported as argparse reports its own, usage line first, exit 2."""


def build_parser() -> argparse.ArgumentParser:
    return build_parsers()[0]


def build_parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The `dnswarden` parser, and each command's own (by every name it answers to), which
    reports errors found after parsing in the same words as argparse's own."""
    parser = argparse.ArgumentParser(
        prog="dnswarden",
        description="DNS resolver that sinkholes the domains of apps banned on official devices "
        "and forwards everything else upstream.",
    )
    parser.add_argument("--version", action="version", version=f"dnswarden {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the resolver (embedded default config unless -c is given)",
        description="Run the resolver until SIGINT or SIGTERM; SIGHUP reloads config and lists. "
        "It runs on uvloop when installed (the `speed` extra), else on the stock asyncio loop; "
        f"{EVENT_LOOP_VARIABLE}=asyncio or =uvloop in the environment forces one.",
    )
    serve.add_argument("-c", "--config", metavar="FILE", help="YAML config file")
    serve.add_argument(
        "--listen",
        metavar="HOST:PORT",
        action="append",
        default=[],
        help="listen here (UDP and TCP) instead of the config's `listen`; repeatable",
    )
    serve.add_argument(
        "--upstream",
        metavar="HOST:PORT",
        action="append",
        default=[],
        help="forward here instead of the config's `upstream.servers`; repeatable",
    )
    serve.add_argument(
        "--workers",
        metavar="N",
        type=_workers_argument,
        help="worker processes sharing the listeners (SO_REUSEPORT), or `auto` for one per CPU "
        "(default: the config's `workers`, 1 unless set)",
    )
    serve.add_argument("--worker-report-fd", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    serve.add_argument(
        "--pid-file",
        metavar="FILE",
        help="write the server's PID here, for `dnswarden reload` "
        "(default: dnswarden.pid in the config's state_dir)",
    )

    check = commands.add_parser(
        "check",
        help="validate a config file and the lists it names, start nothing",
        description="Exit 0 when FILE is valid; else print every problem as "
        "FILE:LINE: key.path: message and exit 1. Also prints what each group has blocked now, "
        "and warns of what the config does not enforce: a policy that has lapsed or not "
        "started, the built-in public upstreams.",
    )
    check.add_argument("file", metavar="FILE")
    check.add_argument(
        "--strict", action="store_true", help="exit 1 on warnings too (for CI pipelines)"
    )

    explain = commands.add_parser(
        "explain",
        help="say whether NAME is blocked for a client, by which policy, list and rule, and why",
        description="Works offline from the config alone: the client's group, every list that "
        "matches NAME, which applies at that time and why the others do not, the reference, and "
        "the answer the client would get.",
    )
    explain.add_argument("name", metavar="NAME")
    explain.add_argument(
        "--client",
        default="127.0.0.1",
        type=_client_argument,
        help="client address (default 127.0.0.1)",
    )
    explain.add_argument(
        "--type", default="A", dest="qtype", type=_qtype_argument, help="query type (default A)"
    )
    explain.add_argument(
        "--device",
        type=_device_argument,
        help="device id the client presents over DoT or DoH (default none)",
    )
    explain.add_argument(
        "--at",
        metavar="TIME",
        type=_time_argument,
        help="ISO 8601 date or time (default now; no offset means UTC)",
    )
    explain.add_argument("-c", "--config", metavar="FILE", help="YAML config (default: embedded)")
    explain.add_argument("--json", action="store_true", help="print JSON instead of text")

    catalogue = commands.add_parser(
        "catalogue",
        aliases=["lists"],
        help="list the bundled app catalogue: entries, domain counts, references, last review",
    )
    catalogue.add_argument("--json", action="store_true", help="print JSON instead of a table")

    reload = commands.add_parser(
        "reload",
        help="make the running server reload its config and lists (SIGHUP via its PID file)",
        description="Signal the server started with the same config (or --pid-file); the "
        "server logs a `reloaded` or `reload_failed` event with what changed.",
    )
    reload.add_argument("-c", "--config", metavar="FILE", help="YAML config (for its state_dir)")
    reload.add_argument("--pid-file", metavar="FILE", help="the server's PID file")
    reload.add_argument(
        "--accept",
        metavar="LIST",
        action="append",
        default=[],
        help="load the version of LIST there is now (a feed: its last refused download) even "
        "though the list guard refuses it for being emptied or shrunk beyond max_shrink; "
        "logged as `list_accepted`; repeatable",
    )

    export = commands.add_parser(
        "export",
        help="write the effective policy (catalogue + lists - exemptions) for BIND, Unbound, "
        "PowerDNS",
        description="Print the policy one group of clients gets now, as an RPZ zone (every "
        "decision kept), a hosts file or a domain list; what a format cannot express is "
        "counted in the header.",
    )
    export.add_argument("--format", choices=("rpz", "hosts", "domains"), default="rpz")
    export.add_argument("--group", default="default", help="client group (default: default)")
    export.add_argument(
        "--origin", default=None, help="RPZ zone name (default: rpz.dnswarden.invalid)"
    )
    export.add_argument("-c", "--config", metavar="FILE", help="YAML config (default: embedded)")
    export.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    profile.add_parser(commands)
    return parser, {
        name: sub
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for name, sub in action.choices.items()
    }


def _workers_argument(text: str) -> int:
    try:
        return worker_count(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number from 1 to 256 or auto, got {text!r}"
        ) from None


def _client_argument(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an IPv4 or IPv6 address (192.0.2.7, 2001:db8::7), got {text!r}"
        ) from None


def _qtype_argument(text: str) -> int:
    from resolver.commands.explain import qtype_number

    try:
        return qtype_number(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown query type {text!r} (a name such as A, AAAA, MX, HTTPS, or a number: "
            "TYPE65 or 65)"
        ) from None


def _time_argument(text: str) -> datetime.datetime:
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            "expected an ISO 8601 date or time (2024-05-01, 2024-05-01T12:00, "
            f"2024-05-01T12:00+02:00; no offset means UTC), got {text!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def _device_argument(text: str) -> str:
    try:
        return parse_device_id(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def main(argv: Sequence[str] | None = None) -> int:
    parser, commands = build_parsers()
    args = parser.parse_args(argv)
    try:
        return run_command(parser, args)
    except UsageError as error:
        commands.get(args.command, parser).error(str(error))


def run_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command == "check":
        return check(args.file, args.strict)
    if args.command == "serve":
        return serve_command(args)
    if args.command == "explain":
        moment = args.at or datetime.datetime.now(datetime.UTC)
        return explain(
            args.name, args.client, args.qtype, moment, args.config, args.json, args.device or ""
        )
    if args.command in ("catalogue", "lists"):
        return catalogue(args.json)
    if args.command == "reload":
        return reload_server(args.config, args.pid_file, args.accept)
    if args.command == "export":
        return export(args.format, args.group, args.origin, args.config, args.output)
    if args.command == "profile":
        return profile.run(args)
    parser.print_help()
    return EXIT_USAGE


def _problems(error: ConfigError | ListError) -> int:
    for problem in error.problems:
        print(problem, file=sys.stderr)
    return EXIT_INVALID


def check(path: str, strict: bool = False) -> int:
    """Validate the config and its lists as the server would load them: exit 1 on a problem,
    or on a list version the server's list guard would refuse (judged against the last good
    copy in state_dir, as at start-up), with every problem as FILE:LINE on stderr."""
    try:
        config = load_config(path, known_lists=catalogue_ids())
        state = build_state(config, read_resolv_conf())
    except (ConfigError, ListError) as error:
        return _problems(error)
    rejected = state.lists.rejected if state.lists is not None else {}
    for refused in rejected.values():
        for line in refused.lines():
            print(line, file=sys.stderr)
    counts = (
        f"{state.policy.domain_count} blocked domains from {len(state.list_sizes)} lists, "
        f"{len(config.listen)} listeners"
    )
    if rejected:
        names = ", ".join(rejected)
        print(f"{path}: refused: {names} (the server would not load their new versions; {counts})")
    else:
        print(f"{path}: ok ({counts})")
    for name, report in state.list_reports.items():
        if report.kind != "catalogue":
            print(f"  {name}: {_list_summary(report)}")
    for warning in state.warnings:
        print(f"  {warning}")
    now = datetime.datetime.now(datetime.UTC)
    for line in _blocked_now(state, now):
        print(f"  {line}")
    unenforced = _unenforced(state, now)
    for warning in unenforced:
        print(f"  warning: {warning}")
    count = len(state.warnings) + len(unenforced)
    if rejected:
        return EXIT_INVALID
    if strict and count:
        print(f"{path}: {count} warning(s), and --strict fails on warnings", file=sys.stderr)
        return EXIT_INVALID
    return EXIT_OK


def _blocked_now(state: ResolverState, now: datetime.datetime) -> list[str]:
    """One line per group: the rules in force for it now, and from which lists."""
    from resolver.policy import windows

    lines = []
    sizes = state.list_sizes
    for group, entries in windows.lists_in_force(state.policy, now.timestamp()).items():
        rules = sum(sizes.get(entry, 0) for entry in entries)
        if rules:
            counted = f"{rules} rule" if rules == 1 else f"{rules} rules"
            lines.append(f"group {group}: {counted} blocked now, from {', '.join(entries)}")
        else:
            lines.append(f"group {group}: nothing blocked now")
    return lines


def _unenforced(state: ResolverState, now: datetime.datetime) -> list[str]:
    """What the config says but does not do now, as the server would warn at start-up."""
    from resolver.policy import windows
    from resolver.shell.service import uses_public_fallback
    from resolver.shell.zones import expiry_warnings

    config = state.config
    found = [str(n) for n in windows.out_of_window(config.policies, config.source, now)]
    found.extend(expiry_warnings(config, now.timestamp()))
    for name, report in state.list_reports.items():
        if report.kind == "url" and report.refused:
            found.append(
                f"{report.location}: the last download of list {name} was refused "
                f"({report.refused}); its last good copy stays in force (the server's "
                "`list_rejected` event says why; `dnswarden reload --accept` loads it anyway)"
            )
    if uses_public_fallback(state):
        public = ", ".join(str(e) for e in state.upstreams)
        found.append(
            f"{config.source}: upstream.servers: not set, and /etc/resolv.conf names no "
            f"nameserver but dnswarden itself: allowed queries go to the built-in public "
            f"resolvers {public} (Quad9); set upstream.servers to your own"
        )
    return found


def _list_summary(report: Any) -> str:
    """One line per operator list for `check`: entries, format (and why), what was left out."""
    parts = [f"{report.entries} entries", report.format or "?"]
    if report.detected:
        parts[-1] += f" (auto: {report.detected})"
    if report.duplicates:
        parts.append(f"{report.duplicates} duplicates")
    if report.invalid:
        parts.append(f"{report.invalid} invalid lines")
    parts.extend(f"{count} skipped: {reason}" for reason, count in report.skipped.items())
    if report.note:
        parts.append(report.note)
    return ", ".join(parts)


def serve_command(args: argparse.Namespace) -> int:
    """`dnswarden serve`: load the config and lists, then run one service (or a supervisor and
    its workers) until stopped. Every way it can fail to start ends in `_cannot_start`."""
    path, listen, upstreams = args.config, args.listen, args.upstream
    try:
        run = event_loop_runner(os.environ.get(EVENT_LOOP_VARIABLE, ""))
    except ValueError as error:
        raise UsageError(str(error)) from None

    def load() -> Config:
        config = load_config(path, known_lists=catalogue_ids())
        return with_overrides(config, listen=listen, upstreams=upstreams)

    try:
        config = load()
        state = build_state(config, read_resolv_conf(), keep=True)
    except (ConfigError, ListError) as error:
        return _invalid(error, path)
    workers = args.workers or worker_count(str(config.workers))
    worker = None
    if args.worker_report_fd is not None:
        from resolver.shell.service import WorkerLink

        worker = WorkerLink(args.worker_index, args.worker_report_fd)
    try:
        audit = audit_log(config, worker_index=None if worker is None else worker.index)
    except (OSError, ValueError) as error:
        return _cannot_start(None, f"{config.source}: audit: {error}", EXIT_INVALID)
    pid_file = None
    if worker is None:  # workers are the supervisor's; `reload` signals the supervisor
        # Until the event loop's handlers are in, a `reload` (SIGHUP) must not kill us.
        for signum in (signal.SIGHUP, signal.SIGUSR1):
            signal.signal(signum, signal.SIG_IGN)
        try:
            pid_file = _hold_pid_file(args.pid_file, config)
        except PidFileBusy as busy:
            return _cannot_start(audit, str(busy), EXIT_CANNOT_START, pid_file=str(busy.path),
                                 holder=busy.holder)  # fmt: skip
    if workers > 1 and worker is None:
        from resolver.shell.workers import Supervisor

        worker_args = (["-c", path] if path else []) + [f"--upstream={u}" for u in upstreams]
        main = Supervisor(config, worker_args, workers, audit).run(state)
    else:
        from resolver.shell.service import run_service

        main = run_service(state, load, audit, worker)
    try:
        run(main)
    except BindError as error:
        fields = error.fields()
        hint = str(fields.pop("hint", ""))
        return _cannot_start(audit, str(error), EXIT_CANNOT_START, hint=hint, **fields)
    except (OSError, TimeoutError) as error:
        return _cannot_start(audit, str(error) or type(error).__name__, EXIT_CANNOT_START)
    finally:
        if pid_file is not None:
            pid_file.release()
    return EXIT_OK


def _invalid(error: ConfigError | ListError, path: str | None) -> int:
    """A config or list that cannot be loaded at start-up: the verdict, a few samples and the
    count (a broken list can have thousands of bad lines; `check` lists every one)."""
    problems = ordered_problems(str(p) for p in error.problems)
    shown = [_cut(p) for p in problems[:MAX_SHOWN_PROBLEMS]]
    lines = shown[1:]
    if len(problems) > len(shown):
        where = f"`dnswarden check {path}` lists" if path else "`dnswarden check FILE` lists"
        more = len(problems) - len(shown)
        lines.append(f"... {more} more {'problem' if more == 1 else 'problems'}; {where} every one")
    return _cannot_start(None, shown[0], EXIT_INVALID, lines=lines, problems=shown,
                         problem_count=len(problems))  # fmt: skip


def _cut(text: str) -> str:
    return text if len(text) <= MAX_PROBLEM_CHARS else text[: MAX_PROBLEM_CHARS - 3] + "..."


def _cannot_start(audit: AuditLog | None, error: str, exit_code: int, *, hint: str = "",
                  lines: Sequence[str] = (), **fields: object) -> int:  # fmt: skip
    """Every failed start ends here: one `startup_failed` event on stdout (the journal, the
    SIEM), bounded, and the same for a person on stderr; the exit code says whether a restart
    can help. Without the config's own audit log (the config is what failed), a default one
    writes the event."""
    log = audit if audit is not None else AuditLog()
    if hint:
        fields = {**fields, "hint": hint}
    log.error("startup_failed", error=error, **fields)
    log.close()
    print(f"dnswarden: cannot start: {error}", file=sys.stderr)
    if hint:
        print(f"  hint: {hint}", file=sys.stderr)
    for line in lines:
        print(f"  {line}", file=sys.stderr)
    return exit_code


def audit_log(config: Config, worker_index: int | None = None) -> AuditLog:
    """The audit trail the config asks for; the pseudonymisation key is read here, once.

    Workers each rotate their own audit file (`FILE.wN`): one file cannot be rotated safely by
    several processes."""
    settings = config.audit
    key = read_key(settings.key_file, settings.key_env)
    return AuditLog(
        level=config.log.level,
        allowed_queries=config.log.allowed_queries,
        privacy=settings.privacy.value,
        key=key,
        file=settings.file
        if worker_index is None or not settings.file
        else f"{settings.file}.w{worker_index}",
        file_max_bytes=settings.file_max_bytes,
        file_backups=settings.file_backups,
        fold_window=settings.fold_window,
        max_events_per_second=settings.max_events_per_second,
    )


def explain(name: str, client: str, qtype: int, moment: datetime.datetime, path: str | None,
            as_json: bool, device: str = "") -> int:  # fmt: skip
    from resolver.commands import explain as explaining

    try:
        state = build_state(load_config(path, known_lists=catalogue_ids()), None)
    except (ConfigError, ListError) as error:
        return _problems(error)
    try:
        result = explaining.explain(state, name, client, qtype, moment, device)
    except ValueError as error:
        raise UsageError(f"argument NAME: {error}") from None
    print(json.dumps(result, indent=2) if as_json else explaining.render_text(result))
    return EXIT_OK


def catalogue(as_json: bool) -> int:
    from resolver.lists.catalogue import catalogue_table, load_catalogue

    try:
        rows = catalogue_table(load_catalogue())
    except ListError as error:
        return _problems(error)
    if as_json:
        typed = [{**row, "domains": int(row["domains"])} for row in rows]  # the table's is text
        print(json.dumps(typed, indent=2))
        return EXIT_OK
    columns = list(rows[0]) if rows else []
    widths = {c: max(len(c), *(len(str(row[c])) for row in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns).rstrip())
    return EXIT_OK


PID_FILE_NAME = "dnswarden.pid"


def _pid_path(pid_file: str | None, config: Config) -> Path:
    return Path(pid_file) if pid_file else Path(config.state_dir) / PID_FILE_NAME


def _hold_pid_file(pid_file: str | None, config: Config) -> PidFile | None:
    """Our PID, locked, for `dnswarden reload`. PidFileBusy when another live server holds the
    file; a server that cannot write one at all still serves (warned)."""
    path = _pid_path(pid_file, config)
    try:
        return PidFile.acquire(path)
    except OSError as error:
        print(f"dnswarden serve: cannot write PID file {path}: {error}", file=sys.stderr)
        return None


def reload_server(path: str | None, pid_file: str | None, accept: Sequence[str] = ()) -> int:
    """Send SIGHUP to the server named by the PID file, after checking it is one of ours;
    with `accept`, first record that the operator accepts those lists' current versions."""
    try:
        needed = pid_file is None or accept
        config = load_config(path, known_lists=catalogue_ids()) if needed else None
    except ConfigError as error:
        return _problems(error)
    if accept and config is not None:
        from resolver.lists.loading import accept_version

        for name in accept:
            try:
                what = accept_version(config, name, time.time())
            except (ValueError, OSError) as error:
                print(f"dnswarden reload: --accept {name}: {error}", file=sys.stderr)
                return EXIT_USAGE
            print(f"dnswarden reload: accepting {what} as list {name}")
    pid_path = Path(pid_file) if pid_file else _pid_path(None, config)  # type: ignore[arg-type]
    try:
        pid = int(pid_path.read_text(encoding="ascii").strip())
    except (OSError, ValueError) as error:
        print(f"dnswarden reload: no usable PID file {pid_path}: {error}", file=sys.stderr)
        return EXIT_USAGE
    if is_dnswarden_server(pid) is False:
        print(f"dnswarden reload: PID {pid} from {pid_path} is not a running dnswarden "
              "(stale PID file?)", file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as error:
        print(f"dnswarden reload: cannot signal PID {pid}: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(f"dnswarden reload: sent SIGHUP to PID {pid}; the server logs the outcome")
    return EXIT_OK


def export(fmt: str, group: str, origin: str | None, path: str | None, output: str | None) -> int:
    """Print (or write) the effective policy of `group` now, from the config alone."""
    from resolver.commands import export as exporting

    try:
        config = load_config(path, known_lists=catalogue_ids())
        state = build_state(config, None)
    except (ConfigError, ListError) as error:
        return _problems(error)
    now = datetime.datetime.now(datetime.UTC)
    try:
        policy = exporting.effective_policy(config, state.policy, group, now.timestamp())
    except ValueError as error:
        raise UsageError(f"argument --group: {error}") from None
    lines = exporting.render(
        policy,
        fmt,
        origin=origin or exporting.DEFAULT_ORIGIN,
        serial=int(now.timestamp()),
        ttl=config.blocking.ttl,
        generated=now.isoformat(timespec="seconds"),
    )
    text = "".join(line + "\n" for line in lines)
    if output is None:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as error:
        print(f"dnswarden export: cannot write {output}: {error}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def event_loop_runner(choice: str) -> Callable[[Coroutine[Any, Any, None]], None]:
    """How to run the service: uvloop when installed (the `speed` extra), else the stock asyncio
    loop. `choice` (the environment's DNSWARDEN_EVENT_LOOP) can force either: to test both, or
    to get round a uvloop problem without reinstalling. ValueError for anything else, or for
    uvloop when it is not installed."""
    if choice not in ("", "auto", "asyncio", "uvloop"):
        raise ValueError(f"{EVENT_LOOP_VARIABLE}={choice!r}: expected auto, asyncio or uvloop")
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise ValueError(
                    f"{EVENT_LOOP_VARIABLE}=uvloop, but uvloop is not installed "
                    "(pip install 'dnswarden[speed]')"
                ) from None
        else:
            return uvloop.run  # type: ignore[no-any-return]
    return asyncio.run
