"""Getting a `Config`: from a file, from the embedded default, and with the command line's
`--listen`/`--upstream` values applied on top."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from resolver.config import files
from resolver.config.document import parse_config
from resolver.config.metrics import metrics_clash
from resolver.config.model import DEFAULT_SOURCE, Config
from resolver.config.problems import ConfigError, ConfigProblem
from resolver.config.resolv import loop_message, loops
from resolver.config.values import Endpoint, UpstreamServer, parse_endpoint, parse_upstream


def default_config(*, known_lists: frozenset[str]) -> Config:
    """The embedded default configuration, parsed like any file so it is validated too."""
    return parse_config(files.default_yaml(), DEFAULT_SOURCE, known_lists=known_lists)


def load_config(path: str | Path | None, *, known_lists: frozenset[str]) -> Config:
    """Read and parse a config file; `None` means the embedded default.

    `known_lists` is the set of bundled catalogue ids (`lists.catalogue.catalogue_ids()`).
    """
    if path is None:
        return default_config(known_lists=known_lists)
    text, base_dir = files.config_text(path)
    return parse_config(text, str(path), base_dir=base_dir, known_lists=known_lists)


def with_overrides(
    config: Config, *, listen: Sequence[str] = (), upstreams: Sequence[str] = ()
) -> Config:
    """Apply `--listen`/`--upstream` command-line values, which replace the file's values."""
    problems: list[ConfigProblem] = []
    new_listen = config.listen
    new_servers = config.upstream.servers
    if listen:
        new_listen = _override_endpoints("--listen", "listen", listen, 0, problems)
    if upstreams:
        new_servers = _override_upstreams(upstreams, problems)
    if not problems:
        for i, server in enumerate(new_servers):
            if loops(server, new_listen):
                source = "--upstream" if upstreams else ("--listen" if listen else config.source)
                problems.append(
                    ConfigProblem(source, 0, f"upstream.servers[{i}]", loop_message(server))
                )
        for i, zone in enumerate(config.zones if listen else ()):
            for j, server in enumerate(zone.servers):
                if loops(server, new_listen):
                    key = f"zones[{i}].servers[{j}]"
                    problems.append(ConfigProblem("--listen", 0, key, loop_message(server)))
        clash = metrics_clash(config.metrics, new_listen)
        if listen and clash is not None:
            problems.append(ConfigProblem("--listen", 0, "metrics.listen", clash))
    if problems:
        raise ConfigError(problems)
    return dataclasses.replace(
        config,
        listen=new_listen,
        upstream=dataclasses.replace(config.upstream, servers=new_servers),
    )


def _override_endpoints(
    source: str, key: str, values: Sequence[str], min_port: int, problems: list[ConfigProblem]
) -> tuple[Endpoint, ...]:
    endpoints: list[Endpoint] = []
    for i, text in enumerate(values):
        try:
            endpoint = parse_endpoint(text)
        except ValueError as e:
            problems.append(ConfigProblem(source, 0, f"{key}[{i}]", str(e)))
            continue
        if endpoint.port < min_port:
            problems.append(ConfigProblem(source, 0, f"{key}[{i}]", "port 0 is not allowed here"))
        elif endpoint in endpoints:
            problems.append(ConfigProblem(source, 0, f"{key}[{i}]", f"{endpoint} given twice"))
        else:
            endpoints.append(endpoint)
    return tuple(endpoints)


def _override_upstreams(
    values: Sequence[str], problems: list[ConfigProblem]
) -> tuple[UpstreamServer, ...]:
    servers: list[UpstreamServer] = []
    for i, text in enumerate(values):
        key = f"upstream.servers[{i}]"
        try:
            server = parse_upstream(text)
        except ValueError as e:
            problems.append(ConfigProblem("--upstream", 0, key, str(e)))
            continue
        if server.port == 0:
            problems.append(ConfigProblem("--upstream", 0, key, "port 0 is not allowed here"))
        elif server in servers:
            problems.append(ConfigProblem("--upstream", 0, key, f"{server} given twice"))
        else:
            servers.append(server)
    return tuple(servers)
