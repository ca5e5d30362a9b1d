"""One contract for every store: memory, SQLite and PostgreSQL must behave the same."""

from __future__ import annotations

import sqlite3
import sys
import threading
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from memchat.core.errors import ConfigError, InputError, NotFound, StorageError, UsageError
from memchat.core.messages import Message, assistant, system, user
from memchat.core.store import Store
from memchat.storage import InMemoryStore, PostgresStore, SQLiteStore, open_store

if TYPE_CHECKING:
    from conftest import StoreKit


def turn(n: int, tokens: int | None = None) -> list[Message]:
    return [user(f"question {n}", tokens=tokens), assistant(f"answer {n}", tokens=tokens)]


def as_dicts(messages: list[Message]) -> list[dict[str, Any]]:
    return [m.to_dict() for m in messages]


def floats(values: list[float]) -> bytes:
    return array("f", values).tobytes()


# -- conversations ---------------------------------------------------------------------------
def test_create_and_get(store: Store) -> None:
    assert isinstance(store, Store)
    info = store.create_conversation("  Trip to Lisbon  ", owner="ana")
    got = store.get_conversation(info.id)
    assert got == info
    assert (got.title, got.owner, got.message_count, got.total_tokens) == (
        "Trip to Lisbon",
        "ana",
        0,
        0,
    )
    assert got.created_at == got.updated_at <= time.time()


def test_list_is_newest_first_with_totals(store: Store) -> None:
    a = store.create_conversation("a")
    b = store.create_conversation("b")
    c = store.create_conversation("c")
    assert [x.id for x in store.list_conversations()] == [c.id, b.id, a.id]
    store.append(a.id, turn(1, tokens=7) + [system("note")])
    listed = store.list_conversations()
    assert [x.id for x in listed] == [a.id, c.id, b.id]
    assert (listed[0].title, listed[0].message_count, listed[0].total_tokens) == ("a", 3, 14)
    assert listed[0].updated_at > listed[0].created_at


def test_rename(store: Store) -> None:
    info = store.create_conversation("old name")
    store.rename_conversation(info.id, "new name")
    assert store.get_conversation(info.id).title == "new name"
    assert store.find_conversation("new name").id == info.id
    with pytest.raises(NotFound):
        store.find_conversation("old name")


def test_delete_removes_everything(store_kit: StoreKit) -> None:
    store = store_kit.open()
    keep, gone = store.create_conversation("keep"), store.create_conversation("gone")
    store.append(keep.id, turn(1))
    store.append(gone.id, turn(2))
    first = store.load(gone.id)[0].id
    store.save_summary(gone.id, "summary", first)
    store.put_vectors(gone.id, "m", {first: floats([1.0])})
    store.delete_conversation(gone.id)
    assert [x.id for x in store.list_conversations()] == [keep.id]
    assert store_kit.leftovers() == 2  # only keep's two messages
    for call in (store.get_conversation, store.load, store.delete_conversation):
        with pytest.raises(NotFound):
            call(gone.id)


def test_resume_after_reopen_keeps_every_field(store_kit: StoreKit) -> None:
    store = store_kit.open()
    info = store.create_conversation("resume me")
    sent = [
        system("be brief", created_at=1000.5),
        user("hi", created_at=1001.25, tokens=5, pinned=True),
        assistant("hello", created_at=1002.0, tokens=None),
    ]
    more = turn(2, tokens=3)
    store.append(info.id, sent)
    store.append(info.id, more)
    store.close()
    again = store_kit.open()
    assert as_dicts(again.load(info.id)) == as_dicts(sent + more)
    assert again.find_conversation("resume me").message_count == 5


def test_loaded_messages_are_copies(store: Store) -> None:
    info = store.create_conversation()
    msgs = turn(1)
    store.append(info.id, msgs)
    msgs[0].content = "changed after append"
    loaded = store.load(info.id)
    loaded[1].pinned = True
    assert [(m.content, m.pinned) for m in store.load(info.id)] == [
        ("question 1", False),
        ("answer 1", False),
    ]


# -- append atomicity ------------------------------------------------------------------------
def test_append_failing_midway_stores_nothing(store: Store) -> None:
    info = store.create_conversation()
    first = turn(1)
    store.append(info.id, first)
    before = store.get_conversation(info.id)
    clash = [user("new", id="fresh-1"), assistant("dup", id=first[0].id), user("never")]
    with pytest.raises(StorageError, match=f"{first[0].id!r} is already used.*nothing was saved"):
        store.append(info.id, clash)
    assert as_dicts(store.load(info.id)) == as_dicts(first)
    assert store.get_conversation(info.id) == before
    store.append(info.id, [user("retry", id="fresh-1")])  # the rolled-back id is free again
    assert len(store.load(info.id)) == 3


def test_append_with_duplicate_ids_in_batch_stores_nothing(store: Store) -> None:
    info = store.create_conversation()
    with pytest.raises(StorageError, match="'twice' is already used"):
        store.append(info.id, [user("a", id="twice"), assistant("b", id="twice")])
    assert store.load(info.id) == []


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(["not a message"], id="str"),
        pytest.param([user("ok"), {"role": "user", "content": "dict"}], id="dict"),
        pytest.param([user("ok"), user("nul \x00 byte")], id="nul"),
        pytest.param([user("ok"), user("lone \ud800 surrogate")], id="surrogate"),
        pytest.param([user("ok"), user("x", tokens=-1)], id="negative-tokens"),
        pytest.param([user("ok"), user("x", id="")], id="empty-id"),
        pytest.param([user("ok"), user("x", created_at="yesterday")], id="str-timestamp"),
        pytest.param([user("ok"), user("x", created_at=float("nan"))], id="nan-timestamp"),
    ],
)
def test_append_rejects_bad_messages_and_stores_nothing(store: Store, bad: list[Any]) -> None:
    info = store.create_conversation()
    with pytest.raises(InputError):
        store.append(info.id, bad)
    assert store.load(info.id) == []


def test_empty_append_changes_nothing(store: Store) -> None:
    info = store.create_conversation()
    store.append(info.id, [])
    assert store.load(info.id) == []


# -- pin, forget ------------------------------------------------------------------------------
def test_pin_and_unpin_persist(store_kit: StoreKit) -> None:
    store = store_kit.open()
    info = store.create_conversation()
    store.append(info.id, turn(1) + turn(2))
    ids = [m.id for m in store.load(info.id)]
    store.set_pinned(info.id, ids[2], True)
    store.set_pinned(info.id, ids[0], True)
    store.set_pinned(info.id, ids[0], False)
    store.close()
    assert [m.pinned for m in store_kit.open().load(info.id)] == [False, False, True, False]


def test_pin_unknown_message_is_not_found(store: Store) -> None:
    info = store.create_conversation()
    store.append(info.id, turn(1))
    with pytest.raises(NotFound, match="no message 'nope'"):
        store.set_pinned(info.id, "nope", True)


def test_delete_messages_keeps_order_of_the_rest(store: Store) -> None:
    info = store.create_conversation()
    store.append(
        info.id, turn(1, tokens=1) + turn(2, tokens=20) + [user("x")] + turn(3, tokens=300)
    )
    ids = [m.id for m in store.load(info.id)]
    store.delete_messages(info.id, [ids[2], ids[3], ids[4], ids[2]])
    assert [m.content for m in store.load(info.id)] == [
        "question 1",
        "answer 1",
        "question 3",
        "answer 3",
    ]
    got = store.get_conversation(info.id)
    assert (got.message_count, got.total_tokens) == (4, 602)


def test_delete_messages_with_an_unknown_id_deletes_nothing(store: Store) -> None:
    info = store.create_conversation()
    store.append(info.id, turn(1))
    ids = [m.id for m in store.load(info.id)]
    with pytest.raises(NotFound, match="'ghost'"):
        store.delete_messages(info.id, [ids[0], "ghost"])
    assert [m.id for m in store.load(info.id)] == ids


def test_delete_messages_wants_a_list(store: Store) -> None:
    info = store.create_conversation()
    store.append(info.id, turn(1))
    with pytest.raises(InputError, match="list of message ids"):
        store.delete_messages(info.id, store.load(info.id)[0].id)
    assert len(store.load(info.id)) == 2


def test_new_messages_after_a_delete_come_last(store: Store) -> None:
    info = store.create_conversation()
    store.append(info.id, turn(1) + turn(2))
    last = store.load(info.id)[-1].id
    store.delete_messages(info.id, [last])
    store.append(info.id, [assistant("late")])
    assert store.load(info.id)[-1].content == "late"


# -- summaries --------------------------------------------------------------------------------
def test_summaries_are_versioned(store_kit: StoreKit) -> None:
    store = store_kit.open()
    info = store.create_conversation()
    assert store.get_summary(info.id) is None
    one = store.save_summary(info.id, "Ana likes tea.", "m1")
    two = store.save_summary(info.id, "Ana likes tea; flight on 3 May.", "m2")
    assert (one.version, two.version) == (1, 2)
    store.close()
    store = store_kit.open()
    newest = store.get_summary(info.id)
    assert newest is not None
    assert (newest.text, newest.covers_until, newest.version) == (two.text, "m2", 2)
    assert [s.version for s in store.list_summaries(info.id)] == [1, 2]


def test_clear_summary_then_versions_keep_growing(store: Store) -> None:
    info = store.create_conversation()
    store.save_summary(info.id, "a", "m1")
    store.save_summary(info.id, "b", "m2")
    store.clear_summary(info.id)
    assert store.get_summary(info.id) is None
    assert store.list_summaries(info.id) == []
    assert store.save_summary(info.id, "rebuilt", "m1").version == 3


def test_summaries_are_per_conversation(store: Store) -> None:
    a, b = store.create_conversation("a"), store.create_conversation("b")
    store.save_summary(a.id, "about a", "x")
    assert store.get_summary(b.id) is None
    assert store.save_summary(b.id, "about b", "y").version == 1


# -- vectors ----------------------------------------------------------------------------------
def test_vectors_round_trip_and_persist(store_kit: StoreKit) -> None:
    store = store_kit.open()
    info = store.create_conversation()
    store.append(info.id, turn(1))
    q, a = (m.id for m in store.load(info.id))
    store.put_vectors(info.id, "minilm", {q: floats([0.5, -1.25, 3.0]), a: floats([0.0, 1.0, 2.0])})
    store.put_vectors(info.id, "other", {q: floats([9.0])})
    store.put_vectors(info.id, "minilm", {a: floats([7.0, 7.0, 7.0])})  # replaces
    store.close()
    got = store_kit.open().get_vectors(info.id, "minilm")
    assert {k: array("f", v).tolist() for k, v in got.items()} == {
        q: [0.5, -1.25, 3.0],
        a: [7.0, 7.0, 7.0],
    }


def test_vectors_go_with_their_message(store_kit: StoreKit) -> None:
    store = store_kit.open()
    info = store.create_conversation()
    store.append(info.id, turn(1))
    q, a = (m.id for m in store.load(info.id))
    store.put_vectors(info.id, "m", {q: floats([1.0]), a: floats([2.0])})
    store.put_vectors(info.id, "n", {q: floats([3.0])})
    store.delete_messages(info.id, [q])
    assert list(store.get_vectors(info.id, "m")) == [a]
    assert store.get_vectors(info.id, "n") == {}
    assert store_kit.leftovers() == 2  # the answer and its one vector


def test_vectors_for_unknown_messages_store_nothing(store: Store) -> None:
    info = store.create_conversation()
    store.append(info.id, turn(1))
    q = store.load(info.id)[0].id
    with pytest.raises(NotFound, match="'ghost'"):
        store.put_vectors(info.id, "m", {q: floats([1.0]), "ghost": floats([2.0])})
    assert store.get_vectors(info.id, "m") == {}


@pytest.mark.parametrize("model, vector", [("m", b"abc"), ("m", [1.0]), ("", b"abcd"), ("m", None)])
def test_vectors_reject_bad_input(store: Store, model: str, vector: Any) -> None:
    info = store.create_conversation()
    store.append(info.id, turn(1))
    q = store.load(info.id)[0].id
    with pytest.raises(InputError):
        store.put_vectors(info.id, model, {q: vector} if vector is not None else [q])  # type: ignore[arg-type]
    assert store.get_vectors(info.id, model) == {}


# -- owners, finding, searching --------------------------------------------------------------
def test_owners_never_see_each_other(store: Store) -> None:
    ana = store.create_conversation("plans", owner="ana")
    bob = store.create_conversation("plans", owner="bob")
    store.append(bob.id, [user("bob's secret")])
    assert [c.id for c in store.list_conversations(owner="ana")] == [ana.id]
    assert [c.id for c in store.list_conversations(owner="bob")] == [bob.id]
    assert store.list_conversations() == []
    assert store.find_conversation("plans", owner="ana").id == ana.id
    for name in (bob.id, bob.id[:6]):
        with pytest.raises(NotFound):
            store.find_conversation(name, owner="ana")
    assert store.search_conversations("secret", owner="ana") == []
    assert [c.id for c in store.search_conversations("secret", owner="bob")] == [bob.id]


def test_find_by_id_title_or_prefix(store: Store) -> None:
    info = store.create_conversation("Recipes")
    assert store.find_conversation(info.id) == info
    assert store.find_conversation("Recipes") == info
    assert store.find_conversation(info.id[:8]) == info


def test_find_unknown_name_says_where_to_look(store: Store) -> None:
    store.create_conversation("something else")
    with pytest.raises(NotFound) as caught:
        store.find_conversation("x")
    assert str(caught.value) == "no conversation named 'x'; see `memchat conversations list`"


def test_find_ambiguous_title_lists_the_ids(store: Store) -> None:
    a, b = store.create_conversation("notes"), store.create_conversation("notes")
    with pytest.raises(UsageError, match="matches 2 conversations") as caught:
        store.find_conversation("notes")
    assert a.id in str(caught.value) and b.id in str(caught.value)


def test_search_by_title_and_content(store: Store) -> None:
    trip = store.create_conversation("Lisbon trip")
    food = store.create_conversation("food")
    store.append(food.id, [user("My favourite dish is BACALHAU, 100% true_story")])
    assert [c.id for c in store.search_conversations("lisbon")] == [trip.id]
    assert [c.id for c in store.search_conversations("bacalhau")] == [food.id]
    assert [c.id for c in store.search_conversations("100% true_")] == [food.id]
    assert store.search_conversations("100%_true") == []  # % and _ are literal, not wildcards
    assert {c.id for c in store.search_conversations("")} == {trip.id, food.id}


# -- unicode and bad input ---------------------------------------------------------------------
UNICODE = [
    "héllo wörld — “quotes” ‘single’ «guillemets»",
    "日本語のテキスト、中文、한국어",
    "עברית مرحبا بالعالم",
    "emoji 👩‍👩‍👧‍👦 🇵🇹 🙂 e\u0301 (combining) \u200b zero width",
    "quotes ' \" ` backslash \\ percent % question ? semicolon; DROP TABLE messages; --",
    "tabs\tand\nnewlines\r\nand \x1b[31m escapes",
    "x" * 100_000,
]


def test_unicode_round_trips(store_kit: StoreKit) -> None:
    store = store_kit.open()
    info = store.create_conversation("日本 🇵🇹 ‘title’")
    store.append(info.id, [user(text) for text in UNICODE])
    store.close()
    again = store_kit.open()
    assert [m.content for m in again.load(info.id)] == UNICODE
    assert again.find_conversation("日本 🇵🇹 ‘title’").id == info.id


@pytest.mark.parametrize("title", ["two\nlines", "nul\x00", 42])
def test_bad_titles_are_rejected(store: Store, title: Any) -> None:
    with pytest.raises(InputError):
        store.create_conversation(title)
    assert store.list_conversations() == []


CALLS: dict[str, Callable[[Store, str], object]] = {
    "get": lambda s, c: s.get_conversation(c),
    "rename": lambda s, c: s.rename_conversation(c, "t"),
    "delete": lambda s, c: s.delete_conversation(c),
    "append": lambda s, c: s.append(c, turn(1)),
    "load": lambda s, c: s.load(c),
    "delete_messages": lambda s, c: s.delete_messages(c, ["m"]),
    "set_pinned": lambda s, c: s.set_pinned(c, "m", True),
    "get_summary": lambda s, c: s.get_summary(c),
    "list_summaries": lambda s, c: s.list_summaries(c),
    "save_summary": lambda s, c: s.save_summary(c, "t", "m"),
    "clear_summary": lambda s, c: s.clear_summary(c),
    "put_vectors": lambda s, c: s.put_vectors(c, "m", {}),
    "get_vectors": lambda s, c: s.get_vectors(c, "m"),
}


@pytest.mark.parametrize("call", list(CALLS.values()), ids=list(CALLS))
def test_unknown_conversation_is_not_found(
    store: Store, call: Callable[[Store, str], object]
) -> None:
    with pytest.raises(NotFound, match="no conversation with id 'nope'"):
        call(store, "nope")


def test_append_to_a_deleted_conversation_is_not_found(store: Store) -> None:
    info = store.create_conversation()
    store.delete_conversation(info.id)
    with pytest.raises(NotFound):
        store.append(info.id, turn(1))
    assert store.list_conversations() == []


@pytest.mark.parametrize("name", ["", "   "])
def test_find_needs_a_name(store: Store, name: str) -> None:
    with pytest.raises(UsageError):
        store.find_conversation(name)


# -- threads -----------------------------------------------------------------------------------
def test_concurrent_appends_from_threads(store: Store) -> None:
    shared = store.create_conversation("shared")
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        try:
            for n in range(15):
                store.append(shared.id, turn(worker * 100 + n))
                store.list_conversations()
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    contents = [m.content for m in store.load(shared.id)]
    assert len(contents) == 120
    assert store.get_conversation(shared.id).message_count == 120
    pairs = list(zip(contents[::2], contents[1::2], strict=True))
    assert all(q.replace("question", "answer") == a for q, a in pairs)  # turns never interleave


# -- open_store and driver errors ---------------------------------------------------------------
def test_open_store_picks_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert isinstance(open_store("memory:"), InMemoryStore)
    cases = {
        f"sqlite:///{tmp_path}/abs.db": tmp_path / "abs.db",
        "sqlite:rel/one.db": tmp_path / "rel/one.db",
        "sqlite://rel/two.db": tmp_path / "rel/two.db",
        "plain/three.db": tmp_path / "plain/three.db",
        "~/four.db": tmp_path / "home/four.db",
    }
    for url, path in cases.items():
        store = open_store(url)
        try:
            assert isinstance(store, SQLiteStore)
            store.create_conversation("here")
        finally:
            store.close()
        assert path.is_file(), url
    mem = open_store("sqlite::memory:")
    assert isinstance(mem, SQLiteStore) and not (tmp_path / ":memory:").exists()
    mem.close()


@pytest.mark.parametrize("url", ["", "  ", "mysql://u@h/db", "memory:extra", "sqlite:", 7])
def test_open_store_rejects_unknown_urls(url: Any) -> None:
    with pytest.raises(ConfigError):
        open_store(url)


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("dear diary " * 100)
    with pytest.raises(StorageError, match="not a usable SQLite database"):
        open_store(str(path))
    assert path.read_text() == "dear diary " * 100


def test_a_directory_is_not_a_database(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=str(tmp_path)):
        SQLiteStore(tmp_path)


def test_sqlite_busy_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    store = SQLiteStore(path, timeout=0.2)
    info = store.create_conversation()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StorageError, match="busy"):
            store.append(info.id, turn(1))
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    store.append(info.id, turn(1))
    assert len(store.load(info.id)) == 2
    store.close()


def test_closed_store_says_so(sql_kit: StoreKit) -> None:
    store = sql_kit.open()
    store.close()
    store.close()  # twice is fine
    with pytest.raises(StorageError, match="closed"):
        store.list_conversations()


@pytest.mark.postgres
def test_open_store_postgres_url_with_schema(pg_url: str, pg_exec: Any) -> None:
    store = open_store(pg_url.replace("postgresql://", "postgres://"))
    try:
        assert isinstance(store, PostgresStore)
        store.create_conversation("in my schema")
    finally:
        store.close()
    schema = pg_url.rsplit("schema=", 1)[1]
    assert pg_exec(f"SELECT title FROM {schema}.conversations") == [("in my schema",)]


def test_postgres_unreachable_is_a_storage_error() -> None:
    started = time.monotonic()
    with pytest.raises(StorageError) as caught:
        open_store("postgresql://someone:s3cret@127.0.0.1:1/nowhere")
    assert "127.0.0.1:1/nowhere" in str(caught.value)
    assert "s3cret" not in str(caught.value)
    assert time.monotonic() - started < 10


def test_postgres_bad_schema_name() -> None:
    with pytest.raises(ConfigError, match="schema"):
        open_store("postgresql://u@127.0.0.1:1/db?schema=Robert'); DROP")


def test_postgres_without_psycopg_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(ConfigError, match=r'pip install "memchat\[postgres\]"'):
        open_store("postgresql://u@127.0.0.1/db")
