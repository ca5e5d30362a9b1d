"""History: the system prompt plus whole rounds, with running token sums.

A round is a user message and the replies to it. The history is append-only during a chat; it
keeps cumulative token sums per round, so a strategy can find a cut point without walking the
whole conversation (cost per turn grows with what is kept, not with the history).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence

from .errors import UsageError
from .messages import Message
from .tokens import ApproxCounter, TokenCounter, message_tokens

__all__ = ["History", "Round", "group_rounds"]

Round = tuple[Message, ...]


def group_rounds(messages: Iterable[Message]) -> tuple[list[Message], list[Round]]:
    """Split messages into leading system messages and rounds.

    A round starts at each user message; assistant messages join the round before them. Later
    system messages (e.g. an in-chat instruction) join the round they appear in.
    """
    system: list[Message] = []
    rounds: list[list[Message]] = []
    for msg in messages:
        if msg.role == "system" and not rounds:
            system.append(msg)
        elif msg.role == "user" or not rounds:
            rounds.append([msg])
        else:
            rounds[-1].append(msg)
    return system, [tuple(r) for r in rounds]


class History:
    """System messages and rounds, with cached counts and cumulative sums."""

    def __init__(self, messages: Iterable[Message] = (), counter: TokenCounter | None = None):
        self.counter: TokenCounter = counter or ApproxCounter()
        self.system: list[Message] = []
        self.rounds: list[Round] = []
        self._cum: list[int] = []  # _cum[i] = tokens of rounds[0..i]
        self._pinned: set[int] = set()
        self.extend(messages)

    # -- building ---------------------------------------------------------------------------
    def extend(self, messages: Iterable[Message]) -> None:
        for msg in messages:
            self.append(msg)

    def append(self, msg: Message) -> None:
        cost = message_tokens(msg, self.counter)
        if msg.role == "system" and not self.rounds:
            self.system.append(msg)
        elif msg.role == "user" or not self.rounds:
            self.rounds.append((msg,))
            self._cum.append((self._cum[-1] if self._cum else 0) + cost)
        else:
            self.rounds[-1] = (*self.rounds[-1], msg)
            self._cum[-1] += cost
        if msg.pinned:
            self._pinned.add(len(self.rounds) - 1)

    def set_system(self, text: str | None) -> None:
        """Replace the system prompt (None or empty removes it)."""
        self.system = [Message("system", text)] if text else []
        for msg in self.system:
            message_tokens(msg, self.counter)

    # -- reading ----------------------------------------------------------------------------
    @property
    def overhead(self) -> int:
        """Tokens every prompt pays besides its messages (reply priming)."""
        return self.counter.per_reply

    @property
    def system_tokens(self) -> int:
        return sum(message_tokens(m, self.counter) for m in self.system)

    @property
    def pinned_rounds(self) -> list[int]:
        return sorted(self._pinned)

    @property
    def total_tokens(self) -> int:
        return self.system_tokens + (self._cum[-1] if self._cum else 0)

    def round_tokens(self, i: int) -> int:
        return self._cum[i] - (self._cum[i - 1] if i else 0)

    def tokens_before(self, i: int) -> int:
        """Tokens of rounds[0..i-1]."""
        return self._cum[i - 1] if i > 0 else 0

    def span_tokens(self, start: int, stop: int | None = None) -> int:
        """Tokens of rounds[start:stop]."""
        stop = len(self.rounds) if stop is None else stop
        if stop <= start:
            return 0
        return self.tokens_before(stop) - self.tokens_before(start)

    def first_round_at(self, offset: int) -> int:
        """Index of the first round that starts at or after ``offset`` cumulative tokens."""
        # rounds[i] starts at tokens_before(i) == _cum[i-1]; find smallest i with that >= offset
        return bisect_left(self._cum, offset) + 1 if offset > 0 else 0

    def messages(self) -> list[Message]:
        return [*self.system, *(m for r in self.rounds for m in r)]

    def __iter__(self) -> Iterator[Message]:
        return iter(self.messages())

    def __len__(self) -> int:
        return len(self.system) + sum(len(r) for r in self.rounds)

    def find(self, message_id: str) -> Message:
        for msg in self.messages():
            if msg.id == message_id:
                return msg
        raise UsageError(f"no message with id {message_id!r} in this conversation")

    def copy_without(self, ids: Sequence[str]) -> History:
        """A new history without the given message ids (used by forget)."""
        drop = set(ids)
        return History((m for m in self.messages() if m.id not in drop), self.counter)

    def pop_last_round(self) -> Round:
        """Remove and return the newest round (undoes an uncommitted turn)."""
        last = self.rounds.pop()
        self._cum.pop()
        self._pinned.discard(len(self.rounds))
        return last

    def rebuild(self) -> History:
        """A fresh history from the same messages (after pin flags changed)."""
        return History(self.messages(), self.counter)
