"""Rich renderings shared by the CLI commands: meter line, context table, settings, lists."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from rich.table import Table
from rich.text import Text

from ...core.memory import Budget, Context, Status
from ...core.messages import Message
from ...core.meter import MeterReading
from ...core.store import ConversationInfo
from ...core.tokens import TokenCounter, message_tokens
from ...settings import Settings

__all__ = [
    "context_table",
    "context_totals",
    "conversations_table",
    "messages_table",
    "meter_text",
    "preview",
    "settings_table",
    "short_id",
]

_LEVEL_STYLE = {"ok": "dim", "warn": "bold orange1", "critical": "bold red"}
QUESTION = "question"  # the CLI's own tag: the message being asked about (``memchat context``)
_STATUS_STYLE = {
    Status.DROPPED: "dim red",
    Status.SUMMARIZED: "dim magenta",
    Status.PINNED: "bold yellow",
    Status.SUMMARY: "magenta",
    Status.RECALLED: "cyan",
    QUESTION: "bold green",
    Status.SYSTEM: "blue",
}
_LEFT_OUT = (Status.DROPPED, Status.SUMMARIZED)
MAX_DROPPED_ROWS = 20


def short_id(message_id: str) -> str:
    """The random tail of a message id: unique enough to type in /forget and /pin."""
    return message_id.rsplit("-", 1)[-1]


def preview(text: str, width: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def meter_text(reading: MeterReading, context: Context | None = None) -> Text:
    """One line: tokens in context / window, cached tokens, cost; amber ≥ 80 %, red ≥ 95 %."""
    text = Text(f"⟨ {reading.describe()}", style=_LEVEL_STYLE[reading.level])
    if reading.level != "ok":
        text.append(" · window nearly full", style=_LEVEL_STYLE[reading.level])
    if context is not None and context.trimmed:
        text.append(f" · {len(context.dropped):,} older messages not sent", style="orange1")
    if context is not None and context.recalled:
        text.append(f" · {len(context.recalled)} rounds recalled", style="cyan")
    text.append(" ⟩", style=_LEVEL_STYLE[reading.level])
    return text


def context_table(
    ctx: Context,
    counter: TokenCounter,
    *,
    question: Message | None = None,
    show_all: bool = False,
) -> Table:
    """Every message sent (in order), then what was left out, with token counts and status
    (``Context.explain``; the question being asked shows as ``question``)."""
    table = Table(show_edge=False, pad_edge=False, expand=True)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("id", no_wrap=True)
    table.add_column("role", no_wrap=True)
    table.add_column("tokens", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("preview", overflow="ellipsis", no_wrap=True, ratio=1)
    placed = ctx.explain()
    sent = [p for p in placed if p.sent]
    for n, p in enumerate(sent, start=1):
        status = QUESTION if question is not None and p.message is question else p.status
        _row(table, str(n), p.message, status, counter)
    left = placed[len(sent) :]
    if not show_all and len(left) > MAX_DROPPED_ROWS:
        shown = {p.message.id for p in left[-MAX_DROPPED_ROWS:]}
        left = [p for p in left if p.message.id in shown or p.status != Status.DROPPED]
        hidden = len(placed) - len(sent) - len(left)
        table.add_row("", "", "", "", "", Text(f"… {hidden:,} more left out (--all)", "dim"))
    for p in left:
        _row(table, "-", p.message, p.status, counter)
    return table


def _row(table: Table, n: str, m: Message, status: str, counter: TokenCounter) -> None:
    style = _STATUS_STYLE.get(status, "")
    table.add_row(
        n,
        short_id(m.id),
        m.role,
        f"{message_tokens(m, counter):,}",
        Text(status, style=style),
        Text(preview(m.content), style="dim" if status in _LEFT_OUT else ""),
    )


def context_totals(ctx: Context, budget: Budget) -> Text:
    text = Text()
    text.append(f"sent {len(ctx.messages):,} messages, {ctx.tokens:,} tokens", style="bold")
    text.append(
        f" of {budget.available:,} available ({budget.window:,} window − "
        f"{budget.reserve_for_reply:,} reserved for the reply)"
    )
    text.append(f" · left out {len(ctx.dropped):,} · strategy {ctx.strategy or '?'}")
    for note in ctx.notes:
        text.append(f"\nnote: {note}", style="orange1")
    return text


def settings_table(settings: Settings) -> Table:
    table = Table("setting", "value", "source", show_edge=False, pad_edge=False)
    for name, value in settings.masked().items():
        shown = "(not set)" if value is None else str(value)
        table.add_row(
            name,
            Text(shown, style="dim" if value is None else ""),
            Text(settings.source(name), style="dim"),
        )
    return table


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M")


def conversations_table(infos: Iterable[ConversationInfo]) -> Table:
    table = Table(show_edge=False, pad_edge=False, expand=True)
    table.add_column("id", no_wrap=True)
    table.add_column("title", no_wrap=True, overflow="ellipsis", ratio=1)
    for name in ("messages", "tokens"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("updated", no_wrap=True)
    for info in infos:
        table.add_row(
            info.id,
            info.title or "untitled",
            f"{info.message_count:,}",
            f"{info.total_tokens:,}",
            _when(info.updated_at),
        )
    return table


def messages_table(messages: Sequence[Message], *, full: bool = True) -> Table:
    """Messages with ids and times; ``full=False`` shows a one-line preview of each."""
    table = Table(show_edge=False, pad_edge=False, expand=True)
    for name in ("id", "when", "role", "tokens", ""):
        table.add_column(name, no_wrap=True)
    table.add_column("content", no_wrap=not full, overflow="fold" if full else "ellipsis", ratio=1)
    for m in messages:
        table.add_row(
            short_id(m.id),
            _when(m.created_at),
            m.role,
            "" if m.tokens is None else f"{m.tokens:,}",
            Text("pinned" if m.pinned else "", style="yellow"),
            Text(m.content if full else preview(m.content, 80)),
        )
    return table
