"""What is wrong with a configuration, said so that it can be fixed without guessing.

Every problem names the file, the 1-based line and the dotted key path, as `dnswarden check`
prints them; all of them are raised together, so one `check` run shows everything to fix.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with a configuration, located precisely enough to fix without guessing."""

    source: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.key}: {self.message}"


class ConfigError(Exception):
    """Raised with every problem found, so the operator fixes them all in one round."""

    problems: tuple[ConfigProblem, ...]

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.problems,))


def describe(value: object) -> str:
    """What a value is, in the words of a config file (for "expected X, got Y")."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"


def suggest(word: str, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest choice, or nothing when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


_LINE_PROBLEM = re.compile(r"^.*?:\d+: ")
"""`FILE:LINE: ...`: a problem on one line, as opposed to a verdict on a whole file."""


def ordered_problems(problems: Iterable[str]) -> list[str]:
    """Verdicts on a whole file (`FILE: 400 invalid lines ...; refusing to load this list`)
    before the line-level problems they sum up; otherwise in the order found. Where only a
    few problems can be shown (a log event), the verdict must be among them."""
    listed = list(problems)
    return sorted(listed, key=lambda problem: _LINE_PROBLEM.match(problem) is not None)
