"""Everything but chat turns: page load, the conversation sidebar, files, settings, inspector.

Export a conversation to a file the page offers for download, and import one back.

Exports hold the conversation's messages only (never settings or keys). An import is read whole
before anything is written, gets fresh message ids (so the same file can be imported twice), and
lands in a new conversation of the importing owner in one ``append``.
"""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr

from ...core.errors import InputError, MemchatError, UsageError
from ...core.messages import Message
from ...core.store import ConversationInfo, Store, participant_metadata
from ...settings import BACKEND_NAMES
from ...strategies import STRATEGY_NAMES
from ...transcripts import export_json, export_markdown, read_transcript
from ._render import notice_markdown, short_title
from ._state import Prefs, owner_for
from ._view import PageBase, View, browser_value

__all__ = ["EXPORT_FORMATS", "SETTINGS_FIELDS", "SideHandlers", "export_file", "import_file"]


log = logging.getLogger("memchat.web")

SETTINGS_FIELDS = ("backend", "base_url", "api_key", "model", "system", "strategy", "budget",
                   "reserve")  # fmt: skip

Out = tuple[Any, ...]
EDIT_WAIT = 1.0  # seconds pin/forget wait for a turn's last steps to finish


def _optional(text: object) -> str | None:
    return text.strip() if isinstance(text, str) and text.strip() else None


def _whole(value: Any) -> Any:
    """A number field's value: a whole number as an int, empty as None; anything else as it is,
    for the settings parser to refuse."""
    if value is None or value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class SideHandlers(PageBase):
    """Handlers of the sidebar, the settings tab and the inspector."""

    # -- page load ----------------------------------------------------------------------------
    def load(self, browser: Any, request: gr.Request) -> Out:
        """Who this is (login or browser id), their prefs, and the conversation they had open."""
        saved = browser if isinstance(browser, dict) else {}
        owner, token = owner_for(saved.get("visitor"), request.username)
        prefs = self._saved_prefs(saved.get("prefs"))
        cid = self.owned_id(owner, saved.get("conversation"))
        state = browser_value(saved, visitor=token, conversation=cid, prefs=prefs.public())
        who = (
            f"Signed in as **{request.username}** · your conversations follow you."
            if request.username
            else "Private to this browser" + (" · sign-in is off." if not self.login else ".")
        )
        fields = self._fields(prefs)
        return (owner, cid, prefs, state, who, *fields, *self.view(owner, cid, prefs))

    def _saved_prefs(self, saved: object) -> Prefs:
        prefs = Prefs.from_settings(self.settings).with_public(saved)
        if prefs.backend not in BACKEND_NAMES or prefs.strategy not in STRATEGY_NAMES:
            return Prefs.from_settings(self.settings)
        return prefs

    def _fields(self, prefs: Prefs) -> tuple[Any, ...]:
        key_note = "Key set for this session" if prefs.api_key else "Not stored anywhere"
        return (
            prefs.backend,
            prefs.base_url or "",
            gr.update(value="", placeholder=key_note),
            prefs.model or "",
            prefs.system or "",
            prefs.strategy,
            prefs.budget,
            prefs.reserve,
        )

    # -- sidebar ------------------------------------------------------------------------------
    def new_chat(self, owner: str, prefs: Prefs | None, browser: Any) -> Out:
        state = browser_value(browser, conversation=None)
        return (None, state, "", *self.view(owner, None, prefs))

    def switch(self, picked: str | None, owner: str, prefs: Prefs | None, browser: Any) -> Out:
        cid = self.owned_id(owner, picked)
        title = self.registry.owned(owner, cid).title if cid else ""
        state = browser_value(browser, conversation=cid)
        return (cid, state, title, *self.view(owner, cid, prefs))

    def search(self, query: str, owner: str, cid: str | None) -> Any:
        return self.conversations(owner, cid, query)

    def rename(self, title: str, owner: str, cid: str | None, query: str) -> Out:
        try:
            info = self.registry.owned(owner, cid)
            self.store.rename_conversation(info.id, " ".join((title or "").split()))
            note = "Renamed."
        except MemchatError as exc:
            note = f"Cannot rename: {exc}"
        return self.conversations(owner, cid, query), notice_markdown([note])

    def delete(self, owner: str, cid: str | None, prefs: Prefs | None, browser: Any) -> Out:
        note = []
        try:
            info = self.registry.owned(owner, cid)
            self.store.delete_conversation(info.id)
            self.registry.forget_entry(owner, info.id)
            note = [f"Deleted “{info.title or 'Untitled conversation'}”."]
        except MemchatError as exc:
            note = [f"Cannot delete: {exc}"]
        state = browser_value(browser, conversation=None)
        return (None, state, "", *self.view(owner, None, prefs, notes=note))

    # -- files --------------------------------------------------------------------------------
    def export(self, fmt: str, owner: str, cid: str | None) -> Out:
        try:
            info = self.registry.owned(owner, cid)
            path = export_file(self.store, info, fmt, self.export_dir)
        except MemchatError as exc:
            hidden = gr.update(value=None, visible=False)
            return hidden, notice_markdown([f"Nothing to export: {exc}"])
        return gr.update(value=str(path), visible=True), ""

    def import_(
        self, upload: Any, owner: str, cid: str | None, prefs: Prefs | None, browser: Any
    ) -> Out:
        path = getattr(upload, "name", upload)
        try:
            if not owner or not isinstance(path, str):
                raise UsageError("no file was received")
            info = import_file(self.store, owner, path)
        except MemchatError as exc:
            notes = [f"Import failed, nothing was changed: {exc}"]
            return (gr.skip(),) * 3 + self.view(owner, cid, prefs, notes=notes)
        notes = [f"Imported {info.message_count} messages as “{info.title}”."]
        state = browser_value(browser, conversation=info.id)
        return (info.id, state, info.title, *self.view(owner, info.id, prefs, notes=notes))

    # -- settings -----------------------------------------------------------------------------
    def apply_settings(
        self, owner: str, cid: str | None, prefs: Prefs | None, browser: Any, *fields: Any
    ) -> Out:
        """Check and keep the visitor's settings; the key stays in this page session only."""
        current = prefs or Prefs.from_settings(self.settings)
        try:
            new = self._prefs_from(current, dict(zip(SETTINGS_FIELDS, fields, strict=True)))
            self.registry.build(new)  # raises ConfigError for settings that cannot work
        except MemchatError as exc:
            refused = f"**Not applied:** {notice_markdown([str(exc)]).removeprefix('• ')}"
            return (current, gr.skip(), refused, *(gr.skip(),) * len(SETTINGS_FIELDS))
        state = browser_value(browser, prefs=new.public())
        status = "**Applied** to your next message."
        if new.api_key:
            status += " The API key is kept in this page's session only."
        return (new, state, status, *self._fields(new))

    def _prefs_from(self, current: Prefs, values: dict[str, Any]) -> Prefs:
        """The visitor's prefs from the form; ``registry.build`` checks them through the
        settings pipeline (``effective_settings``), whose errors cite the web page."""
        backend = str(values["backend"] or current.backend)
        base_url = _optional(values["base_url"])
        same = (backend, base_url) == (current.backend, current.base_url)
        key = _optional(values["api_key"]) or (current.api_key if same else None)
        return Prefs(
            backend=backend,
            strategy=values["strategy"],
            model=_optional(values["model"]),
            base_url=base_url,
            system=_optional(values["system"]),
            budget=_whole(values["budget"]),
            reserve=_whole(values["reserve"]),
            api_key=key,
        )

    # -- inspector ----------------------------------------------------------------------------
    def pin(self, picked: str | None, owner: str, cid: str | None, prefs: Prefs | None) -> View:
        return self._edit_history("pin", picked, owner, cid, prefs)

    def unpin(self, picked: str | None, owner: str, cid: str | None, prefs: Prefs | None) -> View:
        return self._edit_history("unpin", picked, owner, cid, prefs)

    def forget(self, picked: str | None, owner: str, cid: str | None, prefs: Prefs | None) -> View:
        return self._edit_history("forget", picked, owner, cid, prefs)

    def _edit_history(
        self, action: str, picked: str | None, owner: str, cid: str | None, prefs: Prefs | None
    ) -> View:
        notes: list[str] = []
        try:
            entry = self.live(owner, self.owned_id(owner, cid), prefs) if prefs else None
            if entry is None or not picked:
                raise UsageError("pick a message first")
            if not entry.lock.acquire(timeout=EDIT_WAIT):
                if entry.upkeeping.is_set():
                    raise UsageError("the summary of earlier messages is being updated; "
                                     "try again in a moment")  # fmt: skip
                raise UsageError("wait for the reply to finish")
            try:
                if action == "forget":
                    entry.session.forget([picked])
                else:
                    entry.session.pin(picked, action == "pin")
            finally:
                entry.lock.release()
            done = {"forget": "Forgotten", "pin": "Pinned", "unpin": "Unpinned"}[action]
            notes.append(f"{done}. This applies from your next message.")
        except MemchatError as exc:
            notes.append(f"Cannot {action}: {exc}")
        return self.view(owner, cid, prefs, notes=notes)


EXPORT_FORMATS = {"JSON": (".json", export_json), "Markdown": (".md", export_markdown)}
MAX_IMPORT_BYTES = 20 * 1024 * 1024


def _filename(title: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", title).strip("-._")[:60]
    return stem or "conversation"


def export_file(store: Store, info: ConversationInfo, fmt: str, folder: Path) -> Path:
    """Write the conversation in ``fmt`` ("JSON" or "Markdown") to a new file under ``folder``."""
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"unknown export format {fmt!r}; use JSON or Markdown")
    suffix, render = EXPORT_FORMATS[fmt]
    messages = store.load(info.id)
    folder.mkdir(parents=True, exist_ok=True)
    out = Path(tempfile.mkdtemp(dir=folder)) / f"{_filename(info.title)}{suffix}"
    out.write_text(render(info.title, messages, info.participants), encoding="utf-8")
    return out


def import_file(store: Store, owner: str, path: str | Path) -> ConversationInfo:
    """A new conversation of ``owner`` holding the transcript's messages; InputError if bad."""
    path = Path(path)
    if path.stat().st_size > MAX_IMPORT_BYTES:
        raise InputError(f"{path.name}: larger than {MAX_IMPORT_BYTES // 2**20} MiB")
    transcript = read_transcript(path)
    messages = [
        Message(m.role, m.content, created_at=m.created_at, pinned=m.pinned)
        for m in transcript.messages
    ]
    if not messages:
        raise InputError(f"{path.name}: no messages to import")
    first_user = next((m.content for m in messages if m.role == "user"), path.stem)
    title = short_title(transcript.title or first_user) or "Imported conversation"
    metadata = participant_metadata(transcript.participants)
    info = store.create_conversation(title, owner=owner, metadata=metadata)
    try:
        store.append(info.id, messages)
    except Exception:
        store.delete_conversation(info.id)
        raise
    return store.get_conversation(info.id)
