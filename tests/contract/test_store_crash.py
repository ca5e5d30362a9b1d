"""Kill a writer with SIGKILL at random moments; no committed turn may be lost, no half turn kept.

The writer process appends turns (a user message and its reply, one ``append`` each) in a tight
loop and prints each turn's number after ``append`` returns. After every kill the test reopens
the store and checks: every printed turn is there, turns are whole and in order, the database
opens (and SQLite's integrity check passes). The seed is in every failure message.
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

import pytest

from memchat.core.store import Store
from memchat.storage import SQLiteStore, open_store

WRITER = """
import sys
from memchat.core.messages import assistant, user
from memchat.storage import open_store

store = open_store(sys.argv[1])
cid, n = sys.argv[2], int(sys.argv[3])
pad = " lorem ipsum" * 200
print("ready", flush=True)
while True:
    store.append(cid, [user(f"q {n}{pad}"), assistant(f"a {n}{pad}")])
    print(n, flush=True)
    n += 1
"""
SRC = str(Path(__file__).resolve().parents[2] / "src")


class Writer:
    """A writer subprocess whose stdout lines are collected by a thread."""

    def __init__(self, url: str, cid: str, start: int) -> None:
        env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, url, cid, str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def wait_ready(self, timeout: float = 30.0) -> None:
        line = self.lines.get(timeout=timeout)
        assert line == "ready", f"writer said {line!r}"

    def kill(self) -> list[int]:
        """SIGKILL now; returns the turns it reported committed."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._reader.join(timeout=10)
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        self.proc.stdout.close()  # type: ignore[union-attr]
        self.proc.stderr.close()
        assert "Traceback" not in err, err
        done = []
        while not self.lines.empty():
            line = self.lines.get()
            if line != "ready":
                done.append(int(line))
        return done


def check_turns(store: Store, cid: str, reported: set[int], where: str) -> int:
    """Whole turns 0..n-1 in order, every reported one present; returns n."""
    contents = [(m.role, m.content.split(" ", 2)[:2]) for m in store.load(cid)]
    assert len(contents) % 2 == 0, f"{where}: a half turn was kept"
    turns = []
    for i in range(0, len(contents), 2):
        (r1, (q, qn)), (r2, (a, an)) = contents[i], contents[i + 1]
        assert (r1, q, r2, a) == ("user", "q", "assistant", "a"), f"{where}: turn broken at {i}"
        assert qn == an, f"{where}: question {qn} answered by {an}"
        turns.append(int(qn))
    assert turns == list(range(len(turns))), f"{where}: turns missing or out of order"
    lost = reported - set(turns)
    assert not lost, f"{where}: committed turns lost: {sorted(lost)}"
    assert store.get_conversation(cid).message_count == len(contents)
    return len(turns)


def kill_repeatedly(url: str, reopen: Callable[[], Store], kills: int, seed: int) -> int:
    """Run and kill writers; returns how many turns were reported in all."""
    rng = random.Random(seed)
    store = reopen()
    cid = store.create_conversation("crash test").id
    store.close()
    reported: set[int] = set()
    present = 0
    for k in range(kills):
        writer = Writer(url, cid, present)
        if rng.random() < 0.2:
            time.sleep(rng.uniform(0.0, 0.5))  # sometimes during start-up and open
        else:
            writer.wait_ready()
            time.sleep(rng.uniform(0.0, 0.25))
        reported.update(writer.kill())
        store = reopen()
        try:
            present = check_turns(store, cid, reported, f"seed {seed}, kill {k + 1}")
        finally:
            store.close()
    print(f"seed {seed}: {kills} kills, {len(reported)} turns reported, {present} stored")
    return len(reported)


def test_sqlite_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    seed = random.randrange(1 << 30)
    started = time.monotonic()

    def reopen() -> SQLiteStore:
        store = SQLiteStore(path)
        with closing(sqlite3.connect(path)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",), f"seed {seed}"
        return store

    reported = kill_repeatedly(f"sqlite:///{path}", reopen, kills=12, seed=seed)
    assert reported > 20, f"seed {seed}: the writer committed too little to test anything"
    assert time.monotonic() - started < 60


@pytest.mark.postgres
def test_postgres_survives_sigkill(pg_url: str) -> None:
    seed = random.randrange(1 << 30)
    reported = kill_repeatedly(pg_url, lambda: open_store(pg_url), kills=5, seed=seed)
    assert reported > 5, f"seed {seed}: the writer committed too little to test anything"
