"""Fixtures for the web app: a live app on 127.0.0.1 and Debian's Chromium driven by Playwright.

The app runs in this process (so tests can look at its store and its backend) with a
``RecordingBackend`` and a temporary SQLite store. Every browser context refuses requests to any
host but 127.0.0.1 and records them; a test fails if the page tried to reach anything else.
Chromium is Debian's (``apt-get install chromium``); Playwright's own browser download is never
used.
"""

from __future__ import annotations

import gc
import os
import socket
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from memchat.backends.fake import ScriptedBackend
from memchat.core.backend import Chunk, GenerationParams
from memchat.core.messages import Message
from memchat.settings import Settings, load_settings

CHROMIUM = os.environ.get("MEMCHAT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOCAL = ("http://127.0.0.1", "data:", "blob:", "about:")


@contextmanager
def quiet_gradio() -> Iterator[None]:
    """Gradio opens a fresh asyncio event loop for every lock it makes outside a running loop
    and never closes them; collect those here, where their ResourceWarnings are known noise,
    instead of letting them surface in whichever test happens to trigger the GC."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        yield
        gc.collect()


@pytest.fixture(autouse=True)
def _collect_gradio_loops() -> Iterator[None]:
    with quiet_gradio():
        pass
    yield
    with quiet_gradio():
        pass


@dataclass
class RecordingBackend(ScriptedBackend):
    """ScriptedBackend that also counts the chunks it produced and the streams it closed."""

    produced: int = 0
    closed: int = 0
    settings_seen: list[Settings] = field(default_factory=list)

    def stream(self, messages: Sequence[Message], params: GenerationParams) -> Iterator[Chunk]:
        try:
            for chunk in super().stream(messages, params):
                self.produced += 1
                yield chunk
        finally:
            self.closed += 1

    def reset(self) -> None:
        self.replies.clear()
        self.calls.clear()
        self.params.clear()
        self.settings_seen.clear()
        self.default = "Hello from the **scripted** backend."
        self.delay = 0.0
        self.chunk_size = 4
        self.fail_after = None
        self.produced = self.closed = 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class WebApp:
    url: str
    backend: Any
    store: Any
    db_path: Path
    home: Path
    demo: Any


def start_app(home: Path, backend: Any, users: str | None = None, **flags: Any) -> WebApp:
    """The app on a free port; ``backend`` is every visitor's (a RecordingBackend notes the
    settings it was built for)."""
    from memchat.adapters.web import launch
    from memchat.storage import SQLiteStore

    db = home / "web.db"
    settings = load_settings(
        {"backend": "echo", "store": f"sqlite:///{db}", "home": str(home), **flags}, environ={}
    )
    store = SQLiteStore(str(db))

    def factory(resolved: Settings) -> Any:
        if isinstance(backend, RecordingBackend):
            backend.settings_seen.append(resolved)
        return backend

    port = free_port()
    with quiet_gradio():
        demo = launch(
            settings,
            host="127.0.0.1",
            port=port,
            users=users,
            block=False,
            backend_factory=factory,
            store=store,
        )
    return WebApp(f"http://127.0.0.1:{port}/", backend, store, db, home, demo)


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebApp]:
    backend = RecordingBackend(context_window=4096)
    backend.reset()
    app = start_app(tmp_path_factory.mktemp("web"), backend)
    yield app
    stop_app(app)


def stop_app(app: WebApp) -> None:
    with quiet_gradio():
        app.demo.close()
        app.store.close()


@pytest.fixture
def app(web: WebApp) -> WebApp:
    web.backend.reset()
    return web


class Pages:
    """Opens pages in fresh browser contexts; records dialogs and off-machine requests."""

    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.contexts: list[Any] = []
        self.outside: list[str] = []
        self.dialogs: list[str] = []

    def context(self) -> Any:
        ctx = self.browser.new_context(viewport={"width": 1280, "height": 860})
        ctx.route("**/*", self._route)
        self.contexts.append(ctx)
        return ctx

    def _route(self, route: Any) -> None:
        if route.request.url.startswith(LOCAL):
            route.continue_()
        else:
            self.outside.append(route.request.url)
            route.abort()

    def open(self, url: str, ctx: Any = None) -> Any:
        page = (ctx or self.context()).new_page()
        page.on("dialog", self._dialog)
        goto(page, url)
        return page

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def close(self) -> None:
        for ctx in self.contexts:
            ctx.close()


@pytest.fixture
def pages(chromium: Any) -> Iterator[Pages]:
    opened = Pages(chromium)
    yield opened
    opened.close()
    assert opened.outside == [], f"the page tried to reach other hosts: {opened.outside}"


# -- page helpers ----------------------------------------------------------------------------
def goto(page: Any, url: str | None) -> None:
    """Open the app (None: stay) and wait until the page's load event identified the visitor."""
    if url is not None:
        page.goto(url)
    page.wait_for_function(
        "() => { const w = document.querySelector('#mc-who');"
        " return w && /Private|Signed in/.test(w.innerText); }",
        timeout=60_000,
    )


def send(page: Any, text: str, wait: bool = True) -> None:
    """Type and send a message; with ``wait``, return when the turn has ended."""
    before = len(bot_texts(page))
    page.locator("#mc-input textarea").fill(text)
    page.locator("#mc-send").click()
    if wait:
        wait_for(lambda: len(bot_texts(page)) > before)
        wait_idle(page)


def bot_texts(page: Any) -> list[str]:
    texts: list[str] = page.locator("#mc-chat .message-row.bot-row").all_inner_texts()
    return texts


def user_texts(page: Any) -> list[str]:
    texts: list[str] = page.locator("#mc-chat .message-row.user-row").all_inner_texts()
    return texts


def wait_idle(page: Any, timeout: float = 30.0) -> None:
    """Wait until no turn is running (the Send button is back); call once a turn has shown."""
    page.locator("#mc-send").wait_for(state="visible", timeout=timeout * 1000)
    page.locator("#mc-stop").wait_for(state="hidden", timeout=timeout * 1000)


def wait_for(predicate: Any, timeout: float = 20.0, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {predicate}")
