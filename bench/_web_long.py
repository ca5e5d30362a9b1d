"""The web benchmark's long-chat arm: time to first token with the page already full.

A fresh chat is the page's best case. Here the chat already holds ``ROUNDS`` rounds of
Markdown (lists, code) imported through the page's own Import button, so the page draws close
to the most messages it ever shows (175-200 of them: it hides earlier ones 50 at a time), and
every turn's first update carries all of them. The library
anchor runs the same turns on a stored copy of the same conversation. Both use a
``ScriptedBackend`` with a fixed delay per chunk: the model's time is the same on both sides, so
the difference is what the page adds (the embedded model would re-read a 15k-token prompt).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._web_common import Timed, free_port, library_turn, page_turn, result
from memchat.backends.fake import ScriptedBackend
from memchat.core.messages import Message
from memchat.settings import load_settings
from memchat.storage import SQLiteStore

__all__ = ["ROUNDS", "long_chat"]

ROUNDS = 112  # 224 messages: the page shows the newest 174, then 176, 178... (at most 200)
ANSWER = (
    "Here is a longer answer with some **Markdown** and a list:\n\n- one point\n- another\n\n"
    "```python\ndef double(x):\n    return x * 2\n```\n\nAnd a closing sentence or two.\n"
)
REPLY = "The sky looks blue because air scatters short wavelengths more. " * 3
LABEL = (
    f"ScriptedBackend, 6-character chunks every 40 ms; {ROUNDS} rounds already in the chat "
    "(175-200 messages drawn)"
)


def _history() -> list[Message]:
    messages = []
    for i in range(ROUNDS):
        messages += [Message("user", f"Question {i}: what about topic {i}?"),
                     Message("assistant", ANSWER)]  # fmt: skip
    return messages


def long_chat(browser: Any, runs: int) -> tuple[str, list[dict], list[dict]]:
    """(label, library runs, page runs) on a conversation of ``ROUNDS`` rounds."""
    from memchat.adapters.web import launch

    inner = ScriptedBackend(default=REPLY, chunk_size=6, delay=0.04, context_window=200_000)
    backend = Timed(inner)
    home = Path(tempfile.mkdtemp(prefix="memchat-bench-long-"))
    store = SQLiteStore(str(home / "web.db"))
    flags = {"backend": "echo", "strategy": "cache", "home": str(home),
             "store": f"sqlite:///{home / 'web.db'}"}  # fmt: skip
    settings = load_settings(flags, environ={})
    port = free_port()
    demo = launch(settings, host="127.0.0.1", port=port, block=False,
                  backend_factory=lambda s: backend, store=store)  # fmt: skip
    lib: list[dict] = []
    web: list[dict] = []
    try:
        page = _open_full_page(browser, port, home)
        lib_id = store.create_conversation("library copy", owner="bench").id
        store.append(lib_id, _history())
        library_turn(backend, settings, store, lib_id)  # warm-up, not counted
        _page_turn(page, backend)
        for _ in range(runs):
            lib.append(library_turn(backend, settings, store, lib_id))
            web.append(_page_turn(page, backend))
        page.close()
    finally:
        demo.close()
        store.close()
    return LABEL, lib, web


def _open_full_page(browser: Any, port: int, home: Path) -> Any:
    transcript = home / "long.jsonl"
    with transcript.open("w") as out:
        for m in _history():
            out.write(json.dumps({"role": m.role, "content": m.content}) + "\n")
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    page.goto(f"http://127.0.0.1:{port}/")
    page.wait_for_function("() => /Private/.test(document.body.innerText)")
    page.get_by_text("Export / import").click()
    with page.expect_file_chooser() as chooser:
        page.locator("#mc-import").click()
    chooser.value.set_files(str(transcript))
    page.wait_for_function(
        "() => /Imported/.test(document.querySelector('#mc-notice').innerText)"
        " && document.querySelectorAll('#mc-chat .message-row').length > 150",
        timeout=120_000,
    )
    return page


def _page_turn(page: Any, backend: Timed) -> dict:
    time.sleep(0.5)  # let the previous turn's last redraw settle
    clicked, stamps = page_turn(page)
    tokens = backend.token_counter().count(REPLY)
    return result(stamps[0][0] - clicked, tokens, stamps[-1][0] - stamps[0][0], backend)
