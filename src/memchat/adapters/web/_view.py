"""The state every page handler shares, and the "view" they all refresh.

A view is the tuple of values for ``VIEW`` (chat, meter, notice, inspector, message picker,
conversation list), computed from the store and the live session of one owner's conversation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from ...core.errors import MemchatError, NotFound
from ...core.session import ChatSession
from ...settings import Settings
from ._render import (
    ChatRows,
    chat_messages,
    conversation_choices,
    inspector_html,
    message_choices,
    meter_html,
    notice_markdown,
)
from ._state import Entry, Prefs, Registry

__all__ = ["VIEW", "PageBase", "browser_value"]

VIEW = ("chatbot", "meter", "notice", "inspector", "picker", "conversations")

View = tuple[Any, ...]


def browser_value(browser: object, **changes: Any) -> dict[str, Any]:
    """The dict kept in the browser's storage (visitor id, open conversation, public prefs)."""
    value = dict(browser) if isinstance(browser, dict) else {}
    value.update(changes)
    return value


class PageBase:
    """The app's registry and store, and how to draw one owner's conversation."""

    def __init__(self, registry: Registry, export_dir: Path, users: bool) -> None:
        self.registry = registry
        self.store = registry.store
        self.settings: Settings = registry.settings
        self.export_dir = export_dir
        self.login = users

    def owned_id(self, owner: str, conversation_id: object) -> str | None:
        """The id if ``owner`` owns that conversation, else None."""
        try:
            return self.registry.owned(owner, conversation_id).id
        except NotFound:
            return None

    def live(self, owner: str, cid: str | None, prefs: Prefs) -> Entry | None:
        """The live session entry of an owned conversation (None for a new chat)."""
        if cid is None:
            return None
        return self.registry.entry(owner, cid, prefs)

    def conversations(self, owner: str, cid: str | None, query: str = "") -> Any:
        """The sidebar list (newest first), filtered by ``query`` on titles and messages."""
        query = (query or "").strip()
        if not owner:
            infos = []
        elif query:
            infos = self.store.search_conversations(query, owner=owner)
        else:
            infos = self.store.list_conversations(owner=owner)
        choices = conversation_choices(infos)
        value = cid if any(c[1] == cid for c in choices) else None
        return gr.update(choices=choices, value=value)

    def view(
        self,
        owner: str,
        cid: str | None,
        prefs: Prefs | None,
        *,
        notes: Sequence[str] = (),
        rows: ChatRows | None = None,
        query: str = "",
    ) -> View:
        """Every view value for this conversation; a storage error becomes a notice."""
        session: ChatSession | None = None
        notes = list(notes)
        if cid is not None and prefs is not None:
            try:
                session = self.registry.entry(owner, cid, prefs).session
            except MemchatError as exc:
                notes.append(f"cannot open this conversation: {exc}")
        if rows is None:
            rows = chat_messages(session.history.messages()) if session else []
        return (
            rows,
            meter_html(session.meter() if session else None),
            notice_markdown(notes),
            inspector_html(session),
            gr.update(choices=message_choices(session), value=None),
            self.conversations(owner, cid, query),
        )

    def turn_notes(self, session: ChatSession, notices: Sequence[str]) -> list[str]:
        """What to tell the visitor after a turn: retries, cuts, trimming and summaries."""
        notes = list(notices)
        if session.last_context is not None:
            notes.extend(session.last_context.notes)
        return notes
