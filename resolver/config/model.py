"""`Config`, the whole configuration: one frozen value per section, as `document` reads it."""

from __future__ import annotations

from dataclasses import dataclass, field

from resolver.config.blocking import BlockingConfig
from resolver.config.cache import CacheConfig
from resolver.config.clients import ClientsConfig
from resolver.config.encrypted import EncryptedConfig
from resolver.config.files import default_state_dir
from resolver.config.groups import GroupConfig
from resolver.config.inspection import InspectionConfig
from resolver.config.limits import LimitsConfig
from resolver.config.listref import ListRef, list_refs
from resolver.config.log import AuditConfig, LogConfig
from resolver.config.metrics import MetricsConfig
from resolver.config.policies import PolicyConfig
from resolver.config.server import DEFAULT_LISTEN, DEFAULT_WORKERS
from resolver.config.sources import SourceConfig
from resolver.config.upstream import UpstreamConfig, ZoneConfig
from resolver.config.values import Endpoint

DEFAULT_SOURCE = "<default>"


@dataclass(frozen=True, slots=True)
class Config:
    source: str = DEFAULT_SOURCE
    listen: tuple[Endpoint, ...] = DEFAULT_LISTEN
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    clients: ClientsConfig = field(default_factory=ClientsConfig)
    blocking: BlockingConfig = field(default_factory=BlockingConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    groups: tuple[GroupConfig, ...] = ()
    policies: tuple[PolicyConfig, ...] = ()
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    zones: tuple[ZoneConfig, ...] = ()
    cache: CacheConfig = field(default_factory=CacheConfig)
    inspection: InspectionConfig = field(default_factory=InspectionConfig)
    sources: tuple[SourceConfig, ...] = ()
    allow: tuple[str, ...] = ()
    state_dir: str = field(default_factory=default_state_dir)
    workers: int | str = DEFAULT_WORKERS  # worker processes, or "auto" (one per CPU)
    encrypted: EncryptedConfig = field(default_factory=EncryptedConfig)

    def list_source(self, name: str) -> SourceConfig | None:
        """The source called `name`, or None for a catalogue id or a path.

        (Not `source(name)`: `source` is the file the config came from.)
        """
        return next((s for s in self.sources if s.name == name), None)

    @property
    def list_refs(self) -> tuple[ListRef, ...]:
        """Every list the config names (global, per group, per policy, then the `allow`
        sources, then the catalogue entries only exempted), first-seen order, once each, each
        with its kind.

        The loader needs them all up front: a policy whose window opens later must find its
        lists already loaded, since windows are evaluated per query without a reload.
        """
        names = [
            *self.blocking.lists,
            *(name for group in self.groups for name in group.block),
            *(name for policy in self.policies for name in policy.block),
            *self.allow,
            *(name for group in self.groups for name in group.exempt_lists),
            *(name for policy in self.policies for name in policy.exempt_lists),
        ]
        return list_refs(names, self.sources)
