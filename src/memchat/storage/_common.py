"""What every store shares: input checks, error texts and name resolution.

The stores must behave the same on bad input, so the checks live here and run before any
write: a rejected call changes nothing.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ..core.errors import InputError, NotFound, StorageError, UsageError
from ..core.messages import Message
from ..core.store import ConversationInfo

__all__ = [
    "IntegrityConflict",
    "check_id",
    "check_ids",
    "check_key_name",
    "check_metadata",
    "check_new_id",
    "check_messages",
    "check_owner",
    "check_text",
    "check_title",
    "check_vectors",
    "decode_metadata",
    "duplicate_ids",
    "encode_metadata",
    "missing_messages",
    "new_conversation_id",
    "no_conversation",
    "resolve_conversation",
]

_HEX_PREFIX = re.compile(r"[0-9a-f]{4,}")
_LIST_HINT = "see `memchat conversations list`"


class IntegrityConflict(StorageError):
    """A write broke a uniqueness or reference rule (mapped from the database's error)."""


def new_conversation_id() -> str:
    """A short random id: easy to type in the CLI, unique enough for one user's history."""
    return uuid.uuid4().hex[:12]


def no_conversation(conversation_id: object) -> NotFound:
    return NotFound(f"no conversation with id {conversation_id!r}; {_LIST_HINT}")


def missing_messages(conversation_id: str, ids: Iterable[str]) -> NotFound:
    listed = ", ".join(repr(i) for i in sorted(ids))
    return NotFound(f"no message {listed} in conversation {conversation_id!r}; nothing changed")


def check_text(value: object, what: str) -> str:
    """Text every store can keep: a str without NUL or lone surrogates (PostgreSQL refuses them)."""
    if not isinstance(value, str):
        raise InputError(f"{what} must be text, got {type(value).__name__}")
    if "\x00" in value:
        raise InputError(f"{what} contains a NUL character, which cannot be stored")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InputError(f"{what} is not valid Unicode text ({e.reason})") from e
    return value


def check_id(conversation_id: object) -> str:
    if not isinstance(conversation_id, str) or not conversation_id:
        raise no_conversation(conversation_id)
    return conversation_id


def check_title(title: object) -> str:
    text = check_text(title, "a conversation title").strip()
    if "\n" in text or "\r" in text:
        raise InputError("a conversation title must be one line")
    return text


def check_owner(owner: object) -> str:
    return check_text(owner, "the owner")


def check_new_id(conversation_id: object) -> str:
    """A caller-chosen conversation id: one line of at most 200 characters, no spaces."""
    text = check_text(conversation_id, "a conversation id")
    if not text or len(text) > 200 or any(ch.isspace() or ord(ch) < 32 for ch in text):
        raise InputError(
            f"a conversation id must be 1 to 200 characters without spaces, got {text!r}"
        )
    return text


def check_metadata(metadata: object) -> dict[str, str]:
    """Metadata: a mapping of text keys to text values."""
    if not isinstance(metadata, Mapping):
        raise InputError(f"metadata must map text to text, got {type(metadata).__name__}")
    return {
        check_text(k, "a metadata key"): check_text(v, f"metadata {k!r}")
        for k, v in metadata.items()
    }


def encode_metadata(metadata: Mapping[str, str]) -> str:
    return json.dumps(dict(metadata), ensure_ascii=False, sort_keys=True)


def decode_metadata(text: Any) -> dict[str, str]:
    data = json.loads(text) if text else {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def check_key_name(name: object) -> str:
    """A key's name: one line of 1 to 100 characters."""
    text = check_text(name, "a key name").strip()
    if not text or len(text) > 100 or any(ord(ch) < 32 for ch in text):
        raise InputError(f"a key name must be one line of 1 to 100 characters, got {text!r}")
    return text


def check_messages(messages: Sequence[Message]) -> list[Message]:
    """Validate a batch before it is written; returns it as a list."""
    batch = list(messages)
    for msg in batch:
        if not isinstance(msg, Message):
            raise InputError(f"append takes Message objects, got {type(msg).__name__}")
        check_text(msg.id, "a message id")
        if not msg.id:
            raise InputError("a message id must not be empty")
        check_text(msg.content, f"message {msg.id!r}")
        if msg.tokens is not None and (not isinstance(msg.tokens, int) or msg.tokens < 0):
            raise InputError(f"message {msg.id!r} has an invalid token count {msg.tokens!r}")
        stamp = msg.created_at
        if (
            isinstance(stamp, bool)
            or not isinstance(stamp, int | float)
            or not math.isfinite(stamp)
        ):
            raise InputError(f"message {msg.id!r} has an invalid timestamp {stamp!r}")
    return batch


def duplicate_ids(batch: Sequence[Message], already_stored: Callable[[list[str]], set[str]]) -> str:
    """Explain an append that broke the unique message id rule (called after the rollback)."""
    ids = [m.id for m in batch]
    twice = [i for i, n in Counter(ids).items() if n > 1]
    clash = twice or sorted(already_stored(ids))
    if not clash:
        return "the conversation changed while appending"
    return f"message id {clash[0]!r} is already used in this conversation"


def check_ids(message_ids: Iterable[str]) -> list[str]:
    """Distinct message ids, sorted; one bare string is a mistake, not a list of characters."""
    if isinstance(message_ids, str | bytes):
        raise InputError("give a list of message ids, not a single string")
    return sorted({check_text(i, "a message id") for i in message_ids})


def check_vectors(model: object, vectors: Mapping[str, object]) -> dict[str, bytes]:
    """Vectors as float32 bytes by message id."""
    if not isinstance(model, str) or not model.strip():
        raise InputError("an embedding model name is required")
    if not isinstance(vectors, Mapping):
        raise InputError(f"vectors must map message ids to bytes, got {type(vectors).__name__}")
    out: dict[str, bytes] = {}
    for mid, vec in vectors.items():
        if not isinstance(vec, bytes | bytearray | memoryview):
            raise InputError(f"the vector of message {mid!r} must be bytes (float32)")
        data = bytes(vec)
        if len(data) % 4:
            raise InputError(
                f"the vector of message {mid!r} has {len(data)} bytes, not a float32 array"
            )
        out[check_text(mid, "a message id")] = data
    return out


def resolve_conversation(
    wanted: str,
    by_id: Callable[[str], ConversationInfo | None],
    by_title: Callable[[str], list[ConversationInfo]],
    by_prefix: Callable[[str], list[ConversationInfo]],
) -> ConversationInfo:
    """Find by exact id, then exact title, then unique id prefix (4+ hex digits)."""
    if not isinstance(wanted, str) or not wanted.strip():
        raise UsageError("name a conversation by its id or title")
    found = by_id(wanted)
    if found is not None:
        return found
    for candidates in (
        by_title(wanted),
        by_prefix(wanted) if _HEX_PREFIX.fullmatch(wanted) else [],
    ):
        if len(candidates) == 1:
            return candidates[0]
        if candidates:
            ids = ", ".join(f"{c.id} ({c.title or 'untitled'})" for c in candidates[:5])
            raise UsageError(
                f"{wanted!r} matches {len(candidates)} conversations: {ids}; use the id"
            )
    raise NotFound(f"no conversation named {wanted!r}; {_LIST_HINT}")
