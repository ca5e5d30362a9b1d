"""What the web benchmark's arms share: the prompt, the browser, the page observer, timing."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

from memchat.core.backend import ChatBackend, Chunk, GenerationParams
from memchat.core.messages import Message

__all__ = [
    "CHROMIUM_ARGS",
    "OBSERVE",
    "PROMPT",
    "TARGET_MS",
    "Timed",
    "free_port",
    "library_turn",
    "page_turn",
    "result",
]

PROMPT = "Explain in three sentences why the sky is blue."
TARGET_MS = 150.0
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
OBSERVE = """() => {
  window.__stamps = [];
  window.__clicked = null;
  const chat = document.querySelector('#mc-chat');
  let seen = '';
  const before = chat.querySelectorAll('.message-row.bot-row').length;
  const frame = () => {
    const rows = chat.querySelectorAll('.message-row.bot-row');
    const text = rows.length > before ? rows[rows.length - 1].textContent : '';
    if (text && text !== seen) {
      seen = text;
      window.__stamps.push([performance.now(), text.length]);
    }
    if (!window.__done) requestAnimationFrame(frame);
  };
  window.__done = false;
  requestAnimationFrame(frame);
  document.querySelector('#mc-send').addEventListener('click',
    () => { window.__clicked = performance.now(); }, {capture: true, once: true});
}"""
"""Run in the page before a turn: stamps (performance.now) every change of the newest reply's
text, in a reply row that was not there before, and the moment Send is clicked."""


class Timed:
    """The backend, passed through, timing each stream's first to last text chunk."""

    def __init__(self, inner: ChatBackend) -> None:
        self.inner = inner
        self.rate = float("nan")  # tokens/s of the latest stream, as the model produced them

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def stream(self, messages: list[Message], params: GenerationParams) -> Iterator[Chunk]:
        stamps: list[float] = []
        text = ""
        for chunk in self.inner.stream(messages, params):
            if chunk.text:
                stamps.append(time.perf_counter())
                text += chunk.text
            yield chunk
        seconds = stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0
        tokens = self.inner.token_counter().count(text)
        self.rate = tokens / seconds if seconds > 0 else float("nan")


def result(ttft_ms: float, tokens: int, stream_ms: float, backend: Timed) -> dict:
    rate = tokens / (stream_ms / 1000) if stream_ms > 0 else float("nan")
    return {"ttft_ms": ttft_ms, "tokens": tokens, "tokens_per_s": rate,
            "model_tokens_per_s": backend.rate}  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def library_turn(backend: Timed, settings: Any, store: Any, cid: str) -> dict:
    """Send ``PROMPT`` through ``ChatSession`` on stored conversation ``cid``; time it."""
    from memchat.wiring import build_session

    session = build_session(settings, store=store, conversation_id=cid, backend=backend)
    start = time.perf_counter()
    stamps = [time.perf_counter() for _ in session.send(PROMPT)]
    tokens = backend.token_counter().count(session.history.messages()[-1].content)
    return result((stamps[0] - start) * 1000, tokens, (stamps[-1] - stamps[0]) * 1000, backend)


def page_turn(page: Any, timeout_ms: float = 300_000) -> tuple[float, list[list[float]]]:
    """Send ``PROMPT`` in the memchat page and wait for the turn to end: (click time, stamps)."""
    page.evaluate(OBSERVE)
    page.locator("#mc-input textarea").fill(PROMPT)
    page.locator("#mc-send").click()
    page.locator("#mc-stop").wait_for(state="visible", timeout=120_000)
    page.locator("#mc-stop").wait_for(state="hidden", timeout=timeout_ms)
    clicked, stamps = page.evaluate(
        "() => { window.__done = true; return [window.__clicked, window.__stamps]; }"
    )
    return clicked, stamps
