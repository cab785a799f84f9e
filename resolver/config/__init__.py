"""Configuration: YAML text in, frozen dataclasses out, every problem reported at once with its
file, line and key. One module per section (schema, defaults and checks together), on shared
node-reading (`nodes`) and value-parsing (`values`) machinery; `load` is the way in.

May import: protocol
Does I/O: files (reads the config and the files it names; the environment for state_dir)
"""

from resolver.config.blocking import AnswerMode, BlockingConfig, MissingLists
from resolver.config.cache import CacheConfig
from resolver.config.clients import DEFAULT_ALLOW, ClientsConfig
from resolver.config.document import parse_config
from resolver.config.encrypted import EncryptedConfig
from resolver.config.files import default_state_dir, default_yaml
from resolver.config.groups import DEFAULT_GROUP, REFUSE, ExemptRule, GroupConfig
from resolver.config.inspection import InspectionConfig
from resolver.config.limits import LimitsConfig
from resolver.config.listref import ListKind, ListRef
from resolver.config.load import default_config, load_config, with_overrides
from resolver.config.log import AuditConfig, LogConfig, PrivacyMode
from resolver.config.metrics import DEFAULT_METRICS_LISTEN, MetricsConfig
from resolver.config.model import DEFAULT_SOURCE, Config
from resolver.config.policies import PolicyConfig
from resolver.config.problems import ConfigError, ConfigProblem
from resolver.config.resolv import FALLBACK_UPSTREAMS, parse_resolv_conf, resolve_upstreams
from resolver.config.server import DEFAULT_LISTEN
from resolver.config.sources import ListFormat, SourceConfig
from resolver.config.upstream import Strategy, UpstreamConfig, ZoneConfig
from resolver.config.values import (
    Endpoint,
    IPAddress,
    IPNetwork,
    UpstreamServer,
    parse_datetime,
    parse_duration,
    parse_endpoint,
    parse_size,
    parse_upstream,
)

__all__ = [
    "DEFAULT_ALLOW",
    "DEFAULT_GROUP",
    "DEFAULT_LISTEN",
    "DEFAULT_METRICS_LISTEN",
    "DEFAULT_SOURCE",
    "FALLBACK_UPSTREAMS",
    "REFUSE",
    "AnswerMode",
    "AuditConfig",
    "BlockingConfig",
    "CacheConfig",
    "ClientsConfig",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "EncryptedConfig",
    "Endpoint",
    "ExemptRule",
    "GroupConfig",
    "IPAddress",
    "IPNetwork",
    "InspectionConfig",
    "LimitsConfig",
    "ListFormat",
    "ListKind",
    "ListRef",
    "LogConfig",
    "MetricsConfig",
    "MissingLists",
    "PolicyConfig",
    "PrivacyMode",
    "SourceConfig",
    "Strategy",
    "UpstreamConfig",
    "UpstreamServer",
    "ZoneConfig",
    "default_config",
    "default_state_dir",
    "default_yaml",
    "load_config",
    "parse_config",
    "parse_datetime",
    "parse_duration",
    "parse_endpoint",
    "parse_resolv_conf",
    "parse_size",
    "parse_upstream",
    "resolve_upstreams",
    "with_overrides",
]
