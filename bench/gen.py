"""Synthetic data for the benchmark: the upstream zone, the blocklists and dnsperf query files.

Everything is generated from a seed, so two runs (and two machines) measure the same names.
Label lengths follow the rough shape of real registrable names (mostly 5 to 12 characters,
a few short and a few long ones), because a matcher that walks labels or hashes names must be
measured on realistic input, not on `a1.example`.  Nothing here writes files except
`write_lines`.
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ZONE = "bench.test"
WILDCARD_PARENT = f"w.{ZONE}"
"""Names under it are answered by the zone's wildcard, so "unique forwarded" has no end."""

NS_NAME = f"ns1.{ZONE}"
NS_ADDRESS = "127.0.0.1"
ADDRESS_BASE = (198 << 24) | (18 << 16)
ADDRESS_SPAN = 1 << 17
"""Answers come from 198.18.0.0/15 (RFC 2544, for benchmarks): never a real host."""

ZONE_TTL = 86400
"""Long, so a cache never expires a primed name during a run."""

TLDS: tuple[tuple[str, int], ...] = (
    ("com", 46),
    ("net", 8),
    ("org", 6),
    ("io", 4),
    ("cn", 6),
    ("ru", 5),
    ("de", 4),
    ("app", 3),
    ("info", 3),
    ("xyz", 3),
    ("co", 3),
    ("top", 3),
    ("site", 2),
    ("online", 2),
)
LABEL_LENGTHS: tuple[tuple[int, int], ...] = (
    (2, 1),
    (3, 3),
    (4, 5),
    (5, 8),
    (6, 11),
    (7, 12),
    (8, 12),
    (9, 10),
    (10, 9),
    (11, 7),
    (12, 6),
    (14, 6),
    (16, 4),
    (20, 3),
    (25, 2),
    (32, 1),
)
SUBDOMAIN_LABELS = ("www", "api", "cdn", "m", "static", "img", "app", "login", "v16", "log")
_LETTERS = string.ascii_lowercase + string.digits
_ALPHA = string.ascii_lowercase


class Category:
    """The three kinds of query in the mixed workload (strings, so JSON stays readable)."""

    HIT = "hit"
    FORWARDED = "forwarded"
    BLOCKED = "blocked"


MIX_SHARES: tuple[tuple[str, float], ...] = (
    (Category.HIT, 0.70),
    (Category.FORWARDED, 0.20),
    (Category.BLOCKED, 0.10),
)


def label(rng: random.Random) -> str:
    """One hostname label of a realistic length: a letter first, an inner hyphen now and then."""
    lengths, weights = zip(*LABEL_LENGTHS, strict=True)
    size = rng.choices(lengths, weights)[0]
    text = rng.choice(_ALPHA) + "".join(rng.choices(_LETTERS, k=size - 1))
    if size >= 6 and rng.random() < 0.08:
        cut = rng.randrange(2, size - 2)
        text = f"{text[:cut]}-{text[cut + 1 :]}"
    return text


def _unique(make: Iterator[str], count: int) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for name in make:
        if len(out) == count:
            break
        if name not in seen:
            seen.add(name)
            out.append(name)
    return out


def zone_names(count: int, seed: int = 1) -> list[str]:
    """`count` distinct owner names inside the zone, one in five two labels deep."""
    rng = random.Random(seed)

    def make() -> Iterator[str]:
        while True:
            first = label(rng)
            if rng.random() < 0.2:
                yield f"{rng.choice(SUBDOMAIN_LABELS)}.{first}.{ZONE}"
            else:
                yield f"{first}.{ZONE}"

    return _unique(make(), count)


def blocklist_names(count: int, seed: int = 2) -> list[str]:
    """`count` distinct registrable-looking domains (never under the zone's `.test`).

    The same seed gives the same prefix for any count, so the 100k list is the start of the 2M.
    """
    rng = random.Random(seed)
    tlds, weights = zip(*TLDS, strict=True)

    def make() -> Iterator[str]:
        while True:
            tld = rng.choices(tlds, weights)[0]
            if rng.random() < 0.15:
                yield f"{label(rng)}.{label(rng)}.{tld}"
            else:
                yield f"{label(rng)}.{tld}"

    return _unique(make(), count)


def address(index: int) -> str:
    """The A record of the `index`-th zone name (deterministic, so a probe can check it)."""
    value = ADDRESS_BASE + index % ADDRESS_SPAN
    return ".".join(str((value >> shift) & 0xFF) for shift in (24, 16, 8, 0))


def zone_lines(names: Sequence[str], serial: int = 1) -> Iterator[str]:
    """The zone file for nsd: SOA, NS and glue, one A per name, and the wildcard."""
    yield f"$ORIGIN {ZONE}."
    yield f"$TTL {ZONE_TTL}"
    yield f"@ IN SOA {NS_NAME}. hostmaster.{ZONE}. {serial} 3600 600 86400 {ZONE_TTL}"
    yield f"@ IN NS {NS_NAME}."
    yield f"{NS_NAME}. IN A {NS_ADDRESS}"
    yield f"*.{WILDCARD_PARENT}. IN A {address(0)}"
    for index, name in enumerate(names):
        yield f"{name}. IN A {address(index)}"


def unique_names(count: int, tag: str, seed: int = 3) -> list[str]:
    """`count` names under the wildcard, each distinct (the index is part of it).

    `tag` keeps two files apart (the max-throughput run and the fixed-rate run must never
    share a name, or the second would hit the cache the first filled).
    """
    rng = random.Random(f"{seed}-{tag}")
    return [f"{label(rng)}-{tag}{index:x}.{WILDCARD_PARENT}" for index in range(count)]


class Shape:
    """Which names the `blocked` workload asks for, against the listed domains (`--list-shape`).

    A matcher's cost can depend on it: dnsmasq answered 63k qps on the mixed names and 196k
    on a list of mostly exact names, on another day (issue 21); dnswarden's must not."""

    MIXED = "mixed"
    """Half the listed domain itself, half a subdomain (the bench's shape since issue 7)."""
    EXACT = "exact"
    SUBDOMAINS = "subdomains"
    HOT = "hot"
    """`HOT_NAMES` mixed names, asked again and again as the `cached` row's names are: a block
    against a cache hit, like for like (the other shapes are mostly first sights)."""


SHAPES = (Shape.MIXED, Shape.EXACT, Shape.SUBDOMAINS, Shape.HOT)
HOT_NAMES = 1_000
"""As many as `Sizes.hits`, the `cached` row's names."""
_SHAPE_SHARES: dict[str, tuple[float, float]] = {
    Shape.MIXED: (0.5, 0.4),
    Shape.EXACT: (1.0, 0.0),
    Shape.SUBDOMAINS: (0.0, 0.8),
}
"""(listed domain itself, a common subdomain label); the rest gets a random label."""


def blocked_queries(
    listed: Sequence[str], count: int, seed: int = 4, shape: str = Shape.MIXED
) -> list[str]:
    """Names to query that the list blocks, in `shape`: the listed domain itself or a subdomain
    of it (`www.`, `api.`... or, one in five subdomains, a random label no cache has seen)."""
    if shape == Shape.HOT:
        hot = blocked_queries(listed, HOT_NAMES, seed)
        return [hot[index % len(hot)] for index in range(count)]
    exact, common = _SHAPE_SHARES[shape]
    rng = random.Random(seed)
    out: list[str] = []
    for _ in range(count):
        domain = rng.choice(listed)
        roll = rng.random()
        if roll < exact:
            out.append(domain)
        elif roll < exact + common:
            out.append(f"{rng.choice(SUBDOMAIN_LABELS)}.{domain}")
        else:
            out.append(f"{label(rng)}.{domain}")
    return out


def split_list(names: Sequence[str], parts: int) -> list[list[str]]:
    """`names` cut into `parts` consecutive lists of sizes differing by at most one (the many
    small lists of `--list-split`); every name in exactly one list."""
    if not 1 <= parts <= max(1, len(names)):
        raise ValueError(f"cannot split {len(names)} names into {parts} lists")
    bounds = [len(names) * index // parts for index in range(parts + 1)]
    return [list(names[bounds[i] : bounds[i + 1]]) for i in range(parts)]


def shares_to_counts(total: int, shares: Sequence[tuple[str, float]]) -> dict[str, int]:
    """Whole counts that add up to `total` exactly, by largest remainder."""
    raw = {key: total * share for key, share in shares}
    counts = {key: int(value) for key, value in raw.items()}
    left = total - sum(counts.values())
    for key in sorted(raw, key=lambda k: raw[k] - counts[k], reverse=True)[:left]:
        counts[key] += 1
    return counts


def mixed_queries(
    total: int,
    hits: Sequence[str],
    forwarded: Sequence[str],
    blocked: Sequence[str],
    seed: int = 5,
    shares: Sequence[tuple[str, float]] = MIX_SHARES,
) -> list[tuple[str, str]]:
    """`total` (category, name) pairs in the given shares, shuffled.

    Hits cycle through the small primed set; forwarded names are taken in order and never
    repeated (so `forwarded` must hold at least its share); blocked names cycle.
    """
    counts = shares_to_counts(total, shares)
    if counts[Category.FORWARDED] > len(forwarded):
        raise ValueError(
            f"{counts[Category.FORWARDED]} forwarded queries need as many unique names, "
            f"got {len(forwarded)}"
        )
    pairs: list[tuple[str, str]] = []
    for index in range(counts[Category.HIT]):
        pairs.append((Category.HIT, hits[index % len(hits)]))
    for index in range(counts[Category.FORWARDED]):
        pairs.append((Category.FORWARDED, forwarded[index]))
    for index in range(counts[Category.BLOCKED]):
        pairs.append((Category.BLOCKED, blocked[index % len(blocked)]))
    random.Random(seed).shuffle(pairs)
    return pairs


def query_lines(names: Iterable[str], qtype: str = "A") -> Iterator[str]:
    """dnsperf's input format: `name type` per line."""
    for name in names:
        yield f"{name} {qtype}"


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much data one run generates: `--quick` shrinks the query files, not the lists."""

    zone: int
    hits: int
    blocklist: int
    big_blocklist: int
    blocked_queries: int
    unique_max: int
    unique_rate: int
    mix_max: int
    mix_rate: int


def sizes(duration: float, rate: int, blocklist: int, big_blocklist: int) -> Sizes:
    """Enough unique names that the fastest peer seen in issue 7 (~120k qps forwarded, ~270k
    overall) does not run out within `duration`; a run that does is flagged, not hidden."""
    unique_max = int(150_000 * duration)
    mix_max = int(300_000 * duration)
    rate_count = int(rate * duration * 1.2) + 1000
    return Sizes(
        zone=200_000,
        hits=1_000,
        blocklist=blocklist,
        big_blocklist=big_blocklist,
        blocked_queries=200_000,
        unique_max=unique_max,
        unique_rate=rate_count,
        mix_max=mix_max,
        mix_rate=rate_count,
    )


def write_lines(path: Path, lines: Iterable[str]) -> int:
    """Write one item per line; returns the count (dnsperf's -n arithmetic needs it)."""
    count = 0
    with path.open("w", encoding="ascii") as out:
        for line in lines:
            out.write(line)
            out.write("\n")
            count += 1
    return count
