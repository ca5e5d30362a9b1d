"""A real `memchat serve` in its own process, on a free loopback port, for multi-process tests.

``with Served(["--store", url, ...], env) as s: httpx.get(s.url + "/models")``; ``s.log()`` is
everything it wrote to stdout and stderr; ``s.kill()`` sends SIGKILL (a crashed worker).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence

import httpx

__all__ = ["Served", "free_port"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Served:
    def __init__(self, args: Sequence[str], env: Mapping[str, str], *, ready: float = 60) -> None:
        self.port = free_port()
        self.args = [sys.executable, "-m", "memchat", "serve", "--host", "127.0.0.1",
                     "--port", str(self.port), *args]  # fmt: skip
        self.env = {**os.environ, **env}
        self.ready = ready
        self._out = tempfile.TemporaryFile()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> Served:
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=self._out,
                                     stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + self.ready
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"memchat serve exited {self.proc.returncode}:\n{self.log()}")
            try:
                httpx.get(self.url + "/models", timeout=1)
                return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError(f"memchat serve did not start in {self.ready} s:\n{self.log()}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def children(self) -> list[int]:
        """The pids of the processes this one started (uvicorn's workers)."""
        assert self.proc is not None
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                if ppid == self.proc.pid:
                    found.append(int(entry))
        return found

    def log(self) -> str:
        self._out.seek(0)
        return self._out.read().decode("utf-8", "replace")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
