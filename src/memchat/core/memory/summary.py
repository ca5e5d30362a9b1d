"""Summary memory: rounds that leave the window are folded into a running summary.

The strategy stays pure. ``select`` shows the summary it was given, right after the system prompt;
``summary_due`` says which dropped messages wait to be folded in. The session calls its
``summarize`` callable (a backend, never the strategy) and hands the result back through
``with_summary``. Folding happens in chunks, only once ``trigger`` x the budget of unsummarised
dropped tokens have piled up, so the summary (and with it the prompt prefix) changes rarely.
A summary never replaces the recent rounds: it only takes its ``share`` of the budget.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

from ..backend import ChatBackend, GenerationParams
from ..errors import BackendError, UsageError
from ..history import History
from ..messages import Message
from ..store import SummaryRecord
from ..tokens import message_tokens
from ..truncate import cut_to_tokens
from .base import Budget, Context, Dropped, MemoryStrategy, limit_for
from .budget import CacheAware

__all__ = [
    "SUMMARY_INSTRUCTIONS",
    "SummaryJob",
    "SummaryMemory",
    "Summarize",
    "Summarizing",
    "backend_summarizer",
    "reserve_budget",
    "stamp",
    "summary_request",
]

#: (previous summary, messages to fold in, most tokens the new summary may take) -> new summary
Summarize = Callable[[str, Sequence[Message], int], str]

SUMMARY_INSTRUCTIONS = (
    "You keep the running summary of a long conversation between a user and an assistant. "
    "Rewrite the summary so that it also covers the new messages. Keep every name, number, "
    "amount, date, place, preference and commitment (anything the user or the assistant "
    "promised or planned to do), with the date it was said. When a fact changed, keep only the "
    "newest value and when it changed. Leave out small talk. Write short plain sentences, at "
    "most {words} words. Answer with the summary only."
)


def stamp(created_at: float) -> str:
    """A message date as shown to the model (UTC, minutes)."""
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(created_at))


def summary_request(previous: str, messages: Sequence[Message], max_tokens: int) -> list[Message]:
    """The prompt that asks a model to fold ``messages`` into ``previous``."""
    words = max(20, math.floor(max_tokens * 0.7))
    lines = "\n".join(f"[{stamp(m.created_at)}] {m.role}: {m.content}" for m in messages)
    body = f"Summary so far:\n{previous or '(empty)'}\n\nNew messages:\n{lines}"
    return [Message("system", SUMMARY_INSTRUCTIONS.format(words=words)), Message("user", body)]


def backend_summarizer(backend: ChatBackend, params: GenerationParams | None = None) -> Summarize:
    """A ``Summarize`` that asks ``backend`` (the chat backend by default, or another one)."""
    base = params or GenerationParams(temperature=0.0, cache_key="memchat-summary")

    def summarize(previous: str, messages: Sequence[Message], max_tokens: int) -> str:
        request = summary_request(previous, messages, max_tokens)
        call = replace(base, max_tokens=max(32, max_tokens))
        text = "".join(chunk.text for chunk in backend.stream(request, call)).strip()
        if not text:
            raise BackendError("the summariser returned an empty summary")
        return text

    return summarize


@dataclass(frozen=True, slots=True)
class SummaryJob:
    """Messages due to be folded into the summary, oldest first."""

    previous: str
    messages: list[Message]
    max_tokens: int

    @property
    def covers_until(self) -> str:
        return self.messages[-1].id


@runtime_checkable
class Summarizing(MemoryStrategy, Protocol):
    """A strategy that shows a running summary (SummaryMemory, or one that wraps it)."""

    @property
    def summary(self) -> SummaryRecord | None: ...

    def summary_due(self, history: History, budget: Budget) -> SummaryJob | None: ...

    def with_summary(self, record: SummaryRecord | None) -> Summarizing: ...


def reserve_budget(history: History, budget: Budget, share: float) -> tuple[Budget, int]:
    """Set ``share`` of the room aside; the newest round and pinned rounds keep priority.

    Returns the smaller budget for the inner strategy and the tokens set aside.
    """
    limit = limit_for(history, budget)
    must = sum(history.round_tokens(i) for i in history.pinned_rounds)
    if history.rounds and len(history.rounds) - 1 not in history.pinned_rounds:
        must += history.round_tokens(len(history.rounds) - 1)
    reserve = max(0, min(math.floor(share * limit), limit - must))
    if reserve == 0:
        return budget, 0
    return Budget(budget.window - reserve, budget.reserve_for_reply), reserve


def covered_round(history: History, record: SummaryRecord | None) -> int:
    """Index of the newest round the summary covers, or -1.

    Scans back from the newest round: the summary covers rounds just before the window, so this
    costs O(window + backlog), not O(history).
    """
    if record is None:
        return -1
    for i in range(len(history.rounds) - 1, -1, -1):
        if any(m.id == record.covers_until for m in history.rounds[i]):
            return i
    return -1


def window_start(history: History, ctx: Context) -> int:
    """The first round of the window ``ctx`` sends (walks back from the newest, O(kept))."""
    sent = {m.id for m in ctx.messages}
    i = len(history.rounds)
    while i > 0 and history.rounds[i - 1][0].id in sent:
        i -= 1
    return i


def insert_block(ctx: Context, at: int, message: Message, tokens: int) -> None:
    """Put a memory block into a context at a position, keeping the token total right."""
    ctx.messages.insert(at, message)
    ctx.tokens += tokens


@dataclass(frozen=True, slots=True)
class SummaryMemory:
    """The window of ``window`` plus a running summary of what it dropped.

    ``share`` of the budget is set aside for the summary; ``trigger`` x the budget of dropped,
    not yet summarised tokens starts the next fold. ``summary`` is the current state (an input,
    like the history): the session replaces it through ``with_summary``.
    """

    window: MemoryStrategy = CacheAware()
    summary: SummaryRecord | None = None
    share: float = 0.25
    trigger: float = 0.2
    name: str = "summary"

    def __post_init__(self) -> None:
        if not 0 < self.share < 1:
            raise UsageError(f"the summary share must be between 0 and 1, got {self.share}")
        if not 0 < self.trigger <= 1:
            raise UsageError(f"the summary trigger must be in (0, 1], got {self.trigger}")

    def with_summary(self, record: SummaryRecord | None) -> SummaryMemory:
        return replace(self, summary=record)

    def select(self, history: History, budget: Budget) -> Context:
        sub, reserve = reserve_budget(history, budget, self.share)
        ctx = self.window.select(history, sub)
        ctx.strategy = self.name
        covered = covered_round(history, self.summary)
        if self.summary is None or covered < 0 or not ctx.dropped or reserve <= 0:
            if ctx.dropped and self.summary is None:
                ctx.notes.append("no summary yet: the dropped messages are not summarised")
            return ctx
        message = self._message(history, reserve)
        if message is None:
            return ctx
        insert_block(ctx, len(history.system), message, message_tokens(message, history.counter))
        ctx.summary = message
        start = window_start(history, ctx)
        folded = min(covered + 1, start)
        pinned = {i for i in history.pinned_rounds if i < folded}
        ctx.summarized = list(Dropped(history, folded, pinned))
        waiting = start - folded
        ctx.notes.append(
            f"summary v{self.summary.version} stands in for the {folded} oldest rounds"
            + (f"; {waiting} dropped rounds are not summarised yet" if waiting > 0 else "")
        )
        return ctx

    def _message(self, history: History, reserve: int) -> Message | None:
        assert self.summary is not None
        counter = history.counter
        head = f"Summary of the earlier conversation (up to {stamp(self.summary.created_at)}):\n"
        room = reserve - counter.per_message - counter.count(head)
        text = cut_to_tokens(self.summary.text, max(0, room), counter).text
        if not text:
            return None
        return Message(
            "system",
            head + text,
            id=f"summary-v{self.summary.version}",
            created_at=self.summary.created_at,
        )

    def summary_due(self, history: History, budget: Budget) -> SummaryJob | None:
        """The next chunk of dropped messages to fold in, or None while too few wait."""
        sub, reserve = reserve_budget(history, budget, self.share)
        if reserve <= 0:
            return None
        ctx = self.window.select(history, sub)
        pinned = set(history.pinned_rounds)
        rounds = range(covered_round(history, self.summary) + 1, window_start(history, ctx))
        waiting = [m for i in rounds if i not in pinned for m in history.rounds[i]]
        limit = limit_for(history, budget)
        if sum(message_tokens(m, history.counter) for m in waiting) < self.trigger * limit:
            return None
        chunk = take_rounds(waiting, max(1, limit // 2), history)
        previous = self.summary.text if self.summary else ""
        return SummaryJob(previous, chunk, max(16, reserve - history.counter.per_message - 16))


def take_rounds(messages: list[Message], cap: int, history: History) -> list[Message]:
    """The oldest messages up to ``cap`` tokens, cut only where a new round starts."""
    out: list[Message] = []
    used = 0
    for m in messages:
        cost = message_tokens(m, history.counter)
        if out and m.role == "user" and used + cost > cap:
            break
        out.append(m)
        used += cost
    return out


def summary_touched(history: History, record: SummaryRecord | None, ids: Collection[str]) -> bool:
    """Whether forgetting ``ids`` removes something the summary was built from."""
    covered = covered_round(history, record)
    gone = set(ids)
    return any(m.id in gone for rnd in history.rounds[: covered + 1] for m in rnd)
