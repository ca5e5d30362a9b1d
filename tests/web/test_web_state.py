"""The web app's state without a browser: owners, prefs, registry, turns, rendering, files."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from memchat.adapters.web._render import inspector_html, meter_html, notice_markdown
from memchat.adapters.web._side import export_file, import_file
from memchat.adapters.web._state import (
    Prefs,
    Registry,
    check_login,
    effective_settings,
    owner_for,
    parse_users,
    stable_secret,
)
from memchat.adapters.web._turn import Turn, error_text
from memchat.backends.fake import ScriptedBackend
from memchat.core.backend import Usage
from memchat.core.errors import (
    AuthError,
    BackendUnavailable,
    ConfigError,
    ContextTooLong,
    InputError,
    NotFound,
    RateLimited,
)
from memchat.core.memory import Context, Recalled
from memchat.core.messages import Message
from memchat.core.meter import MeterReading
from memchat.core.session import ChatSession
from memchat.settings import load_settings
from memchat.storage import InMemoryStore


def settings(**flags: object):  # type: ignore[no-untyped-def]
    return load_settings({"backend": "echo", "store": "memory:", **flags}, environ={})


# -- who is who ------------------------------------------------------------------------------
def test_a_visitor_keeps_a_valid_browser_id_and_gets_a_new_one_otherwise() -> None:
    owner, token = owner_for(None, None)
    assert token and owner == f"visitor:{token}" and len(token) >= 32
    assert owner_for(token, None) == (owner, token)
    for bad in ("short", "x" * 100, "../../etc", 42, {"a": 1}):
        other, new = owner_for(bad, None)
        assert new != bad and other.startswith("visitor:")
    assert owner_for(token, "alice")[0] == "user:alice"


def test_users_parse_and_check_in_constant_time() -> None:
    users = parse_users("alice:pw-1, bob:p:w:2\ncarol:x")
    assert users == {"alice": "pw-1", "bob": "p:w:2", "carol": "x"}
    auth = check_login(users)
    assert auth("alice", "pw-1") and not auth("alice", "pw-2") and not auth("dave", "pw-1")
    for bad in ("alice", "alice:", ":pw"):
        with pytest.raises(ConfigError, match="name:password"):
            parse_users(bad)
    assert parse_users(None) == {} and parse_users(" ") == {}


def test_the_browser_secret_survives_a_restart(tmp_path: Path) -> None:
    first = stable_secret(str(tmp_path / "home"))
    assert first == stable_secret(str(tmp_path / "home")) and len(first) >= 24
    assert (tmp_path / "home" / "web-secret").stat().st_mode & 0o077 == 0


# -- prefs -----------------------------------------------------------------------------------
def test_prefs_never_put_the_key_in_the_browser_copy() -> None:
    prefs = Prefs("openai", "cache", model="m", api_key="sk-secret")
    assert "sk-secret" not in repr(prefs) and "sk-secret" not in json.dumps(prefs.public())
    assert prefs.fingerprint() != Prefs("openai", "cache", model="m").fingerprint()
    restored = Prefs("echo", "cache").with_public(
        {"backend": "openai", "budget": "lots", "api_key": "sk-injected", "evil": 1}
    )
    assert restored.backend == "openai" and restored.budget is None and restored.api_key is None


def test_the_server_key_is_never_sent_to_a_visitor_chosen_server() -> None:
    server = load_settings(
        {"backend": "openai", "base_url": "http://127.0.0.1:1/v1", "api_key": "sk-server"},
        environ={},
    )
    same = Prefs.from_settings(server)
    assert same.api_key is None  # not copied into the page's state
    assert effective_settings(server, same).api_key == "sk-server"
    elsewhere = Prefs("openai", "cache", base_url="http://127.0.0.1:2/v1")
    assert effective_settings(server, elsewhere).api_key is None
    own = Prefs("openai", "cache", base_url="http://127.0.0.1:2/v1", api_key="sk-mine")
    assert effective_settings(server, own).api_key == "sk-mine"


# -- registry --------------------------------------------------------------------------------
def test_the_registry_checks_owners_and_rebuilds_on_new_prefs() -> None:
    store = InMemoryStore()
    built: list[str] = []

    def factory(s):  # type: ignore[no-untyped-def]
        built.append(s.backend)
        return ScriptedBackend()

    registry = Registry(settings(), store, factory, capacity=2)
    mine = store.create_conversation("mine", owner="visitor:a").id
    with pytest.raises(NotFound):
        registry.entry("visitor:b", mine, Prefs("echo", "cache"))
    with pytest.raises(NotFound):
        registry.owned("", mine)
    first = registry.entry("visitor:a", mine, Prefs("echo", "cache"))
    assert registry.entry("visitor:a", mine, Prefs("echo", "cache")) is first
    changed = registry.entry("visitor:a", mine, Prefs("echo", "window"))
    assert changed is not first and changed.session.strategy.name == "window"
    assert built == ["echo"]  # the backend is shared: only the strategy changed
    for n in range(3):
        cid = store.create_conversation(f"c{n}", owner="visitor:a").id
        registry.entry("visitor:a", cid, Prefs("echo", "cache"))
    assert registry.peek("visitor:a", mine) is None  # least recently used, dropped


def run_turn(session: ChatSession, text: str, stop_after: int | None = None):  # type: ignore[no-untyped-def]
    lock, stop, after_calls = threading.Lock(), threading.Event(), []
    lock.acquire()
    turn = Turn(session.send(text), lock, stop, after=lambda: after_calls.append(1))
    seen = []
    for partial in turn.chunks(poll=0.01):
        seen.append(partial)
        if stop_after is not None and len(seen) >= stop_after:
            stop.set()
    turn.wait(5)
    assert not lock.locked()
    return turn, seen, after_calls


def test_a_turn_streams_and_commits() -> None:
    session = ChatSession(ScriptedBackend(replies=["one two three"], chunk_size=3, delay=0.01))
    turn, seen, after = run_turn(session, "hi")
    assert turn.end.status == "done" and turn.end.text == "one two three"
    assert seen[-1] == "one two three" and len(seen) > 1
    assert [m.content for m in session.history.messages()] == ["hi", "one two three"]
    assert after == []


def first_wait_chunks(backend: ScriptedBackend, first_wait: float) -> tuple[Turn, list[str]]:
    lock = threading.Lock()
    lock.acquire()
    turn = Turn(ChatSession(backend).send("hi"), lock, threading.Event())
    seen = list(turn.chunks(poll=0.01, first_wait=first_wait))
    turn.wait(5)
    return turn, seen


def test_text_that_comes_within_the_first_wait_is_the_first_update() -> None:
    turn, seen = first_wait_chunks(ScriptedBackend(replies=["whole reply"]), first_wait=2.0)
    assert seen == ["whole reply"] and turn.end.status == "done"  # ended inside the wait
    slow = ScriptedBackend(replies=["one two three"], chunk_size=4, delay=0.05)
    turn, seen = first_wait_chunks(slow, first_wait=2.0)
    assert "" not in seen and seen[0] and seen[-1] == "one two three"


def test_a_slow_first_token_gets_an_empty_update_first() -> None:
    slow = ScriptedBackend(replies=["late"], chunk_size=10, delay=0.5)
    turn, seen = first_wait_chunks(slow, first_wait=0.05)
    assert seen == ["", "late"] and turn.end.status == "done"


def test_stopping_a_turn_closes_the_backend_and_commits_nothing() -> None:
    backend = ScriptedBackend(replies=["x" * 400], chunk_size=2, delay=0.01)
    session = ChatSession(backend)
    turn, seen, after = run_turn(session, "go", stop_after=3)
    assert turn.end.status == "stopped" and 0 < len(turn.end.text) < 400
    assert session.history.messages() == [] and after == [1]


def test_a_failing_turn_reports_the_error_and_commits_nothing() -> None:
    session = ChatSession(ScriptedBackend(replies=[BackendUnavailable("refused")]))
    turn, _, after = run_turn(session, "hello")
    assert turn.end.status == "error" and isinstance(turn.end.error, BackendUnavailable)
    assert session.history.messages() == [] and after == [1]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RateLimited("429", retry_after=3.2), "try again in 3 s"),
        (ContextTooLong("too long"), "too long for the model's context"),
        (AuthError("401"), "rejected the API key"),
        (BackendUnavailable("down"), "unavailable"),
        (ConfigError("bad budget"), "settings cannot be used: bad budget"),
        (RuntimeError("boom"), "server log"),
    ],
)
def test_errors_read_as_sentences(error: Exception, expected: str) -> None:
    assert expected in error_text(error)


# -- rendering -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("tokens", "level"), [(790, "ok"), (800, "warn"), (949, "warn"), (950, "critical")]
)
def test_the_meter_turns_amber_at_80_and_red_at_95_percent(tokens: int, level: str) -> None:
    html = meter_html(MeterReading(tokens, 1000, usage=Usage(10, 5), cost=0.0123))
    assert f'data-level="{level}"' in html and "$0.0123 this turn" in html


def test_the_inspector_shows_every_kind_of_message_escaped() -> None:
    session = ChatSession(ScriptedBackend())
    kept, dropped, old = (Message("user", t) for t in ("kept <b>", "<img src=x>", "old"))
    summary, pinned = Message("system", "Summary: <script>"), Message("user", "pin me")
    session.last_context = Context(
        [summary, pinned, old, kept],
        dropped=[dropped],
        tokens=42,
        strategy="summary",
        pinned=[pinned],
        summary=summary,
        summarized=[Message("assistant", "folded")],
        recalled=[Recalled((old,), 0.87)],
    )
    html = inspector_html(session)
    for kind in ("sent", "dropped", "summarized", "recalled", "pinned"):
        assert f'data-kind="{kind}"' in html
    assert "recalled 0.87" in html and "score 0.87" in html and "mc-tag-summary" in html
    assert "<img" not in html and "<script>" not in html and "&lt;img src=x&gt;" in html
    assert notice_markdown(["<b>x</b> *y*"]) == "• &lt;b&gt;x&lt;/b&gt; \\*y\\*"


# -- files -----------------------------------------------------------------------------------
def test_export_then_import_reads_back_with_fresh_ids(tmp_path: Path) -> None:
    store = InMemoryStore()
    names = {"user_name": "Kate", "assistant_name": "Elise"}
    info = store.create_conversation("Trip", owner="visitor:a", metadata=names)
    store.append(info.id, [Message("user", "hi"), Message("assistant", "hello", pinned=True)])
    for fmt, suffix in (("JSON", ".json"), ("Markdown", ".md")):
        path = export_file(store, info, fmt, tmp_path)
        assert path.suffix == suffix and "hello" in path.read_text()
        assert "Elise" in path.read_text()
    exported = export_file(store, info, "JSON", tmp_path)
    first = import_file(store, "visitor:b", exported)
    second = import_file(store, "visitor:b", exported)
    assert first.owner == "visitor:b" and first.title == "Trip" and first.message_count == 2
    assert first.participants == {"user": "Kate", "assistant": "Elise"}
    ids = {m.id for m in store.load(first.id)} | {m.id for m in store.load(second.id)}
    assert len(ids) == 4 and store.load(first.id)[1].pinned
    with pytest.raises(InputError):
        export_file(store, info, "PDF", tmp_path)


def test_a_bad_import_creates_nothing(tmp_path: Path) -> None:
    store = InMemoryStore()
    bad = tmp_path / "bad.json"
    for text in ('{"messages": [{"role": "wizard", "content": "x"}]}', "", "[]"):
        bad.write_text(text)
        with pytest.raises(InputError):
            import_file(store, "visitor:a", bad)
    assert store.list_conversations(owner="visitor:a") == []


def test_a_long_conversation_draws_only_its_newest_messages() -> None:
    from memchat.adapters.web._render import chat_messages

    messages = [Message(("user", "assistant")[i % 2], f"m{i}") for i in range(600)]
    rows = chat_messages(messages[:450], limit=200, step=50)
    assert len(rows) == 201 and "250 earlier messages" in rows[0]["content"]
    assert rows[-1]["content"] == "m449" and rows[1]["content"] == "m250"
    assert len(chat_messages(messages[:10], limit=200)) == 10
    # the first message shown stays put while rounds are added (hidden 50 at a time), so the
    # page appends rows instead of redrawing every one
    firsts = {
        chat_messages(messages[:n], limit=200, step=50)[1]["content"] for n in range(452, 500, 2)
    }
    assert firsts == {"m300"}
    assert all(151 <= len(chat_messages(messages[:n], 200, 50)) <= 201 for n in range(201, 450))
