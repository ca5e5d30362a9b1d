"""Hermetic tests: no MEMCHAT_*/OPENAI_* env leaks in, a temporary memchat home."""

from __future__ import annotations

import os

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


@pytest.fixture
def backend() -> ScriptedBackend:
    return ScriptedBackend()
