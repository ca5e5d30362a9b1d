"""The Responses API: ``POST /v1/responses`` (JSON or SSE), ``GET`` and ``DELETE`` by id.

A response is one turn of a stored conversation, the same conversations chat completions and
``/v1/conversations`` use, so memchat's memory decides what goes upstream. Where it goes:

- ``previous_response_id``: the conversation that response belongs to. When that response is
  not the conversation's newest turn, the conversation is forked at it (``Conversations.fork``)
  and the new response continues the fork; the original conversation is left as it was.
- ``conversation`` (an id, or ``{"id": …}``): that conversation, created on first use.
- neither: a new conversation (its id is in the response's ``conversation``).
- ``store: false``: nothing is stored; the turn sees the earlier turns of the conversation
  named (if any) but is not added to it, and the response cannot be fetched later.

``instructions`` and system/developer input messages are the turn's system prompt, as a system
message is in chat completions. With a stored conversation the input holds the new user message
(after any system messages); earlier turns come from the store. Stateless input may hold a whole
exchange (user and assistant messages). The store keeps response id → (owner, conversation,
the response's JSON): another key's response is a 404, as its conversations are.

Streaming sends the events the openai SDK parses (``response.created``, ``…in_progress``,
``…output_item.added``, ``…content_part.added``, ``…output_text.delta`` ×n, ``…output_text.done``,
``…content_part.done``, ``…output_item.done``, ``response.completed``), each with an
``event:`` name and a ``sequence_number``. A failure once the stream has begun is a
``response.failed`` event whose ``error.code`` is the JSON error's ``code``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Send

from ...core.backend import GenerationParams
from ...core.errors import ConfigError, NotFound
from ...core.messages import Message
from ...core.reply import Reply
from ...core.store import ResponseRecord, ResponseStore
from ._conversations import api_id
from ._errors import invalid
from ._items import parse_item
from ._request import (
    INT64,
    ChatRequest,
    ServerLimits,
    _integer,
    _number,
    _typed,
    unsupported,
)
from ._sessions import Hold
from ._turn import Turn

__all__ = ["ResponseTurn", "ResponsesRequest", "no_response", "parse_responses"]

HARMLESS = ("model", "user", "service_tier", "prompt_cache_key", "safety_identifier")
KNOWN = frozenset(
    {"input", "instructions", "previous_response_id", "conversation", "stream", "store",
     "max_output_tokens", "temperature", "top_p", "metadata", "tools", "tool_choice",
     "parallel_tool_calls", "reasoning", "text", "background", "include", "truncation",
     "max_tool_calls", "top_logprobs", "prompt", "stream_options", *HARMLESS}
)  # fmt: skip


@dataclass(frozen=True)
class ResponsesRequest:
    chat: ChatRequest  # input messages, last the user's; instructions last among the system ones
    instructions: str | None = None
    previous_response_id: str | None = None
    conversation: str | None = None
    store: bool = True
    echo: dict[str, Any] = field(default_factory=dict)  # fields the Response object repeats


def no_response(response_id: str) -> NotFound:
    return NotFound(f"no response with id {response_id[:200]!r}")


# -- the request -----------------------------------------------------------------------------
def parse_responses(body: dict[str, Any], limits: ServerLimits) -> ResponsesRequest:
    """A validated request; ApiError (400 naming ``param``) for anything it cannot honour."""
    for key in body:
        if key not in KNOWN:
            raise invalid(f"unrecognized request argument supplied: {key}", key,
                          "unknown_parameter")  # fmt: skip
    for name in HARMLESS:
        _typed(body, name, str, "a string")
    _typed(body, "parallel_tool_calls", bool, "a boolean")
    _check_unsupported(body)
    instructions = _typed(body, "instructions", str, "a string")
    messages = _input(body.get("input"), limits)
    if instructions:
        at = next((i for i, m in enumerate(messages) if m.role != "system"), len(messages))
        messages.insert(at, Message("system", instructions))
    previous = _typed(body, "previous_response_id", str, "a string")
    conversation = _conversation(body.get("conversation"))
    if previous is not None and conversation is not None:
        raise invalid("give 'previous_response_id' or 'conversation', not both", "conversation")
    store = _typed(body, "store", bool, "a boolean")
    stream = _typed(body, "stream", bool, "a boolean") or False
    max_tokens = _integer(body, "max_output_tokens", 1, INT64 - 1)
    params = GenerationParams(
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", 0.0, 2.0),
        top_p=_number(body, "top_p", 0.0, 1.0),
    )
    metadata = _typed(body, "metadata", dict, "an object") or {}
    if not all(isinstance(v, str) for v in metadata.values()):
        raise invalid("'metadata' values must be strings", "metadata", "invalid_type")
    echo = {"instructions": instructions, "max_output_tokens": max_tokens,
            "temperature": params.temperature, "top_p": params.top_p, "metadata": metadata,
            "user": body.get("user")}  # fmt: skip
    return ResponsesRequest(
        chat=ChatRequest(messages=messages, params=params, stream=stream),
        instructions=instructions,
        previous_response_id=previous,
        conversation=conversation,
        store=True if store is None else store,
        echo=echo,
    )


def _check_unsupported(body: dict[str, Any]) -> None:
    tools = _typed(body, "tools", list, "an array")
    if tools:
        raise unsupported("tools")
    choice = body.get("tool_choice")
    if choice is not None and choice not in ("none", "auto"):
        raise unsupported("tool_choice", "other than 'none' or 'auto' is not supported")
    reasoning = _typed(body, "reasoning", dict, "an object")
    if reasoning and any(v is not None for v in reasoning.values()):
        raise unsupported("reasoning")
    text = _typed(body, "text", dict, "an object")
    if text:
        for key, value in text.items():
            if key == "format" and value not in (None, {"type": "text"}):
                raise unsupported("text.format", 'other than {"type": "text"} is not supported')
            if key not in ("format", "verbosity"):
                raise invalid(f"unrecognized field in text: {key}", f"text.{key}",
                              "unknown_parameter")  # fmt: skip
    if _typed(body, "background", bool, "a boolean"):
        raise unsupported("background")
    if _typed(body, "include", list, "an array"):
        raise unsupported("include")
    truncation = body.get("truncation")
    if truncation is not None and truncation not in ("disabled", "auto"):
        raise unsupported("truncation", "other than 'disabled' or 'auto' is not supported")
    for name in ("max_tool_calls", "prompt", "stream_options"):
        if body.get(name) is not None:
            raise unsupported(name)
    if _integer(body, "top_logprobs", 0, 20):
        raise unsupported("top_logprobs")


def _conversation(value: Any) -> str | None:
    if isinstance(value, dict):
        if set(value) != {"id"} or not isinstance(value["id"], str):
            raise invalid("'conversation' is an id or {\"id\": …}", "conversation", "invalid_type")
        return str(value["id"])
    if value is not None and not isinstance(value, str):
        raise invalid("'conversation' is an id or {\"id\": …}", "conversation", "invalid_type")
    return value


def _input(raw: Any, limits: ServerLimits) -> list[Message]:
    if isinstance(raw, str):
        raw = [{"role": "user", "content": raw}]
    if not isinstance(raw, list) or not raw:
        raise invalid("'input' must be a string or a non-empty array of messages", "input")
    messages = [parse_item(item, f"input[{i}]", limits) for i, item in enumerate(raw)]
    if messages[-1].role != "user":
        raise invalid("the last input message must be from the user", f"input[{len(raw) - 1}]")
    return messages


# -- the response ----------------------------------------------------------------------------
class ResponseTurn(Turn):
    """A Turn rendered as a Responses API answer; a finished stored turn is recorded."""

    def setup(self, request: ResponsesRequest, owner: str, conversation: str | None,
              store_id: str | None) -> ResponseTurn:  # fmt: skip
        self.request, self.owner = request, owner
        self.conversation, self.store_id = conversation, store_id
        self.response_id = f"resp_{uuid.uuid4().hex}"
        self.item_id = f"msg_{uuid.uuid4().hex}"
        self.sequence = 0
        self.text = ""
        self.final: dict[str, Any] | None = None
        return self

    def snapshot(self, status: str, reply: Reply | None = None) -> dict[str, Any]:
        output = [] if reply is None else [self.item("completed", reply.text)]
        length = reply is not None and reply.finish_reason == "length"
        status = "incomplete" if length else status
        return {
            "id": self.response_id, "object": "response", "created_at": self.created,
            "status": status, "model": self.model, "output": output,
            "error": None, "incomplete_details": _incomplete(length),
            "parallel_tool_calls": False, "tool_choice": "none", "tools": [],
            "previous_response_id": self.request.previous_response_id,
            "conversation": None if self.conversation is None else {"id": self.conversation},
            "store": self.store_id is not None, "text": {"format": {"type": "text"}},
            "truncation": "disabled", "usage": None if reply is None else _usage(reply),
            **self.request.echo,
        }  # fmt: skip

    def item(self, status: str, text: str) -> dict[str, Any]:
        part = {"type": "output_text", "text": text, "annotations": []}
        return {"type": "message", "id": self.item_id, "role": "assistant", "status": status,
                "content": [part] if status == "completed" else []}  # fmt: skip

    def save(self, reply: Reply) -> dict[str, Any]:
        """The final object; stored when the turn was (blocking: call it on a worker thread)."""
        final = self.snapshot("completed", reply)
        if self.store_id is not None and reply.done and isinstance(self.store, ResponseStore):
            record = {"message_id": self.session.history.rounds[-1][-1].id, "response": final}
            self.store.put_response(ResponseRecord(self.response_id, self.owner, self.store_id,
                                                   json.dumps(record)))  # fmt: skip
        return final

    # -- JSON: the reply runs on a worker thread, the record is saved there too ----------------
    def _complete(self, stop: Any) -> Reply:
        reply = super()._complete(stop)
        self.final = self.save(reply) if reply.done else None
        return reply

    def _completion(self, reply: Reply) -> dict[str, Any]:
        return self.final or self.snapshot("completed", reply)

    # -- SSE: Turn's relay calls _delta, _send and _finish; they write Responses events --------
    def _delta(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        if "role" in delta:
            part = {"type": "output_text", "text": "", "annotations": []}
            where = {"item_id": self.item_id, "output_index": 0, "content_index": 0}
            return {"events": [
                {"type": "response.created", "response": self.snapshot("in_progress")},
                {"type": "response.in_progress", "response": self.snapshot("in_progress")},
                {"type": "response.output_item.added", "output_index": 0,
                 "item": self.item("in_progress", "")},
                {"type": "response.content_part.added", **where, "part": part},
            ]}  # fmt: skip
        self.text += delta.get("content", "")
        return {"events": [{"type": "response.output_text.delta", "item_id": self.item_id,
                            "output_index": 0, "content_index": 0, "logprobs": [],
                            "delta": delta.get("content", "")}]}  # fmt: skip

    async def _finish(self, send: Send, reply: Reply) -> None:
        final = await anyio.to_thread.run_sync(self.save, reply)
        item = final["output"][0]
        where = {"item_id": self.item_id, "output_index": 0, "content_index": 0}
        kind = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        await self._send(send, {"events": [
            {"type": "response.output_text.done", **where, "text": reply.text, "logprobs": []},
            {"type": "response.content_part.done", **where, "part": item["content"][0]},
            {"type": "response.output_item.done", "output_index": 0, "item": item},
            {"type": kind, "response": final},
        ]})  # fmt: skip

    async def _send(self, send: Send, event: dict[str, Any]) -> None:
        if "error" in event:  # the stream failed after it had begun
            failed = {**self.snapshot("failed"), "error": {k: event["error"][k] for k in
                                                       ("code", "message")}}  # fmt: skip
            event = {"events": [{"type": "response.failed", "response": failed}]}
        data = b""
        for one in event["events"]:
            one = {**one, "sequence_number": self.sequence}
            self.sequence += 1
            data += f"event: {one['type']}\ndata: {json.dumps(one)}\n\n".encode()
        await send({"type": "http.response.body", "body": data, "more_body": True})


def _incomplete(length: bool) -> dict[str, str] | None:
    return {"reason": "max_output_tokens"} if length else None


def _usage(reply: Reply) -> dict[str, Any] | None:
    u = reply.usage
    if u is None:
        return None
    return {"input_tokens": u.prompt_tokens, "output_tokens": u.completion_tokens,
            "total_tokens": u.total_tokens,
            "input_tokens_details": {"cached_tokens": u.cached_tokens or 0},
            "output_tokens_details": {"reasoning_tokens": 0}}  # fmt: skip


# -- stored responses ------------------------------------------------------------------------
def stored(store: Any, owner: str, response_id: str) -> tuple[ResponseRecord, dict[str, Any]]:
    """The owner's response record and its JSON; NotFound for any other (blocking)."""
    found = store.get_response(response_id) if isinstance(store, ResponseStore) else None
    if found is None or found.owner != owner:
        raise no_response(response_id)
    data: dict[str, Any] = json.loads(found.record)
    return found, data


def open_turn(server: Any, owner: str, req: ResponsesRequest) -> ResponseTurn:
    """The turn for ``req`` on its conversation (blocking: it reads the store). ``server`` is
    the app's state (``server._Server``)."""
    name, store = req.conversation, server.store
    if req.previous_response_id is not None:
        name = _continue(server, owner, req.previous_response_id)
    chat = req.chat
    stateful = store is not None and (req.store or name is not None)
    if stateful and sum(m.role != "system" for m in chat.messages) > 1:
        raise invalid(
            "with a stored conversation, 'input' holds the new user message only (and system "
            "messages): earlier turns come from the store",
            "input",
        )
    if name is not None and store is None:
        raise ConfigError("this server has no store; conversations are off")
    if not req.store or store is None:
        system = [m for m in chat.messages[:-1] if m.role == "system"]
        rest = [m for m in chat.messages[:-1] if m.role != "system"]
        earlier = [] if name is None else store.load(server.conversations.find(owner, name).id)
        session = server.make_session(None, None, [*system, *earlier, *rest])
        hold, cid, sid = Hold(), name, None
    else:
        session, hold, cid = server.open(owner, replace(chat, conversation=name or "new"), None)
        sid = session.conversation_id
    turn = ResponseTurn(session, chat, model=server.model, limiter=server.limiter, hold=hold,
                        headers={}, store=store, scrub=server.scrub)  # fmt: skip
    return turn.setup(req, owner, cid, sid)


def _continue(server: Any, owner: str, response_id: str) -> str:
    """The conversation to continue after ``response_id``: its own, or a fork of it at that
    response when later turns followed it."""
    record, data = stored(server.store, owner, response_id)
    info = server.store.get_conversation(record.conversation_id)
    name = api_id(owner, info)
    messages = server.store.load(info.id)
    if messages and messages[-1].id != data["message_id"]:
        info = server.conversations.fork(owner, name, data["message_id"], None, None, None)
        name = api_id(owner, info)
    return str(name)


async def get_or_delete(store: Any, request: Request, owner: str) -> Response:
    response_id = request.path_params["rid"]
    _, data = await anyio.to_thread.run_sync(stored, store, owner, response_id)
    if request.method == "DELETE":
        await anyio.to_thread.run_sync(store.delete_response, response_id)
        return JSONResponse({"id": response_id, "object": "response", "deleted": True})
    return JSONResponse(data["response"])
