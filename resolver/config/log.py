"""The `log` and `audit` sections: what is logged, how clients appear in the audit trail, where
it is written and how fast it may grow."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from resolver.config import files
from resolver.config.nodes import MISSING, Entries, Reader
from resolver.config.problems import describe, suggest
from resolver.config.values import (
    choice,
    parse_duration,
    path_text,
    positive_int,
    positive_size,
    strict_bool,
)

LOG_LEVELS = ("debug", "info", "warning", "error")
MAX_AUDIT_BACKUPS = 100
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}", re.ASCII)


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "info"
    allowed_queries: bool = False


class PrivacyMode(enum.Enum):
    RAW = "raw"
    TRUNCATE = "truncate"
    PSEUDONYMISE = "pseudonymise"


@dataclass(frozen=True, slots=True)
class AuditConfig:
    """How client identities appear in the audit trail, where it goes and how fast it may grow.

    The key for pseudonymising is named (file path or environment variable), never inlined,
    for the same reason as the metrics token.
    """

    privacy: PrivacyMode = PrivacyMode.RAW
    key_file: str | None = None
    key_env: str | None = None
    file: str | None = None
    file_max_bytes: int = 100 * 1024 * 1024
    file_backups: int = 5
    fold_window: float = 10.0
    max_events_per_second: int = 1000


_privacy_mode = choice(PrivacyMode, "privacy mode")


def read_log(reader: Reader, top: Entries) -> LogConfig:
    entries = reader.section(top, "log", LogConfig)
    defaults = LogConfig()
    level = reader.value(entries, "level", "log", _log_level, defaults.level)
    queries = reader.value(entries, "allowed_queries", "log", strict_bool, defaults.allowed_queries)
    return LogConfig(
        level=defaults.level if level is MISSING else level,
        allowed_queries=defaults.allowed_queries if queries is MISSING else queries,
    )


def read_audit(reader: Reader, top: Entries) -> AuditConfig:
    entries = reader.section(top, "audit", AuditConfig)
    path = "audit"
    defaults = AuditConfig()
    privacy = reader.value(entries, "privacy", path, _privacy_mode, defaults.privacy)
    key_file = key_env = file = None
    if "key_file" in entries:
        node = entries["key_file"][1]
        name = reader.convert(node, f"{path}.key_file", path_text)
        if name is not MISSING:
            key_file = files.key_file(reader, node, f"{path}.key_file", name)
    if "key_env" in entries:
        key_env = reader.value(entries, "key_env", path, _env_name, None)
        key_env = None if key_env is MISSING else key_env
    if privacy is PrivacyMode.PSEUDONYMISE:
        if "key_file" in entries and "key_env" in entries:
            reader.problem(
                entries["key_env"][0], f"{path}.key_env", "give key_file or key_env, not both"
            )
        elif "key_file" not in entries and "key_env" not in entries:
            reader.problem(
                entries["privacy"][1],
                f"{path}.key_file",
                "privacy: pseudonymise needs a secret: set key_file or key_env",
            )
    elif privacy is not MISSING:
        for name in ("key_file", "key_env"):
            if name in entries:
                reader.problem(
                    entries[name][0],
                    f"{path}.{name}",
                    f"only used with privacy: pseudonymise (privacy is {privacy.value})",
                )
    if "file" in entries:
        node = entries["file"][1]
        name = reader.convert(node, f"{path}.file", path_text)
        if name is not MISSING:
            file = files.log_file(reader, node, f"{path}.file", name)
    max_bytes = reader.value(
        entries, "file_max_bytes", path, positive_size, defaults.file_max_bytes
    )
    backups = reader.value(entries, "file_backups", path, _backups, defaults.file_backups)
    fold = reader.value(entries, "fold_window", path, parse_duration, defaults.fold_window)
    rate = reader.value(
        entries, "max_events_per_second", path, positive_int, defaults.max_events_per_second
    )
    return AuditConfig(
        privacy=defaults.privacy if privacy is MISSING else privacy,
        key_file=key_file,
        key_env=key_env,
        file=file,
        file_max_bytes=defaults.file_max_bytes if max_bytes is MISSING else max_bytes,
        file_backups=defaults.file_backups if backups is MISSING else backups,
        fold_window=defaults.fold_window if fold is MISSING else fold,
        max_events_per_second=(defaults.max_events_per_second if rate is MISSING else rate),
    )


def _log_level(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}, got {describe(raw)}")
    level = raw.strip().lower()
    if level not in LOG_LEVELS:
        choices = ", ".join(LOG_LEVELS)
        raise ValueError(f"unknown level {raw!r}: use one of {choices}{suggest(level, LOG_LEVELS)}")
    return level


def _env_name(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"expected an environment variable name, got {describe(raw)}")
    if not _ENV_NAME_RE.fullmatch(raw):
        raise ValueError(
            f"{raw!r} is not an environment variable name (letters, digits and '_', "
            "not starting with a digit); give the variable's name, not the key"
        )
    return raw


def _backups(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ValueError(f"expected a whole number, got {describe(raw)}")
    if not 0 <= raw <= MAX_AUDIT_BACKUPS:
        raise ValueError(f"must be from 0 to {MAX_AUDIT_BACKUPS}, got {raw}")
    return raw
