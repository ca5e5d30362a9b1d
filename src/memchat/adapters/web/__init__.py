"""The Gradio web app: layout and event wiring only (the handlers live in its private modules).

``build_app(settings)`` returns a ``gr.Blocks``; ``launch(settings)`` serves it (``memchat web``).
Each app has its own ``Registry`` of sessions keyed by (owner, conversation); nothing is shared
through module globals. Without login a visitor is a random id kept in the browser
(``gr.BrowserState``); with a user list (``MEMCHAT_USERS="alice:pw,bob:pw"``) Gradio asks for a
login and a user finds their conversations on any browser.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr

from ...core.store import Store
from ...settings import MAX_IDLE_SESSIONS, Settings
from ...strategies import STRATEGY_NAMES
from ...wiring import build_store
from ._chat import ChatHandlers
from ._side import SideHandlers
from ._state import BackendFactory, Prefs, Registry, check_login, parse_users, stable_secret
from ._style import CSS, theme

__all__ = ["build_app", "launch"]

log = logging.getLogger("memchat.web")

TURN_LIMIT = 16  # chat turns streaming at once across all visitors (the embedded model serialises)
PLACEHOLDER = (
    "**memchat** remembers long conversations inside a fixed context window.  \n"
    "Ask anything. Watch the meter above and the *Context inspector* tab to see what is sent."
)
BACKEND_LABELS = {
    "local": "Embedded model (no key)",
    "openai": "OpenAI-compatible API",
    "echo": "Echo (test backend)",
}


class Page(ChatHandlers, SideHandlers):
    """All the page's event handlers, bound to one app's registry."""


def _open_store(settings: Settings) -> Store:
    from ...storage import InMemoryStore

    return build_store(settings) or InMemoryStore()


def _build(
    settings: Settings,
    backend_factory: BackendFactory | None,
    store: Store | None,
    users: dict[str, str],
    max_idle_sessions: int = MAX_IDLE_SESSIONS,
) -> tuple[gr.Blocks, Page]:
    registry = Registry(
        settings, store or _open_store(settings), backend_factory, max_idle_sessions
    )
    export_dir = Path(tempfile.mkdtemp(prefix="memchat-web-"))
    page = Page(registry, export_dir, bool(users))
    with gr.Blocks(title="memchat", analytics_enabled=False, fill_height=True) as demo:
        ui = _layout(settings, stable_secret(settings.home))
        _wire(demo, ui, page)
    return demo, page


def build_app(
    settings: Settings,
    *,
    backend_factory: BackendFactory | None = None,
    store: Store | None = None,
) -> gr.Blocks:
    """The web app for these settings; ``backend_factory(settings)`` and ``store`` for tests."""
    return _build(settings, backend_factory, store, {})[0]


def _layout(settings: Settings, secret: str) -> SimpleNamespace:
    ui = SimpleNamespace()
    ui.browser = gr.BrowserState({}, storage_key="memchat", secret=secret)
    ui.owner, ui.conv, ui.prefs = gr.State(""), gr.State(None), gr.State(None)
    with gr.Sidebar(width=300, elem_id="mc-sidebar"):
        _sidebar(ui)
    gr.HTML(
        '<div class="mc-header"><h1>memchat</h1>'
        "<span>a chat that remembers, inside a fixed context window</span></div>"
    )
    with gr.Tabs():
        with gr.Tab("Chat", id="chat"):
            _chat_tab(ui)
        with gr.Tab("Context inspector", id="inspector"):
            _inspector_tab(ui)
        with gr.Tab("Settings", id="settings"):
            _settings_tab(ui, settings)
    return ui


def _sidebar(ui: SimpleNamespace) -> None:
    gr.HTML('<div class="mc-sidebar-title">Conversations</div>')
    ui.new = gr.Button("+ New chat", variant="primary", size="sm", elem_id="mc-new")
    ui.search = gr.Textbox(
        placeholder="Search titles and messages", show_label=False, elem_id="mc-search",
        container=False,
    )  # fmt: skip
    ui.conversations = gr.Radio(
        choices=[], show_label=False, elem_id="mc-conversations", container=False
    )
    with gr.Accordion("Rename or delete", open=False):
        ui.title = gr.Textbox(label="Title", max_lines=1, elem_id="mc-title")
        with gr.Row():
            ui.rename = gr.Button("Rename", size="sm", elem_id="mc-rename")
            ui.delete = gr.Button("Delete", size="sm", variant="stop", elem_id="mc-delete")
    with gr.Accordion("Export / import", open=False):
        ui.export_fmt = gr.Radio(["JSON", "Markdown"], value="JSON", show_label=False)
        ui.export = gr.Button("Export this conversation", size="sm", elem_id="mc-export")
        ui.export_file = gr.File(visible=False, interactive=False, elem_id="mc-export-file")
        ui.import_ = gr.UploadButton(
            "Import a transcript", size="sm", file_types=[".json", ".jsonl", ".txt"],
            elem_id="mc-import",
        )  # fmt: skip
    ui.who = gr.Markdown(elem_id="mc-who")


def _chat_tab(ui: SimpleNamespace) -> None:
    ui.meter = gr.HTML(elem_id="mc-meter")
    ui.notice = gr.Markdown(elem_id="mc-notice")
    ui.chatbot = gr.Chatbot(
        elem_id="mc-chat",
        show_label=False,
        height="62vh",
        buttons=["copy", "copy_all"],
        feedback_options=None,
        placeholder=PLACEHOLDER,
        sanitize_html=True,
        allow_tags=False,
        editable="user",
        layout="bubble",
    )
    with gr.Row(equal_height=True):
        ui.text = gr.Textbox(
            placeholder="Message memchat — Enter to send, Shift+Enter for a new line",
            show_label=False, lines=1, max_lines=8, scale=8, elem_id="mc-input",
            container=False, autofocus=True,
        )  # fmt: skip
        ui.send = gr.Button("Send", variant="primary", scale=1, elem_id="mc-send")
        ui.stop = gr.Button("■ Stop", variant="stop", scale=1, visible=False, elem_id="mc-stop")
    with gr.Row(elem_classes=["mc-actions"]):
        ui.regenerate = gr.Button(
            "↻ Regenerate", size="sm", scale=0, min_width=130, elem_id="mc-regenerate"
        )
        gr.Markdown(
            "To edit and resend your last message, use the ✎ under it.",
            elem_classes=["mc-hint"],
        )


def _inspector_tab(ui: SimpleNamespace) -> None:
    ui.inspector = gr.HTML(elem_id="mc-inspector")
    with gr.Row(elem_classes=["mc-picker-row"]):
        ui.picker = gr.Dropdown(
            choices=[], label="Pick a message to pin or forget", scale=4, elem_id="mc-picker",
            interactive=True,
        )  # fmt: skip
        with gr.Column(scale=1, min_width=220, elem_classes=["mc-picker-buttons"]):
            ui.pin = gr.Button("Pin", size="sm", elem_id="mc-pin")
            ui.unpin = gr.Button("Unpin", size="sm", elem_id="mc-unpin")
            ui.forget = gr.Button("Forget", size="sm", variant="stop", elem_id="mc-forget")
    gr.Markdown(
        "*Pinned* messages are always sent with their reply; *forgotten* ones are deleted "
        "from the conversation, its store and its summary."
    )


def _settings_tab(ui: SimpleNamespace, settings: Settings) -> None:
    names = dict.fromkeys(("local", "openai", settings.backend))
    choices = [(BACKEND_LABELS.get(n, n), n) for n in names]
    ui.backend = gr.Radio(choices, label="Model backend", elem_id="mc-backend")
    with gr.Row():
        ui.base_url = gr.Textbox(label="Base URL (OpenAI-compatible)", elem_id="mc-base-url",
                                 placeholder="https://api.openai.com/v1")  # fmt: skip
        ui.model = gr.Textbox(label="Model", elem_id="mc-model", placeholder="gpt-4o-mini")
    ui.api_key = gr.Textbox(
        label="API key (kept in this page's session only; never saved or logged)",
        type="password", elem_id="mc-api-key",
    )  # fmt: skip
    ui.system = gr.Textbox(label="System prompt", lines=3, elem_id="mc-system")
    with gr.Row():
        ui.strategy = gr.Dropdown(list(STRATEGY_NAMES), label="Memory strategy",
                                  elem_id="mc-strategy")  # fmt: skip
        ui.budget = gr.Number(label="Budget (tokens, empty = model window)", precision=0,
                              minimum=0, elem_id="mc-budget")  # fmt: skip
        ui.reserve = gr.Number(label="Reply reserve (tokens)", precision=0, minimum=0,
                               elem_id="mc-reserve")  # fmt: skip
    ui.apply = gr.Button("Apply", variant="primary", elem_id="mc-apply")
    ui.settings_status = gr.Markdown(elem_id="mc-settings-status")


def _wire(demo: gr.Blocks, ui: SimpleNamespace, page: Page) -> None:
    view = [ui.chatbot, ui.meter, ui.notice, ui.inspector, ui.picker, ui.conversations]
    fields = [ui.backend, ui.base_url, ui.api_key, ui.model, ui.system, ui.strategy,
              ui.budget, ui.reserve]  # fmt: skip
    state = [ui.owner, ui.conv, ui.prefs, ui.browser]
    turn_out = [ui.text, ui.conv, ui.browser, ui.send, ui.stop, *view]
    quiet: dict[str, Any] = {"api_visibility": "private", "show_progress": "hidden"}
    turn: dict[str, Any] = {**quiet, "concurrency_limit": TURN_LIMIT, "concurrency_id": "turn"}
    gr.on([ui.text.submit, ui.send.click], page.send, [ui.text, *state], turn_out, **turn)
    ui.stop.click(page.stop, None, None, queue=False, **quiet)
    gr.on([ui.regenerate.click, ui.chatbot.retry], page.regenerate, state, turn_out, **turn)
    ui.chatbot.edit(page.edit, state, turn_out, **turn)
    page_load = [ui.owner, ui.conv, ui.prefs, ui.browser, ui.who, *fields, *view]
    demo.load(page.load, [ui.browser], page_load, **quiet)
    _wire_side(ui, page, view, fields, quiet)


def _wire_side(
    ui: SimpleNamespace, page: Page, view: list[Any], fields: list[Any],
    quiet: dict[str, Any],
) -> None:  # fmt: skip
    owner, conv, prefs, browser = ui.owner, ui.conv, ui.prefs, ui.browser
    switched = [conv, browser, ui.title, *view]
    new_chat = [ui.new.click, ui.chatbot.clear]
    gr.on(new_chat, page.new_chat, [owner, prefs, browser], switched, **quiet)
    ui.conversations.input(page.switch, [ui.conversations, owner, prefs, browser], switched,
                           **quiet)  # fmt: skip
    ui.search.change(page.search, [ui.search, owner, conv], [ui.conversations], **quiet)
    ui.rename.click(page.rename, [ui.title, owner, conv, ui.search],
                    [ui.conversations, ui.notice], **quiet)  # fmt: skip
    ui.delete.click(page.delete, [owner, conv, prefs, browser], switched, **quiet)
    ui.export.click(page.export, [ui.export_fmt, owner, conv], [ui.export_file, ui.notice],
                    **quiet)  # fmt: skip
    ui.import_.upload(page.import_, [ui.import_, owner, conv, prefs, browser], switched,
                      **quiet)  # fmt: skip
    ui.apply.click(page.apply_settings, [owner, conv, prefs, browser, *fields],
                   [prefs, browser, ui.settings_status, *fields], **quiet)  # fmt: skip
    for button, handler in ((ui.pin, page.pin), (ui.unpin, page.unpin), (ui.forget, page.forget)):
        button.click(handler, [ui.picker, owner, conv, prefs], view, **quiet)


def launch(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    users: str | None = None,
    block: bool = True,
    backend_factory: BackendFactory | None = None,
    store: Store | None = None,
    max_idle_sessions: int = MAX_IDLE_SESSIONS,
) -> gr.Blocks:
    """Serve the app (``memchat web``). ``users`` is "name:password,…" (default: settings);
    ``max_idle_sessions`` conversations stay in memory between turns (the rest reload).

    ``host``/``port`` default to Gradio's (``GRADIO_SERVER_NAME``/``PORT`` env, as on Spaces,
    else 127.0.0.1:7860). The server's default backend is loaded before the page opens.
    """
    accounts = parse_users(users if users is not None else settings.users)
    demo, page = _build(settings, backend_factory, store, accounts, max_idle_sessions)
    page.registry.build(Prefs.from_settings(settings))  # load the model once, up front
    demo.queue(default_concurrency_limit=4)
    demo.launch(
        server_name=host,
        server_port=port,
        auth=check_login(accounts) if accounts else None,
        auth_message="memchat: sign in to see your conversations." if accounts else None,
        prevent_thread_lock=not block,
        theme=theme(),
        css=CSS,
        run_history=False,
        footer_links=["gradio", "settings"],
        ssr_mode=False,
        max_file_size="20mb",
        quiet=not block,
    )
    return demo
