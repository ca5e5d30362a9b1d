"""Secrets: no provider key and no memchat key in any output of any face, at any log level.

A scripted session runs on every face with the provider's key in ``OPENAI_API_KEY`` (and one
given as ``--api-key``), memchat keys from ``memchat keys create`` and ``--keys``, and an
upstream that echoes the provider's key in its error texts (some proxies do). The processes
run with the root logger at DEBUG (memchat's, the openai SDK's, httpx's and uvicorn's records
all reach stderr). Then every stdout, stderr, response body, SSE stream, page, export, log and
database file is searched for every key. The one place a key may appear: the line of
``memchat keys create`` that hands it over.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.stubs.openai_stub import status
from tests.stubs.serve_process import Served

import memchat
from memchat.backends.openai_compat import OpenAIBackend
from memchat.storage import open_store

from .conftest import (
    PROVIDER_KEY,
    TIMEOUT,
    WebProcess,
    at_debug,
    hermetic_env,
    provider_flags,
    run_cli,
)
from .gradio_http import App, Visitor
from .upstream import FaultyUpstream

FLAG_KEY = "sk-flag-given-" + "6" * 30  # a provider key given as --api-key
SERVER_FLAG_KEY = "mc-flag-" + "8" * 32  # memchat serve --keys
SECRETS = (PROVIDER_KEY, FLAG_KEY, SERVER_FLAG_KEY)


def echoing(up: FaultyUpstream, name: str, key: str = PROVIDER_KEY) -> str:
    """``[case …]`` tags whose requests the upstream refuses, echoing the key it was sent
    (``NAME-401``, ``NAME-500``; ``NAME-flag`` echoes the ``--api-key`` one)."""
    up.script(f"{name}-401", status(401, message=f"Incorrect API key provided: {key}"))
    up.script(f"{name}-500", *[status(500, message=f"boom, key={key}")] * 4)
    up.script(f"{name}-flag", status(401, message=f"Incorrect API key provided: {FLAG_KEY}"))
    return name


def assert_no_secret(where: str, texts: Sequence[str | bytes], secrets: Sequence[str]) -> None:
    for secret in secrets:
        for n, text in enumerate(texts):
            data = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
            assert secret.encode() not in data, f"{where}: output {n} holds {secret[:10]}…"


def database_files(home: Path) -> list[bytes]:
    return [p.read_bytes() for p in home.rglob("*.db*")]


@pytest.fixture
def debug_logs() -> Iterator[io.StringIO]:
    """Every log record of this process, at DEBUG, formatted with its traceback."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield out
    root.removeHandler(handler)
    root.setLevel(level)


def test_library(upstream: FaultyUpstream, tmp_path: Path, debug_logs: io.StringIO) -> None:
    store = open_store(f"sqlite:///{tmp_path}/lib.db")
    outputs: list[str] = []
    for key in (PROVIDER_KEY, FLAG_KEY):
        tag = echoing(upstream, f"lib-{key[:5]}", key)
        backend = OpenAIBackend(
            "stub-model", base_url=upstream.url, api_key=key, timeout=TIMEOUT, max_retries=1
        )
        cid = store.create_conversation("secrets").id
        session = memchat.ChatSession(backend, store=store, conversation_id=cid)
        outputs += [session.ask("hello"), repr(backend), repr(session.params)]
        for case in ("401", "500"):
            with pytest.raises(memchat.BackendError) as caught:
                session.ask(f"[case {tag}-{case}] hi")
            outputs += [str(caught.value), repr(caught.value), str(caught.value.__cause__)]
        outputs += [str(session.context_for("again").messages), str(session.meter())]
        backend.close()
    store.close()
    assert "Incorrect API key provided" in " ".join(outputs)  # the echo came back, scrubbed
    assert debug_logs.getvalue().count("\n") > 5  # the SDK's and memchat's debug records
    assert_no_secret(
        "library", [*outputs, debug_logs.getvalue(), *database_files(tmp_path)], SECRETS
    )


def test_cli(upstream: FaultyUpstream, tmp_path: Path) -> None:
    echoing(upstream, "cli")
    url = f"sqlite:///{tmp_path}/cli.db"
    env = hermetic_env(tmp_path)
    flags = [*provider_flags(upstream.url), "--store", url, "--strategy", "budget"]
    runs: list[Any] = []

    def cli(args: list[str], stdin: str | None = None) -> Any:
        import subprocess
        import sys

        cmd = at_debug([sys.executable, "-m", "memchat", *args])
        done = subprocess.run(
            cmd, input=stdin or "", capture_output=True, text=True, env=env, timeout=60
        )
        runs.append(done)
        return done

    assert cli(["chat", "-c", "talk", *flags], "hello\n[case cli-401] hi\n").returncode in (0, 1)
    assert cli(["ask", "-c", "talk", *flags, "[case cli-500] hi"]).returncode == 1
    assert cli(["ask", "-c", "talk", *flags, "--api-key", FLAG_KEY, "[case cli-flag] x"]).returncode
    assert cli(["ask", "-c", "talk", *flags, "--api-key", FLAG_KEY, "fine"]).returncode == 0
    made = cli(["keys", "create", "laptop", "--store", url])
    stored_key = made.stdout.strip()
    assert re.fullmatch(r"mc-\S{20,}", stored_key), made
    runs.remove(made)  # handing the key over is its one legitimate output
    readers = [
        ["config", *flags],
        ["config", *flags, "--api-key", FLAG_KEY],
        ["context", "talk", "-q", "next", *flags],
        ["export", "talk", "--store", url],
        ["export", "talk", "-f", "markdown", "--store", url],
        ["conversations", "list", "--store", url],
        ["conversations", "show", "talk", "--store", url],
        ["keys", "list", "--store", url],
    ]
    with ThreadPoolExecutor(4) as pool:  # they only read: at once
        for done in pool.map(cli, readers):
            assert done.returncode == 0, done
    texts = [t for r in runs for t in (r.stdout, r.stderr)]
    joined = "\n".join(texts)
    assert "Incorrect API key provided" in joined and "DEBUG" in joined
    assert_no_secret("cli", [*texts, *database_files(tmp_path)], [*SECRETS, stored_key])


def test_server(upstream: FaultyUpstream, tmp_path: Path) -> None:
    tag = echoing(upstream, "srv")
    url = f"sqlite:///{tmp_path}/srv.db"
    env = hermetic_env(tmp_path)
    made = run_cli(["keys", "create", "app", "--store", url], env)
    stored_key = made.stdout.strip()
    served = Served([*provider_flags(upstream.url), "--store", url, "--keys", SERVER_FLAG_KEY], env)
    served.args = at_debug(served.args)
    bodies: list[str] = []
    with served:
        for key in (stored_key, SERVER_FLAG_KEY, "mc-wrong-" + "1" * 30, None):
            http = httpx.Client(
                base_url=served.url,
                timeout=30,
                headers={"authorization": f"Bearer {key}"} if key else {},
            )
            for text in ("hello", f"[case {tag}-401] a", f"[case {tag}-500] b"):
                for stream in (False, True):
                    body = {
                        "model": "m",
                        "stream": stream,
                        "messages": [{"role": "user", "content": text}],
                    }
                    got = http.post(
                        "/chat/completions", json=body, headers={"X-Memchat-Conversation": "talk"}
                    )
                    bodies.append(got.text + str(got.headers))
            for path in (
                "/models",
                "/conversations",
                "/conversations/talk",
                "/conversations/talk/messages",
                "/conversations/talk/context",
                "/../openapi.json",
            ):
                bodies.append(http.get(path).text)
            bodies.append(http.post("/responses", json={"model": "m", "input": "hi"}).text)
            http.close()
        log = served.log()
    assert any("[redacted]" in b for b in bodies), "the upstream's echo never came back"
    assert "DEBUG" in log and '"POST /v1/chat/completions HTTP/1.1" 200' in log
    assert_no_secret("server", [*bodies, log, *database_files(tmp_path)], [*SECRETS, stored_key])


def test_the_access_log_survives_the_scrubber(upstream: FaultyUpstream, tmp_path: Path) -> None:
    """The key scrubber once replaced every record's arguments with None, and uvicorn's access
    formatter (which reads them) failed on each request: no access line, a traceback instead."""
    with Served(
        [*provider_flags(upstream.url), "--store", "none", "--keys", SERVER_FLAG_KEY],
        hermetic_env(tmp_path),
    ) as served:
        headers = {"authorization": f"Bearer {SERVER_FLAG_KEY}"}
        assert httpx.get(served.url + "/models", headers=headers).status_code == 200
        assert httpx.get(served.url + f"/models?k={SERVER_FLAG_KEY}").status_code == 401
        log = served.log()
    assert "Logging error" not in log and "Traceback" not in log, log
    assert '"GET /v1/models HTTP/1.1" 200' in log
    assert "GET /v1/models?k=[redacted] HTTP/1.1" in log and SERVER_FLAG_KEY not in log


def test_web(upstream: FaultyUpstream, tmp_path: Path, chromium: Any) -> None:
    tag = echoing(upstream, "web")
    web = WebProcess(provider_flags(upstream.url), hermetic_env(tmp_path), tmp_path / "web.db")
    web.args = at_debug(web.args)
    with web:
        visitor = Visitor(App.read(web.url))
        visitor.open()
        shown = [
            visitor.send("hello"),
            visitor.send(f"[case {tag}-401] a"),
            visitor.send(f"[case {tag}-500] b"),
        ]
        page = chromium.new_page()
        page.goto(web.url)
        page.wait_for_selector("#mc-chat")
        html = page.content()
        page.close()
        config = httpx.get(web.url + "config").text
        log = web.log()
        visitor.close()
    assert "Incorrect API key provided" in str(shown)
    assert "DEBUG" in log
    assert_no_secret(
        "web",
        [*visitor.received, str(shown), html, config, log, *database_files(tmp_path)],
        SECRETS,
    )
