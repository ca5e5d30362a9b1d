"""What every memory strategy shares: the budget, the result, and window assembly."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Protocol, overload

from ..errors import UsageError
from ..history import History
from ..messages import Message

__all__ = [
    "RECALL_BLOCK_ID",
    "Budget",
    "Context",
    "Explained",
    "MemoryStrategy",
    "Recalled",
    "Status",
    "assemble",
    "default_reserve",
]

RECALL_BLOCK_ID = "recalled"  # the id recall gives the message that holds what it recalled


@dataclass(frozen=True, slots=True)
class Budget:
    """A context window and the share of it kept free for the reply."""

    window: int
    reserve_for_reply: int = 0

    def __post_init__(self) -> None:
        if self.window <= 0:
            raise UsageError(f"the token budget must be positive, got {self.window}")
        if not 0 <= self.reserve_for_reply < self.window:
            raise UsageError(
                f"reserve_for_reply ({self.reserve_for_reply}) must be at least 0 and smaller "
                f"than the window ({self.window})"
            )

    @property
    def available(self) -> int:
        """Tokens the prompt may use."""
        return self.window - self.reserve_for_reply


def default_reserve(window: int, context_window: int | None = None) -> int:
    """Tokens kept free for the reply when no reserve is set: the one default of every face.

    A quarter of the budget, at most 1,024, less what the model's context window holds beyond
    the budget: a 1,000-token budget on a 128k-token model needs no reserve (the reply fits
    after the prompt), so the whole budget goes to the prompt. An unknown window keeps it all.
    """
    want = min(1024, window // 4)
    if context_window:
        want = max(0, want - (context_window - window))
    return want


@dataclass(frozen=True, slots=True)
class Recalled:
    """An old round brought back by retrieval, with its score."""

    round: tuple[Message, ...]
    score: float


class Status(StrEnum):
    """What happened to a message on a turn (``Context.explain``); every face shows these.

    sent      system       the system prompt (or another leading system message)
              summary      the running summary standing in for older rounds
              recalled     the block of old messages recall brought back (``RECALL_BLOCK_ID``),
                           or a recalled message sent as itself (with its score)
              pinned       a pinned message, always sent
              kept         in the window of recent rounds
    left out  recalled     left out of the window, brought back inside the recall block (score)
              summarized   folded into the summary that was sent
              dropped      not sent at all
    """

    SYSTEM = "system"
    SUMMARY = "summary"
    RECALLED = "recalled"
    PINNED = "pinned"
    KEPT = "kept"
    SUMMARIZED = "summarized"
    DROPPED = "dropped"


@dataclass(frozen=True, slots=True)
class Explained:
    """One message of a turn: sent or not, its status, its recall score if it was recalled."""

    message: Message
    status: Status
    sent: bool
    score: float | None = None


@dataclass(slots=True)
class Context:
    """What a strategy chose: the messages to send and what it left out, and why."""

    messages: list[Message]
    dropped: Sequence[Message] = field(default_factory=list)
    tokens: int = 0
    strategy: str = ""
    notes: list[str] = field(default_factory=list)
    pinned: list[Message] = field(default_factory=list)
    summary: Message | None = None
    summarized: list[Message] = field(default_factory=list)
    recalled: list[Recalled] = field(default_factory=list)

    @property
    def trimmed(self) -> bool:
        return bool(self.dropped)

    def to_wire(self) -> list[dict[str, str]]:
        return [m.to_wire() for m in self.messages]

    def explain(self) -> list[Explained]:
        """What happened to each message (``Status``): every message sent, in the order sent,
        then every message left out, in history order. The CLI's context table, the web app's
        inspector and the server's context endpoint all render this."""
        scores = {m.id: r.score for r in self.recalled for m in r.round}
        pinned = {m.id for m in self.pinned}
        summarized = {m.id for m in self.summarized}
        summary_id = self.summary.id if self.summary is not None else None
        out = []
        for m in self.messages:
            if m.id == summary_id:
                status = Status.SUMMARY
            elif m.id in scores or (m.id == RECALL_BLOCK_ID and self.recalled):
                status = Status.RECALLED
            elif m.id in pinned:
                status = Status.PINNED
            elif m.role == "system":
                status = Status.SYSTEM
            else:
                status = Status.KEPT
            out.append(Explained(m, status, True, scores.get(m.id)))
        for m in self.dropped:
            if m.id in scores:
                out.append(Explained(m, Status.RECALLED, False, scores[m.id]))
            else:
                left = Status.SUMMARIZED if m.id in summarized else Status.DROPPED
                out.append(Explained(m, left, False))
        return out


class MemoryStrategy(Protocol):
    """A pure function of (history, budget) -> Context. Never touches storage or network."""

    @property
    def name(self) -> str: ...

    def select(self, history: History, budget: Budget) -> Context: ...


def limit_for(history: History, budget: Budget) -> int:
    """Tokens left for rounds once the system prompt and reply priming are paid."""
    limit = budget.available - history.overhead - history.system_tokens
    if limit < 0:
        raise UsageError(
            f"the budget ({budget.available} tokens after the reply reserve) is smaller than "
            f"the system prompt ({history.system_tokens + history.overhead} tokens)"
        )
    return limit


def pinned_before(history: History, start: int) -> list[int]:
    return [i for i in history.pinned_rounds if i < start]


class Dropped(Sequence[Message]):
    """The messages of rounds[:start] that are not pinned, listed only when asked for.

    Building this list is O(history); assembling a context must stay O(kept), so the list is
    made lazily (the inspector reads it, the chat loop does not).
    """

    def __init__(self, history: History, start: int, pinned: set[int]) -> None:
        self._rounds = history.rounds[:start] if start else []
        self._pinned = pinned
        self.round_count = start - len(pinned)

    @cached_property
    def _items(self) -> list[Message]:
        return [m for i, r in enumerate(self._rounds) if i not in self._pinned for m in r]

    def __bool__(self) -> bool:
        return self.round_count > 0

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Message]:
        return iter(self._items)

    @overload
    def __getitem__(self, i: int) -> Message: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[Message]: ...
    def __getitem__(self, i: int | slice) -> Message | Sequence[Message]:
        return self._items[i]


def assemble(history: History, start: int, name: str, notes: list[str] | None = None) -> Context:
    """System + pinned rounds before ``start`` + rounds[start:]; the rest is dropped."""
    pinned_idx = pinned_before(history, start)
    msgs = list(history.system)
    pinned: list[Message] = []
    for i in pinned_idx:
        pinned.extend(history.rounds[i])
    msgs.extend(pinned)
    dropped = Dropped(history, start, set(pinned_idx))
    for r in history.rounds[start:]:
        msgs.extend(r)
    tokens = (
        history.system_tokens
        + history.overhead
        + sum(history.round_tokens(i) for i in pinned_idx)
        + history.span_tokens(start)
    )
    notes = list(notes or [])
    if dropped:
        notes.append(f"dropped the {dropped.round_count} oldest rounds to fit the budget")
    return Context(msgs, dropped, tokens, name, notes, pinned=pinned)


def fit_start(history: History, limit: int, start: int = 0) -> int:
    """The smallest start >= ``start`` whose window plus earlier pinned rounds fit ``limit``.

    Walks back from the newest round, so the cost is O(rounds kept).
    """
    n = len(history.rounds)
    pinned_total = sum(history.round_tokens(i) for i in history.pinned_rounds)
    used = 0
    s = n
    while s > start:
        i = s - 1
        cost = history.round_tokens(i)
        if i in history._pinned:  # already counted in pinned_total
            cost = 0
        if used + cost + pinned_total > limit:
            break
        used += cost
        s = i
    return s
