"""Slash commands of `memchat chat`: each is a function (loop, argument) -> keep going?"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from ..core.errors import MemchatError, UsageError
from ._cli_render import context_table, context_totals, messages_table, meter_text, preview

if TYPE_CHECKING:
    from ._cli_chat import ChatLoop

__all__ = ["COMMANDS", "resolve_id", "run_slash"]

Command = Callable[["ChatLoop", str], bool]


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
