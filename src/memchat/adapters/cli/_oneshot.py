"""One-shot commands: `memchat ask`, `memchat context` (the context inspector), `memchat config`."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.markup import escape

from ...core.errors import UsageError
from ...core.messages import Message
from ...core.store import Store, participant_metadata
from ...settings import Settings
from ...storage import InMemoryStore
from ...transcripts import read_transcript
from ...wiring import build_session, counting_backend
from ._common import App, find_conversation, hear_early, settings_options, untold
from ._render import context_table, context_totals, settings_table

__all__ = ["ask", "config", "context"]


def _message_from(words: tuple[str, ...]) -> str:
    """The message from the arguments, else from stdin; empty is an error."""
    if words:
        text = " ".join(words)
    elif sys.stdin is None or sys.stdin.isatty():
        raise UsageError("no message: give it as an argument or pipe it on stdin")
    else:
        text = sys.stdin.read()
    if not text.strip():
        raise UsageError("the message is empty")
    return text


@click.command()
@click.argument("words", nargs=-1, metavar="[MESSAGE]...")
@click.option("--conversation", "-c", metavar="NAME", help="Continue a stored conversation.")
@settings_options()
@click.pass_obj
def ask(app: App, /, words: tuple[str, ...], conversation: str | None, **flags: Any) -> None:
    """Send one message and print the reply (reads stdin when no message is given)."""
    text = _message_from(words)
    settings = app.settings(flags)
    store, conv_id = None, None
    if conversation is not None:
        store = app.require_store(settings)
        conv_id = find_conversation(store, conversation).id
    session = build_session(
        settings, store=store, conversation_id=conv_id, backend=app.backend(settings)
    )
    reply = session.send(text)
    told = hear_early(reply, lambda note: app.err.print(f"[orange1]! {escape(note)}[/]"))
    try:
        for chunk in reply:
            click.echo(chunk, nl=False)
    except KeyboardInterrupt:
        reply.close()
        app.err.print("\n[orange1]cancelled: nothing was saved[/]")
        raise click.exceptions.Exit(130) from None
    click.echo()
    for notice in [*untold(reply.notices, told), *session.upkeep()]:
        app.err.print(f"[orange1]! {escape(notice)}[/]")


def _history(
    app: App, settings: Settings, conversation: str | None, transcript: str | None
) -> tuple[Store | None, str | None, list[Message]]:
    """(store, conversation id, messages) for the inspector: a stored chat or a file. A file is
    read into a scratch in-memory store, as an import would store it (with its participants)."""
    if (conversation is None) == (transcript is None):
        raise UsageError("give either a stored CONVERSATION or --transcript FILE (not both)")
    if transcript is not None:
        read = read_transcript(transcript)
        scratch = InMemoryStore()
        info = scratch.create_conversation(metadata=participant_metadata(read.participants))
        scratch.append(info.id, read.messages)
        return scratch, info.id, []
    store = app.require_store(settings)
    return store, find_conversation(store, str(conversation)).id, []


@click.command()
@click.argument("conversation", required=False)
@click.option("--transcript", "-t", metavar="FILE", help="JSONL or JSON array of messages.")
@click.option("--question", "-q", required=True, help="The next user message.")
@click.option("--json", "as_json", is_flag=True, help="Print only a JSON list of messages.")
@click.option("--all", "show_all", is_flag=True, help="List every left-out message.")
@settings_options()
@click.pass_obj
def context(
    app: App,
    /,
    conversation: str | None,
    transcript: str | None,
    question: str,
    as_json: bool,
    show_all: bool,
    **flags: Any,
) -> None:
    """Show exactly the messages a strategy would send for a history plus a question."""
    if not question.strip():
        raise UsageError("the question is empty")
    settings = app.settings(flags)
    store, conv_id, messages = _history(app, settings, conversation, transcript)
    backend = app.backend(settings) if app.make_backend else counting_backend(settings)
    session = build_session(
        settings, store=store, conversation_id=conv_id, backend=backend, history=messages
    )
    ctx = session.context_for(question)
    if as_json:
        for note in ctx.notes:
            app.err.print(f"note: {escape(note)}", style="orange1")
        click.echo(json.dumps(ctx.to_wire(), ensure_ascii=False, indent=2))
        return
    last = ctx.messages[-1] if ctx.messages else None
    asked: Message | None = last if last is not None and last.role == "user" else None
    app.out.print(context_table(ctx, session.counter, question=asked, show_all=show_all))
    app.out.print(context_totals(ctx, session.budget))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the settings as JSON.")
@settings_options()
@click.pass_obj
def config(app: App, /, as_json: bool, **flags: Any) -> None:
    """Show the resolved settings (secrets masked) and where each value came from."""
    settings = app.settings(flags)
    if as_json:
        shown = {
            name: {"value": value, "source": settings.source(name)}
            for name, value in settings.masked().items()
        }
        click.echo(json.dumps(shown, indent=2))
        return
    app.out.print(settings_table(settings))
