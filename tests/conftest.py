"""Hermetic tests: no MEMCHAT_*/OPENAI_* env leaks in, a temporary memchat home."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from memchat.backends.fake import ScriptedBackend


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    for key in list(os.environ):
        if key.startswith(("MEMCHAT_", "OPENAI_")) and key != "MEMCHAT_TEST_PG_DSN":
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MEMCHAT_HOME", str(tmp_path_factory.mktemp("memchat-home")))
    # converted weights (~140 MB) are made once per test run, not once per temporary home
    monkeypatch.setenv("MEMCHAT_MODEL_CACHE", str(tmp_path_factory.getbasetemp() / "models"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests that use Chromium run last: while Playwright's sync API is open (the session's
    ``chromium``), its event loop counts as running in the main thread, and an async test after
    it fails with "Cannot run the event loop while another loop is running"."""
    items.sort(key=lambda item: "chromium" in getattr(item, "fixturenames", ()))


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """One Chromium for the whole run: Playwright's sync API cannot nest two instances."""
    from playwright.sync_api import sync_playwright
    from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def backend() -> ScriptedBackend:
    return ScriptedBackend()
