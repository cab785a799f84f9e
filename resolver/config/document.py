"""One config document, YAML text in and `Config` out: the sections read in order, then the
checks that span sections (an upstream that is one of our own listeners, a source that both
allows and blocks, an `ip` answer without addresses).

Each section returns its dataclass with defaults standing in for bad values; the result is only
used when no problem at all was found.  Checks across keys run only when every value they
compare is valid, so one mistake is never reported twice.  Library code raises `ConfigError`
with every problem, sorted by line; only the CLI prints and exits.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from yaml.nodes import Node

from resolver.config.blocking import check_sinkhole, read_blocking
from resolver.config.cache import read_cache
from resolver.config.clients import read_clients
from resolver.config.encrypted import read_encrypted
from resolver.config.groups import read_groups
from resolver.config.inspection import read_inspection
from resolver.config.limits import read_limits
from resolver.config.listref import ListNames
from resolver.config.log import read_audit, read_log
from resolver.config.metrics import read_metrics
from resolver.config.model import Config
from resolver.config.nodes import Reader
from resolver.config.policies import read_policies
from resolver.config.problems import ConfigError
from resolver.config.resolv import loop_message, loops
from resolver.config.server import DEFAULT_LISTEN, read_listen, read_state_dir, read_workers
from resolver.config.sources import read_sources
from resolver.config.upstream import read_upstream, read_zones

_SECTIONS = [f.name for f in dataclasses.fields(Config) if f.name != "source"]


def parse_config(
    text: str,
    source: str,
    *,
    base_dir: Path | None = None,
    known_lists: frozenset[str],
) -> Config:
    """Validate YAML config text; every problem found is raised together in one `ConfigError`.

    `base_dir` anchors relative list paths (the config file's directory; the current directory
    when None); `known_lists` is the set of bundled catalogue ids (`resolver.lists.catalogue`),
    which the caller passes in: config sits below the lists layer.
    """
    reader = Reader(source, base_dir)
    root = reader.compose(text)
    config = None if reader.problems else _read(reader, root, known_lists)
    if config is None:
        problems = sorted(reader.problems, key=lambda p: p.line)
        raise ConfigError(problems)
    return config


def _read(reader: Reader, root: Node | None, catalogue: frozenset[str]) -> Config | None:
    top = reader.mapping(root, "", _SECTIONS)
    if top is None:
        return None
    sources, source_names = read_sources(reader, top, catalogue)
    lists = ListNames(catalogue, source_names)
    listen = read_listen(reader, top)
    upstream, server_items, deadline = read_upstream(reader, top)
    zones, zone_items = read_zones(reader, top, upstream.strategy)
    if listen is not None:
        for item in server_items + zone_items:
            if loops(item.value, listen):
                reader.problem(item.node, item.key, loop_message(item.value))
    blocking, blocking_entries, sinkhole = read_blocking(reader, top, lists)
    groups, group_names = read_groups(reader, top, lists)
    policies, policy_answers = read_policies(reader, top, lists, group_names, sinkhole)
    check_sinkhole(reader, blocking_entries, sinkhole, policy_answers)
    allow = lists.allow_sources(reader, top)
    metrics = read_metrics(reader, top, listen)
    config = Config(
        source=reader.source,
        listen=listen or DEFAULT_LISTEN,
        upstream=upstream,
        clients=read_clients(reader, top, group_names),
        blocking=blocking,
        limits=read_limits(reader, top),
        log=read_log(reader, top),
        groups=groups,
        policies=policies,
        metrics=metrics,
        audit=read_audit(reader, top),
        zones=zones,
        cache=read_cache(reader, top, deadline),
        inspection=read_inspection(reader, top),
        sources=sources,
        allow=allow,
        state_dir=read_state_dir(reader, top),
        workers=read_workers(reader, top),
        encrypted=read_encrypted(
            reader, top, listen, metrics.listen if metrics.enabled else None
        ),
    )
    return None if reader.problems else config
