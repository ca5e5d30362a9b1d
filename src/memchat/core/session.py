"""ChatSession: history + memory strategy + backend (+ optional store). Turns are atomic.

The session is given its parts by name: the backend, the strategy, the recall ``index`` it keeps
in sync with the history, the ``summarizer`` that folds dropped rounds into a summarising
strategy's summary, the store. ``memchat.wiring.build_session`` builds them from settings.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import replace

from .backend import ChatBackend, GenerationParams, ReadsAhead, Usage
from .errors import BackendError, ContextTooLong, UsageError
from .history import History
from .memory import Budget, CacheAware, Context, MemoryStrategy, default_reserve
from .memory.base import RECALL_BLOCK_ID, limit_for
from .memory.recall import (
    RECALL_LEAD,
    RoundIndex,
    block_pieces,
    index_of,
    summarizing,
    will_search,
)
from .memory.summary import Summarize, Summarizing, backend_summarizer, summary_touched
from .messages import Message
from .meter import MeterReading, Price
from .reply import Reply, closing_stream
from .store import Store, SummaryRecord
from .tokens import TokenCounter, message_tokens
from .truncate import cut_to_tokens

__all__ = ["ChatSession", "Reply"]

log = logging.getLogger("memchat")

DEFAULT_WINDOW = 4096
MAX_FOLDS = 4  # summary chunks folded per turn at most (a backlog catches up over turns)


class ChatSession:
    """A conversation with memory.

    ``send(text)`` returns a ``Reply`` to iterate; ``context_for(text)`` shows what would be sent.

    ``budget`` defaults to the backend's context window (4,096 tokens if it has none) with
    ``default_reserve`` kept for the reply (a quarter, at most 1,024); a token count gets that
    reserve too. ``index`` is the recall
    index to keep in sync (default: the one a RecallMemory strategy searches); ``summarizer``
    folds dropped rounds into a summarising strategy's summary (default: the chat backend;
    ``summarize`` is its older name).
    """

    def __init__(
        self,
        backend: ChatBackend,
        *,
        strategy: MemoryStrategy | None = None,
        budget: Budget | int | None = None,
        system_prompt: str | None = None,
        history: Iterable[Message] = (),
        params: GenerationParams | None = None,
        counter: TokenCounter | None = None,
        store: Store | None = None,
        conversation_id: str | None = None,
        price: Price | None = None,
        index: RoundIndex | None = None,
        summarizer: Summarize | None = None,
        summarize: Summarize | None = None,
    ) -> None:
        self.backend = backend
        self.counter = counter or backend.token_counter()
        self.strategy = strategy or CacheAware()
        self.index = index if index is not None else index_of(self.strategy)
        if budget is None:
            budget = backend.context_window or DEFAULT_WINDOW
        if isinstance(budget, int) and not isinstance(budget, bool):  # tokens: the default reserve
            budget = Budget(budget, default_reserve(budget, backend.context_window))
        if not isinstance(budget, Budget):
            raise UsageError(f"budget must be a Budget or a token count, got {budget!r}")
        self.budget = budget
        self.params = params or GenerationParams()
        self.store = store
        self.conversation_id = conversation_id
        self.price = price
        self.history = History(history, self.counter)
        if system_prompt is not None:
            self.history.set_system(system_prompt)
        self.last_context: Context | None = None
        self.last_usage: Usage | None = None
        self.total_cost: float | None = None
        self.on_notice: Callable[[str], None] | None = None
        # folds dropped rounds into the summary of a summarising strategy; never the strategy
        self.summarizer: Summarize = summarizer or summarize or backend_summarizer(backend)
        self._summary_loaded = False
        self._upkeep_due = False  # the last turn's index and summary work has not run yet

    # -- turns ------------------------------------------------------------------------------
    def send(self, text: str, params: GenerationParams | None = None) -> Reply:
        """Start a turn. Raises UsageError for an empty message before anything is sent.

        ``params`` are this turn's generation settings (a server request's ``max_tokens``,
        ``temperature``, …); each one set overrides the session's ``params`` for this turn only.
        """
        message, notices = self._fit_input(text)
        return Reply(
            message, notices, params, run=self._run, upkeep=self._upkeep_notes, notice=self._notice
        )

    def ask(self, text: str) -> str:
        """Send and return the whole reply text."""
        return self.send(text).consume()

    def _fit_input(self, text: str) -> tuple[Message, list[str]]:
        if not isinstance(text, str) or not text.replace("\x00", "").strip():
            raise UsageError("the message is empty")
        text = text.replace("\x00", "")  # no store (PostgreSQL) can hold NUL characters
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise UsageError(f"the message has text that is not valid Unicode ({exc})") from None
        limit = limit_for(self.history, self.budget) - self.counter.per_message
        pinned = sum(self.history.round_tokens(i) for i in self.history.pinned_rounds)
        cut = cut_to_tokens(text, max(0, limit - pinned), self.counter)
        if not cut.text:
            raise UsageError(f"the budget leaves no room for a message ({limit - pinned} tokens)")
        notices = []
        if cut.was_cut:
            notices.append(
                f"your message was too long for the context: kept {cut.kept_tokens:,} tokens, "
                f"cut {cut.cut_tokens:,} tokens ({cut.cut_chars:,} characters) at a sentence end"
            )
        return Message("user", cut.text), notices

    def _run(self, reply: Reply) -> Generator[str, None, None]:
        self.history.append(reply.message)
        committed = False
        try:
            yield from self._stream_with_retry(reply)
            self._commit(reply)
            committed = True
        except BackendError as exc:
            exc.user_text = reply.message.content
            raise
        finally:
            if not committed:
                self.history.pop_last_round()

    def _stream_with_retry(self, reply: Reply) -> Iterator[str]:
        budget = self.budget
        for note in [*self._upkeep_notes(), *self._prepare_memory()]:
            self._notice(reply, note)
        for attempt in (1, 2):
            reply.context = self.strategy.select(self.history, budget)
            reply.finish_reason = None
            started = False
            try:
                stream = self.backend.stream(reply.context.messages, self._params(reply.params))
                with closing_stream(stream):
                    for chunk in stream:
                        if chunk.status:
                            self._notice(reply, chunk.status)
                        if chunk.text:
                            started = True
                            reply.text += chunk.text
                            yield chunk.text
                        if chunk.usage is not None:
                            reply.usage = chunk.usage
                        if chunk.finish_reason is not None:
                            reply.finish_reason = chunk.finish_reason
                return
            except ContextTooLong:
                if started or attempt == 2:
                    raise
                budget = Budget(budget.window - budget.available // 4, budget.reserve_for_reply)
                self._sync_index(budget)
                self._notice(reply, "context too long for the model: trimmed harder and retried")

    def _params(self, overrides: GenerationParams | None = None) -> GenerationParams:
        params = self.params.merge(overrides)
        if params.cache_key is None and self.conversation_id:
            return replace(params, cache_key=self.conversation_id)
        return params

    def _commit(self, reply: Reply) -> None:
        answer = Message("assistant", reply.text)
        message_tokens(answer, self.counter)
        if self.store is not None and self.conversation_id is not None:
            self.store.append(self.conversation_id, [reply.message, answer])
        self.history.append(answer)
        reply.done = True
        self.last_context = reply.context
        self.last_usage = reply.usage
        if self.price is not None and reply.usage is not None:
            self.total_cost = (self.total_cost or 0.0) + self.price.cost(reply.usage)
        self._upkeep_due = True  # done by upkeep(): by the caller, or before the next turn

    # -- long-term memory: index and summary upkeep; a failure here never fails the turn ----
    @property
    def strategy(self) -> MemoryStrategy:
        return self._strategy

    @strategy.setter
    def strategy(self, strategy: MemoryStrategy) -> None:
        self._strategy = strategy
        self._summarizing: Summarizing | None = summarizing(strategy)

    def _set_summary(self, record: SummaryRecord | None) -> None:
        if self._summarizing is not None:
            self.strategy = self._summarizing.with_summary(record)

    def _sync_index(self, budget: Budget) -> None:
        """Before a retry on a smaller budget: index what the search may now need (the
        backlog is indexed at the first turn that overflows; upkeep indexes each new round)."""
        index = self.index
        if index is not None and will_search(self.strategy, self.history, budget):
            try:
                index.sync(self.history.rounds[:-1])
            except Exception as exc:  # noqa: BLE001 - memory is best effort
                log.warning("long-term memory unavailable: %s", exc, exc_info=True)

    def _prepare_memory(self) -> list[str]:
        """Before a context is chosen: index old rounds, load the stored summary."""
        notes: list[str] = []
        index = self.index
        try:
            if index is not None:
                index.attach(self.store, self.conversation_id)
                if will_search(self.strategy, self.history, self.budget):
                    index.sync(self.history.rounds[:-1])
            if not self._summary_loaded and self._summarizing is not None:
                self._summary_loaded = True
                store, conversation = self.store, self.conversation_id
                if self._summarizing.summary is None and store is not None and conversation:
                    self._set_summary(store.get_summary(conversation))
        except Exception as exc:  # noqa: BLE001 - memory is best effort; the turn goes on
            log.warning("long-term memory unavailable: %s", exc, exc_info=True)
            notes.append(f"long-term memory unavailable this turn: {exc}")
        return notes

    def upkeep(self) -> list[str]:
        """Finish the last turn's long-term memory work and return its notices.

        That is indexing the new round for recall and folding rounds that left the window into
        the summary, which asks the model for a summary and can take seconds (a minute on the
        embedded model). A reply's stream ends without it, so the user reads the reply at once;
        ``Reply.consume``/``ask`` run it before returning, and the next ``send`` or
        ``context_for`` runs it first if nobody did. Call it while the user reads, so the next
        turn does not wait. Never raises for a memory failure: that becomes a notice.
        """
        notes = self._upkeep_notes()
        for note in notes:
            self._notify(note)
        return notes

    def _upkeep_notes(self) -> list[str]:
        if not self._upkeep_due:
            return []
        self._upkeep_due = False
        notes: list[str] = []
        self._after_turn(notes.append)
        return notes

    def _after_turn(self, notify: Callable[[str], None]) -> None:
        index = self.index
        try:
            # only once the conversation overflows: until then nothing is searched, and a short
            # conversation (most API ones) pays no embedding; the first overflow indexes the
            # backlog here, after the reply, not before the next turn's first token
            if index is not None and will_search(self.strategy, self.history, self.budget):
                index.sync(self.history.rounds)
        except Exception as exc:  # noqa: BLE001
            log.warning("indexing the turn failed: %s", exc, exc_info=True)
            notify(f"this turn could not be indexed for recall ({exc}); it will be retried")
        self._read_ahead(notify)
        self._fold_summary(notify)

    def _read_ahead(self, notify: Callable[[str], None]) -> None:
        """Let a backend that reads ahead (the embedded model) read, while the user reads the
        reply, the end of the reply (so the next prompt starts from the cache) and what recall
        may bring back: the new round's lines and the lines recalled last turn.

        The recall block is left out: it sits just before the newest user message, so the next
        prompt, with a block of its own or none, goes on from the reply without this one.
        Taking it out of the cache now, not at the next turn, keeps that work (a shift of
        what followed it) out of the time to the next first token."""
        backend, ctx = self.backend, self.last_context
        if not isinstance(backend, ReadsAhead) or not self.history.rounds or ctx is None:
            return
        newest = self.history.rounds[-1]
        try:
            if newest[-1].role == "assistant":
                sent = [m for m in ctx.messages if m.id != RECALL_BLOCK_ID]
                backend.prefill([*sent, newest[-1]], self._params())
            if self.index is not None:
                recalled = [m for r in ctx.recalled for m in r.round]
                backend.precompute(block_pieces([*newest, *recalled]), after=RECALL_LEAD)
        except Exception as exc:  # noqa: BLE001 - reading ahead only saves time later
            log.warning("reading ahead failed: %s", exc, exc_info=True)
            notify(f"recalled messages could not be read ahead ({exc}); they will be read")

    def _fold_summary(self, notify: Callable[[str], None]) -> None:
        """Fold dropped rounds into the summary when enough wait; failures only notify."""
        try:
            for _ in range(MAX_FOLDS):
                strategy = self._summarizing
                job = strategy.summary_due(self.history, self.budget) if strategy else None
                if job is None:
                    return
                text = self.summarizer(job.previous, job.messages, job.max_tokens)
                self._set_summary(self._save_summary(text, job.covers_until))
        except Exception as exc:  # noqa: BLE001 - a summary failure must not fail the turn
            log.warning("the summary could not be updated: %s", exc, exc_info=True)
            notify(f"the summary could not be updated ({exc}); it will be retried next turn")

    def _save_summary(self, text: str, covers_until: str) -> SummaryRecord:
        if self.store is not None and self.conversation_id is not None:
            return self.store.save_summary(self.conversation_id, text, covers_until)
        previous = self._summarizing.summary if self._summarizing is not None else None
        version = previous.version + 1 if previous else 1
        return SummaryRecord(text, covers_until, version, time.time())

    def _notify(self, text: str) -> None:
        log.info(text)
        if self.on_notice:
            self.on_notice(text)

    def _notice(self, reply: Reply, text: str) -> None:
        log.info(text)
        reply.notices.append(text)
        if self.on_notice:
            self.on_notice(text)
        if reply.on_notice:
            reply.on_notice(text)

    # -- inspection -------------------------------------------------------------------------
    def context_for(self, text: str) -> Context:
        """Exactly what would be sent if ``text`` were sent now (nothing is changed, but the
        last turn's pending ``upkeep`` runs first, as it would before sending)."""
        pending = self.upkeep()
        message, notices = self._fit_input(text)
        notices[:0] = pending
        self.history.append(message)
        try:
            notices += self._prepare_memory()
            context = self.strategy.select(self.history, self.budget)
        finally:
            self.history.pop_last_round()
        context.notes[:0] = notices
        return context

    def meter(self) -> MeterReading:
        """How full the window was on the last turn, and what it cost."""
        ctx = self.last_context
        tokens = ctx.tokens if ctx else self.history.system_tokens + self.history.overhead
        usage = self.last_usage
        cost = self.price.cost(usage) if self.price and usage else None
        return MeterReading(
            context_tokens=tokens,
            window=self.budget.window,
            exact=self.counter.exact,
            usage=usage,
            cost=cost,
            total_cost=self.total_cost,
            trimmed=bool(ctx and ctx.trimmed),
        )

    # -- editing ----------------------------------------------------------------------------
    def set_system(self, text: str | None) -> None:
        self.history.set_system(text)

    def reset(self) -> None:
        """Forget every round, in the store too (like ``forget``); the system prompt stays."""
        system = self.history.system
        gone = [m.id for r in self.history.rounds for m in r]
        if self.store is not None and self.conversation_id is not None:
            if gone:
                self.store.delete_messages(self.conversation_id, gone)
            self.store.clear_summary(self.conversation_id)
        self.history = History(system, self.counter)
        self.last_context = None
        if self.index is not None:
            self.index.remove(gone)
        if self._summarizing is not None:
            self._set_summary(None)
            self._summary_loaded = True

    def forget(self, message_ids: Sequence[str]) -> None:
        """Remove messages from the history, the store, the recall index and the summary.

        A summary built from a forgotten message is dropped and rebuilt from what is left.
        """
        for mid in message_ids:
            self.history.find(mid)
        strategy = self._summarizing
        touched = strategy is not None and summary_touched(
            self.history, strategy.summary, message_ids
        )
        if self.store is not None and self.conversation_id is not None:
            self.store.delete_messages(self.conversation_id, message_ids)
            if touched:
                self.store.clear_summary(self.conversation_id)
        self.history = self.history.copy_without(message_ids)
        if self.index is not None:
            self.index.remove(message_ids)
        if touched:
            self._set_summary(None)
            self._fold_summary(self._notify)

    def reload(self, messages: Iterable[Message]) -> None:
        """Take the stored conversation as it is now, after another process changed it.

        The history becomes ``messages``; this session's system prompt stays (a stored one is
        used only when the session has none). Messages the session already had keep their
        token counts (the same id is the same text); the others are counted again, as
        ``memchat.wiring.build_session`` does. The recall index drops what is gone and indexes
        what is new before the next turn; the summary is read again from the store. A pending
        upkeep is dropped: the stored conversation already moved past it.
        """
        known = {m.id: m.tokens for m in self.history.messages()}
        fresh = list(messages)
        for msg in fresh:
            msg.tokens = known.get(msg.id)
        history = History(fresh, self.counter)
        if self.history.system:
            history.system = self.history.system
        gone = set(known) - {m.id for m in fresh}
        self.history = history
        self._upkeep_due = False
        if self.index is not None and gone:
            self.index.remove(gone)
        if self._summarizing is not None:
            self._set_summary(None)
            self._summary_loaded = False

    def undo_last(self) -> str:
        """Remove the newest round (for regenerate / edit-and-resend); returns its user text."""
        if not self.history.rounds:
            raise UsageError("there is no turn to undo")
        last = self.history.rounds[-1]
        self.forget([m.id for m in last])
        return next((m.content for m in last if m.role == "user"), "")

    def pin(self, message_id: str, pinned: bool = True) -> None:
        """Pin a message so its round is always sent (or unpin it)."""
        self.history.find(message_id).pinned = pinned
        if self.store is not None and self.conversation_id is not None:
            self.store.set_pinned(self.conversation_id, message_id, pinned)
        self.history = self.history.rebuild()
