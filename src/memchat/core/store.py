"""The storage seam: conversations of messages, each turn appended atomically.

``Store`` is what every store does. ``ConversationLocks`` is what a store shared by several
processes adds (PostgreSQL): a per-conversation lock held for a turn, across processes.
``ResponseStore`` keeps the server's Responses API records (every bundled store has it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from .messages import Message

__all__ = [
    "ConversationInfo",
    "ConversationLocks",
    "Lease",
    "PARTICIPANT_KEYS",
    "ResponseRecord",
    "ResponseStore",
    "Store",
    "SummaryRecord",
    "participant_metadata",
    "participants",
]


@dataclass(frozen=True, slots=True)
class ConversationInfo:
    """A conversation's record.

    ``version`` grows with every change to its messages or summary (append, forget, pin,
    summary saved or cleared), never with a rename: a process that cached the conversation
    compares ``(created_at, version)`` to know whether its copy is still the stored one.
    """

    id: str
    title: str
    created_at: float
    updated_at: float
    message_count: int = 0
    total_tokens: int = 0
    owner: str = ""
    version: int = 0
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def participants(self) -> dict[str, str]:
        """Role -> the name of who speaks in it, from ``PARTICIPANT_KEYS`` in the metadata."""
        return participants(self.metadata)


# Metadata keys naming who speaks in a role ("user_name": "Kate"). An import sets them from a
# transcript's ``name`` / ``speaker`` fields; recall uses them: a question that names one
# participant ranks what that participant said higher (docs/benchmarks.md, abl:no-author).
PARTICIPANT_KEYS = {"user": "user_name", "assistant": "assistant_name"}


def participants(metadata: Mapping[str, str]) -> dict[str, str]:
    """Role -> participant name, for the ``PARTICIPANT_KEYS`` set (non-blank) in ``metadata``."""
    return {
        role: metadata[key].strip()
        for role, key in PARTICIPANT_KEYS.items()
        if metadata.get(key, "").strip()
    }


def participant_metadata(names: Mapping[str, str]) -> dict[str, str]:
    """The metadata entries that record ``names`` (role -> name) as the participants."""
    return {
        PARTICIPANT_KEYS[role]: name for role, name in names.items() if role in PARTICIPANT_KEYS
    }


@dataclass(frozen=True, slots=True)
class SummaryRecord:
    """A running summary of a conversation's older rounds.

    ``covers_until`` is the id of the newest message folded into it; ``version`` grows by one
    with each update (older versions are kept by the store).
    """

    text: str
    covers_until: str
    version: int
    created_at: float


@runtime_checkable
class Store(Protocol):
    """Where conversations live. Implementations: memory, SQLite, PostgreSQL."""

    def create_conversation(
        self,
        title: str = "",
        *,
        owner: str = "",
        conversation_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ConversationInfo:
        """A new conversation; ``conversation_id`` picks its id (AlreadyExists if taken)."""
        ...

    def get_conversation(self, conversation_id: str) -> ConversationInfo: ...

    def find_conversation(self, id_or_title: str, *, owner: str = "") -> ConversationInfo:
        """An owner's conversation by id, exact title or unique id prefix; else NotFound."""
        ...

    def list_conversations(self, *, owner: str = "") -> list[ConversationInfo]:
        """An owner's conversations, most recently updated first (``owner`` matches exactly)."""
        ...

    def search_conversations(self, query: str, *, owner: str = "") -> list[ConversationInfo]:
        """An owner's conversations whose title or any message contains ``query``.

        Case-insensitive for ASCII letters; newest first, like ``list_conversations``.
        """
        ...

    def rename_conversation(self, conversation_id: str, title: str) -> None: ...

    def set_metadata(self, conversation_id: str, metadata: Mapping[str, str]) -> None:
        """Replace the conversation's metadata (string keys and values)."""
        ...

    def delete_conversation(self, conversation_id: str) -> None:
        """Delete a conversation with its messages, summaries and vectors."""
        ...

    def append(self, conversation_id: str, messages: Sequence[Message]) -> None:
        """Append messages in one transaction: all of them or none."""
        ...

    def load(self, conversation_id: str) -> list[Message]: ...

    def delete_messages(self, conversation_id: str, message_ids: Sequence[str]) -> None: ...

    def set_pinned(self, conversation_id: str, message_id: str, pinned: bool) -> None: ...

    def get_summary(self, conversation_id: str) -> SummaryRecord | None:
        """The newest summary version, or None."""
        ...

    def save_summary(self, conversation_id: str, text: str, covers_until: str) -> SummaryRecord:
        """Store a new summary version (version = previous + 1)."""
        ...

    def list_summaries(self, conversation_id: str) -> list[SummaryRecord]:
        """Every stored summary version, oldest first."""
        ...

    def clear_summary(self, conversation_id: str) -> None:
        """Drop every summary version (after a forget, so it is rebuilt).

        Version numbers keep growing after a clear: a version is never reused.
        """
        ...

    def put_vectors(self, conversation_id: str, model: str, vectors: dict[str, bytes]) -> None:
        """Store embedding vectors (float32 bytes) by message id for one embedding model."""
        ...

    def get_vectors(self, conversation_id: str, model: str) -> dict[str, bytes]:
        """Every stored vector of a conversation for one embedding model, by message id."""
        ...

    def put_turn_context(self, conversation_id: str, record: str) -> None:
        """Keep what the last turn sent (an adapter's JSON text), replacing the one before."""
        ...

    def get_turn_context(self, conversation_id: str) -> str | None:
        """What ``put_turn_context`` kept last, or None."""
        ...

    def close(self) -> None: ...


class Lease(Protocol):
    """A conversation held for one turn; ``reply_done`` once the reply has ended (others may
    now wait for the upkeep instead of being refused), ``release`` at the very end."""

    def reply_done(self) -> None: ...

    def release(self) -> None: ...


@runtime_checkable
class ConversationLocks(Protocol):
    """A store shared by several processes serialises turns of one conversation across them.

    ``lock_conversation`` raises ConversationBusy at once while another holder's reply runs,
    and waits up to ``wait`` seconds while only its upkeep runs (then ConversationBusy). A
    holder that dies (a killed process) releases its lock with its connection.
    """

    def lock_conversation(self, conversation_id: str, *, wait: float) -> Lease: ...


@dataclass(frozen=True, slots=True)
class ResponseRecord:
    """A stored response: who made it, the conversation it belongs to, and its JSON text."""

    id: str
    owner: str
    conversation_id: str
    record: str


@runtime_checkable
class ResponseStore(Protocol):
    """Responses by id; a record goes with its conversation when that is deleted."""

    def put_response(self, record: ResponseRecord) -> None: ...

    def get_response(self, response_id: str) -> ResponseRecord | None: ...

    def delete_response(self, response_id: str) -> bool:
        """Drop the record (not the conversation's messages); False if there was none."""
        ...
