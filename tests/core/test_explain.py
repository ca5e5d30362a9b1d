"""Context.explain: the one classification of a turn's messages that every face renders."""

from __future__ import annotations

from memchat.core import Context, Message, Recalled
from memchat.core.memory import RECALL_BLOCK_ID


def test_every_status_in_order_sent_then_left_out() -> None:
    m = {n: Message("user" if n.startswith("u") else "assistant", n, id=n)
         for n in ("u1", "a1", "u2", "a2", "u3", "a3", "u4", "a4", "u5")}  # fmt: skip
    sysmsg = Message("system", "be brief", id="sys")
    summary = Message("system", "summary of u1", id="summary-v1")
    block = Message("system", "recalled: u3", id=RECALL_BLOCK_ID)
    ctx = Context(
        messages=[sysmsg, summary, m["u2"], m["a2"], block, m["u5"]],
        dropped=[m["u1"], m["a1"], m["u3"], m["a3"], m["u4"], m["a4"]],
        pinned=[m["u2"], m["a2"]],
        summary=summary,
        summarized=[m["u1"], m["a1"]],
        recalled=[Recalled((m["u3"],), 0.75)],
    )
    got = [(e.message.id, e.status, e.sent, e.score) for e in ctx.explain()]
    assert got == [
        ("sys", "system", True, None),
        ("summary-v1", "summary", True, None),
        ("u2", "pinned", True, None),
        ("a2", "pinned", True, None),
        (RECALL_BLOCK_ID, "recalled", True, None),
        ("u5", "kept", True, None),
        ("u1", "summarized", False, None),
        ("a1", "summarized", False, None),
        ("u3", "recalled", False, 0.75),
        ("a3", "dropped", False, None),
        ("u4", "dropped", False, None),
        ("a4", "dropped", False, None),
    ]


def test_a_message_called_recalled_without_recall_is_kept_as_system() -> None:
    odd = Message("system", "x", id=RECALL_BLOCK_ID)
    assert [e.status for e in Context(messages=[odd]).explain()] == ["system"]
