"""The OpenAPI 3.1 document served at ``GET /openapi.json``, written by hand from small helpers.

It covers every route the server has (``server.build_server``). Request schemas describe what
the server accepts (anything else is a 400 naming its ``param``); response schemas the 2xx
bodies, and every 4xx/5xx is the OpenAI-shaped ``Error``. ``conversations`` is False on a
server without a store (those routes answer 500 ``server_config_error``). A test runs
schemathesis over this document against a real server.
"""

from __future__ import annotations

from typing import Any

from ._items import INCLUDABLE, MAX_ITEMS

__all__ = ["openapi"]

J = dict[str, Any]
STRING: J = {"type": "string"}
INT: J = {"type": "integer"}
BOOL: J = {"type": "boolean"}
CONV_ID: J = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"}
TEXT: J = {"type": "string", "minLength": 1, "pattern": "[^\\s]"}
METADATA: J = {"type": "object", "additionalProperties": {"type": "string", "maxLength": 512},
               "maxProperties": 16}  # fmt: skip


def obj(props: J, required: tuple[str, ...] = (), extra: bool = False) -> J:
    out: J = {"type": "object", "properties": props, "additionalProperties": extra}
    if required:
        out["required"] = list(required)
    return out


def ref(name: str) -> J:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: J) -> J:
    return {"anyOf": [schema, {"type": "null"}]}


def _json(schema: J) -> J:
    return {"content": {"application/json": {"schema": schema}}}


def sse(data: J | None, named: bool) -> J:
    """The schema of each event of a stream (``data`` is the JSON schema of its payload)."""
    payload: J = STRING if data is None else {
        **STRING, "contentMediaType": "application/json", "contentSchema": data}  # fmt: skip
    return obj({"event": STRING, "data": payload, "id": STRING, "retry": INT},
               ("event", "data") if named else ("data",))  # fmt: skip


def op(summary: str, answer: J, body: J | None = None, *, stream: J | None = None,
       params: tuple[J, ...] = ()) -> J:  # fmt: skip
    ok: J = {"description": "OK", **_json(answer)}
    if stream is not None:
        ok["content"]["text/event-stream"] = {"schema": stream}
    out: J = {"summary": summary, "responses": {
        "200": ok, "4XX": {"description": "An error", **_json(ref("Error"))},
        "5XX": {"description": "An error", **_json(ref("Error"))}}}  # fmt: skip
    if body is not None:
        out["requestBody"] = {"required": True, **_json(body)}
    if params:
        out["parameters"] = list(params)
    return out


def path_param(name: str) -> J:
    return {"name": name, "in": "path", "required": True, "schema": STRING}


def query(name: str, schema: J) -> J:
    return {"name": name, "in": "query", "required": False, "schema": schema}


TEXT_PART = obj({"type": {"enum": ["text"]}, "text": STRING}, ("type", "text"))
CHAT_MESSAGE = obj(
    {"role": {"enum": ["system", "developer", "user", "assistant"]},
     "content": {"anyOf": [STRING, {"type": "array", "items": TEXT_PART}]}, "name": STRING},
    ("role", "content"),
)  # fmt: skip
CHAT_REQUEST = obj(
    {"model": STRING, "messages": {"type": "array", "items": CHAT_MESSAGE, "minItems": 1},
     "stream": BOOL, "max_tokens": {**INT, "minimum": 1}, "max_completion_tokens":
     {**INT, "minimum": 1}, "temperature": {"type": "number", "minimum": 0, "maximum": 2},
     "top_p": {"type": "number", "minimum": 0, "maximum": 1},
     "stop": {"anyOf": [STRING, {"type": "array", "items": STRING, "maxItems": 4}]},
     "seed": INT, "user": STRING, "metadata": METADATA, "store": BOOL,
     "conversation": CONV_ID},
    ("messages",),
)  # fmt: skip
CHAT_USAGE = nullable(obj({"prompt_tokens": INT, "completion_tokens": INT, "total_tokens": INT},
                          (), extra=True))  # fmt: skip
COMPLETION = obj(
    {"id": STRING, "object": {"const": "chat.completion"}, "created": INT, "model": STRING,
     "choices": {"type": "array", "items": obj(
         {"index": INT, "finish_reason": STRING,
          "message": obj({"role": {"const": "assistant"}, "content": STRING}, ("role",), True)},
         ("index", "message"), True)}, "usage": CHAT_USAGE},
    ("id", "object", "created", "model", "choices"), extra=True,
)  # fmt: skip
INPUT_PART = obj({"type": {"enum": ["input_text", "output_text"]}, "text": STRING},
                 ("type", "text"))  # fmt: skip
INPUT_MESSAGE = obj(
    {"type": {"const": "message"}, "role": {"enum": ["system", "developer", "user", "assistant"]},
     "content": {"anyOf": [STRING, {"type": "array", "items": INPUT_PART}]}},
    ("role", "content"),
)  # fmt: skip
RESPONSES_REQUEST = obj(
    {"model": STRING,
     "input": {"anyOf": [TEXT, {"type": "array", "items": INPUT_MESSAGE, "minItems": 1}]},
     "instructions": STRING, "previous_response_id": STRING,
     "conversation": {"anyOf": [CONV_ID, obj({"id": CONV_ID}, ("id",))]},
     "stream": BOOL, "store": BOOL, "max_output_tokens": {**INT, "minimum": 1},
     "temperature": {"type": "number", "minimum": 0, "maximum": 2},
     "top_p": {"type": "number", "minimum": 0, "maximum": 1}, "metadata": METADATA,
     "user": STRING},
    ("input",),
)  # fmt: skip
OUTPUT_MESSAGE = obj(
    {"type": {"const": "message"}, "id": STRING, "role": {"const": "assistant"},
     "status": STRING, "content": {"type": "array", "items": obj(
         {"type": {"const": "output_text"}, "text": STRING, "annotations": {"type": "array"}},
         ("type", "text", "annotations"), True)}},
    ("type", "id", "role", "status", "content"), extra=True,
)  # fmt: skip
RESPONSE = obj(
    {"id": STRING, "object": {"const": "response"}, "created_at": INT, "status": STRING,
     "model": STRING, "output": {"type": "array", "items": OUTPUT_MESSAGE},
     "previous_response_id": nullable(STRING),
     "conversation": nullable(obj({"id": STRING}, ("id",))),
     "usage": nullable(obj({"input_tokens": INT, "output_tokens": INT, "total_tokens": INT},
                           ("input_tokens", "output_tokens", "total_tokens"), True))},
    ("id", "object", "created_at", "status", "model", "output"), extra=True,
)  # fmt: skip
EVENT = obj({"type": STRING, "sequence_number": INT}, ("type", "sequence_number"), True)
DELETED = obj({"id": STRING, "object": STRING, "deleted": {"const": True}},
              ("id", "object", "deleted"))  # fmt: skip
TOKENIZE_REQUEST: J = {"oneOf": [
    obj({"text": STRING, "model": STRING}, ("text",)),
    obj({"messages": {"type": "array", "items": CHAT_MESSAGE, "minItems": 1}, "model": STRING},
        ("messages",)),
]}  # fmt: skip
TOKENIZE = obj(
    {"model": STRING, "count": INT, "tokens": nullable({"type": "array", "items": INT}),
     "per_message": INT, "per_reply": INT, "exact": BOOL},
    ("model", "count", "tokens", "per_message", "per_reply", "exact"),
)  # fmt: skip
COUNT = obj({"model": STRING, "count": INT}, ("model", "count"))
MODELS = obj({"object": {"const": "list"}, "data": {"type": "array", "items": obj(
    {"id": STRING, "object": {"const": "model"}, "created": INT, "owned_by": STRING},
    ("id", "object", "created", "owned_by"))}}, ("object", "data"))  # fmt: skip
CONVERSATION = obj(
    {"id": STRING, "object": {"const": "conversation"}, "created_at": INT, "updated_at": INT,
     "title": STRING, "metadata": {"type": "object", "additionalProperties": STRING},
     "message_count": INT, "total_tokens": INT},
    ("id", "object", "created_at", "updated_at", "title", "metadata", "message_count"),
)  # fmt: skip
MESSAGE = obj(
    {"id": STRING, "object": {"const": "conversation.message"}, "role": STRING,
     "content": STRING, "created_at": INT, "pinned": BOOL, "tokens": nullable(INT)},
    ("id", "object", "role", "content", "created_at", "pinned"),
)  # fmt: skip


def page(item: J) -> J:
    return obj({"object": {"const": "list"}, "data": {"type": "array", "items": item},
                "first_id": nullable(STRING), "last_id": nullable(STRING), "has_more": BOOL},
               ("object", "data", "has_more"))  # fmt: skip


ITEM = obj(
    {"type": {"const": "message"}, "id": STRING, "role": {"enum": ["user", "assistant", "system"]},
     "status": {"const": "completed"}, "content": {"type": "array", "items": obj(
         {"type": {"enum": ["input_text", "output_text"]}, "text": STRING,
          "annotations": {"type": "array"}}, ("type", "text"))}},
    ("type", "id", "role", "status", "content"), extra=True,
)  # fmt: skip
NEW_ITEMS: J = {"type": "array", "maxItems": MAX_ITEMS, "items": obj(
    {"type": {"const": "message"}, "role": {"enum": ["user", "assistant"]},
     "content": {"anyOf": [STRING, {"type": "array", "items": INPUT_PART}]}, "id": STRING,
     "status": STRING}, ("role", "content"))}  # fmt: skip


ERROR = obj({"error": obj({"message": STRING, "type": STRING, "code": nullable(STRING),
                           "param": nullable(STRING)}, ("message", "type", "code", "param"))},
            ("error",))  # fmt: skip
TITLED = {"title": {**STRING, "maxLength": 200}, "name": {**STRING, "maxLength": 200},
          "metadata": METADATA}  # fmt: skip


def _conversations() -> J:
    cid, mid, iid = path_param("cid"), path_param("mid"), path_param("iid")
    include = query("include", {"type": "array", "items": {"enum": list(INCLUDABLE)}})
    one = "/v1/conversations/{cid}"
    limit, after = query("limit", {**INT, "minimum": 1, "maximum": 100}), query("after", STRING)
    update = op("Rename or set metadata", CONVERSATION, obj(TITLED), params=(cid,))
    return {
        "/v1/conversations": {
            "get": op("List conversations", page(CONVERSATION), params=(limit, after)),
            "post": op("Create a conversation", CONVERSATION,
                       obj({"id": STRING, **TITLED, "items": NEW_ITEMS})),
        },
        one: {
            "get": op("A conversation", CONVERSATION, params=(cid,)),
            "post": update, "patch": update,
            "delete": op("Delete a conversation", DELETED, params=(cid,)),
        },
        one + "/fork": {"post": op("Fork at a message", CONVERSATION, obj(
            {"message_id": STRING, "id": STRING, **TITLED}, ("message_id",)), params=(cid,))},
        one + "/messages": {"get": op("List messages", page(MESSAGE), params=(
            cid, limit, after, query("order", {"enum": ["asc", "desc"]})))},
        one + "/messages/{mid}": {"delete": op("Forget a message", DELETED, params=(cid, mid))},
        one + "/messages/{mid}/pin": {
            "post": op("Pin a message", MESSAGE, params=(cid, mid)),
            "delete": op("Unpin a message", MESSAGE, params=(cid, mid)),
        },
        one + "/context": {"get": op("What the last turn sent, and why",
                                     obj({"object": {"const": "conversation.context"}},
                                         ("object",), True), params=(cid,))},
        one + "/items": {
            "get": op("List items (messages), newest first by default", page(ITEM), params=(
                cid, limit, after, query("order", {"enum": ["asc", "desc"]}), include)),
            "post": op("Add whole rounds (no reply is generated)", page(ITEM),
                       obj({"items": {**NEW_ITEMS, "minItems": 1}}, ("items",)),
                       params=(cid, include)),
        },
        one + "/items/{iid}": {
            "get": op("An item", ITEM, params=(cid, iid, include)),
            "delete": op("Forget an item; the conversation", CONVERSATION, params=(cid, iid)),
        },
    }  # fmt: skip


def openapi(model: str, conversations: bool = True) -> J:
    """The document (``model`` is the one the server runs, named in the description)."""
    rid = path_param("rid")
    paths: J = {
        "/v1/chat/completions": {"post": op("Chat completion (JSON or SSE)", COMPLETION,
                                            CHAT_REQUEST, stream=sse(None, False))},
        "/v1/responses": {"post": op("Create a response (JSON or SSE)", RESPONSE,
                                     RESPONSES_REQUEST, stream=sse(EVENT, True))},
        "/v1/responses/{rid}": {
            "get": op("A stored response", RESPONSE, params=(rid,)),
            "delete": op("Forget a stored response", DELETED, params=(rid,)),
        },
        "/v1/tokenize": {"post": op("Token ids and count", TOKENIZE, TOKENIZE_REQUEST)},
        "/v1/tokenize/count": {"post": op("Token count", COUNT, TOKENIZE_REQUEST)},
        "/v1/models": {"get": op("The model this server runs", MODELS)},
        "/openapi.json": {"get": op("This document", {"type": "object"})},
    }  # fmt: skip
    if conversations:
        paths.update(_conversations())
    return {
        "openapi": "3.1.0",
        "info": {"title": "memchat serve", "version": "1",
                 "description": f"An OpenAI-compatible server with memory, running {model}."},
        "paths": paths,
        "components": {"schemas": {"Error": ERROR},
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}, {}],
    }  # fmt: skip
