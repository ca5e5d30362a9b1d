"""The `memchat` command line (click + rich).

The commands live in private modules (``_chat``, ``_oneshot``, ``_conversations``, ``_keys``,
``_serve``); this package assembles them and turns every MemchatError into one line on stderr
and an exit code (see ``_common``). Tests call ``cli`` through click's CliRunner with
``obj=App(environ=..., make_backend=..., make_store=...)``.

Registration point for commands owned elsewhere: ``LAZY_COMMANDS`` maps a command name to
``"module:attribute"`` of a click command. The module is imported only when that command runs,
so a missing extra cannot break the other commands.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import click

from ...core.errors import ConfigError, MemchatError
from ._chat import chat
from ._common import App, fail, max_idle_sessions_option, settings_options
from ._conversations import conversations, export, import_
from ._keys import keys
from ._oneshot import ask, config, context

__all__ = ["LAZY_COMMANDS", "App", "cli", "main"]

# -- registration point: other helpers add their commands here (one line each) --------------
# A lazy entry whose module exists replaces a built-in command of the same name.
LAZY_COMMANDS: dict[str, str] = {
    "serve": "memchat.adapters.cli._serve:serve",  # the OpenAI-compatible HTTP server
}


def _module_exists(target: str) -> bool:
    try:
        return importlib.util.find_spec(target.partition(":")[0]) is not None
    except ImportError:
        return False


def _unavailable(name: str, reason: str) -> click.Command:
    def run() -> None:
        fail(ConfigError(f"`memchat {name}` is not available: {reason}"))

    return click.Command(name, callback=run, help=f"(not available: {reason})")


class MemchatGroup(click.Group):
    """A group that maps MemchatError to an exit code and loads LAZY_COMMANDS on demand."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MemchatError as exc:
            fail(exc)

    def list_commands(self, ctx: click.Context) -> list[str]:
        lazy = [n for n, target in LAZY_COMMANDS.items() if _module_exists(target)]
        return sorted({*super().list_commands(ctx), *lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = LAZY_COMMANDS.get(name)
        if target is None or not _module_exists(target):
            return super().get_command(ctx, name)
        module_name, _, attr = target.partition(":")
        try:
            loaded: click.Command = getattr(importlib.import_module(module_name), attr)
        except ImportError as exc:
            return _unavailable(name, str(exc))
        return loaded


@click.group(cls=MemchatGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="memchat", prog_name="memchat")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """memchat: a chatbot that stays coherent for thousands of turns in a fixed context window.

    Settings come from flags, then MEMCHAT_* environment variables, then the config file
    ($MEMCHAT_HOME/config.toml), then defaults; `memchat config` shows the result.
    """
    ctx.ensure_object(App)


@cli.command()
@click.option("--host", metavar="HOST", help="Interface to listen on (default 127.0.0.1).")
@click.option("--port", type=int, metavar="PORT", help="Port (default 7860).")
@click.option("--users", metavar="NAME:PW,…", help="Require these logins (or MEMCHAT_USERS).")
@max_idle_sessions_option
@settings_options()
@click.pass_obj
def web(app: App, /, host: str | None, port: int | None, users: str | None,
        max_idle_sessions: int, **flags: Any) -> None:  # fmt: skip
    """Serve the web UI (Gradio; needs the web extra)."""
    settings = app.settings(flags)
    try:
        from ..web import launch
    except ImportError as exc:
        raise ConfigError(
            f'the web UI is not installed ({exc}): pip install "memchat[web]"'
        ) from exc
    launch(settings, host=host, port=port, users=users, max_idle_sessions=max_idle_sessions)


for _command in (chat, ask, context, config, conversations, export, import_, keys):
    cli.add_command(_command)


def main() -> None:
    """The console-script entry point."""
    cli(prog_name="memchat")
