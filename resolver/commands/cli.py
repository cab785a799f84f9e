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
from resolver.config import Config, ConfigError, load_config, with_overrides
from resolver.lists.catalogue import ListError, catalogue_ids
from resolver.observe.audit import AuditLog, read_key
from resolver.shell.workers import worker_count
from resolver.state import ResolverState, build_state, read_resolv_conf

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_CANNOT_START = 2
EVENT_LOOP_VARIABLE = "DNSWARDEN_EVENT_LOOP"


def build_parser() -> argparse.ArgumentParser:
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
    explain.add_argument("--client", default="127.0.0.1", help="client address (default 127.0.0.1)")
    explain.add_argument("--type", default="A", dest="qtype", help="query type (default A)")
    explain.add_argument(
        "--at", metavar="TIME", help="ISO 8601 date or time (default now; no offset means UTC)"
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "check":
        return check(args.file, args.strict)
    if args.command == "serve":
        return serve_command(args)
    if args.command == "explain":
        return explain(args.name, args.client, args.qtype, args.at, args.config, args.json)
    if args.command in ("catalogue", "lists"):
        return catalogue(args.json)
    if args.command == "reload":
        return reload_server(args.config, args.pid_file, args.accept)
    if args.command == "export":
        return export(args.format, args.group, args.origin, args.config, args.output)
    parser.print_help()
    return EXIT_CANNOT_START


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

    config = state.config
    found = [str(n) for n in windows.out_of_window(config.policies, config.source, now)]
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
    its workers) until stopped."""
    path, listen, upstreams = args.config, args.listen, args.upstream

    def load() -> Config:
        config = load_config(path, known_lists=catalogue_ids())
        return with_overrides(config, listen=listen, upstreams=upstreams)

    try:
        config = load()
        state = build_state(config, read_resolv_conf(), keep=True)
    except (ConfigError, ListError) as error:
        return _problems(error)
    try:
        workers = worker_count(str(args.workers or config.workers))
    except ValueError as error:
        print(f"dnswarden serve: --workers: {error}", file=sys.stderr)
        return EXIT_CANNOT_START
    try:
        run = event_loop_runner(os.environ.get(EVENT_LOOP_VARIABLE, ""))
    except ValueError as error:
        print(f"dnswarden serve: {error}", file=sys.stderr)
        return EXIT_CANNOT_START
    worker = None
    if args.worker_report_fd is not None:
        from resolver.shell.service import WorkerLink

        worker = WorkerLink(args.worker_index, args.worker_report_fd)
    try:
        audit = audit_log(config, worker_index=None if worker is None else worker.index)
    except (OSError, ValueError) as error:
        print(f"{config.source}: audit: {error}", file=sys.stderr)
        return EXIT_INVALID
    if workers > 1 and worker is None:
        from resolver.shell.workers import Supervisor

        worker_args = (["-c", path] if path else []) + [f"--upstream={u}" for u in upstreams]
        main = Supervisor(config, worker_args, workers, audit).run(state)
    else:
        from resolver.shell.service import run_service

        main = run_service(state, load, audit, worker)
    pid_file = _write_pid_file(args.pid_file, config) if worker is None else None
    try:
        run(main)
    except (OSError, TimeoutError) as error:
        audit.error("startup_failed", error=str(error) or type(error).__name__)
        print(f"dnswarden: cannot start: {error or type(error).__name__}", file=sys.stderr)
        return EXIT_CANNOT_START
    finally:
        if pid_file is not None:
            pid_file.unlink(missing_ok=True)
    return EXIT_OK


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


def _parse_time(text: str | None) -> datetime.datetime:
    if text is None:
        return datetime.datetime.now(datetime.UTC)
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def explain(
    name: str, client: str, qtype: str, at: str | None, path: str | None, as_json: bool
) -> int:
    from resolver.commands import explain as explaining

    try:
        moment = _parse_time(at)
        number = explaining.qtype_number(qtype)
        ipaddress.ip_address(client)
    except ValueError as error:
        print(f"dnswarden explain: {error}", file=sys.stderr)
        return EXIT_CANNOT_START
    try:
        state = build_state(load_config(path, known_lists=catalogue_ids()), None)
    except (ConfigError, ListError) as error:
        return _problems(error)
    try:
        result = explaining.explain(state, name, client, number, moment)
    except ValueError as error:
        print(f"dnswarden explain: {error}", file=sys.stderr)
        return EXIT_CANNOT_START
    print(json.dumps(result, indent=2) if as_json else explaining.render_text(result))
    return EXIT_OK


def catalogue(as_json: bool) -> int:
    from resolver.lists.catalogue import catalogue_table, load_catalogue

    try:
        rows = catalogue_table(load_catalogue())
    except ListError as error:
        return _problems(error)
    if as_json:
        print(json.dumps(rows, indent=2))
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


def _write_pid_file(pid_file: str | None, config: Config) -> Path | None:
    """Write our PID for `dnswarden reload`; a server that cannot still serves (warned)."""
    path = _pid_path(pid_file, config)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        temporary.write_text(f"{os.getpid()}\n", encoding="ascii")
        os.replace(temporary, path)
    except OSError as error:
        print(f"dnswarden serve: cannot write PID file {path}: {error}", file=sys.stderr)
        return None
    return path


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
                return EXIT_CANNOT_START
            print(f"dnswarden reload: accepting {what} as list {name}")
    pid_path = Path(pid_file) if pid_file else _pid_path(None, config)  # type: ignore[arg-type]
    try:
        pid = int(pid_path.read_text(encoding="ascii").strip())
    except (OSError, ValueError) as error:
        print(f"dnswarden reload: no usable PID file {pid_path}: {error}", file=sys.stderr)
        return EXIT_CANNOT_START
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.parent.parent.is_dir() and Path("/proc/self").exists():
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            argv = []
        if not any(b"resolver" in part or b"dnswarden" in part for part in argv):
            print(f"dnswarden reload: PID {pid} from {pid_path} is not a running dnswarden "
                  "(stale PID file?)", file=sys.stderr)  # fmt: skip
            return EXIT_CANNOT_START
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as error:
        print(f"dnswarden reload: cannot signal PID {pid}: {error}", file=sys.stderr)
        return EXIT_CANNOT_START
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
        print(f"dnswarden export: {error}", file=sys.stderr)
        return EXIT_CANNOT_START
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
        return EXIT_CANNOT_START
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
