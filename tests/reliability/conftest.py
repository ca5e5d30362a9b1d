"""Fixtures of the reliability suite: the faulty upstream, memchat's faces as real processes.

Every face is driven through its public interface: the library (``memchat.ChatSession`` with
the OpenAI-compatible backend), the CLI (``python -m memchat …`` in a subprocess), the HTTP
server (a real ``memchat serve`` process, ``tests/stubs/serve_process.py``) and the web app (a
real ``memchat web`` process, driven by Debian's Chromium through the fixtures of
``tests/web/conftest.py``). The upstream is ``upstream.FaultyUpstream``.

``MEMCHAT_SOAK=1`` turns the same tests into the long soak (more kills, turns, visitors, the
provider's default retries): ``scale(fast, soak)`` picks the size.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.contract.conftest import pg_dsn, pg_schema, pg_url  # noqa: F401 - fixtures
from tests.stubs.openai_stub import ok
from tests.stubs.serve_process import Served, free_port
from tests.web.conftest import pages  # noqa: F401 - fixtures

from memchat.storage import open_store

from .upstream import REPLY, TIMEOUT, FaultyUpstream

SOAK = os.environ.get("MEMCHAT_SOAK") == "1"
RETRIES = 2 if SOAK else 1  # 2 is the provider's default (--max-retries)
PROVIDER_KEY = "sk-reliability-" + "5" * 32  # grepped for in every output
ROOT = Path(__file__).resolve().parents[2]


def scale(fast: int, soak: int) -> int:
    return soak if SOAK else fast


REPORT: list[str] = []  # measurements, printed at the end of the run (docs/reliability.md)


def report(line: str) -> None:
    REPORT.append(line)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORT:
        terminalreporter.section(f"reliability measurements ({'soak' if SOAK else 'fast'})")
        for line in REPORT:
            terminalreporter.write_line(line)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def hermetic_env(home: Path, **extra: str) -> dict[str, str]:
    """os.environ without MEMCHAT_*/OPENAI_* (but the PostgreSQL DSN), a private home, the
    provider's key in OPENAI_API_KEY, and ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MEMCHAT_", "OPENAI_")) or k == "MEMCHAT_TEST_PG_DSN"
    }
    env.update(MEMCHAT_HOME=str(home), OPENAI_API_KEY=PROVIDER_KEY, PYTHONPATH=str(ROOT / "src"))
    env.update(extra)
    return env


def provider_flags(url: str, retries: int = RETRIES) -> list[str]:
    return [
        "--backend",
        "openai",
        "--base-url",
        url,
        "--model",
        "stub-model",
        "--max-retries",
        str(retries),
        "--timeout",
        str(TIMEOUT),
    ]


@pytest.fixture(scope="module")
def upstream() -> Iterator[FaultyUpstream]:
    with FaultyUpstream() as up:
        up.default = ok(REPLY)
        yield up


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


def at_debug(args: list[str], logger: str = "") -> list[str]:
    """A ``python -m memchat …`` command line, with ``logger`` (default: the root) at DEBUG
    and every record printed on stderr."""
    at = args.index("-m")
    assert args[at + 1] == "memchat"
    main = (
        "import logging, sys; logging.basicConfig(stream=sys.stderr); "
        f"logging.getLogger({logger!r}).setLevel(logging.DEBUG); "
        "from memchat.adapters.cli import main; sys.argv[0] = 'memchat'; main()"
    )
    return [*args[:at], "-c", main, *args[at + 2 :]]


# -- the CLI ---------------------------------------------------------------------------------
def run_cli(
    args: Sequence[str], env: Mapping[str, str], stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m memchat ARGS`` with stdin piped (never a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "memchat", *args],
        input=stdin or "",
        capture_output=True,
        text=True,
        env=dict(env),
        timeout=timeout,
    )


# -- the server ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(upstream: FaultyUpstream, home: Path) -> Iterator[Served]:
    """One ``memchat serve`` on a SQLite store, in front of the faulty upstream."""
    db = home / "served.db"
    args = [*provider_flags(upstream.url), "--store", f"sqlite:///{db}"]
    with Served(args, hermetic_env(home)) as s:
        yield s


# -- the web app -----------------------------------------------------------------------------
class WebProcess:
    """A real ``memchat web`` on a free port (its own process) and its SQLite file."""

    def __init__(
        self, args: Sequence[str], env: Mapping[str, str], db: Path, port: int | None = None
    ) -> None:
        self.port = port or free_port()  # a restart keeps it: browser storage is per origin
        self.db = db
        self.args = [
            sys.executable,
            "-m",
            "memchat",
            "web",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--store",
            f"sqlite:///{db}",
            *args,
        ]
        self.env = dict(env)
        self._out = tempfile.TemporaryFile()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def __enter__(self) -> WebProcess:
        self.proc = subprocess.Popen(
            self.args, env=self.env, stdout=self._out, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"memchat web exited {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url, timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"memchat web did not start:\n{self.log()}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def log(self) -> str:
        self._out.seek(0)
        return self._out.read().decode("utf-8", "replace")

    def conversations(self) -> list[tuple[str, str, str]]:
        """(id, owner, title) of every stored conversation, every owner."""
        with closing(sqlite3.connect(self.db)) as db:
            return db.execute("SELECT id, owner, title FROM conversations").fetchall()

    def messages(self, cid: str) -> list[tuple[str, str]]:
        store = open_store(f"sqlite:///{self.db}")
        try:
            return [(m.role, m.content) for m in store.load(cid)]
        finally:
            store.close()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture(scope="module")
def web_app(upstream: FaultyUpstream, home: Path) -> Iterator[WebProcess]:
    with WebProcess(provider_flags(upstream.url), hermetic_env(home), home / "web.db") as w:
        yield w


def no_traceback(*texts: Any) -> None:
    for text in texts:
        assert "Traceback" not in str(text), text
