"""Building a list: read its files, parse them, judge the new version against the one in force,
and write the compiled copy (`resolver.lists.compiled`): what the compile child runs, in a fresh
interpreter at nice 10 (`resolver.lists.loading`), so that a big list is built beside the server
and not inside it. Small lists and feeds build in process with the same `compile_job`.

    echo JOB | python -m resolver.lists.building      # JSON job on stdin, report on stdout
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from resolver.lists.compiled import compile_rules, write_atomic
from resolver.lists.formats import FLAG_BELOW, ParsedRules, broken, parse_rules
from resolver.lists.guard import DEFAULT_MAX_SHRINK, Refusal, judge, rule_line, sniff

MAX_SAMPLES = 20
"""Problems a refusal keeps as examples (invalid lines, single-label rules); the rest are
counted. `check` prints them all; a log event carries fewer."""


def parse_job(job: Mapping[str, Any]) -> tuple[ParsedRules, list[str], dict[str, Any]]:
    """Parse a compile job's files and judge the result: the rules, the problems that make the
    list unusable (unreadable files, a broken list, the guard's refusal; empty when it is
    good) and the parse report.

    A list with too many invalid lines (`formats.broken`) cannot be loaded at all, as before
    the guard. Any other version is judged (`resolver.lists.guard`): the report's ``refusal``
    is None when it may replace the version in force, else ``{reason, detail, samples,
    more}``, and its ``problems`` then say the same in lines. The job says what the judge
    needs: ``previous`` (rules of the version in force, or None), ``max_shrink``,
    ``allow_tld_rules`` and ``accept`` (the operator accepted this version). When `accept`
    is what let it through, ``accepted_over`` holds the refusal it lifted.
    """
    parsed: ParsedRules | None = None
    problems: list[str] = []
    labels = job.get("label", {})
    content: tuple[str, str] | None = None  # (what a file plainly is, its label)
    read: list[tuple[str, str]] = []  # (label, file name) of each file read
    for name in job["files"]:
        try:
            data = Path(name).read_bytes()
        except OSError as exc:
            problems.append(f"{name}: cannot read list file ({exc.strerror or exc})")
            continue
        label = labels.get(name, name)
        if content is None:
            what = sniff(data)
            if what is not None:
                content = (what, label)
        read.append((label, name))
        parsed = parse_rules(
            data,
            label,
            job["format"],
            max_errors=job["max_errors"],
            max_regex=job["max_regex"],
            into=parsed,
        )
    if parsed is None:
        parsed = ParsedRules(source=job["name"], format=job["format"])
    reason = broken(parsed, job["max_errors"])
    if reason:
        problems = [*parsed.errors, reason, *problems]
    summary: dict[str, Any] = parsed.summary()
    summary["errors"] = list(parsed.errors)
    summary["problems"] = problems
    summary["refusal"] = None
    if not problems:
        _judge_job(job, parsed, content, read, summary)
    return parsed, summary["problems"], summary


def _judge_job(
    job: Mapping[str, Any],
    parsed: ParsedRules,
    content: tuple[str, str] | None,
    read: list[tuple[str, str]],
    summary: dict[str, Any],
) -> None:
    """Fill the report's ``refusal`` (and ``accepted_over``): what `guard.judge` says of this
    version."""
    facts: dict[str, Any] = {
        "accepted": parsed.accepted,
        "invalid": parsed.error_count - parsed.over_limit,
        "rule_lines": parsed.rule_lines,
        "previous": job.get("previous"),
        "max_shrink": job.get("max_shrink", DEFAULT_MAX_SHRINK),
        "allow_tld_rules": job.get("allow_tld_rules", False),
    }
    samples: list[str] = list(parsed.errors[:MAX_SAMPLES])
    more = parsed.error_count - len(samples)
    verdict: Refusal | None = None
    if content is not None:
        verdict = judge(content=content[0], **facts)
        samples, more = [], 0  # its "invalid lines" are mojibake or markup: no help
        if len(job["files"]) > 1:  # a directory: which file
            samples = [f"{content[1]}: {verdict.detail if verdict else content[0]}"]
    else:
        singles = _single_labels(parsed)
        facts["tld_rules"] = singles
        verdict = judge(content=None, accept=bool(job.get("accept")), **facts)
        if verdict is not None and verdict.reason == "tld_rule":
            samples, more = _tld_samples(singles, read), max(len(singles) - MAX_SAMPLES, 0)
        elif verdict is not None and verdict.reason in ("empty", "shrink"):
            samples, more = [], 0
        if verdict is None and job.get("accept"):
            lifted = judge(content=None, **facts)
            if lifted is not None:
                summary["accepted_over"] = {"reason": lifted.reason, "detail": lifted.detail}
    if verdict is not None:
        summary["refusal"] = {
            "reason": verdict.reason,
            "detail": verdict.detail,
            "samples": samples,
            "more": more,
        }
        summary["problems"] = [f"{job['name']}: refused: {verdict.detail}", *samples]


def _single_labels(parsed: ParsedRules) -> list[str]:
    """The single-label names a list blocks with everything below them (``com``, ``*.com``)."""
    found = [
        name
        for name in parsed.dotless
        if parsed.has_plain(name) or parsed.flagged.get(name, 0) & FLAG_BELOW
    ]
    return sorted({name.decode("ascii") for name in found})


def _tld_samples(labels: list[str], read: list[tuple[str, str]]) -> list[str]:
    """``file:line: 'com'`` for each single-label rule (the first line that writes it). The
    files are read again: rare, and a big list's text is not kept through the parse for it."""
    found: dict[str, str] = {}
    for source, name in read:
        try:
            data = Path(name).read_bytes()
        except OSError:
            continue
        for label in labels[:MAX_SAMPLES]:
            line = None if label in found else rule_line(data, label)
            if line is not None:
                found[label] = f"{source}:{line}"
    default = read[0][0] if read else "?"
    return [
        f"{found.get(label, default)}: {label!r} blocks the whole top-level domain"
        for label in labels[:MAX_SAMPLES]
    ]


def compile_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """Parse the job's files and write the compiled list: what the compile child runs.

    Returns the parse report; nothing is written when ``problems`` is non-empty (a file could
    not be read, or the version is refused: ``refusal``): the file at ``job["out"]`` is the
    list's last good copy, and a refused version must never replace it. Pure apart from
    reading the files and writing ``job["out"]``.
    """
    parsed, problems, summary = parse_job(job)
    if not problems:
        meta = {**job.get("meta", {}), "report": summary}
        out = Path(job["out"])
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out, compile_rules(parsed, job["name"], meta))
    return summary


def child_main() -> int:
    """``python -m resolver.lists.building``: one compile job, JSON on stdin, report on stdout.

    The child yields the CPU to the server (nice 10): compiling is background work, answering
    queries is not, and on a small box they share the cores."""
    with contextlib.suppress(OSError):
        os.nice(10)
    job = json.loads(sys.stdin.buffer.read())
    json.dump(compile_job(job), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(child_main())
