"""Conversation items: a conversation's stored messages as the OpenAI Conversations API's items.

The openai SDK's ``client.conversations.items`` (list, retrieve, create, delete) and
``conversations.create(items=…)`` read and write these; the routes are in ``_conversations``.
An item is a stored message in the Responses API's "message" shape, which the SDK parses into
``openai.types.conversations.Message``::

    {"type": "message", "id": <the message id>, "role": "user" | "assistant" | "system",
     "status": "completed", "content": [{"type": "input_text", "text": …}]}

(``output_text`` with ``"annotations": []`` for the assistant). Its id is the message's id, the
one ``GET …/messages`` shows, so both APIs name the same message. ``parse_item`` reads one
message item, for the Responses API's ``input`` too.

Adding items adds no reply. OpenAI lets any item in; memchat keeps a conversation as rounds (a
user message and the reply to it), trims by whole rounds and sends what it keeps upstream as
it is. So items are added as whole rounds only: user, assistant, user, assistant, … (up to 20
at a time). A user message without its reply is a 400 ``incomplete_round``: stored, it would
be a question nobody answered, sent before the next user message, two user messages in a row,
which the chat templates of many local models refuse; a message that wants an answer is a turn
(``POST /v1/responses`` with this conversation, or a chat completion). System and developer
messages are a 400 too: in memchat they are each turn's system prompt (``instructions``, a
system message), never stored in the conversation.

``include`` asks for extra fields of items memchat never stores (tool calls, images,
reasoning): there is nothing to add, so those values are accepted; ``message.output_text.logprobs``
is a 400 (no log probabilities are kept).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from ...core.messages import Message
from ._errors import ApiError, invalid
from ._request import ServerLimits, _message, unsupported

__all__ = ["INCLUDABLE", "MAX_ITEMS", "check_include", "item_json", "parse_item", "parse_items"]

MAX_ITEMS = 20
ROLES = ("user", "system", "developer", "assistant")
LOGPROBS = "message.output_text.logprobs"
INCLUDABLE = (  # the SDK's ResponseIncludable but LOGPROBS: nothing to add for any of them
    "file_search_call.results", "web_search_call.results", "web_search_call.action.sources",
    "message.input_image.image_url", "computer_call_output.output.image_url",
    "code_interpreter_call.outputs", "reasoning.encrypted_content",
)  # fmt: skip
NOT_STORED = ("system and developer messages are not stored in a conversation: in memchat "
              "they are a turn's system prompt ('instructions' or a system message), sent "
              "with each turn")  # fmt: skip


def item_json(m: Message) -> dict[str, Any]:
    part: dict[str, Any] = {"type": "input_text", "text": m.content}
    if m.role == "assistant":
        part = {"type": "output_text", "text": m.content, "annotations": []}
    return {"type": "message", "id": m.id, "role": m.role, "status": "completed",
            "content": [part]}  # fmt: skip


def check_include(request: Request) -> None:
    """The ``include`` query values (``include[]=`` as the SDK sends them, or ``include=``)."""
    q = request.query_params
    for value in [*q.getlist("include"), *q.getlist("include[]")]:
        if value == LOGPROBS:
            raise unsupported("include", f"value {LOGPROBS!r} is not supported: memchat keeps "
                              "no log probabilities")  # fmt: skip
        if value not in INCLUDABLE:
            raise invalid(f"'include' is one of {', '.join(INCLUDABLE)}; got {value!r}"[:400],
                          "include")  # fmt: skip


def parse_items(raw: Any, limits: ServerLimits, *, required: bool = True) -> list[Message]:
    """The messages of ``items``: whole rounds, at most ``MAX_ITEMS`` (the module docstring);
    ApiError 400 naming the item otherwise."""
    if not isinstance(raw, list):
        raise invalid("'items' must be an array of message items", "items", "invalid_type")
    if required and not raw:
        raise invalid("'items' must hold at least one item", "items")
    if len(raw) > MAX_ITEMS:
        raise invalid(f"'items' holds at most {MAX_ITEMS} items, got {len(raw)}", "items",
                      "array_above_max_length")  # fmt: skip
    messages = [parse_item(item, f"items[{i}]", limits) for i, item in enumerate(raw)]
    for i, m in enumerate(messages):
        if m.role == "system":
            raise invalid(NOT_STORED, f"items[{i}].role", "unsupported_parameter")
        _check_text(m, f"items[{i}].content")
        if m.role != ("user" if i % 2 == 0 else "assistant"):
            raise _incomplete(i - 1 if m.role == "user" else i, m.role == "user")
    if len(messages) % 2:
        raise _incomplete(len(messages) - 1, True)
    return messages


def parse_item(item: Any, where: str, limits: ServerLimits) -> Message:
    """One message item (a Responses API input item, or an item to add): ``type`` "message"
    or none, ``content`` a string or text parts; ApiError 400 naming ``where`` otherwise."""
    if not isinstance(item, dict):
        raise invalid(f"{where} must be an object", where, "invalid_type")
    if item.get("type", "message") != "message":
        raise unsupported(f"{where}.type", f"{item.get('type')!r} items are not supported; "
                          "only messages")  # fmt: skip
    for key in item:
        if key not in ("type", "role", "content", "id", "status"):
            raise invalid(f"unrecognized field in {where}: {key}", f"{where}.{key}",
                          "unknown_parameter")  # fmt: skip
    role = item.get("role")
    if role not in ROLES:
        raise invalid(f"{where}.role must be user, system, developer or assistant, got "
                      f"{str(role)[:50]!r}", f"{where}.role")  # fmt: skip
    content = item.get("content")
    if isinstance(content, list):
        content = "".join(_part(part, f"{where}.content[{j}]") for j, part in enumerate(content))
    elif not isinstance(content, str):
        raise invalid(f"{where}.content must be a string or an array of text parts",
                      f"{where}.content", "invalid_type")  # fmt: skip
    return _message({"role": role, "content": content}, where, limits)


def _part(part: Any, where: str) -> str:
    kind = part.get("type") if isinstance(part, dict) else type(part).__name__
    if kind not in ("input_text", "output_text"):
        raise unsupported(where, f"is a {kind!r} part; only text parts are supported")
    text = part.get("text")
    if not isinstance(text, str):
        raise invalid(f"{where}.text must be a string", f"{where}.text", "invalid_type")
    return text


def _check_text(m: Message, where: str) -> None:
    """Text a store can keep (no NUL, no lone surrogates); a user message is not blank."""
    if m.role == "user" and not m.content.strip():
        raise invalid(f"{where} is empty: a user message needs text", where)
    if "\x00" in m.content:
        raise invalid(f"{where} holds a NUL character, which cannot be stored", where)
    try:
        m.content.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid(f"{where} is not valid Unicode text (a lone surrogate)", where) from None


def _incomplete(at: int, unanswered: bool) -> ApiError:
    what = (f"items[{at}] is a user message without the assistant's reply after it"
            if unanswered else f"items[{at}] is an assistant message without a user message "
            "before it")  # fmt: skip
    message = (f"{what}: memchat adds items as whole rounds (user, assistant, user, assistant, "
               "…) and generates no reply here; to have a message answered, send it as a turn "
               "(POST /v1/responses with this conversation)")  # fmt: skip
    return invalid(message, f"items[{at}]", "incomplete_round")
