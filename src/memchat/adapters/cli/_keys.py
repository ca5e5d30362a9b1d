"""`memchat keys create|list|revoke`: the API keys of `memchat serve`, in the configured store.

``create`` prints the new key once, alone on stdout (so ``KEY=$(memchat keys create ci)``
works); the store keeps only its SHA-256 and its first characters. A running server sees a new
or revoked key on its next request: it looks each key up in the store.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from ...core.errors import ConfigError
from ...core.keys import ApiKey, KeyStore, key_hash, key_prefix, new_key
from ._common import App, settings_options

__all__ = ["keys"]


def _keys(app: App, flags: dict[str, Any]) -> KeyStore:
    settings = app.settings(flags)
    store = app.require_store(settings)
    if not isinstance(store, KeyStore):
        raise ConfigError(f"the store {settings.store_url!r} cannot keep API keys")
    return store


def _when(epoch: float | None) -> str:
    return "" if epoch is None else datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M")


def _shown(key: ApiKey) -> dict[str, Any]:
    return {
        "name": key.name,
        "key": f"{key.prefix}…",
        "created_at": key.created_at,
        "last_used_at": key.last_used_at,
        "revoked_at": key.revoked_at,
    }


@click.group()
def keys() -> None:
    """Create, list and revoke the API keys of `memchat serve`.

    While any key exists (a revoked one too), the server answers only requests that carry a
    valid key, and each key sees only its own conversations.
    """


@keys.command()
@click.argument("name")
@settings_options("store")
@click.pass_obj
def create(app: App, /, name: str, **flags: Any) -> None:
    """Make a key named NAME and print it (once: only its hash is kept)."""
    store = _keys(app, flags)
    secret = new_key()
    made = store.add_key(name, key_hash(secret), key_prefix(secret))
    click.echo(secret)
    app.err.print(
        f"created key {made.name!r} ({made.prefix}…). Save it now: it is not shown again.",
        highlight=False,
        markup=False,
    )


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@settings_options("store")
@click.pass_obj
def list_(app: App, /, as_json: bool, **flags: Any) -> None:
    """Every key (revoked ones too), oldest first; only the first characters are shown."""
    found = _keys(app, flags).list_keys()
    if as_json:
        click.echo(json.dumps([_shown(k) for k in found], ensure_ascii=False, indent=2))
        return
    if not found:
        app.err.print("no keys yet: `memchat keys create NAME` makes one")
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("name", "key", "created", "last used", "revoked"):
        table.add_column(column, no_wrap=True)
    for k in found:
        revoked = Text(_when(k.revoked_at), style="red") if k.revoked else Text("")
        table.add_row(Text(k.name), f"{k.prefix}…", _when(k.created_at), _when(k.last_used_at),
                      revoked)  # fmt: skip
    app.out.print(table)


@keys.command()
@click.argument("name")
@settings_options("store")
@click.pass_obj
def revoke(app: App, /, name: str, **flags: Any) -> None:
    """Revoke the key NAME: requests with it get 401 from now on (no restart needed)."""
    key = _keys(app, flags).revoke_key(name)
    app.err.print(f"revoked key {key.name!r} ({key.prefix}…)", highlight=False, markup=False)
