"""The page's event handlers called directly (no server, no browser)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
import pytest

from memchat.adapters.web import Page, _build
from memchat.adapters.web._state import Prefs
from memchat.backends.fake import ScriptedBackend
from memchat.core.errors import BackendUnavailable
from memchat.settings import load_settings
from memchat.storage import InMemoryStore

from .conftest import quiet_gradio

TEXT, CONV, BROWSER, SEND, STOP, CHAT, METER, NOTICE, INSPECTOR, PICKER, CONVS = range(11)


@pytest.fixture
def backend() -> ScriptedBackend:
    return ScriptedBackend(default="fine")


@pytest.fixture
def page(tmp_path: Path, backend: ScriptedBackend) -> Page:
    settings = load_settings({"backend": "echo", "home": str(tmp_path)}, environ={})
    with quiet_gradio():
        return _build(settings, lambda s: backend, InMemoryStore(), {})[1]


def request(session: str = "tab-1", username: str | None = None) -> gr.Request:
    return gr.Request(username=username, session_hash=session)


def visitor(page: Page, browser: Any = None, username: str | None = None) -> dict[str, Any]:
    out = page.load(browser or {}, request(username=username))
    return {"owner": out[0], "cid": out[1], "prefs": out[2], "browser": out[3]}


def turn(page: Page, v: dict[str, Any], text: str) -> tuple[Any, ...]:
    *_, last = page.send(text, v["owner"], v["cid"], v["prefs"], v["browser"], request())
    v["cid"], v["browser"] = last[CONV], last[BROWSER]
    return tuple(last)


def test_a_turn_creates_a_titled_conversation_for_its_owner(page: Page) -> None:
    v = visitor(page)
    out = turn(page, v, "What is a context window, really?")
    assert out[TEXT] == "" and out[CHAT][-1] == {"role": "assistant", "content": "fine"}
    [info] = page.store.list_conversations(owner=v["owner"])
    assert info.title == "What is a context window, really?" and out[CONV] == info.id
    assert out[BROWSER]["conversation"] == info.id
    again = visitor(page, out[BROWSER])  # a reload: same owner, same open conversation
    assert (again["owner"], again["cid"]) == (v["owner"], info.id)


def test_another_visitors_ids_lead_nowhere(page: Page) -> None:
    alice, bob = visitor(page), visitor(page)
    turn(page, alice, "alice only")
    stolen = {**bob["browser"], "conversation": alice["cid"]}
    assert visitor(page, stolen)["cid"] is None
    switched = page.switch(alice["cid"], bob["owner"], bob["prefs"], bob["browser"])
    assert switched[0] is None and switched[3] == []
    page.delete(bob["owner"], alice["cid"], bob["prefs"], bob["browser"])
    assert page.store.get_conversation(alice["cid"]).title == "alice only"
    out = turn(page, bob, "bob's message")
    assert out[CONV] != alice["cid"]
    assert [m.content for m in page.store.load(alice["cid"])] == ["alice only", "fine"]


def test_a_failed_regenerate_puts_the_old_turn_back(page: Page, backend: ScriptedBackend) -> None:
    v = visitor(page)
    backend.enqueue("the original answer", BackendUnavailable("down"))
    turn(page, v, "question")
    *_, out = page.regenerate(v["owner"], v["cid"], v["prefs"], v["browser"], request())
    assert "unavailable" in out[CHAT][-1]["content"]
    stored = [m.content for m in page.store.load(v["cid"])]
    assert stored == ["question", "the original answer"]
    session = page.registry.entry(v["owner"], v["cid"], v["prefs"]).session
    assert [m.content for m in session.history.messages()] == stored


def test_a_first_message_that_fails_leaves_no_empty_conversation(
    page: Page, backend: ScriptedBackend
) -> None:
    v = visitor(page)
    backend.enqueue(BackendUnavailable("down"))
    out = turn(page, v, "keep me")
    assert out[TEXT] == "keep me" and out[CONV] is None
    assert page.store.list_conversations(owner=v["owner"]) == []


def test_only_the_last_message_can_be_edited(page: Page) -> None:
    v = visitor(page)
    turn(page, v, "one")
    turn(page, v, "two")
    data = gr.EditData(None, {"index": 0, "value": "uno", "previous_value": "one"})
    *_, out = page.edit(data, v["owner"], v["cid"], v["prefs"], v["browser"], request())
    assert "Only your last message" in out[NOTICE]
    data = gr.EditData(None, {"index": 2, "value": "dos", "previous_value": "two"})
    *_, out = page.edit(data, v["owner"], v["cid"], v["prefs"], v["browser"], request())
    assert [m.content for m in page.store.load(v["cid"])] == ["one", "fine", "dos", "fine"]


def test_settings_that_cannot_work_are_not_applied(page: Page) -> None:
    v = visitor(page)
    fields = ["echo", "", "", "", "Be brief.", "cache", 100, 200]  # reserve >= budget
    out = page.apply_settings(v["owner"], v["cid"], v["prefs"], v["browser"], *fields)
    assert out[0] == v["prefs"] and "Not applied" in out[2]
    fields[7] = 20
    out = page.apply_settings(v["owner"], v["cid"], v["prefs"], v["browser"], *fields)
    assert "Applied" in out[2] and out[0].budget == 100 and out[0].system == "Be brief."
    bad_url = ["openai", "ftp://x", "sk-1", "", "", "cache", None, None]
    out = page.apply_settings(v["owner"], v["cid"], v["prefs"], v["browser"], *bad_url)
    assert "http(s) URL" in out[2]


def test_a_budget_refused_from_the_page_cites_the_page(page: Page) -> None:
    v = visitor(page)
    for budget in (100_000, 100.5):  # over the model's 4,096-token window; not whole
        fields = ["echo", "", "", "", "", "cache", budget, None]
        out = page.apply_settings(v["owner"], v["cid"], v["prefs"], v["browser"], *fields)
        assert out[0] == v["prefs"] and "Not applied" in out[2] and "from web page" in out[2]


def test_pin_and_forget_from_the_inspector(page: Page) -> None:
    v = visitor(page)
    turn(page, v, "remember this")
    turn(page, v, "noise")
    session = page.registry.entry(v["owner"], v["cid"], v["prefs"]).session
    first, *_, last_user, _ = session.history.messages()
    out = page.pin(first.id, v["owner"], v["cid"], v["prefs"])
    assert "Pinned" in out[2] and page.store.load(v["cid"])[0].pinned
    out = page.forget(last_user.id, v["owner"], v["cid"], v["prefs"])
    assert "Forgotten" in out[2]
    assert [m.content for m in page.store.load(v["cid"])] == ["remember this", "fine", "fine"]
    out = page.forget(None, v["owner"], v["cid"], v["prefs"])
    assert "pick a message first" in out[2]


def test_visitor_prefs_come_back_from_the_browser_but_not_the_key(page: Page) -> None:
    v = visitor(page)
    fields = ["echo", "", "sk-page-key", "", "Talk like a pirate.", "window", None, None]
    out = page.apply_settings(v["owner"], v["cid"], v["prefs"], v["browser"], *fields)
    prefs, browser = out[0], out[1]
    assert prefs.api_key == "sk-page-key" and "sk-page-key" not in repr(browser)
    again = visitor(page, browser)
    assert again["prefs"] == Prefs("echo", "window", system="Talk like a pirate.")
