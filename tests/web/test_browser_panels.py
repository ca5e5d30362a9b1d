"""Sidebar, settings, meter, inspector and login in a real browser."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import (
    Pages,
    RecordingBackend,
    WebApp,
    bot_texts,
    goto,
    send,
    start_app,
    stop_app,
    user_texts,
    wait_for,
)

pytestmark = pytest.mark.browser

KEY = "sk-test-DO-NOT-LEAK-4242-abcdefghijklmnop"


def sidebar_titles(page: Any) -> list[str]:
    titles: list[str] = page.locator("#mc-conversations label").all_inner_texts()
    return [t.strip() for t in titles]


def upload_file(page: Any, path: Path) -> None:
    with page.expect_file_chooser() as chooser:
        page.locator("#mc-import").click()
    chooser.value.set_files(str(path))


def open_tab(page: Any, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def test_sidebar_new_switch_search_rename_delete(app: WebApp, pages: Pages) -> None:
    page = pages.open(app.url)
    send(page, "apples are red")
    page.locator("#mc-new").click()
    wait_for(lambda: user_texts(page) == [])
    send(page, "bananas are yellow")
    assert sidebar_titles(page) == ["bananas are yellow", "apples are red"]
    page.locator("#mc-conversations label", has_text="apples").click()
    wait_for(lambda: user_texts(page) == ["apples are red"])
    page.locator("#mc-search input, #mc-search textarea").fill("banana")
    wait_for(lambda: sidebar_titles(page) == ["bananas are yellow"])
    page.locator("#mc-search input, #mc-search textarea").fill("")
    wait_for(lambda: len(sidebar_titles(page)) == 2)
    page.get_by_text("Rename or delete").click()
    page.locator("#mc-title input, #mc-title textarea").fill("Fruit colours")
    page.locator("#mc-rename").click()
    wait_for(lambda: "Fruit colours" in sidebar_titles(page))
    page.locator("#mc-delete").click()
    wait_for(lambda: sidebar_titles(page) == ["bananas are yellow"])
    assert user_texts(page) == []


def test_export_and_import_a_conversation(app: WebApp, pages: Pages, tmp_path: Path) -> None:
    app.backend.enqueue("Paris.")
    page = pages.open(app.url)
    send(page, "capital of France?")
    page.get_by_text("Export / import").click()
    page.locator("#mc-export").click()
    link = page.locator("#mc-export-file a").first
    link.wait_for()
    data = page.request.get(link.get_attribute("href")).json()
    assert [m["content"] for m in data["messages"]] == ["capital of France?", "Paris."]
    upload = tmp_path / "chat.json"
    upload.write_text(json.dumps({"title": "Imported trip", "messages": data["messages"]}))
    upload_file(page, upload)
    wait_for(lambda: "Imported trip" in sidebar_titles(page))
    wait_for(lambda: user_texts(page) == ["capital of France?"])
    bad = tmp_path / "bad.json"
    bad.write_text('{"messages": [{"role": "wizard", "content": "x"}]}')
    upload_file(page, bad)
    wait_for(lambda: "Import failed" in page.locator("#mc-notice").inner_text())
    assert sorted(sidebar_titles(page)) == ["Imported trip", "capital of France?"]


@pytest.fixture
def every_log_record() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    root, handler = logging.getLogger(), Keep(logging.DEBUG)
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield records
    root.removeHandler(handler)
    root.setLevel(old_level)


def test_an_api_key_typed_in_the_page_stays_in_that_session(
    app: WebApp, pages: Pages, every_log_record: list[logging.LogRecord], tmp_path: Path
) -> None:
    page = pages.open(app.url)
    open_tab(page, "Settings")
    page.get_by_text("OpenAI-compatible API").click()
    page.locator("#mc-base-url textarea, #mc-base-url input").fill("http://127.0.0.1:9/v1")
    page.locator("#mc-model textarea, #mc-model input").fill("gpt-4o-mini")
    page.locator("#mc-api-key input").fill(KEY)
    page.locator("#mc-apply").click()
    wait_for(lambda: "Applied" in page.locator("#mc-settings-status").inner_text())
    assert page.locator("#mc-api-key input").input_value() == ""  # not left in the page
    open_tab(page, "Chat")
    send(page, "is my key safe?")
    assert app.backend.settings_seen[-1].api_key == KEY  # the key was used for this visitor
    page.get_by_text("Export / import").click()
    exported = []
    for fmt, suffix in (("JSON", ".json"), ("Markdown", ".md")):
        page.locator("#mc-sidebar label", has_text=fmt).click()
        page.locator("#mc-export").click()
        link = page.locator(f"#mc-export-file a[href$='{suffix}']").first
        link.wait_for()
        exported.append(page.request.get(link.get_attribute("href")).text())
    assert "is my key safe?" in exported[0] and "is my key safe?" in exported[1]
    stored = b"".join(p.read_bytes() for p in app.db_path.parent.glob(app.db_path.name + "*"))
    for where, text in [
        ("database", stored.decode("latin-1")),
        *zip(("json", "md"), exported, strict=True),
    ]:
        assert KEY not in text, f"the key leaked into the {where}"
    logged = "\n".join(r.getMessage() + str(r.args) for r in every_log_record)
    assert KEY not in logged
    page.reload()
    goto(page, app.url)
    send(page, "and after a reload?")
    assert app.backend.settings_seen[-1].api_key is None  # gone with the page session
    assert app.backend.settings_seen[-1].base_url == "http://127.0.0.1:9/v1"  # prefs kept


def test_meter_turns_amber_and_inspector_shows_what_was_sent(app: WebApp, pages: Pages) -> None:
    app.backend.default = "A fairly long reply that fills the small window quickly. " * 2
    page = pages.open(app.url)
    open_tab(page, "Settings")
    page.locator("#mc-budget input").fill("300")
    page.locator("#mc-reserve input").fill("0")
    page.locator("#mc-strategy input").fill("budget")
    page.locator("#mc-strategy input").press("Enter")
    page.locator("#mc-apply").click()
    wait_for(lambda: "Applied" in page.locator("#mc-settings-status").inner_text())
    open_tab(page, "Chat")
    levels = []
    for n in range(10):
        send(page, f"message number {n}")
        levels.append(page.locator("#mc-meter .mc-meter").get_attribute("data-level"))
    assert "warn" in levels or "critical" in levels, levels
    assert "dropped" in page.locator("#mc-notice").inner_text()
    open_tab(page, "Context inspector")
    inspector = page.locator("#mc-inspector")
    assert inspector.locator("[data-kind=dropped] tr[data-id]").count() > 0
    sent = inspector.locator("[data-kind=sent]").inner_text()
    assert "message number 9" in sent and "message number 0" not in sent
    page.locator("#mc-picker input").click()
    page.get_by_role("option", name="message number 0").first.click()
    page.locator("#mc-pin").click()
    wait_for(lambda: "Pinned" in page.locator("#mc-notice").inner_text())
    open_tab(page, "Chat")
    send(page, "after pinning")
    open_tab(page, "Context inspector")
    pinned = inspector.locator("[data-kind=sent] .mc-tag-pinned")
    wait_for(lambda: pinned.count() >= 1)
    assert "message number 0" in inspector.locator("[data-kind=pinned]").inner_text()
    page.locator("#mc-picker input").click()
    page.get_by_role("option", name="after pinning").first.click()
    page.locator("#mc-forget").click()
    open_tab(page, "Chat")
    wait_for(lambda: "after pinning" not in "".join(user_texts(page)))


def test_edit_and_resend_the_last_message(app: WebApp, pages: Pages) -> None:
    app.backend.enqueue("first reply", "second reply")
    page = pages.open(app.url)
    send(page, "an earlier message")
    send(page, "a typo-ed mesage")
    page.locator("#mc-chat button[aria-label=Edit]").last.click()
    page.locator("#mc-chat textarea").fill("a corrected message")
    page.locator("#mc-chat button[aria-label=Submit]").click()
    wait_for(lambda: user_texts(page)[-1:] == ["a corrected message"])
    wait_for(lambda: bot_texts(page)[-1].startswith("Hello from"))
    owner_convs = app.store.search_conversations("a corrected message", owner=_owner(app))
    stored = [m.content for m in app.store.load(owner_convs[0].id)]
    assert stored[0] == "an earlier message" and stored[2:] == [
        "a corrected message", "Hello from the **scripted** backend."]  # fmt: skip
    assert "a typo-ed mesage" not in stored


def _owner(app: WebApp) -> str:
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(app.db_path)) as db:
        row = db.execute(
            "SELECT c.owner FROM conversations c JOIN messages m ON m.conversation_id = c.id "
            "WHERE m.content = 'an earlier message'"
        ).fetchone()
    return str(row[0])


@pytest.fixture(scope="module")
def login_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebApp]:
    backend = RecordingBackend()
    backend.reset()
    app = start_app(tmp_path_factory.mktemp("login"), backend, users="alice:pw-a,bob:pw-b")
    yield app
    stop_app(app)


def login(pages: Pages, app: WebApp, user: str, password: str) -> Any:
    page = pages.context().new_page()
    page.goto(app.url)
    page.locator("input[type=text], input:not([type])").first.fill(user)
    page.locator("input[type=password]").fill(password)
    page.get_by_role("button", name="Login").click()
    goto(page, None)
    return page


def test_a_signed_in_user_finds_their_conversations_on_another_browser(
    login_app: WebApp, pages: Pages
) -> None:
    first = login(pages, login_app, "alice", "pw-a")
    send(first, "alice's notes")
    elsewhere = login(pages, login_app, "alice", "pw-a")
    assert "Signed in as alice" in elsewhere.locator("#mc-who").inner_text()
    assert "alice's notes" in sidebar_titles(elsewhere)
    bob = login(pages, login_app, "bob", "pw-b")
    assert sidebar_titles(bob) == []
