"""`memchat chat`: the interactive loop (streaming, meter, cancel, retry), its command, and its
slash commands (each a function (loop, argument) -> keep going?)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from ...core.errors import MemchatError, NotFound, UsageError
from ...core.session import ChatSession, Reply
from ...core.store import ConversationInfo, Store
from ...settings import Settings
from ...wiring import build_session
from ._common import App, exit_code, hear_early, one_line, settings_options, untold
from ._render import context_table, context_totals, messages_table, meter_text, preview

__all__ = ["COMMANDS", "ChatLoop", "chat", "resolve_id", "run_slash"]

PROMPT = "[bold green]you ›[/] "
ANSWER = "[bold cyan]memchat ›[/] "


class ChatLoop:
    """Reads lines, sends messages, runs slash commands; a failed turn keeps the message."""

    def __init__(
        self,
        app: App,
        session: ChatSession,
        settings: Settings,
        conversation: ConversationInfo | None = None,
        *,
        created: bool = False,
    ) -> None:
        self.app = app
        self.out = app.out
        self.session = session
        self.settings = settings
        self.conversation = conversation
        self.created = created  # made by this chat: deleted at the end if still empty
        self.untitled = created  # titled from the first message
        self.pending: str | None = None
        # a turn that failed (and was not sent again with success): piped input exits non-zero
        self.failure: tuple[str, MemchatError] | None = None
        self.left_out = 0

    @property
    def store(self) -> Store | None:
        return self.session.store

    # -- the loop -------------------------------------------------------------------------
    def run(self) -> None:
        self.banner()
        try:
            while (line := self.read()) is not None:
                if not line.strip():
                    continue
                if line.startswith("/") and not line.startswith("//"):
                    if not run_slash(self, line.strip()):
                        break
                else:
                    self.turn(line[1:] if line.startswith("//") else line)
        finally:
            self.finish()

    def read(self) -> str | None:
        """The next line; None at end of input or on a second Ctrl-C in a row."""
        for attempt in (1, 2):
            try:
                return self.out.input(PROMPT)
            except EOFError:
                break
            except KeyboardInterrupt:
                if attempt == 2:
                    break
                self.out.print("\n[dim](Ctrl-C again, Ctrl-D or /exit to quit)[/]")
        self.out.print()
        return None

    def banner(self) -> None:
        s = self.session
        where = "not saved (store = none)"
        if self.created:
            where = "new conversation"
        elif self.conversation is not None:
            count = len(s.history) - len(s.history.system)
            where = f"conversation {escape(self.conversation.title)!r} ({count:,} messages)"
        self.out.print(
            f"[bold]memchat[/] · {escape(s.backend.model)} ({self.settings.backend}) · "
            f"strategy {s.strategy.name} · window {s.budget.window:,} tokens\n{where}\n"
            "[dim]/help lists the commands · /exit or Ctrl-D quits · Ctrl-C stops a reply[/]"
        )

    # -- one turn -------------------------------------------------------------------------
    def turn(self, text: str) -> None:
        try:
            reply = self.session.send(text)
        except MemchatError as exc:
            self.failure = (text, exc)
            self.error(exc)
            return
        self.out.print(ANSWER, end="")
        told = hear_early(reply, self.early)
        try:
            for chunk in reply:
                self.out.print(chunk, end="", markup=False, highlight=False, soft_wrap=True)
        except KeyboardInterrupt:
            reply.close()
            self.out.print()
            self.keep(text, "cancelled: nothing was saved")
            return
        except MemchatError as exc:
            self.failure = (text, exc)
            self.out.print()
            self.error(exc)
            self.keep(text, "the turn failed and nothing was saved")
            return
        self.out.print()
        self.pending = None
        if self.failure is not None and self.failure[0] == text:  # /retry made it
            self.failure = None
        self.after(reply, text, told)
        for note in self.session.upkeep():  # a summary fold can take a while: after the meter
            self.out.print(f"[orange1]! {escape(note)}[/]")

    def early(self, note: str) -> None:
        """A notice before the answer has any text: on its own line, then the answer's mark."""
        self.out.print(f"\n[orange1]! {escape(note)}[/]")
        self.out.print(ANSWER, end="")

    def keep(self, text: str, why: str) -> None:
        self.pending = text
        self.out.print(f"[orange1]{why}; your message was kept — /retry sends it again:[/]")
        self.out.print(text, style="dim", markup=False, highlight=False)

    def after(self, reply: Reply, text: str, told: list[str]) -> None:
        for notice in untold(reply.notices, told):
            self.out.print(f"[orange1]! {escape(notice)}[/]")
        context = reply.context
        left_out = len(context.dropped) if context is not None else 0
        if left_out > self.left_out:
            self.out.print(
                f"[orange1]trimmed: {left_out:,} older messages are no longer sent to fit the "
                "window (/context shows what was sent)[/]"
            )
        self.left_out = left_out
        self.out.print(meter_text(self.session.meter(), context))
        if self.untitled and self.conversation is not None and self.store is not None:
            self.untitled = False
            self.store.rename_conversation(self.conversation.id, preview(text, 50))

    def error(self, exc: MemchatError) -> None:
        self.out.print(f"[bold red]error:[/] {escape(one_line(exc))}")

    def finish(self) -> None:
        """Remove a conversation this chat created if nothing was said in it."""
        conv, store = self.conversation, self.store
        if conv is None or store is None or not self.created:
            return
        try:
            if store.get_conversation(conv.id).message_count == 0:
                store.delete_conversation(conv.id)
        except MemchatError:
            pass


def _conversation(store: Store | None, name: str | None) -> tuple[ConversationInfo | None, bool]:
    """The conversation to use: NAME (created when missing) or a new one; (info, created)."""
    if store is None:
        if name is not None:
            raise UsageError("--conversation needs a store; storage is off (store = none)")
        return None, False
    if name is None:
        return store.create_conversation("new chat"), True
    try:
        return store.find_conversation(name), False
    except NotFound:
        return store.create_conversation(name), False


@click.command()
@click.option("--conversation", "-c", metavar="NAME", help="Resume (or create) this conversation.")
@settings_options()
@click.pass_obj
def chat(app: App, /, conversation: str | None, **flags: Any) -> None:
    """Chat interactively; the reply streams, a token meter follows each one."""
    settings = app.settings(flags)
    store = app.store(settings)
    backend = app.backend(settings)
    info, created = _conversation(store, conversation)
    try:
        session = build_session(
            settings, store=store, conversation_id=info.id if info else None, backend=backend
        )
    except BaseException:
        if created and store is not None and info is not None:
            store.delete_conversation(info.id)
        raise
    _readline()
    loop = ChatLoop(app, session, settings, info, created=created)
    loop.run()
    if loop.failure is not None and not sys.stdin.isatty():  # a script must see that it failed
        raise click.exceptions.Exit(exit_code(loop.failure[1]))


def _readline() -> None:
    """Line editing and history for input() on a terminal."""
    if sys.stdin.isatty():
        try:
            import readline  # noqa: F401
        except ImportError:  # pragma: no cover - not on every platform
            pass


# -- slash commands ----------------------------------------------------------------------
Command = Callable[[ChatLoop, str], bool]


def run_slash(loop: ChatLoop, line: str) -> bool:
    """Run one slash command; False means leave the chat. Errors are printed, not raised."""
    name, _, arg = line[1:].partition(" ")
    entry = COMMANDS.get(name.lower())
    if entry is None:
        loop.out.print(f"[orange1]unknown command /{escape(name)}[/] — /help lists the commands")
        return True
    try:
        return entry[0](loop, arg.strip())
    except MemchatError as exc:
        loop.error(exc)
        return True


def resolve_id(loop: ChatLoop, token: str) -> str:
    """A message id from its full form or the short tail that /context and /history show."""
    ids = [m.id for m in loop.session.history.messages()]
    if token in ids:
        return token
    found = [i for i in ids if i.endswith(token) or i.startswith(token)] if token else []
    if len(found) == 1:
        return found[0]
    if found:
        raise UsageError(f"{token!r} matches {len(found)} messages; give more of the id")
    raise UsageError(f"no message {token!r} in this conversation; /history shows the ids")


def _tokens(loop: ChatLoop, arg: str) -> bool:
    s = loop.session
    h, b, c = s.history, s.budget, s.counter
    loop.out.print(meter_text(s.meter(), s.last_context))
    loop.out.print(
        f"history: {len(h):,} messages in {len(h.rounds):,} rounds, {h.total_tokens:,} tokens\n"
        f"window {b.window:,} tokens, {b.reserve_for_reply:,} kept for the reply, the prompt "
        f"may use {b.available:,}\n"
        f"counter {c.name} ({'exact' if c.exact else 'an estimate'}) · strategy {s.strategy.name}",
        markup=False,
    )
    return True


def _context(loop: ChatLoop, arg: str) -> bool:
    ctx = loop.session.last_context
    if ctx is None:
        loop.out.print("nothing has been sent yet")
        return True
    loop.out.print(context_table(ctx, loop.session.counter, show_all=arg == "all"))
    loop.out.print(context_totals(ctx, loop.session.budget))
    return True


def _history(loop: ChatLoop, arg: str) -> bool:
    count = _count(arg, default=10)
    messages = loop.session.history.messages()
    loop.out.print(messages_table(messages[-count:], full=False))
    return True


def _count(arg: str, default: int) -> int:
    if not arg:
        return default
    if not arg.isdigit() or int(arg) < 1:
        raise UsageError(f"expected a positive number, got {arg!r}")
    return int(arg)


def _forget(loop: ChatLoop, arg: str) -> bool:
    session = loop.session
    if arg and not arg.isdigit():
        mid = resolve_id(loop, arg)
        text = session.history.find(mid).content
        session.forget([mid])
        loop.out.print(f"forgot message {mid}: {escape(preview(text))}")
        return True
    count = _count(arg, default=1)
    rounds = session.history.rounds
    if not rounds:
        raise UsageError("there is nothing to forget")
    last = rounds[-count:]
    session.forget([m.id for r in last for m in r])
    loop.out.print(f"forgot the last {len(last)} round(s) ({sum(map(len, last))} messages)")
    return True


def _pin(loop: ChatLoop, arg: str, pinned: bool = True) -> bool:
    if not arg:
        raise UsageError(f"usage: /{'pin' if pinned else 'unpin'} ID (/history shows the ids)")
    mid = resolve_id(loop, arg)
    loop.session.pin(mid, pinned)
    loop.out.print(f"{'pinned' if pinned else 'unpinned'} message {mid}")
    return True


def _system(loop: ChatLoop, arg: str) -> bool:
    session = loop.session
    if not arg:
        current = "\n".join(m.content for m in session.history.system) or "(no system prompt)"
        loop.out.print(current, markup=False, highlight=False)
        return True
    session.set_system(None if arg == "-" else arg)
    loop.out.print("system prompt removed" if arg == "-" else "system prompt set")
    return True


def _reset(loop: ChatLoop, arg: str) -> bool:
    session = loop.session
    ids = [m.id for r in session.history.rounds for m in r]
    session.reset()
    loop.left_out = 0
    loop.out.print(f"cleared {len(ids):,} messages; the system prompt stays")
    return True


def _retry(loop: ChatLoop, arg: str) -> bool:
    if loop.pending is None:
        raise UsageError("there is no failed message to retry")
    loop.turn(loop.pending)
    return True


def _help(loop: ChatLoop, arg: str) -> bool:
    table = Table(show_header=False, show_edge=False, box=None)
    for name, (_, text) in COMMANDS.items():
        table.add_row(f"/{name}", text)
    loop.out.print(table)
    loop.out.print("[dim]Start a message with // to send text that begins with /.[/]")
    return True


def _exit(loop: ChatLoop, arg: str) -> bool:
    return False


COMMANDS: dict[str, tuple[Command, str]] = {
    "tokens": (_tokens, "the token meter: context, window, reserve, counter"),
    "context": (_context, "what was sent last turn: kept / dropped / pinned / summary / recalled"),
    "history": (_history, "the last N messages with their ids (default 10)"),
    "forget": (_forget, "forget the last N rounds (default 1), or the message with this id"),
    "pin": (_pin, "always send the round of message ID"),
    "unpin": (lambda loop, arg: _pin(loop, arg, pinned=False), "undo /pin ID"),
    "system": (_system, "show the system prompt, set it (/system TEXT), or remove it (/system -)"),
    "reset": (_reset, "forget every round of this conversation (the system prompt stays)"),
    "retry": (_retry, "send the message of a failed or cancelled turn again"),
    "help": (_help, "this list"),
    "exit": (_exit, "leave (also /quit, Ctrl-D)"),
    "quit": (_exit, "leave"),
}
