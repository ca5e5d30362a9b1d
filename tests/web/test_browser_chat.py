"""The chat in a real browser: streaming, isolation, reload, XSS, stop, errors, regenerate."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing

import pytest

from memchat.core.errors import BackendUnavailable

from .conftest import Pages, WebApp, bot_texts, goto, send, user_texts, wait_for, wait_idle

pytestmark = pytest.mark.browser

LONG = "Streaming works: " + " ".join(f"word{i}" for i in range(60)) + "\n\n```python\nx = 1\n```"


def owner_conversations(app: WebApp) -> dict[str, list[str]]:
    """{owner: [titles]} straight from the store."""
    seen: dict[str, list[str]] = {}
    with closing(sqlite3.connect(app.db_path)) as db:  # every owner: the Store API lists one
        rows = db.execute("SELECT owner, title FROM conversations").fetchall()
    for owner, title in rows:
        seen.setdefault(owner, []).append(title)
    return seen


def test_a_turn_streams_into_the_page_and_is_stored(app: WebApp, pages: Pages) -> None:
    app.backend.enqueue(LONG)
    app.backend.delay = 0.03
    page = pages.open(app.url)
    send(page, "Tell me something long", wait=False)
    lengths = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        texts = bot_texts(page)
        if texts:
            lengths.append(len(texts[-1]))
        if page.locator("#mc-chat pre code").count():
            break
        time.sleep(0.05)
    wait_idle(page)
    partial = [n for n in set(lengths) if 0 < n < max(lengths)]
    assert len(partial) >= 3, f"the reply did not grow in steps: {sorted(set(lengths))}"
    assert "word59" in bot_texts(page)[-1]
    assert page.locator("#mc-chat pre code").inner_text().strip() == "x = 1"
    assert "tokens in context" in page.locator("#mc-meter").inner_text()
    [conv] = app.store.list_conversations(owner=owner_of(app, "Tell me something long"))
    stored = app.store.load(conv.id)
    assert [m.role for m in stored] == ["user", "assistant"]
    assert stored[1].content == LONG


def owner_of(app: WebApp, title: str) -> str:
    return next(o for o, titles in owner_conversations(app).items() if title in titles)


def test_two_browsers_never_see_each_others_conversations(app: WebApp, pages: Pages) -> None:
    alice = pages.open(app.url)
    send(alice, "alice-secret-plan")
    bob = pages.open(app.url)  # a new context: another visitor
    assert "alice-secret-plan" not in bob.locator("#mc-sidebar").inner_text()
    assert user_texts(bob) == []
    send(bob, "bob-shopping-list")
    alice.reload()
    goto(alice, app.url)
    sidebar = alice.locator("#mc-sidebar").inner_text()
    assert "alice-secret-plan" in sidebar and "bob-shopping-list" not in sidebar
    assert owner_of(app, "alice-secret-plan") != owner_of(app, "bob-shopping-list")


def test_a_reload_keeps_the_conversation(app: WebApp, pages: Pages) -> None:
    app.backend.enqueue("first answer")
    page = pages.open(app.url)
    send(page, "remember the number 4817")
    page.reload()
    goto(page, app.url)
    wait_for(lambda: user_texts(page))
    assert user_texts(page) == ["remember the number 4817"]
    assert bot_texts(page) == ["first answer"]
    selected = page.locator("#mc-conversations label.selected").inner_text()
    assert "remember the number 4817" in selected


XSS = (
    '<img src=x onerror="window.__xss=1;alert(1)"> <script>window.__xss=2;alert(2)</script>'
    ' <a href="javascript:window.__xss=3">link</a> ${window.__xss=4} {{constructor.constructor("'
    'window.__xss=5")()}}'
)


def test_html_in_messages_renders_inert(app: WebApp, pages: Pages) -> None:
    app.backend.enqueue(lambda messages: "echo " + messages[-1].content)
    page = pages.open(app.url)
    send(page, XSS)
    page.locator("#mc-chat a", has_text="link").first.click()
    page.get_by_role("tab", name="Context inspector").click()
    page.locator("#mc-inspector table").first.wait_for()
    time.sleep(0.5)
    assert pages.dialogs == []
    assert page.evaluate("() => window.__xss") is None
    assert page.locator("#mc-chat img[onerror], #mc-chat script, [onerror]").count() == 0
    assert page.locator("#mc-chat a[href^='javascript']").count() == 0
    shown = page.locator("#mc-inspector").text_content()  # templates are not evaluated
    assert "${window.__xss=4}" in shown and '{{constructor.constructor("' in shown
    assert "<img" in page.locator("#mc-conversations").inner_text()  # the title shows as text


def test_stop_stops_generation_and_keeps_nothing(app: WebApp, pages: Pages) -> None:
    app.backend.enqueue("slow " * 400)
    app.backend.delay = 0.1
    app.backend.chunk_size = 5
    page = pages.open(app.url)
    send(page, "write forever", wait=False)
    wait_for(lambda: bot_texts(page) and len(bot_texts(page)[-1]) > 20)
    page.locator("#mc-stop").click()
    wait_idle(page, timeout=5)
    shown = bot_texts(page)[-1]
    assert "Stopped" in shown
    produced = app.backend.produced
    time.sleep(1.0)
    assert bot_texts(page)[-1] == shown, "the reply kept growing after stop"
    assert app.backend.produced <= produced + 1, "the backend kept generating after stop"
    assert app.backend.closed == 1
    assert page.locator("#mc-input textarea").input_value() == "write forever"
    assert "write forever" not in str(owner_conversations(app))  # nothing stored


def test_a_failing_backend_shows_the_error_and_keeps_the_message(app: WebApp, pages: Pages) -> None:
    page = pages.open(app.url)
    send(page, "a first question")
    app.backend.enqueue(BackendUnavailable("connection refused by 127.0.0.1:9"))
    send(page, "please keep me")
    assert "unavailable" in bot_texts(page)[-1] and "connection refused" in bot_texts(page)[-1]
    assert page.locator("#mc-input textarea").input_value() == "please keep me"
    owner = owner_of(app, "a first question")
    [conv] = app.store.list_conversations(owner=owner)
    assert [m.content for m in app.store.load(conv.id)][0] == "a first question"
    assert len(app.store.load(conv.id)) == 2
    page.locator("#mc-send").click()  # resend works once the backend is back
    wait_for(lambda: len(app.store.load(conv.id)) == 4)
    wait_for(lambda: "Hello from" in bot_texts(page)[-1])


def test_regenerate_replaces_the_last_reply(app: WebApp, pages: Pages) -> None:
    app.backend.enqueue("draft one", "draft two")
    page = pages.open(app.url)
    send(page, "give me a draft")
    assert bot_texts(page) == ["draft one"]
    page.locator("#mc-regenerate").click()
    wait_for(lambda: bot_texts(page) == ["draft two"])
    wait_idle(page)
    [conv] = app.store.list_conversations(owner=owner_of(app, "give me a draft"))
    assert [m.content for m in app.store.load(conv.id)] == ["give me a draft", "draft two"]


def test_a_rate_limited_turn_says_it_is_retrying_then_streams(pages: Pages, tmp_path) -> None:
    """The real OpenAI backend against the wire-format stub: a 429 asking for 2 s shows as
    "retrying in 2 s" in the reply's place while it waits, then the reply streams in."""
    from tests.stubs.openai_stub import OpenAIStub, ok, status

    from memchat.backends.openai_compat import OpenAIBackend

    from .conftest import start_app, stop_app

    with OpenAIStub() as stub, OpenAIBackend("gpt-4o", base_url=stub.url) as backend:
        stub.enqueue(status(429, headers={"retry-after": "2"}), ok("worth the wait"))
        app = start_app(tmp_path, backend)
        try:
            page = pages.open(app.url)
            send(page, "are you there?", wait=False)
            waiting = wait_for(lambda: "retrying in 2 s" in " ".join(bot_texts(page)), timeout=5)
            assert waiting and len(stub.chat_requests) == 1  # shown before the retry was sent
            assert "rate limited (429)" in bot_texts(page)[-1]
            wait_for(lambda: "worth the wait" in " ".join(bot_texts(page)))
            wait_idle(page)
            assert bot_texts(page)[-1].strip() == "worth the wait"
            assert "rate limited (429)" in page.locator("#mc-notice").inner_text()
            [conv] = app.store.list_conversations(owner=owner_of(app, "are you there?"))
            assert [m.content for m in app.store.load(conv.id)] == [
                "are you there?",
                "worth the wait",
            ]
            assert len(stub.chat_requests) == 2
        finally:
            stop_app(app)


def test_a_summary_fold_runs_after_the_turn_and_the_next_message_waits_for_it(
    pages: Pages, tmp_path
) -> None:
    """With the summary strategy a turn can fold old rounds into the summary (a model call,
    slow on the embedded model). The page hands the turn back first; a message sent during
    the fold says it is waiting, then goes."""
    from .conftest import RecordingBackend, start_app, stop_app

    folding = []

    def answer(messages) -> str:
        if messages[0].content.startswith("You keep the running summary"):
            folding.append(time.monotonic())
            time.sleep(3)
            return "SUMMARY: the visitor counted."
        return f"noted {len(messages)}"

    backend = RecordingBackend(context_window=4096)
    backend.reset()
    backend.replies = [answer] * 200
    app = start_app(tmp_path, backend, strategy="summary", budget=300, reserve=60)
    try:
        page = pages.open(app.url)
        for i in range(40):
            send(page, f"counting sheep, number {i}, still awake")
            if folding:
                break
        assert folding, "no summary fold became due"
        # the turn that triggered the fold is over on the page while the fold still runs
        assert time.monotonic() - folding[0] < 2.5
        assert page.locator("#mc-send").is_visible()
        send(page, "are you done summarising?", wait=False)
        wait_for(lambda: "Finishing the summary" in " ".join(bot_texts(page)), timeout=5)
        wait_for(lambda: "noted" in bot_texts(page)[-1], timeout=20)
        wait_idle(page)
        assert user_texts(page)[-1].strip() == "are you done summarising?"
        conv = app.store.list_conversations(
            owner=owner_of(app, "counting sheep, number 0, still awake")
        )[0]
        assert app.store.get_summary(conv.id) is not None
    finally:
        stop_app(app)
