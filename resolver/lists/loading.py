"""Loading every list a config names: catalogue entries, local files and directories, and
remote feeds from their last good copies; building the matchers the policy looks names up in.

Operator lists can hold millions of names, so they are parsed by `resolver.lists.formats` (every
common format) and compiled by `resolver.lists.compiled` into a memory-mapped file in the state
directory, in a child process when they are big: the server's own memory never holds the
parse, a reload never holds the GIL for seconds, and a restart with unchanged lists maps the
compiled files without parsing anything (each carries the fingerprint of the text it came
from). Remote lists are fetched by `resolver.lists.feeds`.

Bad lines are reported with ``file:line`` and skipped; a list with too many of them (more than
`limits.max_bad_lines` and over 5% of its lines) is broken and cannot be loaded at all. Every
other new version of every list is judged before use (`resolver.lists.guard`): an error page,
binary data, a list with over half of its lines invalid, a rule that blocks a whole TLD, or a
version emptied or shrunk by more than `max_shrink` is refused, and the version in force stays:
the running state's, or at start-up the compiled file in the state directory, which is each
list's last good copy. Catalogue entries are few rules with per-rule answers, already checked
strictly by `resolver.lists.catalogue`; `build_blocking` puts them in a `DomainMatcher` as they
are.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from resolver.config import Config, ListKind, SourceConfig
from resolver.lists.building import compile_job, parse_job
from resolver.lists.catalogue import ListError, load_catalogue_entry
from resolver.lists.compiled import (
    CompiledMatcher,
    compile_rules,
    from_parsed,
    open_compiled,
    write_atomic,
)
from resolver.lists.fetch import SourceStore
from resolver.lists.formats import NOT_APPLICABLE, ParsedRules
from resolver.lists.guard import DEFAULT_MAX_SHRINK, LIFTED_BY_ACCEPT, judge
from resolver.lists.matcher import BlockRule, DomainMatcher, Matcher
from resolver.lists.refusals import (
    KEPT_LAST_GOOD,
    KEPT_NOTHING,
    KEPT_PREVIOUS,
    ListAcceptance,
    ListRejection,
    accepted_key,
    rejection,
    write_marker,
)

__all__ = [
    "AllowFiltered",
    "BlockingSet",
    "ListError",
    "ListLoader",
    "ListReport",
    "ListSpec",
    "LoadedLists",
    "Matcher",
    "accept_version",
    "build_blocking",
    "compile_job",
    "list_specs",
    "load_lists",
    "local_changes",
    "poll_interval",
    "size_changes",
    "watch_stamps",
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


PARSER_VERSION = 4
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
    refused: str = ""  # the guard's reason when the newest version was refused
    zone: str = ""  # an RPZ list's zone (its SOA owner), cited with its location

    def not_applicable(self) -> dict[str, int]:
        """RPZ rules skipped because a forwarder cannot apply them, by trigger (a metric)."""
        found = ((trigger, self.skipped.get(f"{trigger} trigger", 0)) for trigger in NOT_APPLICABLE)
        return {trigger: count for trigger, count in found if count}

    def fields(self) -> dict[str, object]:
        out: dict[str, object] = {"entries": self.entries, "kind": self.kind}
        for key in ("format", "detected", "note", "refused", "zone"):
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
    empty (a feed never fetched, or a refused version with no good one to keep). What that
    means for the groups that use them is decided from these names alone (`state`,
    `blocking.missing_lists`).

    `rejected` holds each list whose new version the guard refused (the matcher is then the
    version kept in force); `accepted` each one loaded only because the operator accepted it.
    """

    matchers: Mapping[str, tuple[str, Matcher]]
    sizes: Mapping[str, int]
    reports: Mapping[str, ListReport]
    warnings: tuple[str, ...]
    watch: Mapping[str, tuple[tuple[str, int, int], ...]]
    missing: frozenset[str] = frozenset()
    rejected: Mapping[str, ListRejection] = field(default_factory=dict)
    accepted: Mapping[str, ListAcceptance] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ListSpec:
    """One list to load: where its text comes from and how to parse it."""

    item: str
    name: str
    kind: str
    files: tuple[Path, ...]
    format: str
    url: str | None = None
    max_shrink: float = DEFAULT_MAX_SHRINK
    allow_tld_rules: bool = False


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


def list_specs(config: Config) -> list[ListSpec | str]:
    """Every list reference of `config` resolved: a `ListSpec`, or the id for catalogue entries."""
    specs: list[ListSpec | str] = []
    for ref in config.list_refs:
        if ref.kind is ListKind.CATALOGUE:
            specs.append(ref.name)
        elif ref.source is not None:
            specs.append(_source_spec(ref.name, ref.source))
        else:
            specs.append(ListSpec(ref.name, Path(ref.name).stem, "file", (Path(ref.name),), "auto"))
    return specs


def _source_spec(item: str, source: SourceConfig) -> ListSpec:
    fmt = source.format.value
    guard = (source.max_shrink, source.allow_tld_rules)
    if source.remote:  # a feed or a transferred zone: its last good copy
        return ListSpec(item, source.name, "url", (), fmt, source.location, *guard)
    if source.dir:
        return ListSpec(item, source.name, "dir", _dir_files(Path(source.dir)), fmt, None, *guard)
    return ListSpec(item, source.name, "file", (Path(source.location),), fmt, None, *guard)


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


def list_fingerprint(spec: ListSpec, stamps: object, limits: tuple[int, int]) -> str:
    text = json.dumps([PARSER_VERSION, spec.name, spec.format, stamps, limits])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def compiled_path(state_dir: Path, spec: ListSpec) -> Path:
    tag = hashlib.sha256(spec.item.encode()).hexdigest()[:8]
    return state_dir / "compiled" / f"{_SAFE_NAME.sub('_', spec.name)}-{tag}.dwl"


_CHILD = "import sys; from resolver.lists.building import child_main; sys.exit(child_main())"


def run_child(job: Mapping[str, Any]) -> dict[str, Any]:
    """`compile_job` in a fresh interpreter (`resolver.lists.building`'s child), job on stdin.
    Called through `-c`, not `-m`: a compiled core's module is an extension, which `-m` cannot
    run (docs/compiled.md)."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD],
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


@dataclass(frozen=True, slots=True)
class _Loaded:
    """One list as `ListLoader.load` leaves it: the matcher in force and what to report."""

    matcher: Matcher
    report: ListReport
    errors: list[str] = field(default_factory=list)
    rejection: ListRejection | None = None
    acceptance: ListAcceptance | None = None

    @property
    def missing(self) -> bool:
        return not self.report.fetched or (
            self.rejection is not None and self.rejection.kept == KEPT_NOTHING
        )


InForce = tuple[Matcher, ListReport]
"""A list's matcher (unfiltered by the allow lists) and report in the running state."""


class ListLoader:
    """Loads lists into matchers, judging every new version (`resolver.lists.guard`), with the
    compiled files and the last good copies in `state_dir`.

    The compiled file of a list is its last good copy: it is written only for a version the
    guard let through, and opened when a later version is refused. `keep` (the server) writes
    it, for small lists too; without it (`check`, `explain`, `export`) nothing is written and
    everything still works, compiled in memory where no good compiled file exists.
    """

    def __init__(
        self,
        state_dir: str | None,
        *,
        max_bad_lines: int = 100,
        max_regex: int = 1000,
        child_threshold: int | None = None,
        keep: bool = True,
    ) -> None:
        self.state_dir = Path(state_dir) if state_dir else None
        self.max_bad_lines = max_bad_lines
        self.max_regex = max_regex
        self.child_threshold = CHILD_THRESHOLD if child_threshold is None else child_threshold
        self.keep = keep
        self.store = SourceStore(self.state_dir) if self.state_dir is not None else None
        self._writable: bool | None = None

    @property
    def writable(self) -> bool:
        """Last good copies are kept, and the compiled directory exists or could be created
        (checked once, lazily)."""
        if self._writable is None:
            self._writable = False
            if self.keep and self.state_dir is not None:
                try:
                    (self.state_dir / "compiled").mkdir(parents=True, exist_ok=True)
                    self._writable = os.access(self.state_dir / "compiled", os.W_OK)
                except OSError:
                    pass
        return self._writable

    def spec_files(self, spec: ListSpec) -> tuple[Path, ...]:
        """The files to parse: a URL source's last good copy, if there is one (and it is not
        an expired zone withdrawn by its `on_expire: missing`, `resolver.shell.zones`)."""
        if spec.kind != "url":
            return spec.files
        if self.store is None or not self.store.has_copy(spec.name):
            return ()
        if self.store.meta(spec.name).get("withdrawn"):
            return ()
        return (self.store.body_path(spec.name),)

    def stamps(self, spec: ListSpec) -> object:
        if spec.kind == "url":
            meta = self.store.meta(spec.name) if self.store is not None else {}
            return meta.get("sha256", "")
        return _stat(spec.files)

    def version_key(self, spec: ListSpec) -> str:
        """What names the version of `spec` there is now, for accept markers."""
        stamps = self.stamps(spec)
        return f"sha256:{stamps}" if spec.kind == "url" else json.dumps(stamps)

    def _accepted(self, spec: ListSpec) -> bool:
        return accepted_key(self.state_dir, spec.name) == self.version_key(spec)

    def load(self, spec: ListSpec, regex_budget: int, in_force: InForce | None = None) -> _Loaded:
        """One list, judged against `in_force` (the running state's version; at start-up the
        last good copy in `state_dir`). A refused version leaves that one in force (or none:
        then the list is missing). Raises `ListError` when a file cannot be read."""
        files = self.spec_files(spec)
        location = spec.url or (str(spec.files[0]) if spec.kind == "file" else "")
        if spec.kind == "dir":
            location = str(spec.files[0].parent) if spec.files else ""
        if spec.kind == "url" and not files:
            empty = from_parsed(ParsedRules(source=spec.name, format=spec.format), spec.name)
            note = "no copy fetched yet; blocking nothing from this list until a fetch succeeds"
            if self.store is not None and self.store.has_copy(spec.name):  # `spec_files`
                note = "expired, withdrawn (on_expire: missing) until a primary confirms it"
            return _Loaded(
                empty, ListReport(spec.name, spec.kind, location, 0, note=note, fetched=False)
            )
        limits = (self.max_bad_lines, regex_budget)
        fingerprint = list_fingerprint(spec, self.stamps(spec), limits)
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
            "max_shrink": spec.max_shrink,
            "allow_tld_rules": spec.allow_tld_rules,
            "accept": self._accepted(spec),
            "meta": {"fingerprint": fingerprint, "item": spec.item},
        }
        compiled = compiled_path(self.state_dir, spec) if self.state_dir is not None else None
        size = sum(stamp[1] for stamp in _stat(files) if stamp[1] > 0)
        big = size > self.child_threshold
        if compiled is not None and big and self.writable:
            # Workers reloading together: the first compiles, the others wait and map it.
            with file_lock(compiled.with_suffix(".lock"), wait=True):
                matcher = self._cached(compiled, fingerprint)
                if matcher is not None:
                    return _Loaded(matcher, self._report(spec, location, matcher, cached=True))
                last_good = None if in_force is not None else _open_quietly(compiled)
                job["previous"] = _count(in_force, last_good)
                job["out"] = str(compiled)
                result = run_child(job)
            if result.get("refusal") is not None:
                return self._refused(spec, location, result, in_force, last_good)
            if result["problems"]:
                raise ListError(result["problems"])
            return self._loaded(spec, location, open_compiled(compiled), result, job)
        last_good = _open_quietly(compiled) if compiled is not None else None
        if big and last_good is not None and last_good.meta.get("fingerprint") == fingerprint:
            return _Loaded(last_good, self._report(spec, location, last_good, cached=True))
        job["previous"] = _count(in_force, last_good)
        parsed, problems, summary = parse_job(job)
        if summary["refusal"] is not None:
            return self._refused(spec, location, summary, in_force, last_good)
        if problems:
            raise ListError(problems)
        meta = {**job["meta"], "report": summary}
        chunks = compile_rules(parsed, job["name"], meta)
        del parsed
        same = last_good is not None and last_good.meta.get("fingerprint") == fingerprint
        if compiled is not None and self.writable and not same:
            write_atomic(compiled, chunks)  # the last good copy, for a start with a bad version
        matcher = CompiledMatcher(b"".join(chunks))
        loaded = self._loaded(spec, location, matcher, summary, job)
        if big and self.keep:
            note = "state_dir not writable: compiled in memory"
            return replace(loaded, report=replace(loaded.report, note=note))
        return loaded

    def _loaded(
        self,
        spec: ListSpec,
        location: str,
        matcher: CompiledMatcher,
        summary: Mapping[str, Any],
        job: Mapping[str, Any],
    ) -> _Loaded:
        over = summary.get("accepted_over")
        acceptance = None
        if over:
            acceptance = ListAcceptance(
                spec.name, location, over["reason"], over["detail"], len(matcher), job["previous"]
            )
        report = self._report(spec, location, matcher)
        return _Loaded(matcher, report, list(summary.get("errors", ())), None, acceptance)

    def _refused(
        self,
        spec: ListSpec,
        location: str,
        summary: Mapping[str, Any],
        in_force: InForce | None,
        last_good: CompiledMatcher | None,
    ) -> _Loaded:
        """What stays in force when the new version is refused: the running version, else
        the last good copy on disk, else nothing (the list is then missing)."""
        refusal = summary["refusal"]
        if in_force is not None:
            matcher, report = in_force
            kept = KEPT_PREVIOUS
        elif last_good is not None:
            matcher, report = last_good, self._report(spec, location, last_good)
            kept = KEPT_LAST_GOOD
        else:
            matcher = from_parsed(ParsedRules(source=spec.name, format=spec.format), spec.name)
            report = ListReport(spec.name, spec.kind, location, 0)
            kept = KEPT_NOTHING
        refused = rejection(spec.name, location, refusal, kept, len(matcher))
        note = f"new version refused ({refused.reason}): {refused.kept_text()}"
        return _Loaded(matcher, replace(report, note=note, refused=refused.reason), [], refused)

    @staticmethod
    def _cached(path: Path, fingerprint: str) -> CompiledMatcher | None:
        try:
            matcher = open_compiled(path)
        except (OSError, ValueError):
            return None
        return matcher if matcher.meta.get("fingerprint") == fingerprint else None

    @staticmethod
    def _report(
        spec: ListSpec, location: str, matcher: CompiledMatcher, *, cached: bool = False
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
            note=report.get("note", ""),
            zone=report.get("zone", ""),
        )


def _open_quietly(path: Path) -> CompiledMatcher | None:
    """The compiled file at `path` whatever version it holds, or None."""
    try:
        return open_compiled(path)
    except (OSError, ValueError):
        return None


def _count(in_force: InForce | None, last_good: Matcher | None) -> int | None:
    """How many rules the version a new one is judged against has (None: there is none): the
    one in force, else (at start-up) the last good copy."""
    if in_force is not None:
        return len(in_force[0])
    return None if last_good is None else len(last_good)


def _catalogue(
    entry_id: str, in_force: InForce | None
) -> tuple[DomainMatcher, ListReport, ListRejection | None]:
    """A catalogue entry, judged like any list: a bundled entry changes only with dnswarden
    itself, but an upgrade under a running server must not lift bans quietly either."""
    blocking = build_blocking([entry_id])
    ((name, size),) = blocking.sizes.items()
    singles = [
        pattern for pattern, _ in blocking.matcher.rules() if "." not in pattern.lstrip("*.")
    ]
    verdict = judge(
        content=None,
        accepted=size,
        invalid=0,
        rule_lines=size,
        previous=None if in_force is None else len(in_force[0]),
        tld_rules=[pattern.lstrip("*.") for pattern in singles],
    )
    report = ListReport(name, "catalogue", entry_id, size)
    if verdict is None:
        return blocking.matcher, report, None
    refusal = {"reason": verdict.reason, "detail": verdict.detail, "samples": singles}
    if in_force is not None:
        matcher, kept_report = in_force
        refused = rejection(name, entry_id, refusal, KEPT_PREVIOUS, len(matcher))
        return matcher, replace(kept_report, refused=verdict.reason), refused  # type: ignore[return-value]
    refused = rejection(name, entry_id, refusal, KEPT_NOTHING, 0)
    return DomainMatcher(), replace(report, entries=0, refused=verdict.reason), refused


def load_lists(
    config: Config,
    *,
    state_dir: str | None = None,
    previous: LoadedLists | None = None,
    keep: bool = False,
) -> LoadedLists:
    """Load every list `config` names; raises `ListError` with every problem of every list.

    Catalogue entries become `DomainMatcher`s (a few hundred rules with per-rule answers);
    operator lists become `CompiledMatcher`s, from the compiled cache when their files (or a
    URL's last good copy) are unchanged. No network I/O: remote lists are fetched by
    `refresh_source`, and a list never fetched yet blocks nothing until it is.

    Every new version is judged (`resolver.lists.guard`) against the one in `previous` (the
    running state's lists), or at start-up against the last good copy in the state
    directory; a refused one leaves that in force and is reported in `rejected`. `keep`
    writes last good copies (the server does; `check` and the other commands only read).
    """
    limits = config.limits
    loader = ListLoader(
        state_dir if state_dir is not None else config.state_dir,
        max_bad_lines=limits.max_bad_lines,
        max_regex=limits.max_regex_rules,
        keep=keep,
    )
    allow_names = set(config.allow)
    loaded: dict[str, tuple[str, Matcher]] = {}
    sizes: dict[str, int] = {}
    reports: dict[str, ListReport] = {}
    warnings: list[str] = []
    problems: list[str] = []
    failed: list[str] = []
    watch: dict[str, tuple[tuple[str, int, int], ...]] = {}
    rejected: dict[str, ListRejection] = {}
    accepted: dict[str, ListAcceptance] = {}
    missing: set[str] = set()
    regex_left = loader.max_regex
    for spec in list_specs(config):
        if isinstance(spec, str):
            try:
                matcher, report, refused = _catalogue(spec, _in_force(previous, spec, spec))
            except ListError as error:
                problems.extend(error.problems)
                failed.append(spec)
                continue
            name, item, size = report.name, spec, report.entries
            if refused is not None:
                rejected[name] = refused
                if refused.kept == KEPT_NOTHING:
                    missing.add(name)
        else:
            name, item = spec.name, spec.item
            watch[item] = _watch_stamp(spec, loader.store)
            try:
                one = loader.load(spec, max(regex_left, 0), _in_force(previous, item, name))
            except ListError as error:
                problems.extend(error.problems)
                failed.append(name)
                continue
            compiled = _unfiltered(one.matcher)
            if isinstance(compiled, CompiledMatcher):
                regex_left -= len(compiled.regexes())
            warnings.extend(one.errors)
            matcher, report, size = compiled, one.report, one.report.entries
            if spec.kind == "url" and loader.store is not None:
                meta = loader.store.meta(name)  # its last download was refused (`feeds`)
                if meta.get("refused_sha256") and not report.refused:
                    report = replace(report, refused=str(meta.get("refused_reason", "refused")))
            if one.rejection is not None:
                rejected[name] = one.rejection
            if one.acceptance is not None:
                accepted[name] = one.acceptance
            if one.missing:
                missing.add(name)
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
    return LoadedLists(
        loaded, sizes, reports, tuple(warnings), watch, frozenset(missing), rejected, accepted
    )


def _unfiltered(matcher: Matcher) -> Matcher:
    return matcher.inner if isinstance(matcher, AllowFiltered) else matcher


def _in_force(previous: LoadedLists | None, item: str, name: str) -> InForce | None:
    """The running state's version of list `name` (None: none, or it is missing there)."""
    if previous is None or name in previous.missing:
        return None
    found = previous.matchers.get(item)
    report = previous.reports.get(name)
    if found is None or found[0] != name or report is None:
        return None
    return _unfiltered(found[1]), replace(report, note="", refused="", cached=False)


def _watch_stamp(spec: ListSpec, store: SourceStore | None) -> tuple[tuple[str, int, int], ...]:
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


def watch_stamps(config: Config) -> dict[str, tuple[tuple[str, int, int], ...]]:
    """What `local_changes` would compare now, for every operator list of `config`."""
    store = SourceStore(config.state_dir) if config.state_dir else None
    return {
        spec.item: _watch_stamp(spec, store)
        for spec in list_specs(config)
        if not isinstance(spec, str)
    }


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


def accept_version(config: Config, name: str, now: float) -> str:
    """Record that the operator accepts the version of list `name` there is now (for a feed:
    its last refused download), so the next reload loads it even if the guard would refuse
    it for being empty or shrunk (`dnswarden reload --accept`). What was accepted, in words;
    ValueError for a list that cannot be accepted, OSError when the marker cannot be written.
    """
    spec = next(
        (s for s in list_specs(config) if not isinstance(s, str) and name in (s.name, s.item)),
        None,
    )
    if spec is None:
        known = sorted(s.name for s in list_specs(config) if not isinstance(s, str))
        raise ValueError(
            f"{name!r} is not one of the config's operator lists ({', '.join(known) or 'none'});"
            " bundled catalogue entries change only with dnswarden itself"
        )
    if not config.state_dir:
        raise ValueError("no state_dir to record the acceptance in")
    limits = config.limits
    loader = ListLoader(
        config.state_dir,
        max_bad_lines=limits.max_bad_lines,
        max_regex=limits.max_regex_rules,
        keep=False,
    )
    if spec.kind == "url":
        meta = SourceStore(config.state_dir).meta(spec.name)
        refused = meta.get("refused_sha256")
        if not refused:
            raise ValueError(f"{spec.url}: no refused download of {spec.name} to accept")
        key = f"sha256:{refused}"
        what = f"the download of {spec.url} with SHA-256 {refused}"
        reason = str(meta.get("refused_reason", ""))
    else:
        key = loader.version_key(spec)
        shown = ", ".join(f"{path} ({size} bytes)" for path, size, _ in _stat(spec.files))
        what = shown or "an empty directory"
        try:
            judged = loader.load(spec, limits.max_regex_rules).rejection
        except ListError as error:
            raise ValueError("; ".join(error.problems[:3])) from None
        reason = judged.reason if judged is not None else ""
        if judged is None:
            what += " (the list guard does not refuse it now)"
    if reason and reason not in LIFTED_BY_ACCEPT:
        raise ValueError(
            f"{spec.url or what}: refused as {reason}, which no --accept lifts "
            "(it is not a list of rules, or blocks a whole TLD); fix the list"
        )
    write_marker(config.state_dir, spec.name, key, now, what)
    return what


@contextlib.contextmanager
def file_lock(path: Path, *, wait: bool) -> Iterator[bool]:
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
