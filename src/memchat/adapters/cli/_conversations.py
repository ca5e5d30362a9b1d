"""Stored conversations: `memchat conversations list|show|rename|rm`, `export`, `import`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
from rich.progress import Progress

from ...core.errors import MemchatError, UsageError
from ...core.history import group_rounds
from ...core.messages import Message
from ...core.store import Store, participant_metadata
from ...core.tokens import TokenCounter, message_tokens
from ...settings import Settings
from ...strategies import make_strategy
from ...transcripts import export_json, export_markdown, read_transcript
from ...wiring import build_index, token_counter_for
from ._common import App, find_conversation, settings_options
from ._render import conversations_table, messages_table

__all__ = ["conversations", "export", "import_"]

EMBED_BATCH = 64


def _store(app: App, flags: dict[str, Any]) -> tuple[Settings, Store]:
    settings = app.settings(flags)
    return settings, app.require_store(settings)


@click.group()
def conversations() -> None:
    """List, show, rename and delete stored conversations."""


@conversations.command("list")
@click.option("--search", "-s", metavar="TEXT", help="Only those whose title or text has TEXT.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@settings_options("store")
@click.pass_obj
def list_(app: App, /, search: str | None, as_json: bool, **flags: Any) -> None:
    """Stored conversations, most recently updated first."""
    _, store = _store(app, flags)
    infos = store.search_conversations(search) if search else store.list_conversations()
    if as_json:
        click.echo(json.dumps([asdict(i) for i in infos], ensure_ascii=False, indent=2))
    elif not infos:
        app.err.print("no conversations yet; `memchat chat` starts one")
    else:
        app.out.print(conversations_table(infos))


@conversations.command()
@click.argument("conversation")
@click.option("--last", "-n", type=click.IntRange(min=1), help="Only the last N messages.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@settings_options("store")
@click.pass_obj
def show(app: App, /, conversation: str, last: int | None, as_json: bool, **flags: Any) -> None:
    """The messages of a conversation, with ids, times and token counts."""
    _, store = _store(app, flags)
    info = find_conversation(store, conversation)
    messages = store.load(info.id)
    messages = messages[-last:] if last else messages
    if as_json:
        click.echo(json.dumps([m.to_dict() for m in messages], ensure_ascii=False, indent=2))
        return
    app.out.print(f"[bold]{info.title or 'untitled'}[/] · {info.id}", markup=True)
    app.out.print(messages_table(messages))


def _unused_title(store: Store, title: str) -> str:
    if any(c.title == title for c in store.list_conversations()):
        raise UsageError(f"a conversation named {title!r} already exists; choose another name")
    return title


@conversations.command()
@click.argument("conversation")
@click.argument("title")
@settings_options("store")
@click.pass_obj
def rename(app: App, /, conversation: str, title: str, **flags: Any) -> None:
    """Give a conversation a new title."""
    _, store = _store(app, flags)
    info = find_conversation(store, conversation)
    store.rename_conversation(info.id, _unused_title(store, title))
    app.err.print(f"renamed {info.title!r} to {title!r}", markup=False)


@conversations.command()
@click.argument("conversation")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@settings_options("store")
@click.pass_obj
def rm(app: App, /, conversation: str, yes: bool, **flags: Any) -> None:
    """Delete a conversation with its messages, summaries and index."""
    _, store = _store(app, flags)
    info = find_conversation(store, conversation)
    if not yes:
        click.confirm(
            f"Delete {info.title!r} ({info.message_count:,} messages)?", abort=True, err=True
        )
    store.delete_conversation(info.id)
    app.err.print(f"deleted {info.title!r} ({info.message_count:,} messages)", markup=False)


@click.command()
@click.argument("conversation")
@click.option(
    "--format", "-f", "fmt", type=click.Choice(["json", "markdown"]),
    help="Default: from the -o file's suffix (.md → markdown), else json.",
)  # fmt: skip
@click.option("--output", "-o", metavar="FILE", help="Write here instead of stdout.")
@settings_options("store")
@click.pass_obj
def export(
    app: App, /, conversation: str, fmt: str | None, output: str | None, **flags: Any
) -> None:
    """Export a conversation as JSON (readable by `memchat import`) or Markdown."""
    _, store = _store(app, flags)
    info = find_conversation(store, conversation)
    messages = store.load(info.id)
    if fmt is None:
        is_md = output is not None and Path(output).suffix.lower() in (".md", ".markdown")
        fmt = "markdown" if is_md else "json"
    text = (export_markdown if fmt == "markdown" else export_json)(
        info.title, messages, info.participants
    )
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from exc
    app.err.print(f"wrote {len(messages):,} messages to {output}", markup=False)


def _counter(app: App, settings: Settings) -> TokenCounter | None:
    """The configured model's counter, or None (counts are then made on first use)."""
    try:
        if app.make_backend is not None:
            counter: TokenCounter = app.backend(settings).token_counter()
            return counter
        return token_counter_for(settings)
    except MemchatError:
        return None


def _progress(app: App) -> Progress:
    return Progress(console=app.err, transient=True, disable=not app.err.is_terminal)


def _count_all(app: App, messages: Sequence[Message], counter: TokenCounter | None) -> None:
    if counter is None:
        return
    with _progress(app) as bar:
        task = bar.add_task("counting tokens", total=len(messages))
        for n, message in enumerate(messages, start=1):
            message_tokens(message, counter)
            if n % 256 == 0 or n == len(messages):
                bar.update(task, completed=n)


@click.command("import")
@click.argument("file", metavar="FILE")
@click.option("--name", metavar="TITLE", help="Title (default: the export's title or file name).")
@settings_options("store", "strategy", "backend", "model", "model-path")
@click.pass_obj
def import_(app: App, /, file: str, name: str | None, **flags: Any) -> None:
    """Import a JSONL / JSON transcript as a new conversation: all of it or nothing."""
    settings, store = _store(app, flags)
    with app.err.status("reading the file", spinner="dots"):
        transcript = read_transcript(file)
    title = _unused_title(store, name or transcript.title or Path(file).stem)
    messages = transcript.messages
    _count_all(app, messages, _counter(app, settings))
    info = store.create_conversation(title, metadata=participant_metadata(transcript.participants))
    try:
        with app.err.status(f"writing {len(messages):,} messages", spinner="dots"):
            store.append(info.id, messages)
    except BaseException:
        store.delete_conversation(info.id)
        raise
    app.err.print(f"imported {len(messages):,} messages as {title!r} ({info.id})", markup=False)
    _embed(app, settings, store, info.id, messages)


def _embed(
    app: App, settings: Settings, store: Store, conv_id: str, messages: list[Message]
) -> None:
    """Embed the imported rounds now when the strategy recalls by embeddings, so the first
    chat turn does not have to. Best effort: the import is already complete."""
    from ...retrieval import ConversationIndex  # loads nothing heavy until it embeds

    try:
        index = build_index(make_strategy(settings.strategy))
    except MemchatError:
        return
    if not isinstance(index, ConversationIndex) or index.embedder is None:
        return
    rounds = group_rounds(messages)[1]
    try:
        index.attach(store, conv_id)
        with _progress(app) as bar:
            task = bar.add_task("embedding for recall", total=len(rounds))
            for start in range(0, len(rounds), EMBED_BATCH):
                index.add(rounds[start : start + EMBED_BATCH])
                bar.update(task, advance=len(rounds[start : start + EMBED_BATCH]))
    except MemchatError as exc:
        app.err.print(f"[orange1]not embedded now ({exc}); recall will embed on first use[/]")
