"""Dates named in a question ("on 5 Jan 2024", "March 3rd", "2024-03-05", "in May 2023").

Recall boosts the messages of a day (or a month) a question names, so "what did I buy on
7 Jan?" prefers that day's messages over the same topic on another date. English month names
and ISO dates only; a day without a year matches that day in any year.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

__all__ = ["Named", "day_keys", "named_dates"]

_SHORT = "jan feb mar apr may jun jul aug sep oct nov dec".split()
_FULL = (
    "january february march april may june july august september october november december"
).split()
_MONTHS = {name: i % 12 + 1 for i, name in enumerate([*_SHORT, *_FULL])} | {"sept": 9}
_MONTH = r"(?P<m>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(?P<d>[0-3]?\d)(?:st|nd|rd|th)?"
_YEAR = r"(?:,?\s+(?P<y>(?:19|20)\d\d))?"
_PATTERNS = [
    re.compile(r"\b(?P<y>(?:19|20)\d\d)-(?P<mn>[01]\d)-(?P<d>[0-3]\d)\b"),
    re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH}{_YEAR}\b", re.I),
    re.compile(rf"\b{_MONTH}\s+{_DAY}\b{_YEAR}", re.I),
    re.compile(rf"\b{_MONTH}\s+(?P<y>(?:19|20)\d\d)\b", re.I),
]


@dataclass(frozen=True, slots=True)
class Named:
    """A date a question names: ``day`` None for a whole month, ``year`` None for any year."""

    month: int
    day: int | None = None
    year: int | None = None


def named_dates(text: str) -> set[Named]:
    """Every date the text names."""
    found: set[Named] = set()
    for pattern in _PATTERNS:
        for match in pattern.finditer(text):
            parts = match.groupdict()
            month = int(parts["mn"]) if parts.get("mn") else _MONTHS[parts["m"].lower()]
            day = int(parts["d"]) if parts.get("d") else None
            year = int(parts["y"]) if parts.get("y") else None
            if day is not None and not 1 <= day <= 31 or not 1 <= month <= 12:
                continue
            found.add(Named(month, day, year))
    days = {(n.month, n.year) for n in found if n.day is not None}
    return {n for n in found if n.day is not None or (n.month, n.year) not in days}


def day_keys(created_at: float) -> tuple[Named, ...]:
    """The keys a message is filed under: its day and month, with and without the year (UTC)."""
    t = time.gmtime(created_at)
    return (
        Named(t.tm_mon, t.tm_mday, t.tm_year),
        Named(t.tm_mon, t.tm_mday),
        Named(t.tm_mon, None, t.tm_year),
        Named(t.tm_mon),
    )
