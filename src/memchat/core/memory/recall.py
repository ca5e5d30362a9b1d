"""Recall memory: old messages relevant to the newest message come back into the context.

The strategy is pure: it asks a ``Retriever`` (an input, like the history; the index lives in
``memchat.retrieval``) for scored messages. While the whole conversation fits the budget, it is
sent as the window strategy would send it. Once it does not, the window keeps the newest rounds
in ``1 - share`` of the budget (a recent tail, for coherence) and every token left goes to the
old messages that rank best, as many as fit: on a long chat the answer is rarely in the recent
window, so the budget follows relevance instead of fixed shares (docs/benchmarks/recall.md).

The recalled messages go into one block, oldest first, grouped under their day, placed just
before the newest user message: the part of the prompt that changes on every turn sits late, so
the prefix before it stays cache-stable.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from itertools import chain
from typing import Protocol, runtime_checkable

from ..errors import UsageError
from ..history import History, Round
from ..messages import Message
from ..store import Store, SummaryRecord
from ..tokens import TokenCounter, message_tokens
from ..truncate import cut_to_tokens
from .base import RECALL_BLOCK_ID, Budget, Context, MemoryStrategy, Recalled
from .budget import CacheAware
from .summary import Summarizing, SummaryJob, SummaryMemory, insert_block, reserve_budget

__all__ = [
    "RECALL_HEADER",
    "RECALL_LEAD",
    "Hit",
    "RecallMemory",
    "Retriever",
    "SHARE",
    "RoundIndex",
    "asks",
    "block_pieces",
    "block_text",
    "index_of",
    "summarizing",
    "will_search",
]

log = logging.getLogger("memchat")

Hit = tuple[str, float]
RECALL_HEADER = "Recalled from earlier in this conversation (oldest first, dates in UTC):"
RECALL_LEAD = RECALL_HEADER + "\n"  # what precedes the block's first day line
MIN_CUT = 24  # the best message is cut to fit only if at least this many tokens are left
MIN_LINE = 6  # stop looking for messages that fit once fewer tokens than this are left
MISSES = 40  # ... or once this many hits in a row did not fit
TOP_UPS = 4  # passes that add hits to the room the exact count of the block leaves
DEPTH = 300  # hits asked of the retriever per turn
# The recent tail is 10 % of the budget (was 20 %): recall at 1,000 tokens 0.745 -> 0.752 on
# the real chats, 0.777 -> 0.791 on the generated one (docs/benchmarks.md, abl:tail-20%). The
# newest round is always sent; at the budgets a provider's window gives, 10 % is thousands of
# tokens of recent chat
SHARE = 0.9
# A recalled message longer than this is ranked by its score per this many tokens: on chats
# with ~800-token replies recall at 1,000 tokens went 0.42 -> 0.78 (REALTALK with padded
# replies, docs/benchmarks.md), with no loss on the real chats as they are
LONG = 200


class Retriever(Protocol):
    """Ranks indexed messages for a query: (message id, score) pairs, best first."""

    def search(self, query: str, k: int) -> Sequence[Hit]: ...


@runtime_checkable
class RoundIndex(Protocol):
    """A retriever the session keeps up to date as rounds are added and messages forgotten."""

    def search(self, query: str, k: int) -> Sequence[Hit]: ...

    def attach(self, store: Store | None, conversation_id: str | None) -> None:
        """Use this conversation's stored vectors (and store new ones there)."""
        ...

    def sync(self, rounds: Sequence[Round]) -> None:
        """Index every message not indexed yet (rounds are the conversation so far, in order)."""
        ...

    def remove(self, message_ids: Collection[str]) -> None:
        """Drop these messages from the index: they are never recalled again."""
        ...


class _MessageMap:
    """Message id -> (round, position) for a history's older rounds, extended as it grows.

    The newest round is left out (it is never recalled, and ``context_for`` swaps it), so the
    map stays valid from turn to turn and each select pays O(new rounds), not O(history).
    """

    def __init__(self) -> None:
        self.where: dict[str, tuple[int, int]] = {}
        self.count = 0

    def update(self, history: History) -> dict[str, tuple[int, int]]:
        rounds = history.rounds
        upto = len(rounds) - 1
        if self.count > upto or (self.count and rounds[self.count - 1][0].id not in self.where):
            self.where, self.count = {}, 0
        for i in range(self.count, max(upto, self.count)):
            self.where.update((m.id, (i, j)) for j, m in enumerate(rounds[i]))
        self.count = max(upto, self.count)
        return self.where


_MAPS: weakref.WeakKeyDictionary[History, _MessageMap] = weakref.WeakKeyDictionary()


def _message_map(history: History) -> dict[str, tuple[int, int]]:
    return _MAPS.setdefault(history, _MessageMap()).update(history)


def _day(created_at: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(created_at))


def _day_line(day: str) -> str:
    return f"[{day}]"


def _line(msg: Message) -> str:
    return f"{msg.role}: {msg.content}"


class _Costs:
    """Token costs of block lines, from each message's cached count (exact total checked later)."""

    def __init__(self, counter: TokenCounter) -> None:
        self.counter = counter
        self.prefix: dict[str, int] = {}

    def line(self, msg: Message) -> int:
        role = self.prefix.get(msg.role)
        if role is None:
            role = self.prefix[msg.role] = self.counter.count(f"{msg.role}:") + 1  # + newline
        return message_tokens(msg, self.counter) - self.counter.per_message + role

    def day(self, day: str) -> int:
        return self.counter.count(_day_line(day)) + 2


@dataclass(frozen=True, slots=True)
class _Pick:
    at: tuple[int, int]
    message: Message
    score: float
    text: str


@dataclass(frozen=True, slots=True)
class RecallMemory:
    """The context of ``window`` plus the old messages ``retriever`` finds for the newest one.

    Once the conversation overflows the budget, ``window`` gets ``1 - share`` of it (the
    newest and the pinned rounds first) and recalled messages fill what is left, at
    most ``k`` of them. ``window`` may itself be a SummaryMemory.
    """

    retriever: Retriever
    window: MemoryStrategy = CacheAware()
    share: float = SHARE
    k: int = 200
    name: str = "recall"
    most: int | None = None
    """At most this many tokens of recalled messages (None: all the room left)."""
    long: int | None = LONG
    """A hit longer than this many tokens (or than a quarter of the room left for recall, if
    that is less) is ranked by its score x this length / its own: one long message cannot take
    the room of several relevant short ones (None: by score alone)."""
    asked_only: bool = False
    """Recall only for a message that asks something (see ``asks``): small talk reads nothing
    extra, which matters where every prompt token is read on a CPU (the embedded model)."""
    gate: float | None = None
    """Recall only when the best old message scores at least this x the best message already
    in the context: when the recent window already holds what the query is about, nothing is
    recalled (None: always recall). Like ``asked_only``, it saves prompt reading on a CPU."""

    def __post_init__(self) -> None:
        if not 0 < self.share < 1:
            raise UsageError(f"the recall share must be between 0 and 1, got {self.share}")
        if self.k < 1:
            raise UsageError(f"recall needs k >= 1, got {self.k}")
        if self.most is not None and self.most < 1:
            raise UsageError(f"the recall block needs at least 1 token, got {self.most}")
        if self.long is not None and self.long < 1:
            raise UsageError(f"a long message has at least 1 token, got {self.long}")

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

    # -- what the session keeps up to date -------------------------------------------------
    def will_search(self, history: History, budget: Budget) -> bool:
        """Whether a context within ``budget`` may search the retriever: while the whole
        conversation fits, it is sent as it is and nothing is searched (so nothing needs to be
        indexed yet: a stateless request's whole history)."""
        return history.total_tokens + history.overhead > budget.available

    # -- selection --------------------------------------------------------------------------
    def select(self, history: History, budget: Budget) -> Context:
        whole = self.window.select(history, budget)
        whole.strategy = self.name
        if len(history.rounds) < 2 or not whole.dropped:
            return whole
        sub, _ = reserve_budget(history, budget, self.share)
        ctx = self.window.select(history, sub)
        ctx.strategy = self.name
        query = next((m.content for m in history.rounds[-1] if m.role == "user"), "")
        if self.asked_only and not asks(query):
            return ctx
        try:
            hits = self.retriever.search(query, DEPTH)
        except Exception as exc:  # noqa: BLE001 - recall is optional; the turn must go on
            log.warning("recall failed: %s", exc, exc_info=True)
            ctx.notes.append(f"recall failed ({exc}); sent without recalled messages")
            return ctx
        if self.gate is not None and _covered(history, hits, ctx, self.gate):
            ctx.notes.append("nothing recalled: the recent messages match the query best")
            return ctx
        free = budget.available - ctx.tokens
        if self.most is not None:
            free = min(free, self.most)
        counter = history.counter
        room = free - counter.per_message - counter.count(RECALL_HEADER) - 1
        if self.long is not None:
            hits = _long_ranked_down(history, hits, min(self.long, room // 4))
        fill = _Fill(history, ctx, hits, self.k)
        for _ in range(TOP_UPS + 1):  # the estimate runs high: top up against the exact count
            if not fill.take(room):
                break
            used = fill.tokens()
            room = free - used
            if room < MIN_LINE:
                break
        if fill.picks:
            self._place(history, ctx, fill, free)
        return ctx

    def _place(self, history: History, ctx: Context, fill: _Fill, free: int) -> None:
        ranked = list(fill.picks)  # best first: the last is dropped if the block is over
        while ranked:
            tokens = fill.tokens(ranked)
            if tokens <= free:
                break
            ranked.pop()
        if not ranked:
            return
        block = Message("system", _block(ranked), id=RECALL_BLOCK_ID, tokens=tokens)
        newest = history.rounds[-1]
        at = len(ctx.messages) - len(newest)
        if at < 0 or ctx.messages[at] is not newest[0]:
            at = len(ctx.messages)
        insert_block(ctx, at, block, tokens)
        ctx.recalled = [Recalled((p.message,), p.score) for p in sorted(ranked, key=_when)]
        ctx.notes.append(f"recalled {len(ranked)} older messages ({tokens} tokens)")


class _Fill:
    """The hits taken so far, in rank order; ``take`` goes on down the ranking."""

    def __init__(self, history: History, ctx: Context, hits: Sequence[Hit], k: int) -> None:
        self.history, self.k = history, k
        self.costs = _Costs(history.counter)
        self.hits = iter(hits)
        self.sent = {m.id for m in ctx.messages}
        self.where = _message_map(history)
        self.days: set[str] = set()
        self.picks: list[_Pick] = []
        self.passed: list[Hit] = []  # hits that did not fit: tried again by the next take

    def take(self, room: int) -> bool:
        """Add the next hits that fit ``room`` more tokens (by estimate); False if none did."""
        before, misses = len(self.picks), 0
        if before >= self.k:
            return False
        retry, self.passed = self.passed, []
        for (key, score), retried in chain(
            ((h, True) for h in retry), ((h, False) for h in self.hits)
        ):
            at = self.where.get(key)
            if at is None or key in self.sent:
                continue
            msg = self.history.rounds[at[0]][at[1]]
            day = _day(msg.created_at)
            header = 0 if day in self.days else self.costs.day(day)
            text, cost = self._fit(_line(msg), self.costs.line(msg) + header, header, room)
            if not text:
                self.passed.append((key, score))
                misses += not retried
                if misses >= MISSES:
                    break
                continue
            self.picks.append(_Pick(at, msg, score, text))
            misses = 0
            self.sent.add(key)
            self.days.add(day)
            room -= cost
            if room < MIN_LINE or len(self.picks) >= self.k:
                break
        return len(self.picks) > before

    def _fit(self, text: str, cost: int, header: int, room: int) -> tuple[str, int]:
        """The line and its cost; the very first hit is cut to fit, others must fit whole."""
        if cost <= room:
            return text, cost
        if self.picks or room - header < MIN_CUT:
            return "", 0
        counter = self.history.counter
        text = cut_to_tokens(text, room - header - 1, counter).text
        cost = counter.count(text) + 1 + header
        return (text, cost) if text and cost <= room else ("", 0)

    def tokens(self, picks: Sequence[_Pick] | None = None) -> int:
        """The exact cost of the block of these picks (default: all)."""
        counter = self.history.counter
        return counter.count(_block(self.picks if picks is None else picks)) + counter.per_message


def _covered(history: History, hits: Sequence[Hit], ctx: Context, gate: float) -> bool:
    """Whether the best hit already in ``ctx`` (the query's own round aside) outscores
    ``gate`` x the best old one; also when no old message is a hit at all."""
    where = _message_map(history)
    sent = {m.id for m in ctx.messages} - {m.id for m in history.rounds[-1]}
    best_sent = best_old = None
    for key, score in hits:
        if key in sent:
            best_sent = score if best_sent is None else best_sent
        elif key in where:
            best_old = score if best_old is None else best_old
        if best_sent is not None and best_old is not None:
            break
    if best_old is None:
        return True
    return best_sent is not None and best_old < gate * best_sent


LONG_POOL = 100  # hits ranked again by ``_long_ranked_down``: the rest keep their rank, after


def _long_ranked_down(history: History, hits: Sequence[Hit], long: int) -> list[Hit]:
    """The best hits ordered by score x min(1, long / tokens): by plain score, an 800-token
    reply that ranks first takes the whole budget of a 1,000-token context (cut, and useless),
    where the next few short messages would have fitted whole."""
    where, counter, rounds = _message_map(history), history.counter, history.rounds
    long = max(1, long)

    def value(hit: Hit) -> float:
        at = where.get(hit[0])
        if at is None:
            return hit[1]
        return hit[1] * min(1.0, long / message_tokens(rounds[at[0]][at[1]], counter))

    head = sorted(hits[:LONG_POOL], key=lambda hit: -value(hit))
    return [*head, *hits[LONG_POOL:]]


_QUESTION_WORDS = frozenset(
    "what when where who whom whose which why how do does did is are was were can could "
    "would will should have has had remind remember recall tell".split()
)


def asks(text: str) -> bool:
    """Whether a message asks something: a question mark, or a question word first."""
    if "?" in text or "\uff1f" in text:
        return True
    words = text.lower().split(maxsplit=1)
    return bool(words) and words[0].strip(",.:;!") in _QUESTION_WORDS


def _when(pick: _Pick) -> tuple[int, int]:
    return pick.at


def block_pieces(messages: Sequence[Message]) -> list[str]:
    """The runs of text a recall block would show ``messages`` as: a line per message (with its
    newline) and a line per day (with the newlines around it), each read after ``RECALL_LEAD``.

    Why: a backend that reads ahead (``ReadsAhead``) keeps them, so recalling them later costs
    (almost) no prompt reading; the block is these runs joined, so their tokens match.
    """
    days = sorted({_day(m.created_at) for m in messages})
    return [f"\n{_day_line(day)}\n" for day in days] + [_line(m) + "\n" for m in messages]


def _block(picks: Sequence[_Pick]) -> str:
    """The recall block: the header, then the messages oldest first under their days."""
    return _render((p.message.created_at, p.text) for p in sorted(picks, key=_when))


def block_text(messages: Sequence[Message]) -> str:
    """The recall block ``RecallMemory`` writes for these messages, whole, in this order."""
    return _render((m.created_at, _line(m)) for m in messages)


def _render(lines: Iterable[tuple[float, str]]) -> str:
    out = [RECALL_HEADER]
    day = ""
    for created_at, text in lines:
        this = _day(created_at)
        if this != day:
            out += ["", _day_line(this)]
            day = this
        out.append(text)
    return "\n".join(out)


# concrete classes: isinstance on a runtime Protocol costs ~0.1 ms, too much per select
_SUMMARIZING = (SummaryMemory, RecallMemory)


# -- the parts of a strategy a session keeps up to date (one place that knows the built-ins) --
def index_of(strategy: MemoryStrategy) -> RoundIndex | None:
    """The index a RecallMemory searches, when it is a RoundIndex (None for other strategies)."""
    if isinstance(strategy, RecallMemory) and isinstance(strategy.retriever, RoundIndex):
        return strategy.retriever
    return None


def summarizing(strategy: MemoryStrategy) -> Summarizing | None:
    """``strategy`` as a Summarizing when it keeps a running summary: a SummaryMemory, a
    RecallMemory around one, another strategy with the protocol's methods (None otherwise)."""
    if isinstance(strategy, RecallMemory):
        return strategy if isinstance(strategy.window, _SUMMARIZING) else None
    return strategy if isinstance(strategy, Summarizing) else None


def will_search(strategy: MemoryStrategy, history: History, budget: Budget) -> bool:
    """Whether a context of ``strategy`` within ``budget`` may search an index: a RecallMemory
    only once the conversation overflows (``RecallMemory.will_search``), any other at any time."""
    return strategy.will_search(history, budget) if isinstance(strategy, RecallMemory) else True
