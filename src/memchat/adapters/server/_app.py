"""The app `memchat serve` runs, built from settings: in its own process, or in each worker.

With ``--workers N`` uvicorn starts N processes and each imports ``app_from_environ`` (an
import-string factory). The command's options travel to them in the environment variable
``MEMCHAT_SERVE_OPTIONS`` (JSON: the settings flags, ``--keys``, ``--no-auth``, the limits);
each worker resolves its settings from those flags and its environment exactly as the command
did, and opens its own backend and store. Secrets given as flags (``--api-key``, ``--keys``)
are therefore in the workers' environment; prefer ``OPENAI_API_KEY`` / ``MEMCHAT_SERVER_KEYS``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from starlette.applications import Starlette

from ...core.keys import KeyStore
from ...core.messages import Message
from ...core.store import Store
from ...settings import Settings, load_settings
from ...wiring import build_backend, build_session, build_store
from . import build_server
from ._auth import Auth, Scrubber, scrub_logs
from ._request import ServerLimits

__all__ = ["ENV", "ServeOptions", "app_from_environ", "build_app"]

ENV = "MEMCHAT_SERVE_OPTIONS"


@dataclass(frozen=True)
class ServeOptions:
    """What `memchat serve` was told besides where to listen."""

    flags: Mapping[str, Any] = field(default_factory=dict)
    keys: tuple[str, ...] = ()
    no_auth: bool = False
    limits: Mapping[str, int] = field(default_factory=dict)

    def to_env(self) -> str:
        return json.dumps({**asdict(self), "flags": dict(self.flags)})

    @classmethod
    def from_env(cls, text: str) -> ServeOptions:
        data = json.loads(text)
        return cls(data["flags"], tuple(data["keys"]), bool(data["no_auth"]), data["limits"])


def secrets_of(settings: Settings, options: ServeOptions) -> list[str | None]:
    return [settings.api_key, *options.keys]


def build_app(
    settings: Settings,
    options: ServeOptions,
    backend: Any,
    store: Store | None,
    on_close: Callable[[], None] | None = None,
) -> Starlette:
    """The server on this backend and store, its keys from ``options`` and the store."""

    def make_session(st: Store | None, cid: str | None, history: list[Message]) -> Any:
        return build_session(
            settings, store=st, conversation_id=cid, backend=backend, history=history
        )

    key_store = store if isinstance(store, KeyStore) else None
    auth = Auth(static=options.keys, keys=key_store, enabled=not options.no_auth)
    return build_server(
        make_session,
        store=store,
        model=backend.model,
        keys=frozenset(options.keys),
        auth=auth,
        limits=ServerLimits(**options.limits),
        secrets=secrets_of(settings, options),
        on_close=on_close,
    )


def _to_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)  # noqa: T201


def app_from_environ() -> Starlette:
    """uvicorn's factory in each worker process."""
    options = ServeOptions.from_env(os.environ[ENV])
    settings = load_settings(options.flags)
    scrub_logs(Scrubber(secrets_of(settings, options)))
    backend = build_backend(settings, notice=_to_stderr)  # the embedded model's first-use notes
    store = build_store(settings)

    def close() -> None:
        if store is not None:
            store.close()

    return build_app(settings, options, backend, store, on_close=close)
