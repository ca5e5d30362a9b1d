"""Why each message was sent or left out on a turn: one classification for every face.

The CLI's ``memchat context`` table, the web app's inspector and the server's
``GET /v1/conversations/{id}/context`` all render ``explain(context)``:

    sent      system       the system prompt (or another leading system message)
              summary      the running summary standing in for older rounds
              recalled     the block of old messages recall brought back (``RECALL_BLOCK_ID``),
                           or a recalled message sent as itself (with its ``score``)
              pinned       a pinned message, always sent
              kept         in the window of recent rounds
    left out  recalled     left out of the window, brought back inside the recall block (score)
              summarized   folded into the summary that was sent
              dropped      not sent at all
"""

from __future__ import annotations

from dataclasses import dataclass

from .memory import Context
from .messages import Message

__all__ = ["RECALL_BLOCK_ID", "Explained", "explain"]

RECALL_BLOCK_ID = "recalled"  # the id recall gives the message that holds what it recalled


@dataclass(frozen=True, slots=True)
class Explained:
    """One message of a turn: sent or not, its status (see the table above), a recall score."""

    message: Message
    status: str
    sent: bool
    score: float | None = None


def explain(ctx: Context) -> list[Explained]:
    """Every message sent, in the order sent, then every message left out, in history order."""
    scores = {m.id: r.score for r in ctx.recalled for m in r.round}
    pinned = {m.id for m in ctx.pinned}
    summarized = {m.id for m in ctx.summarized}
    summary_id = ctx.summary.id if ctx.summary is not None else None
    out = []
    for m in ctx.messages:
        if m.id == summary_id:
            status = "summary"
        elif m.id in scores or (m.id == RECALL_BLOCK_ID and ctx.recalled):
            status = "recalled"
        elif m.id in pinned:
            status = "pinned"
        elif m.role == "system":
            status = "system"
        else:
            status = "kept"
        out.append(Explained(m, status, True, scores.get(m.id)))
    for m in ctx.dropped:
        if m.id in scores:
            out.append(Explained(m, "recalled", False, scores[m.id]))
        else:
            out.append(Explained(m, "summarized" if m.id in summarized else "dropped", False))
    return out
