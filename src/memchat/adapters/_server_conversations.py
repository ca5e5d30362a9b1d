"""The server's conversations: ids scoped by owner, created on first use, listed, forked.

Ids. A client names conversations by its own ids (``[A-Za-z0-9][A-Za-z0-9_.:-]*``, at most 128
characters; ``new`` is reserved) or by those the server makes (``conv_`` + 24 hex digits).
Two API keys may use the same id for two different conversations: in the store, an owner's
conversation ``x`` is ``{owner}/x`` (an open server's owner is "", so its ids are stored as
they are, as the CLI makes them). A conversation another key owns is never found, and an id
another key uses can still be created: nothing tells one key what another has (404, never
403). Conversations made by ``--keys`` servers before ids were scoped kept their plain store
ids; they are still found, by the same key, under those ids.

Everything here is blocking (it reads the store): the endpoints run it on a worker thread.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from ..core.errors import AlreadyExists, NotFound
from ..core.messages import Message
from ..core.store import ConversationInfo, Store
from ._server_errors import ApiError, invalid

__all__ = ["ID", "Conversations", "conversation_json", "message_json"]

ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
NEW = "new"


def new_id() -> str:
    return f"conv_{uuid.uuid4().hex[:24]}"


def no_conversation(api_id: str) -> NotFound:
    return NotFound(f"no conversation {api_id!r}")


def check_id(api_id: str, param: str = "id") -> str:
    if not isinstance(api_id, str) or not ID.fullmatch(api_id) or api_id == NEW:
        raise invalid(
            f"a conversation id is 1 to 128 letters, digits and _ . : - (not 'new'), "
            f"got {api_id!r}"[:300],
            param,
        )
    return api_id


def store_id(owner: str, api_id: str) -> str:
    return f"{owner}/{api_id}" if owner else api_id


def api_id(owner: str, info: ConversationInfo) -> str:
    prefix = f"{owner}/"
    return info.id[len(prefix) :] if owner and info.id.startswith(prefix) else info.id


def conversation_json(owner: str, info: ConversationInfo) -> dict[str, Any]:
    return {
        "id": api_id(owner, info),
        "object": "conversation",
        "created_at": int(info.created_at),
        "updated_at": int(info.updated_at),
        "title": info.title,
        "metadata": dict(info.metadata),
        "message_count": info.message_count,
        "total_tokens": info.total_tokens,
    }


def message_json(m: Message) -> dict[str, Any]:
    return {"id": m.id, "object": "conversation.message", "role": m.role, "content": m.content,
            "created_at": int(m.created_at), "pinned": m.pinned, "tokens": m.tokens}  # fmt: skip


class Conversations:
    """An owner's view of the store's conversations."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def find(self, owner: str, name: str) -> ConversationInfo:
        """The owner's conversation ``name``; NotFound for any other (or a malformed id)."""
        if not isinstance(name, str) or not ID.fullmatch(name):
            raise no_conversation(str(name)[:200])
        candidates = [store_id(owner, name), name] if owner else [name]
        for sid in candidates:  # the scoped id, then a plain one from before ids were scoped
            try:
                info = self.store.get_conversation(sid)
            except NotFound:
                continue
            if info.owner == owner:
                return info
        raise no_conversation(name)

    def create(
        self,
        owner: str,
        name: str | None,
        title: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> ConversationInfo:
        """A new conversation (``name`` None: the server picks the id); 409 if it exists."""
        name = new_id() if name is None else check_id(name)
        try:
            self.find(owner, name)
        except NotFound:
            pass
        else:
            raise _exists(name)
        try:
            return self.store.create_conversation(
                title, owner=owner, conversation_id=store_id(owner, name), metadata=metadata
            )
        except AlreadyExists:
            raise _exists(name) from None

    def ensure(self, owner: str, name: str, title: str) -> ConversationInfo:
        """The conversation ``name``, created now if it does not exist (first use)."""
        try:
            return self.find(owner, name)
        except NotFound:
            check_id(name, "conversation")
        try:
            return self.store.create_conversation(
                title, owner=owner, conversation_id=store_id(owner, name)
            )
        except AlreadyExists:  # another request created it meanwhile
            return self.find(owner, name)

    def page(self, owner: str, limit: int, after: str | None) -> dict[str, Any]:
        """A page of the owner's conversations, most recently updated first."""
        infos = self.store.list_conversations(owner=owner)
        ids = [api_id(owner, i) for i in infos]
        start = 0
        if after is not None:
            if after not in ids:
                raise invalid(f"'after' names no conversation of yours: {after!r}", "after")
            start = ids.index(after) + 1
        data = [conversation_json(owner, i) for i in infos[start : start + limit]]
        return _page(data, has_more=start + limit < len(infos))

    def fork(
        self, owner: str, source: str, message_id: str, name: str | None, title: str | None,
        metadata: Mapping[str, str] | None,
    ) -> ConversationInfo:  # fmt: skip
        """A new conversation holding ``source``'s messages up to ``message_id`` (with the
        summary, when it covers no later message)."""
        info = self.find(owner, source)
        messages = self.store.load(info.id)
        at = next((i for i, m in enumerate(messages) if m.id == message_id), None)
        if at is None:
            raise NotFound(f"no message {message_id!r} in conversation {source!r}")
        kept = [replace(m) for m in messages[: at + 1]]
        made = self.create(owner, name, info.title if title is None else title,
                           info.metadata if metadata is None else metadata)  # fmt: skip
        try:
            self.store.append(made.id, kept)
            summary = self.store.get_summary(info.id)
            if summary is not None and summary.covers_until in {m.id for m in kept}:
                self.store.save_summary(made.id, summary.text, summary.covers_until)
        except BaseException:
            self.store.delete_conversation(made.id)
            raise
        return self.store.get_conversation(made.id)

    def messages(
        self, owner: str, name: str, limit: int, after: str | None, order: str
    ) -> dict[str, Any]:
        info = self.find(owner, name)
        stored = self.store.load(info.id)
        if order == "desc":
            stored.reverse()
        start = 0
        if after is not None:
            at = next((i for i, m in enumerate(stored) if m.id == after), None)
            if at is None:
                raise NotFound(f"no message {after!r} in conversation {name!r}")
            start = at + 1
        data = [message_json(m) for m in stored[start : start + limit]]
        return _page(data, has_more=start + limit < len(stored))


def _exists(name: str) -> ApiError:
    return ApiError(409, f"a conversation with id {name!r} already exists", "conversation_exists",
                    "id")  # fmt: skip


def _page(data: Sequence[dict[str, Any]], *, has_more: bool) -> dict[str, Any]:
    first = data[0]["id"] if data else None
    last = data[-1]["id"] if data else None
    return {"object": "list", "data": list(data), "first_id": first, "last_id": last,
            "has_more": has_more}  # fmt: skip
