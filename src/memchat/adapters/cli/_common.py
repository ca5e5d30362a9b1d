"""CLI plumbing shared by every command: the injectable App, settings flags, error handling.

Every MemchatError becomes one line on stderr and an exit code, never a traceback:
1 backend (and anything else), 2 usage / bad input / unknown conversation or key / a name
already taken, 3 configuration, 4 storage.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from ...core.backend import ChatBackend
from ...core.errors import (
    AlreadyExists,
    ConfigError,
    MemchatError,
    NotFound,
    StorageError,
    UsageError,
)
from ...core.reply import Reply
from ...core.store import ConversationInfo, Store
from ...settings import MAX_IDLE_SESSIONS, Settings, load_settings
from ...wiring import build_backend, build_store

__all__ = [
    "EXIT_BACKEND",
    "EXIT_CONFIG",
    "EXIT_STORAGE",
    "EXIT_USAGE",
    "App",
    "exit_code",
    "fail",
    "find_conversation",
    "hear_early",
    "one_line",
    "settings_options",
    "untold",
]

EXIT_BACKEND = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_STORAGE = 4

F = TypeVar("F", bound=Callable[..., Any])


def exit_code(exc: MemchatError) -> int:
    if isinstance(exc, ConfigError):
        return EXIT_CONFIG
    if isinstance(exc, UsageError | NotFound | AlreadyExists):
        return EXIT_USAGE
    if isinstance(exc, StorageError):
        return EXIT_STORAGE
    return EXIT_BACKEND


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def fail(exc: MemchatError) -> NoReturn:
    """Print ``error: …`` on stderr and exit with the error's code."""
    message = escape(one_line(exc))
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {message}")
    raise click.exceptions.Exit(exit_code(exc))


@dataclass
class App:
    """What the commands need from the outside world; tests replace any part of it.

    ``make_backend`` and ``make_store`` default to the real ones built from settings;
    ``environ`` defaults to ``os.environ``.
    """

    environ: Mapping[str, str] | None = None
    make_backend: Callable[[Settings], Any] | None = None
    make_store: Callable[[str], Store] | None = None
    out: Console = field(default_factory=lambda: Console(highlight=False))
    err: Console = field(default_factory=lambda: Console(stderr=True, highlight=False))

    def settings(self, flags: Mapping[str, Any]) -> Settings:
        return load_settings(flags, self.environ)

    def backend(self, settings: Settings) -> ChatBackend:
        if self.make_backend is not None:
            made: ChatBackend = self.make_backend(settings)
            return made
        # the embedded model's first-use notes (weights converted) go to stderr
        return build_backend(settings, notice=lambda text: click.echo(text, err=True))

    def store(self, settings: Settings) -> Store | None:
        """The configured store, closed when the command ends; None when storage is off."""
        if not settings.persistent:
            return None
        if self.make_store is not None:
            return self.make_store(settings.store_url)
        store = build_store(settings)
        if store is not None:
            click.get_current_context().call_on_close(store.close)
        return store

    def require_store(self, settings: Settings) -> Store:
        store = self.store(settings)
        if store is None:
            raise ConfigError(
                f"no store is configured (store = {settings.store_url!r}, from "
                f"{settings.source('store_url')}); set --store or MEMCHAT_STORE"
            )
        return store


def find_conversation(store: Store, name: str) -> ConversationInfo:
    """The conversation with this id, title or unique id prefix; a clear NotFound otherwise."""
    return store.find_conversation(name)


# name, metavar, help
_OPTIONS: tuple[tuple[str, str, str], ...] = (
    ("backend", "NAME", "local (embedded model), openai, or echo."),
    ("model", "NAME", "Model name (OpenAI-compatible backends)."),
    ("model-path", "FILE", "GGUF model file (local backend)."),
    ("base-url", "URL", "OpenAI-compatible server URL."),
    ("api-key", "KEY", "API key (prefer OPENAI_API_KEY or MEMCHAT_API_KEY)."),
    ("strategy", "NAME", "Memory strategy: which past messages are sent."),
    ("budget", "N", "Context window in tokens (default: the model's)."),
    ("reserve", "N", "Tokens of the window kept free for the reply."),
    ("system", "TEXT", "System prompt."),
    ("store", "URL", "Store URL (sqlite:///path, postgresql://…, memory:, none)."),
    ("timeout", "SECONDS", "Request timeout."),
    ("connect-timeout", "SECONDS", "Connection timeout."),
    ("max-retries", "N", "Retries on 429/5xx/connection errors."),
    ("weights", "FORMAT", "Embedded model weights: auto, q8_0, f16, original."),
    ("config", "FILE", "Config file (default $MEMCHAT_HOME/config.toml)."),
)


max_idle_sessions_option = click.option(
    "--max-idle-sessions",
    type=click.IntRange(min=1),
    default=MAX_IDLE_SESSIONS,
    show_default=True,
    help="Conversations kept in memory between turns (the rest reload from the store).",
)
"""``--max-idle-sessions`` of ``serve`` and ``web``: one option, one bound."""


def settings_options(*names: str) -> Callable[[F], F]:
    """Add the settings flags (all, or the named ones plus --config) to a command.

    Values stay strings here: ``load_settings`` parses them, so a bad value gets the same
    one-line error whether it came from a flag, the environment or the config file.
    """
    chosen = [o for o in _OPTIONS if not names or o[0] in names or o[0] == "config"]

    def decorate(func: F) -> F:
        for name, metavar, help_text in reversed(chosen):
            func = click.option(f"--{name}", metavar=metavar, help=help_text, default=None)(func)
        return func

    return decorate


def hear_early(reply: Reply, say: Callable[[str], None]) -> list[str]:
    """Have ``say`` print the notices that come before the reply has any text (a retry's
    wait, say) as they happen; returns the list of those told, for ``untold``."""
    told: list[str] = []

    def hear(note: str) -> None:
        if not reply.text:
            say(note)
            told.append(note)

    reply.on_notice = hear
    return told


def untold(notices: Sequence[str], told: Sequence[str]) -> list[str]:
    """The notices still to print (``told`` were printed as they happened)."""
    left, rest = list(told), []
    for notice in notices:
        if notice in left:
            left.remove(notice)
        else:
            rest.append(notice)
    return rest
