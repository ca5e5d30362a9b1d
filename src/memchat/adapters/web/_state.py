"""Per-app state of the web page: who a visitor is, their settings, and their chat sessions.

Nothing here is a module global. ``build_app`` makes one ``Registry`` per app; Gradio keeps each
browser tab's owner, conversation id and ``Prefs`` in server-side ``gr.State``. An owner is
``visitor:<random id held by the browser>`` or, with login, ``user:<name>``; every conversation
the page touches is checked against it, so ids sent by a page cannot reach another owner's data.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ...core.backend import ChatBackend
from ...core.errors import ConfigError, NotFound
from ...core.session import ChatSession
from ...core.store import ConversationInfo, Store
from ...settings import MAX_IDLE_SESSIONS, WEB_PAGE, Settings
from ...wiring import build_backend, build_session

__all__ = [
    "BackendFactory",
    "Entry",
    "Prefs",
    "Registry",
    "check_login",
    "owner_for",
    "parse_users",
    "stable_secret",
]

log = logging.getLogger("memchat.web")

BackendFactory = Callable[[Settings], ChatBackend]

_TOKEN = re.compile(r"[A-Za-z0-9_-]{22,64}")


def new_visitor_token() -> str:
    """A browser-held visitor id: 192 random bits, so it cannot be guessed."""
    return secrets.token_urlsafe(24)


def owner_for(token: object, username: str | None) -> tuple[str, str | None]:
    """(owner, visitor token to keep in the browser); a bad or missing token gets a new one."""
    if username:
        return f"user:{username}", token if isinstance(token, str) else None
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        token = new_visitor_token()
    return f"visitor:{token}", token


def parse_users(spec: str | None) -> dict[str, str]:
    """``"alice:pw1,bob:pw2"`` (commas or newlines) → {name: password}; ConfigError if malformed."""
    users: dict[str, str] = {}
    for item in re.split(r"[,\n]", spec or ""):
        if not item.strip():
            continue
        name, sep, password = item.strip().partition(":")
        if not sep or not name.strip() or not password:
            raise ConfigError(f"MEMCHAT_USERS: expected name:password, got {name.strip()!r}…")
        users[name.strip()] = password
    return users


def check_login(users: Mapping[str, str]) -> Callable[[str, str], bool]:
    """A Gradio ``auth`` callable comparing passwords in constant time."""

    def auth(username: str, password: str) -> bool:
        expected = users.get(username)
        return expected is not None and hmac.compare_digest(expected, password)

    return auth


def stable_secret(home: str) -> str:
    """The key the page's browser storage is encrypted with, kept in the data dir.

    Gradio encrypts ``gr.BrowserState`` with it; a new key at every start would make every
    browser forget its visitor id (and so its conversations) after a restart.
    """
    path = Path(home) / "web-secret"
    try:
        if not path.is_file() or not path.read_text(encoding="utf-8").strip():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(24), encoding="utf-8")
            path.chmod(0o600)
        return path.read_text(encoding="utf-8").strip()
    except OSError:  # a read-only data dir: the ids then last until the next restart
        return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class Prefs:
    """One visitor's choices from the Settings tab. ``api_key`` lives in server memory only."""

    backend: str
    strategy: str
    model: str | None = None
    base_url: str | None = None
    system: str | None = None
    budget: int | None = None
    reserve: int | None = None
    api_key: str | None = field(default=None, repr=False)

    _PUBLIC = ("backend", "strategy", "model", "base_url", "system", "budget", "reserve")

    @classmethod
    def from_settings(cls, settings: Settings) -> Prefs:
        """The server's own settings; the server's key is not copied into the page."""
        values = {name: getattr(settings, name) for name in cls._PUBLIC}
        return cls(**values)

    def public(self) -> dict[str, Any]:
        """What may be kept in the browser: everything but the API key."""
        return {name: getattr(self, name) for name in self._PUBLIC}

    def with_public(self, saved: object) -> Prefs:
        """These prefs updated from a browser-saved dict (unknown or mistyped keys ignored)."""
        if not isinstance(saved, dict):
            return self
        changes = {k: v for k, v in saved.items() if k in self._PUBLIC and _plausible(k, v)}
        return replace(self, **changes)

    def fingerprint(self) -> str:
        """Changes whenever any setting changes, the key included (hashed, never shown)."""
        raw = repr((self.public(), self.api_key))
        return hashlib.sha256(raw.encode()).hexdigest()


def _plausible(name: str, value: object) -> bool:
    if name in ("budget", "reserve"):
        return value is None or (isinstance(value, int) and not isinstance(value, bool))
    if name in ("backend", "strategy"):
        return isinstance(value, str) and bool(value)
    return value is None or isinstance(value, str)


def effective_settings(settings: Settings, prefs: Prefs) -> Settings:
    """The server's settings with a visitor's choices on top, through the settings pipeline
    (its parsers and cross-checks; a changed value's source is the web page). The server key
    is kept only while the visitor talks to the server's own provider."""
    same_provider = (prefs.backend, prefs.base_url) == (settings.backend, settings.base_url)
    chosen: dict[str, Any] = {
        "backend": prefs.backend,
        "strategy": prefs.strategy,
        "model": prefs.model or (settings.model if same_provider else None),
        "base_url": prefs.base_url,
        "system": prefs.system,
        "budget": prefs.budget,
        "reserve": prefs.reserve,
        "api_key": prefs.api_key or (settings.api_key if same_provider else None),
    }
    changed = {k: v for k, v in chosen.items() if v != getattr(settings, k)}
    return settings.override(changed, WEB_PAGE)


@dataclass
class Entry:
    """A live chat session and the lock held while a reply is being written.

    After a reply the lock stays held while the session's memory upkeep runs (``upkeeping``
    is set then); its notices wait in ``notes`` for the next turn to show.
    """

    session: ChatSession
    fingerprint: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    upkeeping: threading.Event = field(default_factory=threading.Event)
    notes: list[str] = field(default_factory=list)

    def upkeep(self) -> None:
        """Run the session's memory upkeep (call it holding ``lock``)."""
        self.upkeeping.set()
        try:
            self.notes.extend(self.session.upkeep())
        finally:
            self.upkeeping.clear()

    def take_notes(self) -> list[str]:
        notes, self.notes = self.notes, []
        return notes


class Registry:
    """Sessions keyed by (owner, conversation id), least recently used dropped past ``capacity``
    (``memchat web --max-idle-sessions``); a dropped one is rebuilt from the store when needed.

    Backends are shared by settings fingerprint: the server's default backend (the embedded
    model) is built once (it serialises its own replies); a visitor's own provider gets its own
    client.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        backend_factory: BackendFactory | None = None,
        capacity: int = MAX_IDLE_SESSIONS,
    ) -> None:
        self.settings = settings
        self.store = store
        self._factory: BackendFactory = backend_factory or build_backend
        self._capacity = capacity
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()  # one model load at a time
        self._entries: OrderedDict[tuple[str, str], Entry] = OrderedDict()
        self._backends: OrderedDict[str, ChatBackend] = OrderedDict()

    # -- conversations ------------------------------------------------------------------------
    def owned(self, owner: str, conversation_id: object) -> ConversationInfo:
        """The conversation if ``owner`` owns it; NotFound otherwise (whoever owns it)."""
        if not owner or not isinstance(conversation_id, str) or not conversation_id:
            raise NotFound("no such conversation")
        try:
            info = self.store.get_conversation(conversation_id)
        except NotFound:
            raise NotFound("no such conversation") from None
        if info.owner != owner:
            raise NotFound("no such conversation")
        return info

    def forget_entry(self, owner: str, conversation_id: str) -> None:
        with self._lock:
            self._entries.pop((owner, conversation_id), None)

    # -- sessions -----------------------------------------------------------------------------
    def entry(self, owner: str, conversation_id: str, prefs: Prefs) -> Entry:
        """The live session of an owned conversation, rebuilt when the visitor's prefs changed."""
        self.owned(owner, conversation_id)
        key, fingerprint = (owner, conversation_id), prefs.fingerprint()
        with self._lock:
            found = self._entries.get(key)
            if found is not None and found.fingerprint == fingerprint:
                self._entries.move_to_end(key)
                return found
        session = self.build(prefs, conversation_id)
        with self._lock:
            found = self._entries.get(key)
            if found is not None and found.fingerprint == fingerprint:
                return found
            entry = Entry(session, fingerprint)
            self._entries[key] = entry
            while len(self._entries) > self._capacity:
                (_, evicted), _ = self._entries.popitem(last=False)
                log.debug("conversation %s evicted from memory (idle)", evicted)
            return entry

    def peek(self, owner: str, conversation_id: object) -> Entry | None:
        if not isinstance(conversation_id, str):
            return None
        with self._lock:
            return self._entries.get((owner, conversation_id))

    def build(self, prefs: Prefs, conversation_id: str | None = None) -> ChatSession:
        """A session for these prefs (also used to check them: raises ConfigError)."""
        settings = effective_settings(self.settings, prefs)
        backend = self.backend(settings, prefs)
        store = self.store if conversation_id is not None else None
        return build_session(
            settings, store=store, conversation_id=conversation_id, backend=backend
        )

    def backend(self, settings: Settings, prefs: Prefs) -> ChatBackend:
        """A shared backend per provider settings (not per system prompt or budget)."""
        provider = (settings.backend, settings.base_url, settings.model, settings.api_key)
        key = hashlib.sha256(repr(provider).encode()).hexdigest()
        with self._lock:
            found = self._backends.get(key)
            if found is not None:
                return found
        with self._build_lock:
            with self._lock:
                found = self._backends.get(key)
            if found is not None:
                return found
            # the embedded model serialises its own replies (one decode at a time, on its lock)
            backend: ChatBackend = self._factory(settings)
            with self._lock:
                self._backends[key] = backend
                while len(self._backends) > 32:
                    self._backends.popitem(last=False)
            return backend
