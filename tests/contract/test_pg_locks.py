"""Turn locks across processes on the real PostgreSQL: each PostgresStore here stands for one
process (its own lock connection), as two `memchat serve` workers would."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from memchat.core.errors import ConversationBusy
from memchat.core.store import ConversationLocks
from memchat.storage import PostgresStore

pytestmark = pytest.mark.postgres


@pytest.fixture
def two(pg_dsn: str, pg_schema: str) -> Iterator[tuple[PostgresStore, PostgresStore]]:
    a = PostgresStore(pg_dsn, schema=pg_schema, max_size=2)
    b = PostgresStore(pg_dsn, schema=pg_schema, max_size=2)
    yield a, b
    a.close()
    b.close()


def test_a_store_shared_by_processes_offers_locks(two: tuple[PostgresStore, PostgresStore]) -> None:
    assert isinstance(two[0], ConversationLocks)


def test_a_running_reply_refuses_another_process_at_once(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = two
    lease = a.lock_conversation("c1", wait=5)
    start = time.monotonic()
    with pytest.raises(ConversationBusy, match="answering another request"):
        b.lock_conversation("c1", wait=5)
    assert time.monotonic() - start < 1  # refused, not waited for
    other = b.lock_conversation("c2", wait=5)  # another conversation is free
    other.release()
    lease.release()
    b.lock_conversation("c1", wait=5).release()


def test_during_the_upkeep_another_process_waits_for_it(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = two
    lease = a.lock_conversation("c1", wait=5)
    lease.reply_done()
    released_at: list[float] = []

    def later() -> None:
        time.sleep(0.3)
        released_at.append(time.monotonic())
        lease.release()

    threading.Thread(target=later).start()
    got = b.lock_conversation("c1", wait=5)
    assert released_at and time.monotonic() >= released_at[0]
    got.release()


def test_a_wait_that_runs_out_is_busy_and_leaves_nothing_locked(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = two
    lease = a.lock_conversation("c1", wait=5)
    lease.reply_done()
    start = time.monotonic()
    with pytest.raises(ConversationBusy, match="updating its memory"):
        b.lock_conversation("c1", wait=0.2)
    assert 0.2 <= time.monotonic() - start < 2
    lease.release()
    lease.release()  # twice is harmless
    b.lock_conversation("c1", wait=0).release()  # b's own reply lock was given back too
    a.lock_conversation("c1", wait=0).release()


def _backend_pids(pg_exec: Callable[..., list[tuple[Any, ...]]]) -> set[int]:
    rows = pg_exec("SELECT pid FROM pg_locks WHERE locktype = 'advisory'")
    return {int(r[0]) for r in rows}


def test_a_killed_holder_frees_the_conversation(
    two: tuple[PostgresStore, PostgresStore], pg_exec: Callable[..., list[tuple[Any, ...]]]
) -> None:
    """A killed worker's connection dies with it; PostgreSQL drops its locks."""
    a, b = two
    before = _backend_pids(pg_exec)
    a.lock_conversation("c1", wait=5)  # never released
    holders = _backend_pids(pg_exec) - before
    assert len(holders) == 1
    with pytest.raises(ConversationBusy):
        b.lock_conversation("c1", wait=0)
    pg_exec("SELECT pg_terminate_backend(%s)", (holders.pop(),))  # what SIGKILL does to it
    deadline = time.monotonic() + 5
    while True:
        try:
            b.lock_conversation("c1", wait=0).release()
            break
        except ConversationBusy:
            assert time.monotonic() < deadline, "the dead holder's lock was never dropped"
            time.sleep(0.05)
    a.lock_conversation("c1", wait=0).release()  # a reconnects after losing its connection


def test_closing_a_store_releases_its_locks(two: tuple[PostgresStore, PostgresStore]) -> None:
    a, b = two
    a.lock_conversation("c1", wait=5)
    a.close()
    b.lock_conversation("c1", wait=1).release()
