"""Loading every list a config names: catalogue entries, local files and directories, and
remote feeds with their last good copies; building the matchers the policy looks names up in.

Operator lists can hold millions of names, so they are parsed by `resolver.lists.formats` (every
common format) and compiled by `resolver.lists.compiled` into a memory-mapped file in the state
directory, in a child process when they are big: the server's own memory never holds the
parse, a reload never holds the GIL for seconds, and a restart with unchanged lists maps the
compiled files without parsing anything (each carries the fingerprint of the text it came
from). Remote lists are fetched by `refresh_source` (`resolver.lists.fetch` does the HTTP), and a
download replaces the last good copy only if it parses and does not shrink suspiciously.

Bad lines are reported with ``file:line`` and skipped; a list with too many of them (more than
`limits.max_bad_lines` and over 5% of its lines) is refused as a whole, because a broken or
mis-downloaded list must not load half-silently. Catalogue entries are few rules with per-rule
answers, already checked strictly by `resolver.lists.catalogue`; `build_blocking` puts them in a
`DomainMatcher` as they are.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from resolver.config import Config, ListKind, SourceConfig
from resolver.lists.catalogue import ListError, load_catalogue_entry
from resolver.lists.compiled import (
    CompiledMatcher,
    compile_job,
    compile_rules,
    from_parsed,
    open_compiled,
    parse_job,
)
from resolver.lists.fetch import FetchError, FetchResult, SourceStore, fetch
from resolver.lists.formats import ParsedRules
from resolver.lists.matcher import BlockRule, DomainMatcher, Matcher

__all__ = [
    "AllowFiltered",
    "BlockingSet",
    "ListError",
    "ListLoader",
    "ListReport",
    "LoadedLists",
    "Matcher",
    "RefreshOutcome",
    "build_blocking",
    "compile_job",
    "due_sources",
    "list_specs",
    "load_lists",
    "local_changes",
    "poll_interval",
    "refresh_source",
    "size_changes",
]


@dataclass(frozen=True, slots=True)
class BlockingSet:
    """The matcher built from catalogue entries, and what each entry contributed.

    ``sizes`` maps each entry id to the number of patterns it put into the matcher (a pattern
    already added by an earlier entry counts for the earlier one).
    """

    matcher: DomainMatcher
    sizes: dict[str, int]


def build_blocking(entry_ids: Sequence[str]) -> BlockingSet:
    """Build one matcher from bundled catalogue entries, in precedence order.

    Each rule keeps its per-rule answer override. List names appear in audit logs, so an entry
    may not be named twice. All problems of all entries are raised together as one `ListError`.
    """
    matcher = DomainMatcher()
    sizes: dict[str, int] = {}
    problems: list[str] = []
    for entry_id in entry_ids:
        if entry_id in sizes:
            problems.append(f"{entry_id}: list {entry_id!r} is configured twice")
            continue
        try:
            entry = load_catalogue_entry(entry_id)
        except ListError as exc:
            problems.extend(exc.problems)
            continue
        before = len(matcher)
        for rule in entry.rules:
            matcher.add(rule.domain, BlockRule(entry_id, rule.domain, rule.answer))
        sizes[entry_id] = len(matcher) - before
    if problems:
        raise ListError(problems)
    return BlockingSet(matcher=matcher, sizes=sizes)


PARSER_VERSION = 2
"""Part of every compiled list's fingerprint: bump it when parsing changes meaning."""

CHILD_THRESHOLD = 1 << 20
"""Lists bigger than this are parsed and compiled in a child process: the server's own memory
never holds the parse (Python does not give freed memory back), and a reload never holds the
GIL for seconds."""

CHILD_TIMEOUT = 900.0
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


class AllowFiltered:
    """A block list seen through the global allow lists (`allow:` in the config): a name any of
    them covers is never blocked by this list. Allow lists are consulted only on a hit."""

    __slots__ = ("allows", "inner")

    def __init__(self, inner: Matcher, allows: Sequence[Matcher]) -> None:
        self.inner = inner
        self.allows = tuple(allows)

    def __len__(self) -> int:
        return len(self.inner)

    def lookup(self, qname: bytes) -> tuple[BlockRule, int] | None:
        hit = self.inner.lookup(qname)
        if hit is None:
            return None
        for allow in self.allows:
            if allow.lookup(qname) is not None:
                return None
        return hit


@dataclass(frozen=True, slots=True)
class ListReport:
    """What loading one list found, for the start-up and reload log lines and `check`."""

    name: str
    kind: str  # catalogue | file | dir | url
    location: str
    entries: int
    format: str = ""
    detected: str = ""
    duplicates: int = 0
    invalid: int = 0
    skipped: Mapping[str, int] = field(default_factory=dict)
    cached: bool = False  # served from the compiled cache, nothing parsed
    note: str = ""
    fetched: bool = True  # False for a feed with no good copy yet: it blocks nothing so far

    def fields(self) -> dict[str, object]:
        out: dict[str, object] = {"entries": self.entries, "kind": self.kind}
        for key in ("format", "detected", "note"):
            value = getattr(self, key)
            if value:
                out[key] = value
        if self.duplicates:
            out["duplicates"] = self.duplicates
        if self.invalid:
            out["invalid"] = self.invalid
        if self.skipped:
            out["skipped"] = dict(self.skipped)
        if self.cached:
            out["cached"] = True
        return out


@dataclass(frozen=True, slots=True)
class LoadedLists:
    """Every list a config names, loaded: what `state.build_state` compiles the policy from.

    `matchers` maps each configured reference (catalogue id, source name or path) to its list
    name and matcher, block lists already filtered through the allow lists; `watch` is what
    `local_changes` compares to notice edited list files.

    `missing` names the lists that are not in force although configured: their matcher is
    empty (a feed never fetched, with no last good copy). What that means for the groups
    that use them is decided from these names alone (`state`, `blocking.missing_lists`).
    """

    matchers: Mapping[str, tuple[str, Matcher]]
    sizes: Mapping[str, int]
    reports: Mapping[str, ListReport]
    warnings: tuple[str, ...]
    watch: Mapping[str, tuple[tuple[str, int, int], ...]]
    missing: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class _Spec:
    """One list to load: where its text comes from and how to parse it."""

    item: str
    name: str
    kind: str
    files: tuple[Path, ...]
    format: str
    url: str | None = None
    max_shrink: float = 0.5


def _dir_files(directory: Path) -> tuple[Path, ...]:
    """Regular, visible files of a list directory, in name order (editors' backups skipped)."""
    try:
        entries = sorted(directory.iterdir())
    except OSError:
        return ()
    return tuple(
        path
        for path in entries
        if path.is_file() and not path.name.startswith(".") and not path.name.endswith("~")
    )


def list_specs(config: Config) -> list[_Spec | str]:
    """Every list reference of `config` resolved: a `_Spec`, or the id for catalogue entries."""
    specs: list[_Spec | str] = []
    for ref in config.list_refs:
        if ref.kind is ListKind.CATALOGUE:
            specs.append(ref.name)
        elif ref.source is not None:
            specs.append(_source_spec(ref.name, ref.source))
        else:
            specs.append(_Spec(ref.name, Path(ref.name).stem, "file", (Path(ref.name),), "auto"))
    return specs


def _source_spec(item: str, source: SourceConfig) -> _Spec:
    fmt = source.format.value
    if source.remote:  # a feed or a transferred zone: its last good copy
        return _Spec(item, source.name, "url", (), fmt, source.location, source.max_shrink)
    if source.dir:
        return _Spec(item, source.name, "dir", _dir_files(Path(source.dir)), fmt)
    return _Spec(item, source.name, "file", (Path(source.location),), fmt)


def _stat(paths: Sequence[Path]) -> tuple[tuple[str, int, int], ...]:
    stamps = []
    for path in paths:
        try:
            info = path.stat()
        except OSError:
            stamps.append((str(path), -1, -1))
        else:
            stamps.append((str(path), info.st_size, info.st_mtime_ns))
    return tuple(stamps)


def _fingerprint(spec: _Spec, stamps: object, limits: tuple[int, int]) -> str:
    text = json.dumps([PARSER_VERSION, spec.name, spec.format, stamps, limits])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _compiled_path(state_dir: Path, spec: _Spec) -> Path:
    tag = hashlib.sha256(spec.item.encode()).hexdigest()[:8]
    return state_dir / "compiled" / f"{_SAFE_NAME.sub('_', spec.name)}-{tag}.dwl"


def _run_child(job: Mapping[str, Any]) -> dict[str, Any]:
    """`compile_job` in a fresh interpreter (`python -m resolver.lists.compiled`), job on stdin."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "resolver.lists.compiled"],
            input=json.dumps(job).encode(),
            capture_output=True,
            env=env,
            timeout=CHILD_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"problems": [f"{job['name']}: compiling took over {CHILD_TIMEOUT:.0f} s"]}
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["?"]
        return {"problems": [f"{job['name']}: list compiler failed: {tail[0][:300]}"]}
    result: dict[str, Any] = json.loads(done.stdout)
    return result


class ListLoader:
    """Loads lists into matchers, with the compiled cache and the last good copies in
    `state_dir`. Without a usable state directory everything still works, compiled in
    memory (and `check` never needs one)."""

    def __init__(
        self,
        state_dir: str | None,
        *,
        max_bad_lines: int = 100,
        max_regex: int = 1000,
        child_threshold: int | None = None,
    ) -> None:
        self.state_dir = Path(state_dir) if state_dir else None
        self.max_bad_lines = max_bad_lines
        self.max_regex = max_regex
        self.child_threshold = CHILD_THRESHOLD if child_threshold is None else child_threshold
        self.store = SourceStore(self.state_dir) if self.state_dir is not None else None
        self._writable: bool | None = None

    @property
    def writable(self) -> bool:
        """The compiled cache directory exists or could be created (checked once, lazily:
        `check` and small lists never touch the state directory)."""
        if self._writable is None:
            self._writable = False
            if self.state_dir is not None:
                try:
                    (self.state_dir / "compiled").mkdir(parents=True, exist_ok=True)
                    self._writable = os.access(self.state_dir / "compiled", os.W_OK)
                except OSError:
                    pass
        return self._writable

    def spec_files(self, spec: _Spec) -> tuple[Path, ...]:
        """The files to parse: a URL source's last good copy, if there is one."""
        if spec.kind != "url":
            return spec.files
        if self.store is None or not self.store.has_copy(spec.name):
            return ()
        return (self.store.body_path(spec.name),)

    def stamps(self, spec: _Spec) -> object:
        if spec.kind == "url":
            meta = self.store.meta(spec.name) if self.store is not None else {}
            return meta.get("sha256", "")
        return _stat(spec.files)

    def load(self, spec: _Spec, regex_budget: int) -> tuple[Matcher, ListReport, list[str]]:
        """The matcher of one list; raises `ListError` when it is unreadable or broken."""
        files = self.spec_files(spec)
        location = spec.url or (str(spec.files[0]) if spec.kind == "file" else "")
        if spec.kind == "dir":
            location = str(spec.files[0].parent) if spec.files else ""
        if spec.kind == "url" and not files:
            empty = from_parsed(ParsedRules(source=spec.name, format=spec.format), spec.name)
            note = "no copy fetched yet; blocking nothing from this list until a fetch succeeds"
            report = ListReport(spec.name, spec.kind, location, 0, note=note, fetched=False)
            return empty, report, []
        limits = (self.max_bad_lines, regex_budget)
        fingerprint = _fingerprint(spec, self.stamps(spec), limits)
        labels = {str(path): str(path) for path in files}
        if spec.kind == "url":
            labels = {str(files[0]): spec.url or spec.name}
        job: dict[str, Any] = {
            "name": spec.name,
            "files": [str(path) for path in files],
            "label": labels,
            "format": spec.format,
            "max_errors": self.max_bad_lines,
            "max_regex": regex_budget,
            "meta": {"fingerprint": fingerprint, "item": spec.item},
        }
        size = sum(stamp[1] for stamp in _stat(files) if stamp[1] > 0)
        if size > self.child_threshold and self.writable and self.state_dir is not None:
            cached_path = _compiled_path(self.state_dir, spec)
            # Workers reloading together: the first compiles, the others wait and map it.
            with _file_lock(cached_path.with_suffix(".lock"), wait=True):
                matcher = self._cached(cached_path, fingerprint)
                if matcher is not None:
                    return matcher, self._report(spec, location, matcher, cached=True), []
                job["out"] = str(cached_path)
                result = _run_child(job)
                if result["problems"]:
                    raise ListError(result["problems"])
                matcher = open_compiled(cached_path)
            report = self._report(spec, location, matcher)
        else:
            matcher = self._in_memory(job)
            report = self._report(spec, location, matcher)
            if size > self.child_threshold:
                report = replace(report, note="state_dir not writable: compiled in memory")
        return matcher, report, list(matcher.meta["report"]["errors"])

    def _in_memory(self, job: dict[str, Any]) -> CompiledMatcher:
        """Parse here: small lists, or no state directory to write a compiled file to."""
        parsed, problems, summary = parse_job(job)
        if problems:
            raise ListError(problems)
        meta = {**job["meta"], "report": summary}
        return CompiledMatcher(b"".join(compile_rules(parsed, job["name"], meta)))

    @staticmethod
    def _cached(path: Path, fingerprint: str) -> CompiledMatcher | None:
        try:
            matcher = open_compiled(path)
        except (OSError, ValueError):
            return None
        return matcher if matcher.meta.get("fingerprint") == fingerprint else None

    @staticmethod
    def _report(
        spec: _Spec, location: str, matcher: CompiledMatcher, *, cached: bool = False
    ) -> ListReport:
        report = matcher.meta.get("report", {})
        return ListReport(
            name=spec.name,
            kind=spec.kind,
            location=location,
            entries=len(matcher),
            format=report.get("format", ""),
            detected=report.get("detected", ""),
            duplicates=report.get("duplicates", 0),
            invalid=report.get("invalid", 0),
            skipped=report.get("skipped", {}),
            cached=cached,
        )


def load_lists(config: Config, *, state_dir: str | None = None) -> LoadedLists:
    """Load every list `config` names; raises `ListError` with every problem of every list.

    Catalogue entries become `DomainMatcher`s (a few hundred rules with per-rule answers);
    operator lists become `CompiledMatcher`s, from the compiled cache when their files (or a
    URL's last good copy) are unchanged. No network I/O: remote lists are fetched by
    `refresh_source`, and a list never fetched yet blocks nothing until it is.
    """
    limits = config.limits
    loader = ListLoader(
        state_dir if state_dir is not None else config.state_dir,
        max_bad_lines=limits.max_bad_lines,
        max_regex=limits.max_regex_rules,
    )
    allow_names = set(config.allow)
    loaded: dict[str, tuple[str, Matcher]] = {}
    sizes: dict[str, int] = {}
    reports: dict[str, ListReport] = {}
    warnings: list[str] = []
    problems: list[str] = []
    failed: list[str] = []
    watch: dict[str, tuple[tuple[str, int, int], ...]] = {}
    regex_left = loader.max_regex
    for spec in list_specs(config):
        if isinstance(spec, str):
            try:
                blocking = build_blocking([spec])
            except ListError as error:
                problems.extend(error.problems)
                failed.append(spec)
                continue
            ((name, size),) = blocking.sizes.items()
            matcher: Matcher = blocking.matcher
            report = ListReport(name, "catalogue", spec, size)
            item = spec
        else:
            name, item = spec.name, spec.item
            watch[item] = _watch_stamp(spec, loader.store)
            try:
                compiled, report, errors = loader.load(spec, max(regex_left, 0))
            except ListError as error:
                problems.extend(error.problems)
                failed.append(name)
                continue
            regex_left -= len(compiled.regexes()) if isinstance(compiled, CompiledMatcher) else 0
            warnings.extend(errors)
            matcher, size = compiled, report.entries
        if name in sizes:
            problems.append(f"{item}: list name {name!r} is already used by another list")
            continue
        loaded[item] = (name, matcher)
        sizes[name] = size
        reports[name] = report
    if problems:
        raise ListError(problems, failed)
    allows = [loaded[item][1] for item in loaded if item in allow_names]
    if allows:
        loaded = {
            item: (name, m if item in allow_names else AllowFiltered(m, allows))
            for item, (name, m) in loaded.items()
        }
    missing = frozenset(name for name, report in reports.items() if not report.fetched)
    return LoadedLists(loaded, sizes, reports, tuple(warnings), watch, missing)


def _watch_stamp(spec: _Spec, store: SourceStore | None) -> tuple[tuple[str, int, int], ...]:
    """What tells that a list changed: its files' sizes and times, or for a remote list the
    digest of its last good copy (another worker may have fetched it)."""
    if spec.kind != "url":
        return _stat(spec.files)
    digest = store.meta(spec.name).get("sha256", "") if store is not None else ""
    return ((f"sha256:{digest}", 0, 0),)


def local_changes(
    config: Config, watch: Mapping[str, tuple[tuple[str, int, int], ...]]
) -> list[str]:
    """The lists whose files changed since `watch` was taken (size or modification time, a
    file added to or removed from a directory), or whose last good copy was replaced."""
    store = SourceStore(config.state_dir) if config.state_dir else None
    return [
        spec.name
        for spec in list_specs(config)
        if not isinstance(spec, str) and watch.get(spec.item) != _watch_stamp(spec, store)
    ]


def size_changes(old: Mapping[str, int], new: Mapping[str, int]) -> dict[str, str]:
    """What a reload changed, per list: ``added 120``, ``removed``, ``1000 -> 1200``."""
    changes: dict[str, str] = {}
    for name in sorted({*old, *new}):
        if name not in old:
            changes[name] = f"added {new[name]}"
        elif name not in new:
            changes[name] = "removed"
        elif old[name] != new[name]:
            changes[name] = f"{old[name]} -> {new[name]}"
    return changes


MIN_POLL = 1.0
MAX_POLL = 10.0


def poll_interval(config: Config) -> float:
    """How often the service checks lists: the shortest `refresh` of a file or directory
    source, within [MIN_POLL, MAX_POLL] (remote sources are checked for being due as often)."""
    refresh = [s.refresh for s in config.sources if not s.remote]
    return max(MIN_POLL, min([MAX_POLL, *refresh]))


@dataclass(frozen=True, slots=True)
class RefreshOutcome:
    """What one refresh of a remote list did: ``updated``, ``unchanged`` or ``failed``."""

    name: str
    status: str
    detail: str = ""
    entries: int | None = None
    previous: int | None = None


def refresh_source(
    config: Config,
    name: str,
    *,
    ssl_context: Any = None,
    fetcher: Callable[..., FetchResult] = fetch,
    now: Callable[[], float] = time.time,
) -> RefreshOutcome:
    """Fetch the remote list `name` and make it the last good copy if it deserves to be.

    Blocking (run it in a thread). The download is parsed and compiled in a child process like
    any big list; it replaces the stored copy only if it is not broken and did not shrink by
    more than the source's `max_shrink` (a truncated or emptied feed must not lift bans), and
    the compiled file is replaced with it, so the next `load_lists` maps it without parsing.
    """
    source = config.list_source(name)
    if source is None or not source.remote:
        return RefreshOutcome(name, "failed", "not a remote source")
    loader = ListLoader(
        config.state_dir,
        max_bad_lines=config.limits.max_bad_lines,
        max_regex=config.limits.max_regex_rules,
    )
    store = loader.store
    if store is None or not loader.writable:
        return RefreshOutcome(name, "failed", "state_dir is not writable")
    with _file_lock(store.directory / f"{name}.lock", wait=False) as locked:
        if not locked:
            return RefreshOutcome(name, "unchanged", "another process is fetching it")
        return _refresh_locked(config, source, loader, store, ssl_context, fetcher, now)


def _refresh_locked(
    config: Config,
    source: SourceConfig,
    loader: ListLoader,
    store: SourceStore,
    ssl_context: Any,
    fetcher: Callable[..., FetchResult],
    now: Callable[[], float],
) -> RefreshOutcome:
    name = source.name
    old = store.meta(name) if store.has_copy(name) else {}
    try:
        result = fetcher(
            source.location,
            etag=old.get("etag"),
            last_modified=old.get("last_modified"),
            timeout=source.timeout,
            max_bytes=source.max_bytes,
            ssl_context=ssl_context,
            cafile=config.upstream.ca_file,
            insecure=source.insecure,
        )
    except FetchError as exc:
        store.touch(name, last_failure=now(), last_error=str(exc))
        return RefreshOutcome(name, "failed", f"{source.location}: {exc}")
    if result.status == 304 or result.body is None:
        store.touch(name, checked_at=now())
        return RefreshOutcome(name, "unchanged", "not modified", old.get("entries"))
    digest = hashlib.sha256(result.body).hexdigest()
    if digest == old.get("sha256"):
        store.touch(name, checked_at=now(), etag=result.etag, last_modified=result.last_modified)
        return RefreshOutcome(name, "unchanged", "same content", old.get("entries"))
    candidate = store.write_candidate(name, result.body)
    spec = _Spec(name, name, "url", (), source.format.value, source.location)
    job_out = store.directory / f".{name}.candidate.dwl"
    fingerprint = _fingerprint(spec, digest, (loader.max_bad_lines, loader.max_regex))
    job = {
        "name": name,
        "files": [str(candidate)],
        "label": {str(candidate): source.location},
        "format": spec.format,
        "max_errors": loader.max_bad_lines,
        "max_regex": loader.max_regex,
        "out": str(job_out),
        "meta": {"fingerprint": fingerprint, "item": name},
    }
    report = compile_job(job) if len(result.body) <= loader.child_threshold else _run_child(job)
    previous = old.get("entries")
    if report["problems"]:
        store.discard_candidate(name)
        job_out.unlink(missing_ok=True)
        detail = "; ".join(report["problems"][-3:])
        store.touch(name, last_failure=now(), last_error=detail[:500])
        return RefreshOutcome(name, "failed", detail, None, previous)
    entries = int(report["accepted"])
    if previous and entries < previous * (1 - source.max_shrink):
        store.discard_candidate(name)
        job_out.unlink(missing_ok=True)
        detail = (
            f"{source.location}: refresh rejected: {entries} entries where the last good copy has "
            f"{previous}, a shrink of {1 - entries / previous:.0%} (max_shrink "
            f"{source.max_shrink:.0%}); keeping the last good copy"
        )
        store.touch(name, last_failure=now(), last_error=detail[:500])
        return RefreshOutcome(name, "failed", detail, entries, previous)
    store.promote(
        name,
        {
            "url": source.location,
            "etag": result.etag,
            "last_modified": result.last_modified,
            "fetched_at": now(),
            "checked_at": now(),
            "sha256": digest,
            "bytes": len(result.body),
            "entries": entries,
        },
    )
    if loader.state_dir is not None:
        os.replace(job_out, _compiled_path(loader.state_dir, spec))
    return RefreshOutcome(name, "updated", "", entries, previous)


def due_sources(config: Config, now: float, retry_after: float = 60.0) -> list[str]:
    """Remote sources due for a fetch: their last check is older than their refresh interval,
    or (never fetched, or failing) their last attempt is older than `retry_after`, capped by
    the refresh interval."""
    state_dir = config.state_dir
    if not state_dir:
        return []
    store = SourceStore(state_dir)
    due = []
    for source in config.sources:
        if not source.url:
            continue
        meta = store.meta(source.name)
        checked = float(meta.get("checked_at", 0.0))
        failed = float(meta.get("last_failure", 0.0))
        if not checked and not failed:
            due_at = 0.0  # never tried
        elif failed > checked:
            due_at = failed + min(source.refresh, retry_after)
        else:
            due_at = checked + source.refresh
        if now >= due_at:
            due.append(source.name)
    return due


@contextlib.contextmanager
def _file_lock(path: Path, *, wait: bool) -> Iterator[bool]:
    """An advisory lock between the processes sharing a state directory; yields whether it
    was taken (always, with `wait`). Without fcntl (not POSIX) it is a no-op."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - POSIX only
        yield True
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
