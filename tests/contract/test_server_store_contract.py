"""The store parts the server needs, on memory, SQLite and PostgreSQL alike: API keys,
caller-chosen conversation ids, metadata, the version caches check, the last turn's context."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from memchat.core.errors import AlreadyExists, InputError, NotFound
from memchat.core.keys import ApiKey, KeyStore, key_hash, key_owner, key_prefix, new_key
from memchat.core.messages import assistant, user
from memchat.core.store import ResponseRecord, ResponseStore, Store
from memchat.storage import InMemoryKeyStore

if TYPE_CHECKING:
    from conftest import StoreKit


@pytest.fixture(params=["store", "fake"])
def keys(request: pytest.FixtureRequest, store: Store) -> KeyStore:
    """Every store's keys, and the public fake on its own."""
    found: Any = store if request.param == "store" else InMemoryKeyStore()
    assert isinstance(found, KeyStore)
    return found  # type: ignore[no-any-return]


# -- keys ------------------------------------------------------------------------------------
def test_a_key_is_stored_by_hash_and_found_by_hash(keys: KeyStore) -> None:
    secret = new_key()
    assert secret.startswith("mc-") and len(secret) >= 3 + 43
    assert not keys.has_keys()
    made = keys.add_key("laptop", key_hash(secret), key_prefix(secret))
    assert keys.has_keys()
    assert (made.name, made.prefix, made.revoked, made.last_used_at) == (
        "laptop", secret[:7], False, None,
    )  # fmt: skip
    assert made.owner == key_owner(secret)
    assert keys.find_key(key_hash(secret)) == made
    assert keys.find_key(key_hash(new_key())) is None
    assert keys.list_keys() == [made]


def test_the_key_itself_is_never_stored(store_kit: StoreKit) -> None:
    store: Any = store_kit.open()
    secret = new_key()
    store.add_key("ci", key_hash(secret), key_prefix(secret))
    assert secret not in repr(store.list_keys())
    if store_kit.kind == "sqlite":  # the database and its write-ahead log
        raw = b"".join(p.read_bytes() for p in Path(store.path).parent.glob("memchat.db*"))
        assert secret.encode() not in raw and key_hash(secret).encode() in raw


def test_names_are_never_reused(keys: KeyStore) -> None:
    first = new_key()
    keys.add_key("ci", key_hash(first), key_prefix(first))
    keys.revoke_key("ci")
    again = new_key()
    with pytest.raises(AlreadyExists, match="'ci'"):
        keys.add_key("ci", key_hash(again), key_prefix(again))
    assert [k.name for k in keys.list_keys()] == ["ci"]


def test_revoke_keeps_the_key_listed_and_the_first_date(keys: KeyStore) -> None:
    secret = new_key()
    keys.add_key("a", key_hash(secret), key_prefix(secret))
    revoked = keys.revoke_key("a")
    assert revoked.revoked and revoked.revoked_at is not None
    assert keys.revoke_key("a").revoked_at == revoked.revoked_at
    found = keys.find_key(key_hash(secret))
    assert found is not None and found.revoked
    assert keys.has_keys()  # a revoked key still means the server wants keys
    with pytest.raises(NotFound, match="no key named 'b'"):
        keys.revoke_key("b")


def test_touch_records_the_latest_use_only(keys: KeyStore) -> None:
    secret = new_key()
    keys.add_key("a", key_hash(secret), key_prefix(secret))
    keys.touch_key(key_hash(secret), 2000.0)
    keys.touch_key(key_hash(secret), 1000.0)  # an older request finishing late
    found = keys.find_key(key_hash(secret))
    assert found is not None and found.last_used_at == 2000.0


def test_keys_list_oldest_first(keys: KeyStore) -> None:
    made = []
    for name in ("b", "a", "c"):
        secret = new_key()
        made.append(keys.add_key(name, key_hash(secret), key_prefix(secret)))
        time.sleep(0.002)
    assert [k.name for k in keys.list_keys()] == ["b", "a", "c"]


@pytest.mark.parametrize(
    "name, digest",
    [("", "0" * 64), ("two\nlines", "0" * 64), ("x" * 101, "0" * 64), ("ok", "not-a-hash")],
)
def test_bad_key_input_is_refused(keys: KeyStore, name: str, digest: str) -> None:
    with pytest.raises(InputError):
        keys.add_key(name, digest, "mc-0000")
    assert keys.list_keys() == []


def test_api_key_owner_is_the_hash_head() -> None:
    key = ApiKey("n", "mc-abcd", "f" * 64, 1.0)
    assert key.owner == "f" * 16 and not key.revoked


# -- conversations: chosen ids, metadata, versions -------------------------------------------
def test_a_chosen_id_is_kept_and_cannot_be_taken_twice(store: Store) -> None:
    info = store.create_conversation("t", owner="o", conversation_id="o/project-x")
    assert info.id == "o/project-x"
    assert store.get_conversation("o/project-x") == info
    with pytest.raises(AlreadyExists, match="project-x"):
        store.create_conversation("other", owner="p", conversation_id="o/project-x")
    assert store.get_conversation("o/project-x").title == "t"


@pytest.mark.parametrize("bad", ["", "has space", "x" * 201, "nul\x00", 7])
def test_bad_chosen_ids_are_refused(store: Store, bad: Any) -> None:
    with pytest.raises(InputError):
        store.create_conversation("t", conversation_id=bad)
    assert store.list_conversations() == []


def test_metadata_round_trips_and_is_replaced(store_kit: StoreKit) -> None:
    store = store_kit.open()
    info = store.create_conversation("t", metadata={"team": "blue", "ünï": "cödé"})
    assert info.metadata == {"team": "blue", "ünï": "cödé"}
    store.set_metadata(info.id, {"team": "red"})
    store.close()
    again = store_kit.open()
    assert again.get_conversation(info.id).metadata == {"team": "red"}
    with pytest.raises(InputError):
        again.set_metadata(info.id, {"n": 1})  # type: ignore[dict-item]
    with pytest.raises(NotFound):
        again.set_metadata("nope", {})


def test_version_grows_with_each_change_to_messages_or_summary(store: Store) -> None:
    info = store.create_conversation("t")
    versions = [info.version]

    def step() -> None:
        versions.append(store.get_conversation(info.id).version)

    store.append(info.id, [user("q", id="u1"), assistant("a", id="a1")])
    step()
    store.set_pinned(info.id, "u1", True)
    step()
    store.save_summary(info.id, "s", "a1")
    step()
    store.clear_summary(info.id)
    step()
    store.delete_messages(info.id, ["a1"])
    step()
    assert versions == sorted(set(versions)) and len(versions) == 6
    store.rename_conversation(info.id, "renamed")
    store.set_metadata(info.id, {"k": "v"})
    assert store.get_conversation(info.id).version == versions[-1]  # no change to the history


def test_turn_context_is_kept_replaced_and_deleted_with_the_conversation(store: Store) -> None:
    info = store.create_conversation("t")
    assert store.get_turn_context(info.id) is None
    store.put_turn_context(info.id, '{"turn": 1}')
    store.put_turn_context(info.id, '{"turn": 2}')
    assert store.get_turn_context(info.id) == '{"turn": 2}'
    store.delete_conversation(info.id)
    with pytest.raises(NotFound):
        store.get_turn_context(info.id)
    with pytest.raises(NotFound):
        store.put_turn_context(info.id, "{}")


def test_response_records_are_kept_deleted_and_go_with_their_conversation(store: Store) -> None:
    assert isinstance(store, ResponseStore)
    info = store.create_conversation("r", owner="alice")
    record = ResponseRecord("resp_1", "alice", info.id, '{"response": {}}')
    store.put_response(record)
    assert store.get_response("resp_1") == record
    assert store.get_response("resp_2") is None
    assert store.delete_response("resp_1") and not store.delete_response("resp_1")
    assert store.get_response("resp_1") is None
    store.put_response(record)
    store.delete_conversation(info.id)
    assert store.get_response("resp_1") is None
    with pytest.raises(NotFound):
        store.put_response(record)
