"""Cut a long input at a sentence boundary so it fits a token limit."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .tokens import TokenCounter

__all__ = ["Cut", "cut_to_tokens"]

# a sentence ends at . ! ? (followed by space) or at CJK 。！？ (no space needed)
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|(?<=[。！？])[」』）]*\s*")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Cut:
    """The text kept, and how much was cut from the end."""

    text: str
    kept_tokens: int
    cut_tokens: int
    cut_chars: int

    @property
    def was_cut(self) -> bool:
        return self.cut_chars > 0


def _boundaries(text: str, pattern: re.Pattern[str]) -> list[int]:
    """End offsets of candidate prefixes (without the trailing separator)."""
    return [m.start() for m in pattern.finditer(text) if m.start() > 0]


def _longest_fitting(text: str, ends: list[int], limit: int, counter: TokenCounter) -> int:
    """Largest end in ``ends`` whose prefix fits ``limit`` tokens, or 0 (binary search)."""
    lo, hi, best = 0, len(ends) - 1, 0
    while lo <= hi:
        mid = (lo + hi) // 2
        if counter.count(text[: ends[mid]].rstrip()) <= limit:
            best, lo = ends[mid], mid + 1
        else:
            hi = mid - 1
    return best


def cut_to_tokens(text: str, limit: int, counter: TokenCounter) -> Cut:
    """Keep the longest prefix of whole sentences that fits ``limit`` tokens.

    Falls back to a word boundary when not even the first sentence fits, and to a character
    boundary only for text without spaces (e.g. CJK without sentence punctuation).
    """
    total = counter.count(text)
    if total <= limit:
        return Cut(text, total, 0, 0)
    end = _longest_fitting(text, _boundaries(text, _SENTENCE_END), limit, counter)
    if not end:
        end = _longest_fitting(text, _boundaries(text, _SPACE), limit, counter)
    if not end and not _SPACE.search(text.strip()):
        end = _longest_fitting(text, list(range(1, len(text))), limit, counter)
    kept = text[:end].rstrip()
    kept_tokens = counter.count(kept) if kept else 0
    return Cut(kept, kept_tokens, total - kept_tokens, len(text) - len(kept))
