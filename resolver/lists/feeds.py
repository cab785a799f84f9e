"""Remote lists: fetching each feed when it is due, judging the download, and keeping it as
the list's last good copy.

A feed is fetched by `refresh_source` (`resolver.lists.fetch` does the HTTP), in a thread of
the service and never on the query path. A download replaces the last good copy only if the
guard lets it through (`resolver.lists.guard`), and its compiled form replaces the compiled
file with it, so the reload that follows maps it without parsing. `due_sources` says which
feeds to fetch now: on their refresh interval, sooner while failing.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from resolver.config import Config, SourceConfig
from resolver.lists.building import compile_job
from resolver.lists.fetch import FetchError, FetchResult, SourceStore, fetch
from resolver.lists.loading import (
    ListLoader,
    ListSpec,
    compiled_path,
    file_lock,
    list_fingerprint,
    run_child,
)
from resolver.lists.refusals import (
    KEPT_NOTHING,
    KEPT_PREVIOUS,
    ListAcceptance,
    ListRejection,
    accepted_key,
    rejection,
)

__all__ = ["RefreshOutcome", "due_sources", "refresh_source"]


@dataclass(frozen=True, slots=True)
class RefreshOutcome:
    """What one refresh of a remote list did: ``updated``, ``unchanged`` or ``failed``.

    A download the guard refused is ``failed`` with its `rejection`; one loaded only because
    the operator accepted it is ``updated`` with its `acceptance`.
    """

    name: str
    status: str
    detail: str = ""
    entries: int | None = None
    previous: int | None = None
    rejection: ListRejection | None = None
    acceptance: ListAcceptance | None = None


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
    any big list; it replaces the stored copy only if the guard lets it through
    (`resolver.lists.guard`: not an error page or binary data, not mostly invalid, no rule
    for a whole TLD, not emptied or shrunk by more than the source's `max_shrink` unless the
    operator accepted it), and the compiled file is replaced with it, so the next
    `load_lists` maps it without parsing. A refused download is remembered by digest: the
    same content again is not judged (nor reported) again.
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
    with file_lock(store.directory / f"{name}.lock", wait=False) as locked:
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
    accept = accepted_key(loader.state_dir, name) == f"sha256:{digest}"
    if digest == store.meta(name).get("refused_sha256") and not accept:
        # Refused before and not accepted since: said once already (`list_rejected`).
        store.touch(name, last_failure=now())
        return RefreshOutcome(name, "unchanged", "same content as the refused version")
    candidate = store.write_candidate(name, result.body)
    spec = ListSpec(name, name, "url", (), source.format.value, source.location)
    job_out = store.directory / f".{name}.candidate.dwl"
    fingerprint = list_fingerprint(spec, digest, (loader.max_bad_lines, loader.max_regex))
    previous = old.get("entries")
    job = {
        "name": name,
        "files": [str(candidate)],
        "label": {str(candidate): source.location},
        "format": spec.format,
        "max_errors": loader.max_bad_lines,
        "max_regex": loader.max_regex,
        "out": str(job_out),
        "previous": previous,
        "max_shrink": source.max_shrink,
        "allow_tld_rules": source.allow_tld_rules,
        "accept": accept,
        "meta": {"fingerprint": fingerprint, "item": name},
    }
    report = compile_job(job) if len(result.body) <= loader.child_threshold else run_child(job)
    refusal = report.get("refusal")
    if report["problems"]:
        store.discard_candidate(name)
        job_out.unlink(missing_ok=True)
    if report["problems"] and not refusal:
        detail = "; ".join(report["problems"][-3:])
        store.touch(name, last_failure=now(), last_error=detail[:500])
        return RefreshOutcome(name, "failed", detail, None, previous)
    if refusal:
        kept = "keeping the last good copy" if old else "there is no good copy yet"
        detail = f"{source.location}: refresh refused: {refusal['detail']}; {kept}"
        store.touch(
            name,
            last_failure=now(),
            last_error=detail[:500],
            refused_sha256=digest,
            refused_reason=refusal["reason"],
        )
        refused = rejection(
            name, source.location or name, refusal, KEPT_PREVIOUS if old else KEPT_NOTHING,
            previous or 0,
        )  # fmt: skip
        return RefreshOutcome(
            name, "failed", detail, report.get("accepted"), previous, rejection=refused
        )
    entries = int(report["accepted"])
    over = report.get("accepted_over")
    acceptance = None
    if over:
        acceptance = ListAcceptance(
            name, source.location or name, over["reason"], over["detail"], entries, previous
        )
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
        os.replace(job_out, compiled_path(loader.state_dir, spec))
    return RefreshOutcome(name, "updated", "", entries, previous, acceptance=acceptance)




def due_sources(config: Config, now: float, retry_after: float = 60.0) -> list[str]:
    """Remote sources due for a fetch: their last check is older than their refresh interval,
    or (never fetched, or failing) their last attempt is older than `retry_after`, capped by
    the refresh interval, or the operator has just accepted their refused download."""
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
        refused = meta.get("refused_sha256")
        if refused and accepted_key(state_dir, source.name) == f"sha256:{refused}":
            due_at = 0.0  # the operator accepted the refused download: fetch it now
        elif not checked and not failed:
            due_at = 0.0  # never tried
        elif failed > checked:
            due_at = failed + min(source.refresh, retry_after)
        else:
            due_at = checked + source.refresh
        if now >= due_at:
            due.append(source.name)
    return due
