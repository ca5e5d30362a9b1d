"""`memchat serve`'s decisions before it listens: keys or loopback (or --no-auth), and how many
processes it runs. uvicorn.run is replaced by a recorder (the server itself is tested over
real HTTP elsewhere); the app handed to it is then called through Starlette's TestClient."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from click.testing import CliRunner, Result
from starlette.testclient import TestClient

from memchat.adapters.cli import App, cli
from memchat.adapters.server import _app
from memchat.core.keys import key_hash, key_prefix, new_key
from memchat.storage import InMemoryStore


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """What uvicorn.run was called with; the environment and the log record factory (which
    `serve` sets for its process) are put back afterwards."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append({"app": app, **kw}))
    monkeypatch.setenv(_app.ENV, "")
    monkeypatch.delenv(_app.ENV)
    factory = logging.getLogRecordFactory()
    yield calls
    logging.setLogRecordFactory(factory)


def serve(tmp_path: Path, *args: str, store: InMemoryStore | None = None,
          env: dict[str, str] | None = None) -> Result:  # fmt: skip
    environ = {"MEMCHAT_HOME": str(tmp_path), "MEMCHAT_BACKEND": "echo",
               "MEMCHAT_STORE": "memory:", **(env or {})}  # fmt: skip
    app = App(environ=environ, make_store=(lambda url: store) if store is not None else None)
    return CliRunner().invoke(cli, ["serve", *args], obj=app)


def test_a_public_host_without_keys_is_refused(tmp_path: Path, runs: list[Any]) -> None:
    for host in ("0.0.0.0", "192.168.1.5", "example.org", "::"):
        result = serve(tmp_path, "--host", host)
        assert result.exit_code == 3, result.output
        assert f"refusing to serve on {host} without API keys" in result.stderr
        assert "memchat keys create" in result.stderr and "--no-auth" in result.stderr
    assert runs == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_needs_no_key(tmp_path: Path, runs: list[Any], host: str) -> None:
    assert serve(tmp_path, "--host", host).exit_code == 0
    assert runs[0]["host"] == host


def test_a_public_host_with_keys_or_no_auth_serves(tmp_path: Path, runs: list[Any]) -> None:
    assert serve(tmp_path, "--host", "0.0.0.0", "--keys", "flag-key-123456").exit_code == 0
    assert serve(tmp_path, "--host", "0.0.0.0", "--no-auth").exit_code == 0
    store = InMemoryStore()
    secret = new_key()
    store.add_key("ci", key_hash(secret), key_prefix(secret))
    assert serve(tmp_path, "--host", "0.0.0.0", store=store).exit_code == 0
    assert [r["host"] for r in runs] == ["0.0.0.0"] * 3
    with TestClient(runs[2]["app"]) as client:  # the stored key is required
        assert client.get("/v1/models").status_code == 401
        ok = client.get("/v1/models", headers={"authorization": f"Bearer {secret}"})
        assert ok.status_code == 200
    noisy = serve(tmp_path, "--host", "0.0.0.0", "--no-auth", store=store)
    assert "--no-auth: the API keys that exist are ignored" in noisy.stderr
    with TestClient(runs[3]["app"]) as client:
        assert client.get("/v1/models").status_code == 200


def test_workers_on_a_memory_store_run_one_process(tmp_path: Path, runs: list[Any]) -> None:
    result = serve(tmp_path, "--workers", "2")
    assert result.exit_code == 0
    assert "runs ONE process" in " ".join(result.stderr.split())
    assert "workers" not in runs[0] and not isinstance(runs[0]["app"], str)


def test_workers_get_the_options_through_the_environment(
    tmp_path: Path, runs: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a store (stateless only) any number of workers is fine; each worker's factory
    rebuilds the same app from MEMCHAT_SERVE_OPTIONS."""
    result = serve(tmp_path, "--workers", "3", "--keys", "flag-key-123456", "--store", "none",
                   "--max-body-bytes", "1000")  # fmt: skip
    assert result.exit_code == 0, result.output
    call = runs[0]
    assert (call["app"], call["factory"], call["workers"]) == (
        "memchat.adapters.server._app:app_from_environ", True, 3,
    )  # fmt: skip
    options = _app.ServeOptions.from_env(os.environ[_app.ENV])
    assert options.keys == ("flag-key-123456",) and options.limits["max_body_bytes"] == 1000
    monkeypatch.setenv("MEMCHAT_BACKEND", "echo")
    monkeypatch.setenv("MEMCHAT_HOME", str(tmp_path))
    with TestClient(_app.app_from_environ()) as client:
        assert client.get("/v1/models").status_code == 401
        headers = {"authorization": "Bearer flag-key-123456"}
        assert client.get("/v1/models", headers=headers).status_code == 200
        big = client.post("/v1/tokenize", content=b"x" * 2000, headers=headers)
        assert big.status_code == 413  # the limit travelled too
