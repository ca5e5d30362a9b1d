"""Chat turns on the page: send, regenerate, edit-and-resend, stop.

A turn streams into the chat. It ends in one of three ways:
- done: the turn is committed and the page redraws from the session;
- stopped: the partial reply stays on screen marked as stopped, nothing is committed, and the
  user's message goes back into the box;
- error: the error is shown in the chat as a message, nothing is committed, and the user's
  message goes back into the box for resend.
Regenerate and edit take the last round off first and put it back if the new turn fails or is
stopped, so neither ever loses a turn.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from ...core.errors import MemchatError, UsageError
from ...core.history import Round
from ...core.session import Reply
from ._render import ChatRows, chat_messages, short_title
from ._state import Entry, Prefs
from ._turn import Turn, TurnEnd, error_text, restore_round
from ._view import PageBase, browser_value

__all__ = ["TURN", "ChatHandlers"]

TURN = ("textbox", "conversation", "browser", "send", "stop")
LOCK_WAIT = 3.0
UPKEEP_WAIT = 600.0  # a summary fold on the embedded model can take a minute
WAITING = "*⏳ Finishing the summary of earlier messages first; your message goes next …*"
FIRST_WAIT = 0.3  # seconds the user's row waits for the reply's first text
STOPPED_MARK = "\n\n*⏹ Stopped — this reply was not kept.*"

Out = tuple[Any, ...]


@dataclass
class _Started:
    entry: Entry
    reply: Reply
    base: ChatRows
    old: Round | None


def _buttons(running: bool) -> tuple[Any, Any]:
    return gr.update(visible=not running), gr.update(visible=running)


def _bubble(text: str, status: str) -> str:
    """The reply so far; before its first text, the latest notice (a retry, say) in italics."""
    if text or not status:
        return text
    return f"*⏳ {html.escape(status)} …*"


class ChatHandlers(PageBase):
    """The handlers of the chat tab; ``_active`` maps a page session to its running turn."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._active: dict[str, threading.Event] = {}
        self._active_lock = threading.Lock()

    # -- events -------------------------------------------------------------------------------
    def send(
        self, text: str, owner: str, cid: str | None, prefs: Prefs | None, browser: Any,
        request: gr.Request,
    ) -> Iterator[Out]:  # fmt: skip
        if not (text or "").strip():
            yield (gr.skip(),) * (len(TURN) + 6)
            return
        text = well_formed(text)
        yield from self._turn(text, owner, cid, prefs, browser, request, undo=False)

    def regenerate(
        self, owner: str, cid: str | None, prefs: Prefs | None, browser: Any, request: gr.Request
    ) -> Iterator[Out]:
        yield from self._turn(None, owner, cid, prefs, browser, request, undo=True)

    def edit(
        self, data: gr.EditData, owner: str, cid: str | None, prefs: Prefs | None,
        browser: Any, request: gr.Request,
    ) -> Iterator[Out]:  # fmt: skip
        """Edit-and-resend: only the last user message can be edited (later ones depend on it)."""
        text = well_formed(data.value if isinstance(data.value, str) else str(data.value or ""))
        entry = self.live(owner, self.owned_id(owner, cid), prefs) if prefs else None
        rows = chat_messages(entry.session.history.messages()) if entry else []
        last_user = max((i for i, r in enumerate(rows) if r["role"] == "user"), default=-1)
        if data.index != last_user or not text.strip():
            note = "Only your last message can be edited and resent."
            yield self._refusal(owner, cid, prefs, None, note, rows=rows)
            return
        yield from self._turn(text, owner, cid, prefs, browser, request, undo=True)

    def stop(self, request: gr.Request) -> None:
        """Stop the turn running in this page (the stop button)."""
        with self._active_lock:
            event = self._active.get(request.session_hash or "")
        if event is not None:
            event.set()

    # -- one turn -----------------------------------------------------------------------------
    def _turn(
        self, text: str | None, owner: str, cid: str | None, prefs: Prefs | None,
        browser: Any, request: gr.Request, *, undo: bool,
    ) -> Iterator[Out]:  # fmt: skip
        if not owner or prefs is None:
            yield self._refusal(owner, None, prefs, text, "The page is still loading; try again.")
            return
        cid, created = self.owned_id(owner, cid), False
        try:
            if cid is None:
                if undo or text is None:
                    raise UsageError("there is no reply to regenerate yet")
                cid = self.store.create_conversation(short_title(text), owner=owner).id
                created = True
            entry = self.registry.entry(owner, cid, prefs)
            if entry.upkeeping.is_set():
                yield self._waiting(entry, cid, text)
            started = self._start(entry, text, undo)
        except MemchatError as exc:
            if created and cid is not None:
                self._drop_if_empty(owner, cid)
                cid = None
            yield self._refusal(owner, cid, prefs, text, error_text(exc))
            return
        yield from self._stream(started, owner, cid, prefs, browser, request, created)

    def _waiting(self, entry: Entry, cid: str, text: str | None) -> Out:
        """The page while the last turn's summary fold finishes: the message and a notice."""
        rows = chat_messages(entry.session.history.messages())
        if text:
            rows = [*rows, {"role": "user", "content": text}]
        rows = [*rows, {"role": "assistant", "content": WAITING}]
        return ("", cid, gr.skip(), *_buttons(True), rows, *(gr.skip(),) * 5)

    def _start(self, entry: Entry, text: str | None, undo: bool) -> _Started:
        """Take the conversation's lock and start the reply (after undo, for a redo)."""
        patience = UPKEEP_WAIT if entry.upkeeping.is_set() else LOCK_WAIT
        if not entry.lock.acquire(timeout=patience):
            raise UsageError("a reply is still being written in this conversation; stop it first")
        session, old = entry.session, None
        try:
            if undo:
                if not session.history.rounds:
                    raise UsageError("there is no reply to regenerate yet")
                old = session.history.rounds[-1]
                undone = session.undo_last()
                text = undone if text is None else text
            base = chat_messages(session.history.messages())
            reply = session.send(text or "")
        except BaseException:
            if old is not None:
                restore_round(session, old)
            entry.lock.release()
            raise
        return _Started(entry, reply, base, old)

    def _stream(
        self, started: _Started, owner: str, cid: str, prefs: Prefs, browser: Any,
        request: gr.Request, created: bool,
    ) -> Iterator[Out]:  # fmt: skip
        stop = threading.Event()
        key = request.session_hash or ""
        with self._active_lock:
            self._active[key] = stop
        user = {"role": "user", "content": started.reply.message.content}
        after = self._after(started, owner, cid, created)
        turn = Turn(started.reply, started.entry.lock, stop, after=after,
                    upkeep=started.entry.upkeep)  # fmt: skip
        skip6 = (gr.skip(),) * 5
        first = True
        try:
            # the user's row and the first text go out in one update when the text comes
            # within FIRST_WAIT: one browser redraw less before the first token shows
            for text in turn.chunks(first_wait=FIRST_WAIT):
                bubble = _bubble(text, turn.status)
                reply = [{"role": "assistant", "content": bubble}] if bubble else []
                rows = [*started.base, user, *reply]
                head = ("", cid, gr.skip(), *_buttons(True)) if first else (gr.skip(),) * len(TURN)
                first = False
                yield (*head, rows, *skip6)
        finally:
            if turn.end is None:  # the page went away or was cancelled: stop the model
                stop.set()
            with self._active_lock:
                if self._active.get(key) is stop:
                    del self._active[key]
        assert turn.end is not None
        yield self._ended(turn.end, started, user, owner, cid, prefs, browser, created)

    def _after(self, started: _Started, owner: str, cid: str, created: bool) -> Callable[[], None]:
        """Runs on the worker, under the lock, when the turn was not committed."""

        def undo_the_undo() -> None:
            if started.old is not None:
                restore_round(started.entry.session, started.old)
            if created:
                self._drop_if_empty(owner, cid)

        return undo_the_undo

    def _ended(
        self, end: TurnEnd, started: _Started, user: dict[str, str], owner: str, cid: str,
        prefs: Prefs, browser: Any, created: bool,
    ) -> Out:  # fmt: skip
        session = started.entry.session
        if end.status == "done":
            notes = self.turn_notes(session, [*started.entry.take_notes(), *started.reply.notices])
            view = self.view(owner, cid, prefs, notes=notes)
            return ("", cid, browser_value(browser, conversation=cid), *_buttons(False), *view)
        if created:
            cid_after = self.owned_id(owner, cid)
        else:
            cid_after = cid
        if end.status == "stopped":
            bubble = (end.text or "…") + STOPPED_MARK
            note = "Stopped: nothing was kept; your message is back in the box."
        else:
            assert end.error is not None
            bubble = "**Error:** " + html.escape(error_text(end.error))
            note = "Your message was not sent; it is back in the box for resend."
        rows = [*started.base, user, {"role": "assistant", "content": bubble}]
        view = self.view(owner, cid_after, prefs, notes=[note], rows=rows)
        text = started.reply.message.content
        state = browser_value(browser, conversation=cid_after)
        return (text, cid_after, state, *_buttons(False), *view)

    def _refusal(
        self, owner: str, cid: str | None, prefs: Prefs | None, text: str | None, note: str,
        rows: ChatRows | None = None,
    ) -> Out:  # fmt: skip
        """Nothing was started: the message stays in the box and the notice says why."""
        box = text if text is not None else gr.skip()
        view = self.view(owner, cid, prefs, notes=[note], rows=rows)
        return (box, cid, gr.skip(), *_buttons(False), *view)

    def _drop_if_empty(self, owner: str, cid: str) -> None:
        """Delete a conversation created for a first message that was never committed."""
        try:
            if not self.store.load(cid):
                self.store.delete_conversation(cid)
                self.registry.forget_entry(owner, cid)
        except MemchatError:
            pass


def well_formed(text: str) -> str:
    """``text`` with any lone surrogate (a page's script can send one) replaced by U+FFFD: the
    text goes back to the page, and Gradio's event stream cannot encode it (it cut the stream)."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
