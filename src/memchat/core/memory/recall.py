"""Recall memory: old rounds relevant to the newest message come back into the context.

The strategy is pure: it asks a ``Retriever`` (an input, like the history; the index lives in
``memchat.retrieval``) for scored rounds, drops the ones already in the window, and fits the best
into the space left, up to ``share`` of the budget. The recalled rounds go into one block, oldest
first and each with its date, placed just before the newest user message: the part of the prompt
that changes on every turn sits late, so the prefix before it stays cache-stable.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

from ..errors import UsageError
from ..history import History, Round
from ..messages import Message
from ..store import Store, SummaryRecord
from ..truncate import cut_to_tokens
from .base import Budget, Context, MemoryStrategy, Recalled
from .budget import CacheAware
from .summary import SummaryJob, SummaryMemory, insert_block, reserve_budget, stamp

__all__ = ["RECALL_HEADER", "Hit", "RecallMemory", "Retriever", "RoundIndex", "round_key"]

log = logging.getLogger("memchat")

Hit = tuple[str, float]
RECALL_HEADER = "Recalled from earlier in this conversation (oldest first, dates in UTC):"
MIN_CUT = 24  # a recalled round is cut to fit only if at least this many tokens are left


def round_key(rnd: Round) -> str:
    """The id a round is indexed under: its first message's."""
    return rnd[0].id


class Retriever(Protocol):
    """Ranks indexed rounds for a query: (round key, score) pairs, best first."""

    def search(self, query: str, k: int) -> Sequence[Hit]: ...


@runtime_checkable
class RoundIndex(Protocol):
    """A retriever the session keeps up to date as rounds are added and forgotten."""

    def search(self, query: str, k: int) -> Sequence[Hit]: ...

    def attach(self, store: Store | None, conversation_id: str | None) -> None:
        """Use this conversation's stored vectors (and store new ones there)."""
        ...

    def sync(self, rounds: Sequence[Round]) -> None:
        """Index every round not indexed yet (rounds are the conversation so far, in order)."""
        ...

    def remove(self, message_ids: Collection[str]) -> None:
        """Drop every indexed round that contains one of these messages."""
        ...


class _RoundMap:
    """Round key -> round index for a history's older rounds, extended as the history grows.

    The newest round is left out (it is never recalled, and ``context_for`` swaps it), so the
    map stays valid from turn to turn and each select pays O(new rounds), not O(history).
    """

    def __init__(self) -> None:
        self.where: dict[str, int] = {}
        self.count = 0

    def update(self, history: History) -> dict[str, int]:
        rounds = history.rounds
        upto = len(rounds) - 1
        if self.count > upto or (self.count and rounds[self.count - 1][0].id not in self.where):
            self.where, self.count = {}, 0
        for i in range(self.count, max(upto, self.count)):
            self.where[rounds[i][0].id] = i
        self.count = max(upto, self.count)
        return self.where


_MAPS: weakref.WeakKeyDictionary[History, _RoundMap] = weakref.WeakKeyDictionary()


def _round_map(history: History) -> dict[str, int]:
    return _MAPS.setdefault(history, _RoundMap()).update(history)


def _format(rnd: Round) -> str:
    return "\n".join(f"[{stamp(m.created_at)}] {m.role}: {m.content}" for m in rnd)


@dataclass(frozen=True, slots=True)
class RecallMemory:
    """The context of ``window`` plus the old rounds ``retriever`` finds for the newest message.

    ``share`` of the budget is set aside for recalled rounds (the window leaves it free even when
    nothing is recalled, so its cut points do not move); room the window leaves unused is used
    too. At most ``k`` rounds are recalled. ``window`` may itself be a SummaryMemory.
    """

    retriever: Retriever
    window: MemoryStrategy = CacheAware()
    share: float = 0.3
    k: int = 10
    name: str = "recall"

    def __post_init__(self) -> None:
        if not 0 < self.share < 1:
            raise UsageError(f"the recall share must be between 0 and 1, got {self.share}")
        if self.k < 1:
            raise UsageError(f"recall needs k >= 1, got {self.k}")

    # -- summary delegation (when the window is a SummaryMemory) ---------------------------
    @property
    def summary(self) -> SummaryRecord | None:
        return self.window.summary if isinstance(self.window, _SUMMARIZING) else None

    def summary_due(self, history: History, budget: Budget) -> SummaryJob | None:
        if not isinstance(self.window, _SUMMARIZING):
            return None
        return self.window.summary_due(history, reserve_budget(history, budget, self.share)[0])

    def with_summary(self, record: SummaryRecord | None) -> RecallMemory:
        if not isinstance(self.window, _SUMMARIZING):
            return self
        return replace(self, window=self.window.with_summary(record))

    # -- selection --------------------------------------------------------------------------
    def select(self, history: History, budget: Budget) -> Context:
        sub, _ = reserve_budget(history, budget, self.share)
        ctx = self.window.select(history, sub)
        ctx.strategy = self.name
        if len(history.rounds) < 2 or not ctx.dropped:
            return ctx
        newest = history.rounds[-1]
        query = next((m.content for m in newest if m.role == "user"), "")
        try:
            hits = self.retriever.search(query, self.k * 3 + 8)
        except Exception as exc:  # noqa: BLE001 - recall is optional; the turn must go on
            log.warning("recall failed: %s", exc, exc_info=True)
            ctx.notes.append(f"recall failed ({exc}); sent without recalled rounds")
            return ctx
        free = budget.available - ctx.tokens
        chosen = self._choose(history, ctx, hits, free)
        if chosen:
            self._place(history, ctx, chosen, free)
        return ctx

    def _choose(
        self, history: History, ctx: Context, hits: Sequence[Hit], free: int
    ) -> list[tuple[int, Recalled, str]]:
        counter = history.counter
        room = free - counter.per_message - counter.count(RECALL_HEADER) - 1
        sent = {m.id for m in ctx.messages}
        where = _round_map(history)
        chosen: list[tuple[int, Recalled, str]] = []
        for key, score in hits:
            i = where.get(key)
            if (
                i is None
                or i == len(history.rounds) - 1
                or any(m.id in sent for m in history.rounds[i])
            ):
                continue
            text = _format(history.rounds[i])
            cost = counter.count(text) + 2
            if cost > room:
                if room < MIN_CUT:
                    break
                text = cut_to_tokens(text, room - 2, counter).text
                cost = counter.count(text) + 2 if text else room + 1
                if cost > room:
                    continue
            sent.update(m.id for m in history.rounds[i])
            chosen.append((i, Recalled(history.rounds[i], score), text))
            room -= cost
            if len(chosen) >= self.k:
                break
        return chosen

    def _place(
        self, history: History, ctx: Context, chosen: list[tuple[int, Recalled, str]], free: int
    ) -> None:
        counter = history.counter
        chosen.sort(key=lambda c: c[0])
        while chosen:
            body = "\n\n".join(text for _, _, text in chosen)
            block = Message("system", f"{RECALL_HEADER}\n{body}", id="recalled")
            tokens = counter.count(block.content) + counter.per_message
            if tokens <= free:
                break
            chosen.pop()  # joined text can count a few tokens more than its parts: drop one
        if not chosen:
            return
        block.tokens = tokens
        newest = history.rounds[-1]
        at = len(ctx.messages) - len(newest)
        if at < 0 or ctx.messages[at] is not newest[0]:
            at = len(ctx.messages)
        insert_block(ctx, at, block, tokens)
        ctx.recalled = [r for _, r, _ in chosen]
        ctx.notes.append(f"recalled {len(chosen)} older rounds ({tokens} tokens)")


# concrete classes: isinstance on a runtime Protocol costs ~0.1 ms, too much per select
_SUMMARIZING = (SummaryMemory, RecallMemory)
