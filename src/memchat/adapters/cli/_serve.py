"""`memchat serve`: the OpenAI-compatible HTTP server (needs the server extra).

Keys: while any key exists (``memchat keys create``, or ``--keys``) every request needs one.
Without any, the server starts only on a loopback address, unless ``--no-auth`` says to serve
everyone (``--no-auth`` also ignores keys that exist).

Workers: ``--workers N`` runs N processes (uvicorn's; the app is built in each by
``server._app.app_from_environ``). They share one history only through PostgreSQL, which
also serialises each conversation's turns across them. On SQLite or the memory store the
server says so and runs one process: SQLite is the single-process default, and a memory store
is one per process.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any

import click

from ...core.errors import ConfigError
from ...core.keys import KeyStore
from ...core.store import ConversationLocks, Store
from ...settings import Settings
from ._common import App, max_idle_sessions_option, settings_options

__all__ = ["serve"]

FACTORY = "memchat.adapters.server._app:app_from_environ"


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_auth(app: App, host: str, keys: tuple[str, ...], store: Store | None,
                no_auth: bool) -> None:  # fmt: skip
    stored = isinstance(store, KeyStore) and store.has_keys()
    if no_auth:
        if keys or stored:
            app.err.print("[orange1]! --no-auth: the API keys that exist are ignored; every "
                          "caller shares one set of conversations[/]")  # fmt: skip
        return
    if not keys and not stored and not is_loopback(host):
        raise ConfigError(
            f"refusing to serve on {host} without API keys: anyone who can reach it could use "
            "it. Create a key (`memchat keys create NAME`), pass --keys / MEMCHAT_SERVER_KEYS, "
            "or pass --no-auth to serve without keys anyway"
        )


def _workers(app: App, settings: Settings, store: Store | None, workers: int) -> int:
    if workers == 1 or store is None or isinstance(store, ConversationLocks):
        return workers
    app.err.print(
        f"[orange1]! --workers {workers}: the store {type(store).__name__} "
        f"({settings.store_url}) keeps one history for one process only, so this runs ONE "
        "process. Use a PostgreSQL store (--store postgresql://…) for several workers.[/]",
        highlight=False,
    )
    return 1


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
@max_idle_sessions_option
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes; several share one history only on a PostgreSQL store.",
)
@click.option("--no-auth", is_flag=True, help="Serve without API keys, on any host.")
@settings_options()
@click.pass_obj
def serve(app: App, /, host: str, port: int, keys: str | None, max_body_bytes: int,
          max_message_bytes: int, max_json_depth: int, max_concurrency: int,
          max_idle_sessions: int, workers: int, no_auth: bool, **flags: Any) -> None:  # fmt: skip
    """Serve an OpenAI-compatible API (/v1/chat/completions) with stateful conversations."""
    settings = app.settings(flags)
    try:
        import uvicorn

        from ..server._app import ENV, ServeOptions, build_app, secrets_of
        from ..server._auth import Scrubber, scrub_logs
    except ImportError as exc:
        raise ConfigError(
            f'the server is not installed ({exc}): pip install "memchat[server]"'
        ) from exc
    key_list = tuple(dict.fromkeys(k.strip() for k in (keys or "").split(",") if k.strip()))
    limits = {"max_body_bytes": max_body_bytes, "max_json_depth": max_json_depth,
              "max_message_bytes": max_message_bytes, "max_concurrent_turns": max_concurrency,
              "max_idle_sessions": max_idle_sessions}  # fmt: skip
    options = ServeOptions({k: v for k, v in flags.items() if v is not None}, key_list,
                           no_auth, limits)  # fmt: skip
    store = app.store(settings)
    _check_auth(app, host, key_list, store, no_auth)
    workers = _workers(app, settings, store, workers)
    scrub_logs(Scrubber(secrets_of(settings, options)))
    if workers > 1:
        if store is not None:
            store.close()  # each worker opens its own
        os.environ[ENV] = options.to_env()
        uvicorn.run(FACTORY, factory=True, workers=workers, host=host, port=port,
                    log_level="info")  # fmt: skip
        return
    server = build_app(settings, options, app.backend(settings), store)
    uvicorn.run(server, host=host, port=port, log_level="info")
