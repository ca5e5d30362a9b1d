"""What the page shows, as plain data and escaped HTML: chat, meter, notices, inspector.

Every piece of user or model text that goes into our own HTML passes through ``html.escape``;
chat messages go to ``gr.Chatbot``, which renders Markdown and sanitises HTML in the browser.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

from ...core.memory import Context, Status
from ...core.messages import Message
from ...core.meter import MeterReading
from ...core.session import ChatSession
from ...core.store import ConversationInfo
from ...core.tokens import message_tokens

__all__ = [
    "SHOWN",
    "chat_messages",
    "conversation_choices",
    "inspector_html",
    "message_choices",
    "meter_html",
    "notice_markdown",
    "short_title",
]

ChatRows = list[dict[str, str]]


def short_title(text: str, limit: int = 48) -> str:
    """A conversation title from its first message: one line, at most ``limit`` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


SHOWN = 200  # messages drawn in the chat at most; a page with thousands of them would crawl
STEP = 50  # earlier messages are hidden this many at a time


def chat_messages(messages: Iterable[Message], limit: int = SHOWN, step: int = STEP) -> ChatRows:
    """The newest messages for ``gr.Chatbot``, at most ``limit`` (system messages not shown).

    Earlier messages are hidden ``step`` at a time, so a new round is appended below the same
    first message instead of shifting every row up by two: the page then redraws only the new
    rows (shifting made it re-render all of them before the first token).
    """
    rows = [{"role": m.role, "content": m.content} for m in messages if m.role != "system"]
    if len(rows) <= limit:
        return rows
    hidden = -(-(len(rows) - limit) // step) * step
    note = (
        f"*{hidden:,} earlier messages are not shown here; they are still part of the "
        "conversation. Export it to read them all.*"
    )
    return [{"role": "assistant", "content": note}, *rows[hidden:]]


def conversation_choices(infos: Iterable[ConversationInfo]) -> list[tuple[str, str]]:
    return [(info.title or "Untitled conversation", info.id) for info in infos]


def message_choices(session: ChatSession | None) -> list[tuple[str, str]]:
    """The messages the inspector can pin or forget, newest first."""
    if session is None:
        return []
    rows = [m for m in session.history.messages() if m.role != "system"]
    choices = []
    for n, m in reversed(list(enumerate(rows, 1))):
        pin = " · pinned" if m.pinned else ""
        choices.append((f"#{n} {m.role}{pin}: {short_title(m.content, 60)}", m.id))
    return choices


def meter_html(reading: MeterReading | None) -> str:
    """Tokens in context / window with a bar: amber from 80 %, red from 95 %."""
    if reading is None:
        return (
            '<div class="mc-meter" data-level="idle"><div class="mc-meter-bar">'
            '<div class="mc-meter-fill" style="width:0%"></div></div>'
            '<div class="mc-meter-text">No tokens in context yet</div></div>'
        )
    width = min(100.0, reading.fraction * 100)
    return (
        f'<div class="mc-meter" data-level="{reading.level}" '
        f'data-tokens="{reading.context_tokens}" data-window="{reading.window}">'
        f'<div class="mc-meter-bar"><div class="mc-meter-fill" style="width:{width:.1f}%">'
        f'</div></div><div class="mc-meter-text">{html.escape(_meter_text(reading))}</div></div>'
    )


def _meter_text(reading: MeterReading) -> str:
    return reading.describe(" · ")


def notice_markdown(notes: Sequence[str]) -> str:
    """Trimming / summarising / retry notices of the last turn ('' when there are none)."""
    lines = [f"• {_md_text(note)}" for note in dict.fromkeys(notes) if note]
    return "  \n".join(lines)


def _md_text(text: str) -> str:
    """Text shown literally in Markdown: HTML and Markdown punctuation escaped."""
    out = html.escape(text)
    for ch in "\\`*_[]#|":
        out = out.replace(ch, "\\" + ch)
    return out


# -- the context inspector -------------------------------------------------------------------
def inspector_html(session: ChatSession | None) -> str:
    """Exactly what was sent on the last turn, and what was left out, with token counts."""
    context = session.last_context if session is not None else None
    if session is None or context is None:
        return (
            '<div class="mc-insp"><p class="mc-empty">Nothing has been sent in this session '
            "yet. After your next message this panel shows exactly what the model received: "
            "kept, dropped, summarised, recalled and pinned messages, with token counts.</p></div>"
        )
    count = session.counter
    sent_tokens = context.tokens
    parts = [
        '<div class="mc-insp">',
        f'<p class="mc-insp-head">Strategy <b>{html.escape(context.strategy or "?")}</b> · '
        f"{sent_tokens:,} of {session.budget.available:,} prompt tokens "
        f"(window {session.budget.window:,}, {session.budget.reserve_for_reply:,} kept for "
        f"the reply) · tokens counted with <code>{html.escape(count.name)}</code>"
        f"{'' if count.exact else ' (estimate)'}</p>",
        _section("Sent to the model", "sent", _sent_rows(context, session)),
        _section("Dropped", Status.DROPPED, _rows(context.dropped, Status.DROPPED, session)),
        _section(
            "Summarised (folded into the summary)",
            Status.SUMMARIZED,
            _rows(context.summarized, Status.SUMMARIZED, session),
        ),
        _section("Recalled", Status.RECALLED, _recalled_rows(context, session)),
        _section("Pinned", Status.PINNED, _rows(context.pinned, Status.PINNED, session)),
        "</div>",
    ]
    return "".join(parts)


def _sent_rows(context: Context, session: ChatSession) -> list[str]:
    rows = []
    for p in context.explain():
        if p.sent:
            score = f" {p.score:.2f}" if p.score is not None else ""
            rows.append(_row(p.message, p.status + score, session))
    return rows


def _rows(messages: Iterable[Message], status: Status, session: ChatSession) -> list[str]:
    return [_row(m, status, session) for m in messages]


def _recalled_rows(context: Context, session: ChatSession) -> list[str]:
    return [_row(m, f"score {r.score:.2f}", session) for r in context.recalled for m in r.round]


def _section(title: str, kind: str, rows: list[str]) -> str:
    if not rows:
        return ""
    return (
        f'<section class="mc-insp-section" data-kind="{kind}"><h4>{html.escape(title)} '
        f'<span class="mc-count">{len(rows)}</span></h4><table><thead><tr><th>role</th>'
        "<th>status</th><th class='mc-num'>tokens</th><th>message</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></section>"
    )


def _row(message: Message, tag: str, session: ChatSession) -> str:
    tokens = message_tokens(message, session.counter)
    text = message.content
    body = html.escape(short_title(text, 120))
    if len(text) > 120:
        body = f"<details><summary>{body}</summary><pre>{html.escape(text)}</pre></details>"
    tag_class = tag.split()[0]
    return (
        f'<tr data-id="{html.escape(message.id)}"><td>{html.escape(message.role)}</td>'
        f'<td><span class="mc-tag mc-tag-{tag_class}">{html.escape(tag)}</span></td>'
        f'<td class="mc-num">{tokens:,}</td><td class="mc-text">{body}</td></tr>'
    )
