"""Fetching remote lists, and keeping the last good copy of each in the state directory.

A remote feed is only as good as its last verified download: a server restarted while the feed
(or the network) is down must still enforce, so every download that parsed well is stored, and
that copy is what the server loads; a new download replaces it only after it parsed and did
not shrink suspiciously (a truncated download must not silently lift a ban; see `lists`).

The HTTP side is blocking `urllib` code, run in a worker thread by the service (the socket
waits release the GIL): conditional GET (``If-None-Match`` / ``If-Modified-Since``), a timeout
per attempt, a size cap that holds for compressed bodies too, retries with exponential backoff
and full jitter, and certificate verification that cannot be switched off for https (a CA file
or an `ssl.SSLContext` may be given, e.g. a private CA). Redirects to plain http are refused
unless the source is explicitly `insecure`.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import ssl
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resolver import __version__
from resolver.lists.compiled import write_atomic

__all__ = [
    "FetchError",
    "FetchResult",
    "SourceStore",
    "fetch",
    "make_ssl_context",
]

USER_AGENT = f"dnswarden/{__version__} (list fetcher)"
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF = 2.0
MAX_BACKOFF = 60.0
_CHUNK = 1 << 16
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class FetchError(Exception):
    """A download that failed for good (after retries); the message is safe to log."""


@dataclass(frozen=True, slots=True)
class FetchResult:
    """``status`` 200 with the body, or 304 (not modified: keep the stored copy)."""

    status: int
    body: bytes | None
    etag: str | None
    last_modified: str | None
    attempts: int = 1


def make_ssl_context(cafile: str | None = None) -> ssl.SSLContext:
    """A verifying client context: the system trust store, or `cafile` instead."""
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class _NoDowngrade(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but never from https to plain http (unless the source is insecure)."""

    def __init__(self, insecure: bool) -> None:
        super().__init__()
        self.insecure = insecure

    def redirect_request(  # type: ignore[override]
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        if not self.insecure and not newurl.lower().startswith("https://"):
            raise FetchError(f"redirect to {newurl[:200]!r} refused: only https:// is allowed")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch(
    url: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    timeout: float = 30.0,
    max_bytes: int = 256 << 20,
    ssl_context: ssl.SSLContext | None = None,
    cafile: str | None = None,
    insecure: bool = False,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF,
    sleep: Callable[[float], None] = time.sleep,
    jitter: Callable[[], float] = random.random,
) -> FetchResult:
    """Download `url` (blocking); raises `FetchError` once `retries` retries have failed.

    Retried: network errors, timeouts, 408/425/429 and 5xx, after ``min(MAX_BACKOFF,
    backoff * 2**n) * jitter()`` seconds ("full jitter", so many servers restarting together
    do not hit the feed in step). Not retried: other HTTP errors, an oversized body, a refused
    redirect. `sleep` and `jitter` are parameters so tests run without waiting.
    """
    scheme = url.split(":", 1)[0].lower()
    if scheme not in ("https", "http") or (scheme == "http" and not insecure):
        raise FetchError(f"{url[:200]!r}: only https:// URLs (http:// with insecure: true)")
    context = ssl_context if ssl_context is not None else make_ssl_context(cafile)
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=context), _NoDowngrade(insecure)
    )
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "gzip"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    attempt = 0
    while True:
        attempt += 1
        try:
            return _attempt(opener, url, headers, timeout, max_bytes, attempt)
        except _Retry as exc:
            if attempt > retries:
                raise FetchError(f"{exc} (gave up after {attempt} attempts)") from None
            sleep(min(MAX_BACKOFF, backoff * 2 ** (attempt - 1)) * jitter())


class _Retry(Exception):
    """A failure worth another attempt."""


def _attempt(
    opener: urllib.request.OpenerDirector,
    url: str,
    headers: dict[str, str],
    timeout: float,
    max_bytes: int,
    attempt: int,
) -> FetchResult:
    request = urllib.request.Request(url, headers=headers)
    try:
        with opener.open(request, timeout=timeout) as response:
            body = _read_capped(response, max_bytes)
            return FetchResult(
                200,
                body,
                response.headers.get("ETag"),
                response.headers.get("Last-Modified"),
                attempt,
            )
    except urllib.error.HTTPError as exc:
        if exc.code == 304:
            return FetchResult(
                304, None, exc.headers.get("ETag"), exc.headers.get("Last-Modified"), attempt
            )
        if exc.code in _RETRY_STATUS:
            raise _Retry(f"HTTP {exc.code} {exc.reason}") from None
        raise FetchError(f"HTTP {exc.code} {exc.reason}") from None
    except FetchError:
        raise
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ssl.SSLCertVerificationError | FetchError):
            raise FetchError(f"TLS: {reason}") from None
        if isinstance(reason, ssl.SSLError):
            raise FetchError(f"TLS: {reason}") from None
        raise _Retry(f"network: {reason}") from None
    except ssl.SSLCertVerificationError as exc:
        raise FetchError(f"TLS: {exc}") from None
    except (TimeoutError, ConnectionError, OSError) as exc:
        raise _Retry(f"network: {exc or type(exc).__name__}") from None
    except _TooBig as exc:
        raise FetchError(str(exc)) from None


class _TooBig(Exception):
    pass


def _read_capped(response: Any, max_bytes: int) -> bytes:
    """The body, decompressed if gzip, refusing more than `max_bytes` either way."""
    length = response.headers.get("Content-Length")
    encoding = (response.headers.get("Content-Encoding") or "").lower()
    if length and length.isdigit() and int(length) > max_bytes:
        raise _TooBig(f"body of {int(length)} bytes is over the {max_bytes}-byte limit")
    chunks: list[bytes] = []
    total = 0
    inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS) if encoding == "gzip" else None
    while True:
        chunk = response.read(_CHUNK)
        if not chunk:
            break
        if inflate is not None:
            chunk = inflate.decompress(chunk, max_bytes + 1 - total)
            if inflate.unconsumed_tail:
                raise _TooBig(f"decompressed body is over the {max_bytes}-byte limit")
        total += len(chunk)
        if total > max_bytes:
            raise _TooBig(f"body is over the {max_bytes}-byte limit")
        chunks.append(chunk)
    if inflate is not None:
        rest = inflate.flush()
        total += len(rest)
        if total > max_bytes:
            raise _TooBig(f"decompressed body is over the {max_bytes}-byte limit")
        chunks.append(rest)
    return b"".join(chunks)


class SourceStore:
    """Last good copies of remote lists: ``<state_dir>/sources/<name>.body`` and ``.json``.

    The JSON sidecar holds what the next fetch and the next start need: ETag, Last-Modified,
    when it was fetched and checked, the body's SHA-256 (the compiled cache is keyed by it)
    and how many entries it had (the base of the shrink check).
    """

    def __init__(self, state_dir: str | Path) -> None:
        self.directory = Path(state_dir) / "sources"

    def body_path(self, name: str) -> Path:
        return self.directory / f"{name}.body"

    def candidate_path(self, name: str) -> Path:
        return self.directory / f"{name}.new"

    def meta_path(self, name: str) -> Path:
        return self.directory / f"{name}.json"

    def meta(self, name: str) -> dict[str, Any]:
        """The sidecar ({} when there is none or it is unreadable)."""
        try:
            value = json.loads(self.meta_path(name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    def has_copy(self, name: str) -> bool:
        """A last good copy exists (a body and a sidecar that describes it)."""
        return bool(self.meta(name).get("sha256")) and self.body_path(name).is_file()

    def write_candidate(self, name: str, body: bytes) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.candidate_path(name)
        write_atomic(path, [body])
        return path

    def promote(self, name: str, meta: dict[str, Any]) -> None:
        """Make the candidate the last good copy, then its sidecar (a crash between the two
        leaves a body whose sidecar digest does not match; the loader then recompiles)."""
        os.replace(self.candidate_path(name), self.body_path(name))
        write_atomic(self.meta_path(name), [json.dumps(meta, indent=1).encode()])

    def touch(self, name: str, **changes: Any) -> None:
        """Update the sidecar only: a 304, or when and why an attempt failed."""
        self.directory.mkdir(parents=True, exist_ok=True)
        meta = self.meta(name)
        meta.update(changes)
        write_atomic(self.meta_path(name), [json.dumps(meta, indent=1).encode()])

    def discard_candidate(self, name: str) -> None:
        with contextlib.suppress(OSError):
            self.candidate_path(name).unlink()

