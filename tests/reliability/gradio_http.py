"""A web-app visitor over plain HTTP: the requests Chromium makes to the Gradio queue.

The page's events are private to its own page (no Gradio API client may call them), so this
speaks what the page speaks: ``POST /gradio_api/queue/join`` with the event's ``fn_index`` and a
``session_hash`` of its own (one per visitor, like one browser tab), then reads the
``queue/data`` event stream until ``process_completed``. The events are found in ``/config`` by
what triggers them (the page's load, a click on ``#mc-send``), never by a hard-coded index.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = ["App", "Visitor"]


@dataclass
class App:
    """The page's wiring, read once from ``/config``."""

    url: str
    load: dict[str, Any] = field(default_factory=dict)
    send: dict[str, Any] = field(default_factory=dict)
    types: dict[int, str] = field(default_factory=dict)

    @classmethod
    def read(cls, url: str) -> App:
        cfg = httpx.get(url.rstrip("/") + "/config", timeout=30).json()
        types = {c["id"]: c["type"] for c in cfg["components"]}
        button = next(
            c["id"] for c in cfg["components"] if c.get("props", {}).get("elem_id") == "mc-send"
        )
        deps = cfg["dependencies"]
        load = next(
            d
            for d in deps
            if [t[1] for t in d["targets"]] == ["load"]
            and [types[i] for i in d["inputs"]] == ["browserstate"]
        )
        send = next(d for d in deps if [button, "click"] in d["targets"])
        return cls(url.rstrip("/"), load, send, types)

    def index(self, dep: dict[str, Any], kind: str) -> int:
        """Where the first output of component type ``kind`` is in ``dep``'s outputs."""
        return next(n for n, i in enumerate(dep["outputs"]) if self.types[i] == kind)


class Visitor:
    """One browser tab: its own session, its browser storage, its turns."""

    def __init__(self, app: App, timeout: float = 120) -> None:
        self.app = app
        self.session = secrets.token_hex(6)
        self.http = httpx.Client(base_url=app.url + "/gradio_api", timeout=timeout)
        self.browser: dict[str, Any] = {}
        self.received: list[str] = []  # every event line the server sent this tab
        self.text = ""  # what the message box holds after the last turn
        self.chat: list[dict[str, Any]] = []  # the chat as the page shows it

    def call(self, dep: dict[str, Any], data: list[Any]) -> list[Any]:
        body = {
            "data": data,
            "event_data": None,
            "fn_index": dep["id"],
            "trigger_id": dep["targets"][0][0],
            "session_hash": self.session,
        }
        data = json.dumps(body).encode()  # ASCII escapes: a lone surrogate goes as \ud800, too
        joined = self.http.post(
            "/queue/join", content=data, headers={"content-type": "application/json"}
        )
        joined.raise_for_status()
        with self.http.stream("GET", "/queue/data", params={"session_hash": self.session}) as s:
            for line in s.iter_lines():
                self.received.append(line)
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed":
                    if not msg.get("success", True):
                        raise RuntimeError(f"the event failed: {msg}")
                    return list(msg["output"]["data"])
        raise RuntimeError("the event stream ended before the event completed")

    def open(self) -> None:
        out = self.call(self.app.load, [self.browser])
        self.browser = out[self.app.index(self.app.load, "browserstate")]

    def send(self, text: str) -> list[dict[str, Any]]:
        """Send a message; the chat as it then shows: [{"role", "content"}]."""
        dep = self.app.send
        data: list[Any] = [None] * len(dep["inputs"])  # gr.State inputs are kept server-side
        kinds = [self.app.types[i] for i in dep["inputs"]]
        data[kinds.index("textbox")] = text
        data[kinds.index("browserstate")] = self.browser
        out = self.call(dep, data)
        browser = out[self.app.index(dep, "browserstate")]
        if isinstance(browser, dict) and "visitor" in browser:  # not a skipped update
            self.browser = browser
        box = out[self.app.index(dep, "textbox")]
        self.text = box.get("value", self.text) if isinstance(box, dict) else (box or "")
        chat = out[self.app.index(dep, "chatbot")]
        if isinstance(chat, list):
            self.chat = [{"role": m["role"], "content": _text(m["content"])} for m in chat]
        return self.chat  # an update that changed nothing: the chat as it was

    @property
    def owner(self) -> str:
        return f"visitor:{self.browser['visitor']}"

    def close(self) -> None:
        self.http.close()


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))
