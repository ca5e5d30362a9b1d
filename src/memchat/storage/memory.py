"""InMemoryStore: the Store protocol in dicts, for tests, demos and throwaway sessions.

It passes the same contract suite as the SQL stores, so code tested against it behaves the same
on SQLite and PostgreSQL. Messages are copied in and out: a caller mutating a ``Message`` it
appended or loaded does not change what is stored (as with a database). Thread-safe by one lock.
Nothing survives the object; ``close()`` keeps the data (there is nothing to release).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from ..core.errors import AlreadyExists, StorageError
from ..core.messages import Message
from ..core.store import ConversationInfo, ResponseRecord, SummaryRecord
from ._common import (
    check_id,
    check_ids,
    check_messages,
    check_metadata,
    check_new_id,
    check_owner,
    check_text,
    check_title,
    check_vectors,
    duplicate_ids,
    missing_messages,
    new_conversation_id,
    no_conversation,
    resolve_conversation,
)
from ._keys import InMemoryKeyStore

__all__ = ["InMemoryStore"]


@dataclass
class _Conversation:
    id: str
    title: str
    owner: str
    created_at: float
    updated_at: float
    messages: list[Message] = field(default_factory=list)
    summaries: list[SummaryRecord] = field(default_factory=list)
    summary_version: int = 0
    vectors: dict[tuple[str, str], bytes] = field(default_factory=dict)
    version: int = 0
    metadata: dict[str, str] = field(default_factory=dict)
    turn_context: str | None = None

    def info(self) -> ConversationInfo:
        return ConversationInfo(
            id=self.id,
            title=self.title,
            created_at=self.created_at,
            updated_at=self.updated_at,
            message_count=len(self.messages),
            total_tokens=sum(m.tokens or 0 for m in self.messages),
            owner=self.owner,
            version=self.version,
            metadata=dict(self.metadata),
        )

    def contains(self, text: str) -> bool:
        needle = text.casefold()
        return needle in self.title.casefold() or any(
            needle in m.content.casefold() for m in self.messages
        )


def _newest_first(convs: list[_Conversation]) -> list[ConversationInfo]:
    convs = sorted(convs, key=lambda c: c.id)
    convs.sort(key=lambda c: (c.updated_at, c.created_at), reverse=True)
    return [c.info() for c in convs]


class InMemoryStore(InMemoryKeyStore):
    """Conversations (and API keys) in memory."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.RLock()
        self._convs: dict[str, _Conversation] = {}
        self._responses: dict[str, ResponseRecord] = {}

    def _get(self, conversation_id: str) -> _Conversation:
        conv = self._convs.get(check_id(conversation_id))
        if conv is None:
            raise no_conversation(conversation_id)
        return conv

    def _owned(self, owner: str) -> list[_Conversation]:
        owner = check_owner(owner)
        return [c for c in self._convs.values() if c.owner == owner]

    # -- conversations ------------------------------------------------------------------------
    def create_conversation(
        self,
        title: str = "",
        *,
        owner: str = "",
        conversation_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ConversationInfo:
        title, owner, now = check_title(title), check_owner(owner), time.time()
        cid = new_conversation_id() if conversation_id is None else check_new_id(conversation_id)
        conv = _Conversation(cid, title, owner, now, now, metadata=check_metadata(metadata or {}))
        with self._lock:
            if cid in self._convs:
                raise AlreadyExists(f"a conversation with id {cid!r} already exists")
            self._convs[conv.id] = conv
            return conv.info()

    def get_conversation(self, conversation_id: str) -> ConversationInfo:
        with self._lock:
            return self._get(conversation_id).info()

    def find_conversation(self, id_or_title: str, *, owner: str = "") -> ConversationInfo:
        with self._lock:
            owned = self._owned(owner)

            def by_id(cid: str) -> ConversationInfo | None:
                return next((c.info() for c in owned if c.id == cid), None)

            return resolve_conversation(
                id_or_title,
                by_id,
                lambda t: _newest_first([c for c in owned if c.title == t]),
                lambda p: _newest_first([c for c in owned if c.id.startswith(p)]),
            )

    def list_conversations(self, *, owner: str = "") -> list[ConversationInfo]:
        with self._lock:
            return _newest_first(self._owned(owner))

    def search_conversations(self, query: str, *, owner: str = "") -> list[ConversationInfo]:
        text = check_text(query, "the search text").strip()
        with self._lock:
            return _newest_first([c for c in self._owned(owner) if c.contains(text)])

    def rename_conversation(self, conversation_id: str, title: str) -> None:
        title = check_title(title)
        with self._lock:
            self._get(conversation_id).title = title

    def set_metadata(self, conversation_id: str, metadata: Mapping[str, str]) -> None:
        clean = check_metadata(metadata)
        with self._lock:
            self._get(conversation_id).metadata = clean

    def delete_conversation(self, conversation_id: str) -> None:
        with self._lock:
            del self._convs[self._get(conversation_id).id]

    # -- messages -----------------------------------------------------------------------------
    def append(self, conversation_id: str, messages: Sequence[Message]) -> None:
        batch = check_messages(messages)
        with self._lock:
            conv = self._get(conversation_id)
            ids = {m.id for m in conv.messages}
            if len({m.id for m in batch}) < len(batch) or ids.intersection(m.id for m in batch):
                why = duplicate_ids(batch, lambda wanted: ids.intersection(wanted))
                raise StorageError(
                    f"could not append to conversation {conversation_id!r}: {why}; "
                    "nothing was saved"
                )
            conv.messages.extend(replace(m) for m in batch)
            conv.updated_at = time.time()
            conv.version += 1

    def load(self, conversation_id: str) -> list[Message]:
        with self._lock:
            return [replace(m) for m in self._get(conversation_id).messages]

    def delete_messages(self, conversation_id: str, message_ids: Sequence[str]) -> None:
        gone = set(check_ids(message_ids))
        with self._lock:
            conv = self._get(conversation_id)
            missing = gone - {m.id for m in conv.messages}
            if missing:
                raise missing_messages(conversation_id, missing)
            conv.messages = [m for m in conv.messages if m.id not in gone]
            conv.vectors = {k: v for k, v in conv.vectors.items() if k[1] not in gone}
            conv.version += 1

    def set_pinned(self, conversation_id: str, message_id: str, pinned: bool) -> None:
        with self._lock:
            conv = self._get(conversation_id)
            msg = next((m for m in conv.messages if m.id == message_id), None)
            if msg is None:
                raise missing_messages(conversation_id, [str(message_id)])
            msg.pinned = bool(pinned)
            conv.version += 1

    # -- summaries ----------------------------------------------------------------------------
    def get_summary(self, conversation_id: str) -> SummaryRecord | None:
        with self._lock:
            summaries = self._get(conversation_id).summaries
            return summaries[-1] if summaries else None

    def list_summaries(self, conversation_id: str) -> list[SummaryRecord]:
        with self._lock:
            return list(self._get(conversation_id).summaries)

    def save_summary(self, conversation_id: str, text: str, covers_until: str) -> SummaryRecord:
        text = check_text(text, "a summary")
        covers_until = check_text(covers_until, "covers_until")
        with self._lock:
            conv = self._get(conversation_id)
            conv.summary_version += 1
            conv.version += 1
            record = SummaryRecord(text, covers_until, conv.summary_version, time.time())
            conv.summaries.append(record)
            return record

    def clear_summary(self, conversation_id: str) -> None:
        with self._lock:
            conv = self._get(conversation_id)
            conv.summaries.clear()
            conv.version += 1

    # -- the last turn's context --------------------------------------------------------------
    def put_turn_context(self, conversation_id: str, record: str) -> None:
        record = check_text(record, "a turn context")
        with self._lock:
            self._get(conversation_id).turn_context = record

    def get_turn_context(self, conversation_id: str) -> str | None:
        with self._lock:
            return self._get(conversation_id).turn_context

    # -- the Responses API's records ----------------------------------------------------------
    def put_response(self, record: ResponseRecord) -> None:
        check_text(record.record, "a response record")
        with self._lock:
            self._get(record.conversation_id)
            self._responses[record.id] = record

    def get_response(self, response_id: str) -> ResponseRecord | None:
        with self._lock:
            found = self._responses.get(response_id)
            if found is not None and found.conversation_id not in self._convs:
                del self._responses[response_id]  # its conversation was deleted
                return None
            return found

    def delete_response(self, response_id: str) -> bool:
        with self._lock:
            return self.get_response(response_id) is not None and bool(
                self._responses.pop(response_id, None)
            )

    # -- vectors ------------------------------------------------------------------------------
    def put_vectors(self, conversation_id: str, model: str, vectors: dict[str, bytes]) -> None:
        clean = check_vectors(model, vectors)
        with self._lock:
            conv = self._get(conversation_id)
            missing = set(clean) - {m.id for m in conv.messages}
            if missing:
                raise missing_messages(conversation_id, missing)
            conv.vectors.update({(model, mid): vec for mid, vec in clean.items()})

    def get_vectors(self, conversation_id: str, model: str) -> dict[str, bytes]:
        with self._lock:
            vectors = self._get(conversation_id).vectors
            return {mid: vec for (m, mid), vec in vectors.items() if m == model}

    def close(self) -> None:
        """Nothing to release; the data stays readable."""

    def __enter__(self) -> InMemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"InMemoryStore({len(self._convs)} conversations)"
