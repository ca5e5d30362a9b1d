"""The three servers of bench_server, each in its own subprocess (no shared GIL).

``upstream()`` is the fake upstream (``_server_upstream.py``), ``memchat()`` is
``memchat serve --backend openai`` in front of it with a temporary ``MEMCHAT_HOME`` (its SQLite
store lives there), ``litellm()`` is LiteLLM's proxy from its own venv with a minimal
config.yaml (one model, one worker). Each returns a ``Server`` that is stopped by ``stop()``;
its log goes to a file in the run's temporary folder.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
UPSTREAM_MODEL = "bench-model"
MEMCHAT_MODEL = "gpt-4o-mini"  # a known OpenAI name: memchat counts with tiktoken o200k
LITELLM_ENV = "MEMCHAT_BENCH_LITELLM_VENV"
LITELLM_DEFAULT = "/work/litellm-venv"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    name: str
    url: str  # ends in /v1
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def wait_ready(self, probe: str, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(self.url.removesuffix("/v1") + probe, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        tail = self.log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{self.name} did not start (log {self.log}):\n{tail}")


def _start(name: str, cmd: list[str], port: int, folder: Path, env: dict[str, str],
           probe: str, cwd: Path | None = None) -> Server:  # fmt: skip
    log = folder / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    server = Server(name, f"http://127.0.0.1:{port}/v1", proc, log)
    server.wait_ready(probe)
    return server


def upstream(folder: Path, chunk_delay_ms: float) -> Server:
    port = free_port()
    cmd = [sys.executable, str(HERE / "_server_upstream.py"), "--port", str(port),
           "--chunk-delay-ms", str(chunk_delay_ms)]  # fmt: skip
    return _start("upstream", cmd, port, folder, dict(os.environ), "/v1/models")


def memchat_command() -> list[str]:
    script = Path(sys.executable).parent / "memchat"
    return [str(script)] if script.exists() else [sys.executable, "-m", "memchat"]


def memchat(
    folder: Path, upstream_url: str, name: str, *extra: str, src: str | None = None
) -> Server:
    """``memchat serve`` with defaults except the flags in ``extra`` (e.g. --strategy); with
    ``src``, memchat is imported from that folder (first on PYTHONPATH)."""
    port = free_port()
    home = folder / f"home-{name}"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMCHAT_")}
    env["MEMCHAT_HOME"] = str(home)
    if src:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    cmd = [*memchat_command(), "serve", "--backend", "openai", "--base-url", upstream_url,
           "--model", MEMCHAT_MODEL, "--api-key", "fake-key", "--host", "127.0.0.1",
           "--port", str(port), *extra]  # fmt: skip
    return _start(name, cmd, port, folder, env, "/v1/models")


def litellm_venv(flag: str | None) -> Path:
    return Path(flag or os.environ.get(LITELLM_ENV) or LITELLM_DEFAULT)


def litellm_version(venv: Path) -> str | None:
    """The installed LiteLLM's version, or None when the venv has no LiteLLM proxy."""
    if not (venv / "bin" / "litellm").exists():
        return None
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return out.stdout.strip() or None


def litellm(folder: Path, venv: Path, upstream_url: str) -> Server:
    """LiteLLM's proxy, one worker, one model mapped to ``openai/<name>`` on the upstream;
    no master key (as memchat here), no database, the local model-cost map (no network)."""
    port = free_port()
    work = folder / "litellm"
    work.mkdir()
    (work / "config.yaml").write_text(
        "model_list:\n"
        f"  - model_name: {UPSTREAM_MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{UPSTREAM_MODEL}\n"
        f"      api_base: {upstream_url}\n"
        "      api_key: fake-key\n"
    )
    env = dict(os.environ)
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env["LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY"] = "true"
    cmd = [str(venv / "bin" / "litellm"), "--config", "config.yaml", "--host", "127.0.0.1",
           "--port", str(port), "--num_workers", "1"]  # fmt: skip
    return _start("litellm", cmd, port, folder, env, "/health/liveliness", cwd=work)
