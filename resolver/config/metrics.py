"""The `metrics` section: the HTTP endpoint for /metrics, /healthz and /readyz."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from resolver.config import files
from resolver.config.nodes import MISSING, Entries, Reader
from resolver.config.problems import describe
from resolver.config.values import Endpoint, parse_endpoint, path_text, strict_bool, unmapped

DEFAULT_METRICS_LISTEN = Endpoint("127.0.0.1", 9153)


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """The HTTP endpoint for /metrics, /healthz and /readyz; loopback unless configured.

    `token_file` is stored as a path, never the token, so a config dump or a log of the config
    cannot leak the secret; the server reads it when it starts.
    """

    enabled: bool = True
    listen: Endpoint = DEFAULT_METRICS_LISTEN
    token_file: str | None = None


def read_metrics(
    reader: Reader, top: Entries, listen: tuple[Endpoint, ...] | None
) -> MetricsConfig:
    """The section; `listen` (the DNS listeners, `None` when unusable) must not share its
    socket."""
    entries = reader.section(top, "metrics", MetricsConfig)
    path = "metrics"
    defaults = MetricsConfig()
    enabled = reader.value(entries, "enabled", path, strict_bool, defaults.enabled)
    endpoint = reader.value(entries, "listen", path, _metrics_endpoint, defaults.listen)
    token_file = None
    if "token_file" in entries:
        node = entries["token_file"][1]
        name = reader.convert(node, f"{path}.token_file", path_text)
        if name is not MISSING:
            token_file = files.token_file(reader, node, f"{path}.token_file", name)
    config = MetricsConfig(
        enabled=defaults.enabled if enabled is MISSING else enabled,
        listen=defaults.listen if endpoint is MISSING else endpoint,
        token_file=token_file,
    )
    if enabled is not MISSING and endpoint is not MISSING and listen is not None:
        clash = metrics_clash(config, listen)
        if clash is not None:
            where = entries.get("listen") or entries.get("enabled") or top.get("listen")
            reader.problem(where[1] if where else 0, f"{path}.listen", clash)
    return config


def metrics_clash(metrics: MetricsConfig, listeners: Iterable[Endpoint]) -> str | None:
    """Why the metrics endpoint cannot share a socket with a DNS listener, or None.

    A wildcard address takes the port on every address of its family (and `::` on IPv4 too,
    with the kernel's default dual-stack), so it clashes with any specific address there.
    """
    if not metrics.enabled or metrics.listen.port == 0:
        return None
    ours = unmapped(ipaddress.ip_address(metrics.listen.host))
    for index, listener in enumerate(listeners):
        if listener.port != metrics.listen.port:
            continue
        theirs = unmapped(ipaddress.ip_address(listener.host))
        wildcard = next((a for a in (ours, theirs) if a.is_unspecified), None)
        if (
            ours == theirs
            or (wildcard is not None and ours.version == theirs.version)
            or (wildcard is not None and wildcard.version == 6)
        ):
            return (
                f"{metrics.listen} would share a socket with DNS listener {listener} "
                f"(listen[{index}]); give the metrics endpoint its own port"
            )
    return None


def _metrics_endpoint(raw: object) -> Endpoint:
    if not isinstance(raw, str):
        raise ValueError(f'expected an address such as "127.0.0.1:9153", got {describe(raw)}')
    return parse_endpoint(raw, default_port=DEFAULT_METRICS_LISTEN.port)
