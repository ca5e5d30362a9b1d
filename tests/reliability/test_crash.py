"""Crash durability: SIGKILL during turns, reopen, and nothing committed is lost or half-kept.

Three writers, each killed at random moments: a library process (``memchat.ChatSession`` with a
summarising strategy on SQLite and on PostgreSQL), a real ``memchat serve`` (turns streamed from
the slow upstream, so kills land mid-reply) and a real ``memchat web`` (turns sent from
Chromium). After each kill: the database's own integrity check passes, the conversation is whole
turns in order, every turn the writer reported as done is there, the summary covers only stored
messages, and a new session on the reopened store takes a turn (its summary and recall state are
rebuilt from the messages). The seed is in every failure message.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.contract.conftest import pg_execute
from tests.stubs.openai_stub import ok
from tests.stubs.serve_process import Served, free_port
from tests.web.conftest import Pages, bot_texts, wait_for

import memchat
from memchat.storage import open_store

from .conftest import ROOT, WebProcess, hermetic_env, provider_flags, scale
from .upstream import FaultyUpstream

WRITER = """
import sys
import memchat
from memchat.storage import open_store

store = open_store(sys.argv[1])
cid, n = sys.argv[2], int(sys.argv[3])
session = memchat.ChatSession(memchat.EchoBackend(), store=store, conversation_id=cid,
                              strategy=memchat.SummaryMemory(), budget=memchat.Budget(400, 60))
print("ready", flush=True)
while True:
    session.ask(f"q {n} " + "lorem ipsum " * 12)
    print(n, flush=True)
    session.upkeep()  # the summary fold: killed during it too
    n += 1
"""


class Writer:
    def __init__(self, url: str, cid: str, start: int) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, url, cid, str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def kill_after(self, seconds: float) -> list[int]:
        assert self.lines.get(timeout=60) == "ready"
        time.sleep(seconds)
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        assert "Traceback" not in err, err
        time.sleep(0.05)
        done = []
        while not self.lines.empty():
            done.append(int(self.lines.get()))
        return done


def check_conversation(
    store: Any, cid: str, reported: set[int], where: str, reply: str | None = None
) -> int:
    """Whole turns 0..n-1 in order, each reported one there, the summary within; returns n."""
    messages = store.load(cid)
    pairs = [(m.role, m.content.split(" ")) for m in messages]
    assert len(pairs) % 2 == 0, f"{where}: a half turn was kept"
    turns = []
    for (r1, q), (r2, a) in zip(pairs[::2], pairs[1::2], strict=True):
        assert r1 == "user" and r2 == "assistant", f"{where}: turn broken: {q} / {a}"
        answer = " ".join(a)
        whole = answer == reply if reply else answer.startswith(f"echo: q {q[1]} ")
        assert q[0] == "q" and whole, f"{where}: {q[:2]} answered by {answer!r}"
        turns.append(int(q[1]))
    assert turns == list(range(len(turns))), f"{where}: turns missing or out of order: {turns}"
    lost = reported - set(turns)
    assert not lost, f"{where}: committed turns lost: {sorted(lost)}"
    summary = store.get_summary(cid)
    if summary is not None:  # it covers stored messages only
        assert summary.covers_until in {m.id for m in messages}, f"{where}: stale summary"
    assert store.get_conversation(cid).message_count == len(messages)
    return len(turns)


def kill_library(url: str, integrity: Callable[[], None], kills: int, seed: int) -> int:
    rng = random.Random(seed)
    store = open_store(url)
    cid = store.create_conversation("crash").id
    store.close()
    reported: set[int] = set()
    present = 0
    for k in range(kills):
        reported.update(Writer(url, cid, present).kill_after(rng.uniform(0.05, 0.6)))
        integrity()
        store = open_store(url)
        try:
            present = check_conversation(store, cid, reported, f"seed {seed}, kill {k + 1}")
        finally:
            store.close()
    store = open_store(url)  # a fresh session resumes and goes on
    try:
        session = memchat.ChatSession(
            memchat.EchoBackend(),
            store=store,
            conversation_id=cid,
            history=store.load(cid),
            strategy=memchat.SummaryMemory(),
            budget=memchat.Budget(400, 60),
        )
        assert session.ask(f"q {present} after the crashes").startswith(f"echo: q {present}")
        check_conversation(store, cid, reported, f"seed {seed}, after")
    finally:
        store.close()
    return len(reported)


def sqlite_ok(path: Path) -> None:
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []


def test_library_on_sqlite_survives_sigkill(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    path = tmp_path / "crash.db"
    turns = kill_library(f"sqlite:///{path}", lambda: sqlite_ok(path), scale(10, 40), seed)
    assert turns >= 20, f"seed {seed}: too few turns committed to test anything ({turns})"


@pytest.mark.postgres
def test_library_on_postgres_survives_sigkill(pg_url: str, pg_dsn: str, pg_schema: str) -> None:
    seed = random.randrange(1 << 30)

    def integrity() -> None:  # PostgreSQL's equivalent: every index valid, references whole
        bad = pg_execute(
            pg_dsn,
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON "
            "c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND NOT (i.indisvalid AND i.indisready)",
            (pg_schema,),
        )
        assert bad == []
        orphans = pg_execute(
            pg_dsn,
            f"SELECT count(*) FROM {pg_schema}.messages m WHERE NOT "
            f"EXISTS (SELECT 1 FROM {pg_schema}.conversations c WHERE "
            "c.id = m.conversation_id)",
        )
        assert orphans == [(0,)]

    turns = kill_library(pg_url, integrity, scale(6, 25), seed)
    assert turns >= 20, f"seed {seed}: too few turns committed to test anything ({turns})"


# -- memchat serve ---------------------------------------------------------------------------
def test_memchat_serve_survives_sigkill_mid_reply(upstream: FaultyUpstream, home: Path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    db = home / "serve-crash.db"
    upstream.default = ok("the answer to it", chunk_size=2, delay=0.01)  # ~0.1 s a reply
    reported: set[int] = set()
    present = 0
    for k in range(scale(4, 20)):
        with Served(
            [*provider_flags(upstream.url), "--store", f"sqlite:///{db}", "--strategy", "budget"],
            hermetic_env(home),
        ) as served:
            n = present
            stop = present + rng.randint(2, 5)  # turns before the one it is killed in
            while True:
                body = {
                    "model": "m",
                    "stream": n % 2 == 1,
                    "messages": [{"role": "user", "content": f"q {n} tell me"}],
                }
                if n == stop:  # kill it while this request runs (or just after it)
                    threading.Timer(rng.uniform(0.0, 0.12), served.kill).start()
                try:
                    got = httpx.post(
                        served.url + "/chat/completions",
                        json=body,
                        timeout=10,
                        headers={"X-Memchat-Conversation": "crash"},
                    )
                except httpx.TransportError:
                    break
                if got.status_code != 200 or (body["stream"] and "[DONE]" not in got.text):
                    break  # cut by the kill
                reported.add(n)
                n += 1
            if served.proc is not None:
                served.proc.wait(10)
        sqlite_ok(db)
        store = open_store(f"sqlite:///{db}")
        try:
            [cid] = [c.id for c in store.list_conversations()]
            present = check_conversation(
                store, cid, reported, f"seed {seed}, kill {k + 1}", reply="the answer to it"
            )
        finally:
            store.close()
    assert len(reported) >= scale(8, 40), f"seed {seed}: {len(reported)} turns"
    upstream.default = ok()


# -- memchat web -----------------------------------------------------------------------------
@pytest.mark.browser
def test_memchat_web_survives_sigkill_mid_reply(
    upstream: FaultyUpstream, home: Path, chromium: Any
) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    db = home / "web-crash.db"
    upstream.default = ok("the answer to it", chunk_size=2, delay=0.02)
    reported: set[int] = set()
    n = 0
    opened = Pages(chromium)
    ctx = opened.context()
    port = free_port()
    try:
        for k in range(scale(2, 8)):
            with WebProcess(
                provider_flags(upstream.url) + ["--strategy", "budget"],
                hermetic_env(home),
                db,
                port,
            ) as app:
                page = opened.open(app.url, ctx)
                for _ in range(rng.randint(1, 3)):
                    before = len(bot_texts(page))
                    page.locator("#mc-input textarea").fill(f"q {n} tell me")
                    page.locator("#mc-send").click()
                    wait_for(lambda p=page, b=before: answered(p, b), timeout=30)
                    reported.add(n)
                    n += 1
                page.locator("#mc-input textarea").fill(f"q {n} tell me")
                page.locator("#mc-send").click()
                time.sleep(rng.uniform(0.0, 0.3))
                app.kill()  # mid-reply, or just after it
                page.close()
            sqlite_ok(db)
            store = open_store(f"sqlite:///{db}")
            try:
                [cid] = [c.id for c in store.list_conversations(owner=_owner(db))]
                n = check_conversation(
                    store, cid, reported, f"seed {seed}, kill {k + 1}", reply="the answer to it"
                )
            finally:
                store.close()
    finally:
        opened.close()
        upstream.default = ok()
    assert opened.outside == []


def answered(page: Any, before: int) -> bool:
    texts = bot_texts(page)
    done = len(texts) > before and "the answer to it" in texts[-1]
    return done and bool(page.locator("#mc-stop").is_hidden())


def _owner(db: Path) -> str:
    with closing(sqlite3.connect(db)) as conn:
        [(owner,)] = conn.execute("SELECT DISTINCT owner FROM conversations").fetchall()
    return str(owner)
