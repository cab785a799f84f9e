"""The `dnswarden` command. The only place that prints problems and chooses exit codes."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from resolver import __version__
from resolver.audit import AuditLog
from resolver.catalogue import ListError
from resolver.config import Config, ConfigError, load_config, with_overrides
from resolver.state import build_state, read_resolv_conf

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_CANNOT_START = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dnswarden",
        description="DNS resolver that sinkholes the domains of apps banned on official devices "
        "and forwards everything else upstream.",
    )
    parser.add_argument("--version", action="version", version=f"dnswarden {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="run the resolver (embedded default config unless -c is given)",
        description="Run the resolver until SIGINT or SIGTERM; SIGHUP reloads config and lists.",
    )
    serve.add_argument("-c", "--config", metavar="FILE", help="YAML config file")
    serve.add_argument("--listen", metavar="HOST:PORT", action="append", default=[],
                       help="listen here (UDP and TCP) instead of the config's `listen`; "
                       "repeatable")  # fmt: skip
    serve.add_argument("--upstream", metavar="HOST:PORT", action="append", default=[],
                       help="forward here instead of the config's `upstream.servers`; "
                       "repeatable")  # fmt: skip

    check = commands.add_parser(
        "check", help="validate a config file and the lists it names, start nothing",
        description="Exit 0 when FILE is valid; else print every problem as "
        "FILE:LINE: key.path: message and exit 1.",
    )
    check.add_argument("file", metavar="FILE")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "check":
        return check(args.file)
    if args.command == "serve":
        return serve(args.config, args.listen, args.upstream)
    parser.print_help()
    return EXIT_CANNOT_START


def _problems(error: ConfigError | ListError) -> int:
    for problem in error.problems:
        print(problem, file=sys.stderr)
    return EXIT_INVALID


def check(path: str) -> int:
    try:
        config = load_config(path)
        state = build_state(config, read_resolv_conf())
    except (ConfigError, ListError) as error:
        return _problems(error)
    print(f"{path}: ok ({len(state.blocking)} blocked domains from "
          f"{len(state.list_sizes)} lists, {len(config.listen)} listeners)")  # fmt: skip
    return EXIT_OK


def serve(path: str | None, listen: Sequence[str], upstreams: Sequence[str]) -> int:
    def load() -> Config:
        return with_overrides(load_config(path), listen=listen, upstreams=upstreams)

    try:
        config = load()
        state = build_state(config, read_resolv_conf())
    except (ConfigError, ListError) as error:
        return _problems(error)
    audit = AuditLog(level=config.log.level, allowed_queries=config.log.allowed_queries)
    from resolver.service import serve as run_service

    try:
        _run(run_service(state, load, audit))
    except OSError as error:
        audit.error("startup_failed", error=str(error))
        print(f"dnswarden: cannot start: {error}", file=sys.stderr)
        return EXIT_CANNOT_START
    return EXIT_OK


def _run(main: Any) -> None:
    """uvloop when installed (the `speed` extra), else the stock asyncio loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)
