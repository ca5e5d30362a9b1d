"""`memchat serve`: the OpenAI-compatible HTTP server (needs the server extra)."""

from __future__ import annotations

from typing import Any

import click

from ..core.errors import ConfigError
from ..core.messages import Message
from ..core.store import Store
from ..settings import build_session
from ._cli_common import App, settings_options

__all__ = ["serve"]


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=int, default=8000, show_default=True, help="Port.")
@click.option(
    "--keys",
    metavar="KEY,…",
    envvar="MEMCHAT_SERVER_KEYS",
    help="Require one of these bearer keys (or MEMCHAT_SERVER_KEYS); each key has its own "
    "conversations.",
)
@click.option(
    "--max-body-bytes",
    type=click.IntRange(min=1),
    default=4 * 1024 * 1024,
    show_default=True,
    help="Largest request body (413 past it).",
)
@click.option(
    "--max-message-bytes",
    type=click.IntRange(min=1),
    default=1024 * 1024,
    show_default=True,
    help="Largest text of one message, UTF-8 (400 past it).",
)
@click.option(
    "--max-json-depth",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Deepest nesting of a JSON body (400 past it).",
)
@click.option(
    "--max-concurrency",
    type=click.IntRange(min=1),
    default=128,
    show_default=True,
    help="Turns running at once (more wait); the embedded model decodes one at a time.",
)
@click.option(
    "--max-idle-sessions",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Conversations kept in memory between turns (the rest reload from the store).",
)
@settings_options()
@click.pass_obj
def serve(app: App, /, host: str, port: int, keys: str | None, max_body_bytes: int,
          max_message_bytes: int, max_json_depth: int, max_concurrency: int,
          max_idle_sessions: int, **flags: Any) -> None:  # fmt: skip
    """Serve an OpenAI-compatible API (/v1/chat/completions) with stateful conversations."""
    settings = app.settings(flags)
    try:
        import uvicorn

        from .server import ServerLimits, build_server
    except ImportError as exc:
        raise ConfigError(
            f'the server is not installed ({exc}): pip install "memchat[server]"'
        ) from exc
    backend = app.backend(settings)
    store = app.store(settings)

    def make_session(st: Store | None, cid: str | None, history: list[Message]) -> Any:
        return build_session(
            settings, store=st, conversation_id=cid, backend=backend, history=history
        )

    key_set = frozenset(k.strip() for k in (keys or "").split(",") if k.strip())
    limits = ServerLimits(
        max_body_bytes=max_body_bytes,
        max_json_depth=max_json_depth,
        max_message_bytes=max_message_bytes,
        max_concurrent_turns=max_concurrency,
        max_idle_sessions=max_idle_sessions,
    )
    server = build_server(
        make_session, store=store, model=backend.model, keys=key_set, limits=limits
    )
    uvicorn.run(server, host=host, port=port, log_level="info")
