"""Take the docs' screenshots of the web app: chat, context inspector, settings.

    python tests/web/screenshots.py [OUT_DIR]     (default: docs/screenshots)

Starts the app on 127.0.0.1 with a scripted backend (so the pictures are the same on every
machine), plays a short conversation at a small budget so the inspector has dropped and pinned
messages to show, and saves PNGs with Debian's Chromium.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.web.conftest import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    RecordingBackend,
    bot_texts,
    goto,
    send,
    start_app,
    stop_app,
    wait_for,
)

TURNS = [
    (
        "I'm planning three days in Lisbon in May. Please keep my preferences in mind.",
        "Happy to! Tell me what you like and I'll keep it in this conversation's memory. "
        "So far I know: **Lisbon**, **3 days**, **May**.",
    ),
    (
        "I'm vegetarian, I love azulejo tiles and viewpoints, and I hate queues.",
        "Noted:\n\n- vegetarian food\n- *azulejos* (painted tiles) and *miradouros* "
        "(viewpoints)\n- avoid long queues: book ahead, go early",
    ),
    (
        "Sketch day one as a small table.",
        "| time | plan |\n|---|---|\n| 09:00 | Museu Nacional do Azulejo |\n"
        "| 12:30 | lunch at a vegetarian tasca in Graça |\n"
        "| 17:30 | sunset at Miradouro da Senhora do Monte |",
    ),
    (
        "Split a budget of 600 euros over the three days, in Python.",
        "Here is a tiny helper:\n\n```python\ndef split(budget: float, days: int = 3) -> "
        "list[float]:\n    share = round(budget / days, 2)\n    return [share] * days\n\n"
        "print(split(600))  # [200.0, 200.0, 200.0]\n```",
    ),
    (
        "What did I tell you about food?",
        "You're **vegetarian** — that preference is pinned, so it stays in the context "
        "even after older messages are trimmed.",
    ),
]


def shoot(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    backend = RecordingBackend(context_window=8192, chunk_size=12)
    backend.reset()
    app = start_app(Path(tempfile.mkdtemp(prefix="memchat-shots-")), backend,
                    budget=700, reserve=120)  # fmt: skip
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            goto(page, app.url)
            return _play_and_save(page, backend, out)
    finally:
        stop_app(app)


def _play_and_save(page: Page, backend: RecordingBackend, out: Path) -> list[Path]:
    for n, (question, answer) in enumerate(TURNS):
        backend.enqueue(answer)
        send(page, question)
        wait_for(lambda a=answer: bot_texts(page)[-1:] != [])  # noqa: B023
        if n == 1:
            _pin_first_message(page)
    page.get_by_role("tab", name="Chat").click()
    saved = [_save(page, out / "chat.png")]
    for filler in ("Any rainy-day backup?", "Thanks!"):
        backend.enqueue("Try the Gulbenkian museum, then the LX Factory bookshop. " * 3)
        send(page, filler)
    page.get_by_role("tab", name="Context inspector").click()
    page.locator("#mc-inspector table").first.wait_for()
    saved.append(_save(page, out / "inspector.png"))
    page.get_by_role("tab", name="Settings").click()
    page.get_by_text("OpenAI-compatible API").click()
    page.locator("#mc-base-url textarea, #mc-base-url input").fill("http://127.0.0.1:8000/v1")
    page.locator("#mc-model textarea, #mc-model input").fill("llama-3.1-8b-instruct")
    page.locator("#mc-system textarea").fill("You are a concise travel assistant.")
    saved.append(_save(page, out / "settings.png"))
    return saved


def _pin_first_message(page: Page) -> None:
    page.get_by_role("tab", name="Context inspector").click()
    page.locator("#mc-picker input").click()
    page.get_by_role("option", name="vegetarian").first.click()
    page.locator("#mc-pin").click()
    wait_for(lambda: "Pinned" in page.locator("#mc-notice").inner_text())
    page.get_by_role("tab", name="Chat").click()


def _save(page: Page, path: Path) -> Path:
    time.sleep(0.4)
    page.screenshot(path=str(path))
    return path


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/screenshots")
    for shot in shoot(target):
        print(f"saved {shot}")
