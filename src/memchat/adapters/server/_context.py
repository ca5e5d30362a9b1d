"""``GET /v1/conversations/{id}/context``: what the last turn sent, and why (the inspector as JSON).

After each committed stateful turn the server stores a record of its context
(``Store.put_turn_context``), so any worker can answer, after a restart too. The record keeps
what was sent (O(what was sent): ids, roles, statuses from ``Context.explain``, token counts, and
the text of messages the store does not hold, such as the summary and the recall block), the
recalled scores, and the date up to which the summary stood in for older messages. What was left
out is not written each turn (it grows with the whole history): the answer lists it from the
stored messages older than the turn's question, as recalled, summarized or dropped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from ...core.memory import Status
from ...core.messages import Message
from ...core.reply import Reply
from ...core.session import ChatSession
from ...core.tokens import message_tokens

__all__ = ["EMPTY", "context_record", "render_context"]

VERSION = 1


def context_record(session: ChatSession, reply: Reply) -> str | None:
    """The JSON record of a committed turn's context, or None if the turn did not commit."""
    ctx = reply.context
    if not reply.done or ctx is None:
        return None
    counter = session.counter
    rounds = session.history.rounds
    stored = {m.id for r in rounds for m in r}
    sent = []
    for placed in ctx.explain():
        m = placed.message
        item: dict[str, Any] = {"id": m.id, "role": m.role, "status": placed.status,
                                "tokens": message_tokens(m, counter)}  # fmt: skip
        if placed.score is not None:
            item["score"] = placed.score
        if placed.sent:
            if m.id not in stored:
                item["content"] = m.content
            sent.append(item)
    last = rounds[-1] if rounds else ()
    answer = last[-1] if len(last) > 1 and last[0].id == reply.message.id else None
    budget = session.budget
    record = {
        "v": VERSION,
        "created_at": time.time(),
        "strategy": ctx.strategy,
        "tokens": ctx.tokens,
        "budget": {
            "window": budget.window,
            "reserve_for_reply": budget.reserve_for_reply,
            "available": budget.available,
        },  # fmt: skip
        "counter": {"name": counter.name, "exact": counter.exact},
        "notes": list(ctx.notes),
        "finish_reason": reply.finish_reason,
        "usage": _usage(reply),
        "question": reply.message.id,
        "reply": None if answer is None else {"id": answer.id, "tokens": answer.tokens},
        "sent": sent,
        "recalled": {m.id: r.score for r in ctx.recalled for m in r.round},
        "summarized_until": ctx.summarized[-1].created_at if ctx.summarized else None,
    }
    return json.dumps(record, ensure_ascii=False)


def _usage(reply: Reply) -> dict[str, int] | None:
    u = reply.usage
    if u is None:
        return None
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "total_tokens": u.total_tokens, "cached_tokens": u.cached_tokens}  # fmt: skip


EMPTY: dict[str, Any] = {"created_at": None, "strategy": None, "tokens": 0, "budget": None,
                         "counter": None, "notes": [], "finish_reason": None, "usage": None,
                         "reply": None, "messages": [], "left_out": []}  # fmt: skip


def render_context(conversation_id: str, text: str | None, stored: Sequence[Message]) -> Any:
    """The answer: the record joined with the conversation's messages as they are stored now
    (a message forgotten since shows ``"forgotten": true``)."""
    head = {"object": "conversation.context", "conversation_id": conversation_id}
    if text is None:
        return {**head, **EMPTY}
    record = json.loads(text)
    by_id = {m.id: m for m in stored}
    messages = []
    for item in record["sent"]:
        if "content" not in item:
            found = by_id.get(item["id"])
            item = {**item, "content": None if found is None else found.content}
            if found is None:
                item["forgotten"] = True
        messages.append(item)
    body = {k: record[k] for k in EMPTY if k in record}
    body["created_at"] = int(record["created_at"])
    return {**head, **body, "messages": messages, "left_out": _left_out(record, stored)}


def _left_out(record: dict[str, Any], stored: Sequence[Message]) -> list[dict[str, Any]]:
    sent = {item["id"] for item in record["sent"]}
    recalled: dict[str, float] = record["recalled"]
    until = record["summarized_until"]
    out = []
    for m in stored:
        if m.id == record["question"]:
            break
        if m.id in sent:
            continue
        item: dict[str, Any] = {"id": m.id, "role": m.role, "tokens": m.tokens}
        if m.id in recalled:
            item.update(status=Status.RECALLED, score=recalled[m.id])
        elif until is not None and m.created_at <= until:
            item["status"] = Status.SUMMARIZED
        else:
            item["status"] = Status.DROPPED
        out.append(item)
    return out
