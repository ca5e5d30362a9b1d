"""The SQL both relational stores share; SQLite and PostgreSQL differ only in plumbing.

Statements use ``?`` placeholders (the PostgreSQL store rewrites them) and portable SQL:
``ON CONFLICT … DO UPDATE`` and ``RETURNING`` exist in both. Each public method is one
transaction, opened by the subclass's ``_tx()``, which also maps driver errors to StorageError.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, NoReturn, Protocol

from ..core.errors import AlreadyExists, StorageError
from ..core.messages import Message, Role
from ..core.store import ConversationInfo, ResponseRecord, SummaryRecord
from ._common import (
    IntegrityConflict,
    check_id,
    check_ids,
    check_messages,
    check_metadata,
    check_new_id,
    check_owner,
    check_text,
    check_title,
    check_vectors,
    decode_metadata,
    duplicate_ids,
    encode_metadata,
    missing_messages,
    new_conversation_id,
    no_conversation,
    resolve_conversation,
)

__all__ = ["Rows", "SQLStore", "Tx"]

_CHUNK = 500  # ids per IN (…) list: far below SQLite's and PostgreSQL's parameter limits

_INFO = """SELECT c.id, c.title, c.created_at, c.updated_at, c.owner,
    c.message_count, c.total_tokens, c.version, c.metadata FROM conversations c WHERE {where}
    ORDER BY c.updated_at DESC, c.created_at DESC, c.id"""


class Rows(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Tx(Protocol):
    """One open transaction."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...


def _info(row: Sequence[Any]) -> ConversationInfo:
    return ConversationInfo(
        id=row[0],
        title=row[1],
        created_at=float(row[2]),
        updated_at=float(row[3]),
        owner=row[4],
        message_count=int(row[5]),
        total_tokens=int(row[6]),
        version=int(row[7]),
        metadata=decode_metadata(row[8]),
    )


def _chunks(ids: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(ids), _CHUNK):
        yield ids[i : i + _CHUNK]


def _marks(n: int) -> str:
    return ", ".join("?" * n)


class SQLStore:
    """The Store protocol over a DB-API-like transaction; subclasses provide ``_tx``."""

    _for_update = ""  # " FOR UPDATE" where row locks exist (PostgreSQL)
    _like = "LIKE"

    def _tx(self, write: bool = True) -> AbstractContextManager[Tx]:
        """One transaction; ``write=False`` promises not to write (no write lock is taken)."""
        raise NotImplementedError

    # -- helpers that run inside a transaction ------------------------------------------------
    def _infos(self, tx: Tx, where: str, params: Sequence[Any]) -> list[ConversationInfo]:
        return [_info(r) for r in tx.execute(_INFO.format(where=where), params).fetchall()]

    def _require(self, tx: Tx, conversation_id: str, *, lock: bool = False) -> None:
        sql = "SELECT 1 FROM conversations WHERE id = ?" + (self._for_update if lock else "")
        if tx.execute(sql, (check_id(conversation_id),)).fetchone() is None:
            raise no_conversation(conversation_id)

    def _bump(self, tx: Tx, conversation_id: str) -> None:
        sql = "UPDATE conversations SET version = version + 1 WHERE id = ?"
        tx.execute(sql, (conversation_id,))

    def _present(self, tx: Tx, conversation_id: str, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for part in _chunks(ids):
            sql = (
                f"SELECT id FROM messages WHERE conversation_id = ? AND id IN ({_marks(len(part))})"
            )
            found.update(r[0] for r in tx.execute(sql, (conversation_id, *part)).fetchall())
        return found

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
        meta = check_metadata(metadata or {})
        try:
            with self._tx() as tx:
                tx.execute(
                    "INSERT INTO conversations (id, title, owner, created_at, updated_at,"
                    " metadata) VALUES (?, ?, ?, ?, ?, ?)",
                    (cid, title, owner, now, now, encode_metadata(meta)),
                )
        except IntegrityConflict as e:
            raise AlreadyExists(f"a conversation with id {cid!r} already exists") from e
        return ConversationInfo(cid, title, now, now, owner=owner, metadata=meta)

    def get_conversation(self, conversation_id: str) -> ConversationInfo:
        with self._tx(write=False) as tx:
            found = self._infos(tx, "c.id = ?", (check_id(conversation_id),))
        if not found:
            raise no_conversation(conversation_id)
        return found[0]

    def find_conversation(self, id_or_title: str, *, owner: str = "") -> ConversationInfo:
        owner = check_owner(owner)
        with self._tx(write=False) as tx:

            def by_id(cid: str) -> ConversationInfo | None:
                found = self._infos(tx, "c.id = ? AND c.owner = ?", (cid, owner))
                return found[0] if found else None

            return resolve_conversation(
                id_or_title,
                by_id,
                lambda t: self._infos(tx, "c.title = ? AND c.owner = ?", (t, owner)),
                lambda p: self._infos(tx, "c.id LIKE ? AND c.owner = ?", (p + "%", owner)),
            )

    def list_conversations(self, *, owner: str = "") -> list[ConversationInfo]:
        with self._tx(write=False) as tx:
            return self._infos(tx, "c.owner = ?", (check_owner(owner),))

    def search_conversations(self, query: str, *, owner: str = "") -> list[ConversationInfo]:
        text = check_text(query, "the search text").strip()
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        like = f"{self._like} ? ESCAPE '\\'"
        where = (
            f"c.owner = ? AND (c.title {like} OR EXISTS (SELECT 1 FROM messages m"
            f" WHERE m.conversation_id = c.id AND m.content {like}))"
        )
        with self._tx(write=False) as tx:
            return self._infos(tx, where, (check_owner(owner), pattern, pattern))

    def rename_conversation(self, conversation_id: str, title: str) -> None:
        title = check_title(title)
        with self._tx() as tx:
            sql = "UPDATE conversations SET title = ? WHERE id = ?"
            if tx.execute(sql, (title, check_id(conversation_id))).rowcount == 0:
                raise no_conversation(conversation_id)

    def set_metadata(self, conversation_id: str, metadata: Mapping[str, str]) -> None:
        text = encode_metadata(check_metadata(metadata))
        with self._tx() as tx:
            sql = "UPDATE conversations SET metadata = ? WHERE id = ?"
            if tx.execute(sql, (text, check_id(conversation_id))).rowcount == 0:
                raise no_conversation(conversation_id)

    def delete_conversation(self, conversation_id: str) -> None:
        with self._tx() as tx:
            sql = "DELETE FROM conversations WHERE id = ?"
            if tx.execute(sql, (check_id(conversation_id),)).rowcount == 0:
                raise no_conversation(conversation_id)

    # -- messages -----------------------------------------------------------------------------
    def append(self, conversation_id: str, messages: Sequence[Message]) -> None:
        batch = check_messages(messages)
        rows = [
            (conversation_id, m.id, m.role, m.content, m.created_at, m.tokens, bool(m.pinned))
            for m in batch
        ]
        try:
            with self._tx() as tx:
                self._require(tx, conversation_id, lock=True)
                tx.executemany(
                    "INSERT INTO messages (conversation_id, id, role, content, created_at,"
                    " tokens, pinned) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                tx.execute(
                    "UPDATE conversations SET updated_at = ?, message_count = message_count + ?,"
                    " total_tokens = total_tokens + ?, version = version + 1 WHERE id = ?",
                    (time.time(), len(batch), sum(m.tokens or 0 for m in batch), conversation_id),
                )
        except IntegrityConflict as e:
            self._explain_conflict(conversation_id, batch, e)

    def _explain_conflict(self, cid: str, batch: list[Message], error: Exception) -> NoReturn:
        with self._tx(write=False) as tx:
            self._require(tx, cid)  # deleted meanwhile: NotFound
            why = duplicate_ids(batch, lambda ids: self._present(tx, cid, ids))
        raise StorageError(
            f"could not append to conversation {cid!r}: {why}; nothing was saved"
        ) from error

    def load(self, conversation_id: str) -> list[Message]:
        with self._tx(write=False) as tx:
            self._require(tx, conversation_id)
            rows = tx.execute(
                "SELECT id, role, content, created_at, tokens, pinned FROM messages"
                " WHERE conversation_id = ? ORDER BY seq",
                (conversation_id,),
            ).fetchall()
        return [_message(r) for r in rows]

    def delete_messages(self, conversation_id: str, message_ids: Sequence[str]) -> None:
        ids = check_ids(message_ids)
        with self._tx() as tx:
            self._require(tx, conversation_id)
            missing = set(ids) - self._present(tx, conversation_id, ids)
            if missing:
                raise missing_messages(conversation_id, missing)
            count = tokens = 0
            for part in _chunks(ids):
                where = f"conversation_id = ? AND id IN ({_marks(len(part))})"
                params = (conversation_id, *part)
                row = tx.execute(f"SELECT SUM(tokens) FROM messages WHERE {where}", params)
                tokens += int(row.fetchone()[0] or 0)
                count += tx.execute(f"DELETE FROM messages WHERE {where}", params).rowcount
            tx.execute(
                "UPDATE conversations SET message_count = message_count - ?,"
                " total_tokens = total_tokens - ?, version = version + 1 WHERE id = ?",
                (count, tokens, conversation_id),
            )

    def set_pinned(self, conversation_id: str, message_id: str, pinned: bool) -> None:
        with self._tx() as tx:
            self._require(tx, conversation_id)
            sql = "UPDATE messages SET pinned = ? WHERE conversation_id = ? AND id = ?"
            if tx.execute(sql, (bool(pinned), conversation_id, message_id)).rowcount == 0:
                raise missing_messages(conversation_id, [str(message_id)])
            self._bump(tx, conversation_id)

    # -- summaries ----------------------------------------------------------------------------
    def get_summary(self, conversation_id: str) -> SummaryRecord | None:
        found = self._summaries(conversation_id, newest_only=True)
        return found[0] if found else None

    def list_summaries(self, conversation_id: str) -> list[SummaryRecord]:
        return self._summaries(conversation_id, newest_only=False)

    def _summaries(self, conversation_id: str, *, newest_only: bool) -> list[SummaryRecord]:
        order = "DESC LIMIT 1" if newest_only else "ASC"
        with self._tx(write=False) as tx:
            self._require(tx, conversation_id)
            rows = tx.execute(
                "SELECT text, covers_until, version, created_at FROM summaries"
                f" WHERE conversation_id = ? ORDER BY version {order}",
                (conversation_id,),
            ).fetchall()
        return [SummaryRecord(r[0], r[1], int(r[2]), float(r[3])) for r in rows]

    def save_summary(self, conversation_id: str, text: str, covers_until: str) -> SummaryRecord:
        text = check_text(text, "a summary")
        covers_until = check_text(covers_until, "covers_until")
        now = time.time()
        with self._tx() as tx:
            row = tx.execute(
                "UPDATE conversations SET summary_version = summary_version + 1,"
                " version = version + 1 WHERE id = ? RETURNING summary_version",
                (check_id(conversation_id),),
            ).fetchone()
            if row is None:
                raise no_conversation(conversation_id)
            tx.execute(
                "INSERT INTO summaries (conversation_id, version, text, covers_until, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (conversation_id, int(row[0]), text, covers_until, now),
            )
        return SummaryRecord(text, covers_until, int(row[0]), now)

    def clear_summary(self, conversation_id: str) -> None:
        with self._tx() as tx:
            self._require(tx, conversation_id)
            tx.execute("DELETE FROM summaries WHERE conversation_id = ?", (conversation_id,))
            self._bump(tx, conversation_id)

    # -- the last turn's context --------------------------------------------------------------
    def put_turn_context(self, conversation_id: str, record: str) -> None:
        record = check_text(record, "a turn context")
        with self._tx() as tx:
            self._require(tx, conversation_id)
            tx.execute(
                "INSERT INTO turn_contexts (conversation_id, record, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT (conversation_id) DO UPDATE SET record = excluded.record,"
                " created_at = excluded.created_at",
                (conversation_id, record, time.time()),
            )

    def get_turn_context(self, conversation_id: str) -> str | None:
        with self._tx(write=False) as tx:
            self._require(tx, conversation_id)
            row = tx.execute(
                "SELECT record FROM turn_contexts WHERE conversation_id = ?", (conversation_id,)
            ).fetchone()
        return None if row is None else str(row[0])

    # -- the Responses API's records ----------------------------------------------------------
    def put_response(self, record: ResponseRecord) -> None:
        text = check_text(record.record, "a response record")
        with self._tx() as tx:
            self._require(tx, record.conversation_id)
            tx.execute(
                "INSERT INTO responses (id, owner, conversation_id, record, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (record.id, record.owner, record.conversation_id, text, time.time()),
            )

    def get_response(self, response_id: str) -> ResponseRecord | None:
        with self._tx(write=False) as tx:
            row = tx.execute(
                "SELECT id, owner, conversation_id, record FROM responses WHERE id = ?",
                (response_id,),
            ).fetchone()
        return None if row is None else ResponseRecord(*(str(v) for v in row))

    def delete_response(self, response_id: str) -> bool:
        with self._tx() as tx:
            sql = "DELETE FROM responses WHERE id = ?"
            return bool(tx.execute(sql, (response_id,)).rowcount)

    # -- vectors ------------------------------------------------------------------------------
    def put_vectors(self, conversation_id: str, model: str, vectors: dict[str, bytes]) -> None:
        clean = check_vectors(model, vectors)
        with self._tx() as tx:
            self._require(tx, conversation_id)
            missing = set(clean) - self._present(tx, conversation_id, list(clean))
            if missing:
                raise missing_messages(conversation_id, missing)
            tx.executemany(
                "INSERT INTO vectors (conversation_id, model, message_id, vector)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (conversation_id, model, message_id)"
                " DO UPDATE SET vector = excluded.vector",
                [(conversation_id, model, mid, vec) for mid, vec in clean.items()],
            )

    def get_vectors(self, conversation_id: str, model: str) -> dict[str, bytes]:
        with self._tx(write=False) as tx:
            self._require(tx, conversation_id)
            rows = tx.execute(
                "SELECT message_id, vector FROM vectors WHERE conversation_id = ? AND model = ?",
                (conversation_id, model),
            ).fetchall()
        return {r[0]: bytes(r[1]) for r in rows}


def _message(row: Sequence[Any]) -> Message:
    role: Role = row[1]
    tokens = None if row[4] is None else int(row[4])
    return Message(
        role, row[2], id=row[0], created_at=float(row[3]), tokens=tokens, pinned=bool(row[5])
    )
