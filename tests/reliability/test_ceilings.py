"""Resource ceilings: a 10,000-turn conversation on every face within a documented peak memory,
the embedded model loaded once per process however many visitors, idle sessions evicted
(``--max-idle-sessions`` of ``memchat serve`` and of ``memchat web``).

Peak memory is the process's own high-water mark (``VmHWM`` in ``/proc/PID/status``) after a
turn on the conversation, read from outside for the servers and at exit for the library and
CLI processes. The ceilings are in docs/reliability.md; the strategy is ``cache`` (the
library's default; a recall strategy would first embed 10,000 rounds, which is a time cost,
not a memory one).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.stubs.serve_process import Served

import memchat
from memchat.storage import open_store

from .conftest import (
    SOAK,
    WebProcess,
    at_debug,
    hermetic_env,
    no_traceback,
    provider_flags,
    report,
    scale,
)
from .gradio_http import App, Visitor
from .upstream import REPLY, FaultyUpstream

MB = 1024 * 1024
TURNS = 10_000
FLAGS = ["--backend", "echo", "--strategy", "cache"]
CEILING_MB = {"library": 120, "cli": 150, "server": 200, "web": 500}  # docs/reliability.md
VISITOR = "ceilings0000000000000000000000000"


def peak(pid: int | str = "self") -> float:
    """The process's peak resident memory, MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def resident(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(x.split()[1]) / 1024 for x in f if x.startswith("VmRSS:"))


@pytest.fixture(scope="module")
def long_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A SQLite store holding a 10,000-turn conversation for the open faces ("long") and one
    owned by the web visitor VISITOR."""
    db = tmp_path_factory.mktemp("ceilings") / "long.db"
    store = open_store(f"sqlite:///{db}")
    ids = {}
    for owner, cid in (("", "long"), (f"visitor:{VISITOR}", None)):
        info = store.create_conversation("long", owner=owner, conversation_id=cid)
        ids[owner or "open"] = info.id
        for start in range(0, TURNS, 1000):
            batch = []
            for n in range(start, start + 1000):
                batch += [
                    memchat.user(f"question {n}: " + "what about this? " * 6),
                    memchat.assistant(f"answer {n}: " + "it is like that. " * 6),
                ]
            store.append(info.id, batch)
    store.close()
    return {"db": db, "url": f"sqlite:///{db}", "ids": ids}


def within(face: str, mb: float, seconds: float) -> None:
    report(
        f"{face}, a turn on a {TURNS:,}-turn conversation: peak memory {mb:.0f} MB "
        f"(ceiling {CEILING_MB[face]} MB), {seconds:.2f} s"
    )
    assert mb < CEILING_MB[face], f"{face}: {mb:.0f} MB"


AT_EXIT = (
    "import atexit, sys; atexit.register(lambda: print('PEAK', [l for l in "
    "open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1], "
    "file=sys.stderr)); "
)
LIBRARY = (
    AT_EXIT
    + """
import time, memchat
from memchat.storage import open_store
store = open_store(sys.argv[1])
start = time.monotonic()
session = memchat.ChatSession(memchat.EchoBackend(), store=store, conversation_id="long",
                              history=store.load("long"))
assert session.ask("and now?") == "echo: and now?"
print("TIME", time.monotonic() - start, file=sys.stderr)
"""
)


def run_measured(code: str, args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300
    )
    seconds = time.monotonic() - start
    assert out.returncode == 0, out
    kb = next(line.split()[1] for line in out.stderr.splitlines() if line.startswith("PEAK"))
    return int(kb) / 1024, seconds, out.stdout


def test_library(long_store: dict[str, Any], tmp_path: Path) -> None:
    mb, seconds, _ = run_measured(LIBRARY, [long_store["url"]], hermetic_env(tmp_path))
    within("library", mb, seconds)


def test_cli(long_store: dict[str, Any], tmp_path: Path) -> None:
    code = AT_EXIT + "from memchat.adapters.cli import main; sys.argv[0] = 'memchat'; main()"
    args = ["ask", "-c", "long", *FLAGS, "--store", long_store["url"], "and now?"]
    mb, seconds, out = run_measured(code, args, hermetic_env(tmp_path))
    assert "echo: and now?" in out
    within("cli", mb, seconds)


def test_server(long_store: dict[str, Any], tmp_path: Path) -> None:
    with Served([*FLAGS, "--store", long_store["url"]], hermetic_env(tmp_path)) as served:
        body = {"model": "m", "messages": [{"role": "user", "content": "and now?"}]}
        start = time.monotonic()
        got = httpx.post(
            served.url + "/chat/completions",
            json=body,
            timeout=120,
            headers={"X-Memchat-Conversation": "long"},
        )
        seconds = time.monotonic() - start
        assert got.status_code == 200 and "echo: and now?" in got.text, got.text
        listed = httpx.get(served.url + "/conversations/long").json()
        assert listed["message_count"] >= 2 * TURNS + 2
        assert served.proc is not None
        within("server", peak(served.proc.pid), seconds)


def test_web(long_store: dict[str, Any], tmp_path: Path) -> None:
    with WebProcess(FLAGS, hermetic_env(tmp_path), long_store["db"]) as web:
        visitor = Visitor(App.read(web.url))
        visitor.browser = {
            "visitor": VISITOR,
            "conversation": long_store["ids"][f"visitor:{VISITOR}"],
        }
        start = time.monotonic()
        visitor.open()
        chat = visitor.send("and now?")
        seconds = time.monotonic() - start
        visitor.close()
        assert chat[-1]["content"] == "echo: and now?"
        assert "earlier messages are not shown here" in chat[0]["content"]  # the page is cut
        assert web.proc is not None
        within("web", peak(web.proc.pid), seconds)


# -- idle sessions ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def many_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """60 stored conversations of 1,000 messages (~0.5 MB of text) each."""
    db = tmp_path_factory.mktemp("idle") / "many.db"
    store = open_store(f"sqlite:///{db}")
    for c in range(60):
        info = store.create_conversation(f"c{c}", conversation_id=f"c{c}")
        store.append(
            info.id,
            [
                memchat.user(f"{c}/{n} " + "x" * 500)
                if n % 2 == 0
                else memchat.assistant(f"{c}/{n} " + "y" * 500)
                for n in range(1000)
            ],
        )
    store.close()
    return f"sqlite:///{db}"


def test_the_server_evicts_idle_sessions(many_store: str, tmp_path: Path) -> None:
    args = [*FLAGS, "--store", many_store, "--max-idle-sessions", "4"]
    with Served(args, hermetic_env(tmp_path)) as served:
        assert served.proc is not None
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        rss = []
        for c in range(60):
            got = httpx.post(
                served.url + "/chat/completions",
                json=body,
                timeout=60,
                headers={"X-Memchat-Conversation": f"c{c}"},
            )
            assert got.status_code == 200
            if c in (9, 59):
                rss.append(resident(served.proc.pid))
        grown = rss[1] - rss[0]
        report(
            f"server, 60 conversations of 1,000 messages one after another with "
            f"--max-idle-sessions 4: resident memory {rss[0]:.0f} MB after 10, "
            f"{rss[1]:.0f} MB after 60 (+{grown:.0f} MB)"
        )
        # without eviction (--max-idle-sessions 256) it grows ~43 MB here
        assert grown < 15, f"the resident memory grew {grown:.0f} MB over 50 conversations"
        # an evicted conversation resumes whole from the store
        got = httpx.get(
            served.url + "/conversations/c0/messages", params={"limit": 2, "order": "desc"}
        )
        assert [m["content"] for m in got.json()["data"]] == ["echo: hi", "hi"]


def test_the_web_app_evicts_idle_sessions(upstream: FaultyUpstream, tmp_path: Path) -> None:
    args = [*provider_flags(upstream.url), "--max-idle-sessions", "2"]
    web = WebProcess(args, hermetic_env(tmp_path), tmp_path / "web.db")
    web.args = at_debug(web.args, "memchat.web")  # an eviction is logged at DEBUG
    with web:
        app = App.read(web.url)
        visitors = [Visitor(app) for _ in range(6)]
        for n, visitor in enumerate(visitors):
            visitor.open()
            assert visitor.send(f"I am visitor {n}.")[-1]["content"] == REPLY
        first = visitors[0]
        assert first.send("Who am I?")[-1]["content"] == REPLY
        sent = upstream.chat_requests[-1].body["messages"]
        log = web.log()
        for visitor in visitors:
            visitor.close()
    evicted = re.findall(r"conversation (\S+) evicted from memory", log)
    report(
        f"web, 6 visitors one after another with --max-idle-sessions 2: {len(evicted)} "
        "sessions evicted; the first visitor's next turn resumed its conversation whole"
    )
    # visitors 0-3 make way for 2-5, then visitor 4 for visitor 0 (never more than 2 live)
    assert len(evicted) == 5 and evicted[0] == first.browser["conversation"], log
    # the evicted conversation was rebuilt from the store: its earlier turn went upstream
    assert [(m["role"], m["content"]) for m in sent if m["role"] != "system"] == [
        ("user", "I am visitor 0."),
        ("assistant", REPLY),
        ("user", "Who am I?"),
    ]
    no_traceback(log)


# -- the embedded model ------------------------------------------------------------------------
def gguf_maps(pid: int) -> list[str]:
    """The model file's mappings: llama.cpp maps the weights once per load (one line)."""
    with open(f"/proc/{pid}/maps") as f:
        rows = [line.split() for line in f]
    return [" ".join(r) for r in rows if len(r) >= 6 and r[5].endswith(".gguf")]


@pytest.fixture
def model_env(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    yield hermetic_env(tmp_path, MEMCHAT_MODEL_CACHE=str(tmp_path_factory.getbasetemp() / "models"))


@pytest.mark.model
def test_the_embedded_model_loads_once_per_process(
    model_env: dict[str, str], tmp_path: Path
) -> None:
    visitors = scale(3, 20)
    with WebProcess(
        ["--backend", "local", "--strategy", "cache"], model_env, tmp_path / "web.db"
    ) as web:
        assert web.proc is not None
        app = App.read(web.url)
        for n in range(visitors):
            v = Visitor(app)
            v.open()
            assert v.send(f"Say hello to visitor {n}.")[-1]["content"].strip()
            v.close()
        mapped = gguf_maps(web.proc.pid)
        assert len(mapped) == 1, mapped
    if SOAK:  # the server builds its one backend at start: the web app is the one to watch
        with Served(
            ["--backend", "local", "--strategy", "cache", "--store", "none"], model_env, ready=180
        ) as served:
            assert served.proc is not None
            for n in range(visitors):
                body = {
                    "model": "m",
                    "max_tokens": 8,
                    "messages": [{"role": "user", "content": f"Hello from {n}"}],
                }
                got = httpx.post(served.url + "/chat/completions", json=body, timeout=120)
                assert got.status_code == 200
            assert len(gguf_maps(served.proc.pid)) == 1
    report(
        f"embedded model: {visitors} web visitors (and in the soak as many server "
        "requests): the model file mapped once per process"
    )
