"""Reading a request body within the server's limits: size while it arrives, then JSON depth.

Why while it arrives: a 20 MB body must be refused after the first bytes past the limit, not
read whole first. A ``Content-Length`` over the limit is refused before any byte is read; a body
without one (chunked) is counted as it streams in.

Why a depth limit: a body nested 50,000 deep makes any recursive walk (json's own decoder
included) fail with RecursionError. The decoder's RecursionError is a 400, and a decoded body
deeper than ``max_json_depth`` is walked without recursion and refused too.

The chat-completions request, read as the OpenAI API defines it; nothing silently dropped.

Honoured: ``messages``, ``stream``, ``stream_options.include_usage``, ``max_tokens`` and
``max_completion_tokens`` (the latter wins), ``temperature`` (0..2), ``top_p`` (0..1), ``stop``
(a string or up to 4), ``seed``. Accepted because they change nothing here: ``model``, ``user``,
``metadata``, ``store``, ``service_tier``, ``parallel_tool_calls``, ``prompt_cache_key``,
``safety_identifier``, ``n: 1``, ``logprobs: false``, ``top_logprobs: 0``, penalties of 0,
``response_format: {"type": "text"}``, ``modalities: ["text"]``, an empty ``logit_bias`` and a
message's ``name``. Anything else that is set (not null) is a 400 naming its ``param``: tools
and functions, ``n`` > 1, log probabilities, other response formats, audio, predictions, and
fields this API does not know. memchat's own: ``conversation`` (a conversation id, or "new").
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from starlette.requests import Request

from ...core.backend import GenerationParams
from ...core.errors import ConfigError, InputError
from ...core.messages import Message
from ...settings import MAX_IDLE_SESSIONS
from ._errors import ApiError, invalid

__all__ = [
    "ChatRequest",
    "MiB",
    "ServerLimits",
    "parse_chat",
    "parse_json",
    "parse_messages",
    "parse_tokenize",
    "read_body",
    "read_json",
]


MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What the server accepts and how much it runs at once (``memchat serve`` flags).

    ``max_body_bytes``: a request body (413 past it). ``max_json_depth``: nesting of the JSON
    body (400). ``max_message_bytes``: one message's text, UTF-8 (400). ``max_concurrent_turns``:
    turns running at once, each on its own worker thread; more wait for a slot.
    ``max_idle_sessions``: stateful conversations kept in memory between turns (least recently
    used first out; an evicted one is rebuilt from the store on its next turn).
    """

    max_body_bytes: int = 4 * MiB
    max_json_depth: int = 64
    max_message_bytes: int = 1 * MiB
    max_concurrent_turns: int = 128
    max_idle_sessions: int = MAX_IDLE_SESSIONS

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{f.name} must be a whole number >= 1, got {value!r}")


def too_large(limit: int) -> ApiError:
    message = f"the request body is larger than this server accepts ({limit:,} bytes)"
    return ApiError(413, message, "request_too_large")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it is known to pass ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise invalid("the Content-Length header is not a number", None, "invalid_header")
        if int(declared) > limit:
            raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limits: ServerLimits) -> dict[str, Any]:
    """The body as a JSON object, within the size and depth limits."""
    return parse_json(await read_body(request, limits.max_body_bytes), limits)


def parse_json(raw: bytes, limits: ServerLimits) -> dict[str, Any]:
    """A JSON object within the depth limit; ApiError 400 otherwise."""
    deep = invalid(
        f"the request body is nested deeper than {limits.max_json_depth} levels",
        None,
        "json_too_deep",
    )
    try:
        body = json.loads(raw)
    except RecursionError:
        raise deep from None
    except ValueError:  # UnicodeDecodeError included
        raise invalid("the request body is not valid JSON", None, "invalid_json") from None
    if deeper_than(body, limits.max_json_depth):
        raise deep
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object", None, "invalid_type")
    return body


def deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests objects/arrays more than ``limit`` levels (``{}`` is one)."""
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


INT64 = 2**63
UNSUPPORTED = ("tools", "tool_choice", "functions", "function_call", "audio", "prediction",
               "web_search_options", "reasoning_effort", "verbosity")  # fmt: skip
HARMLESS = ("model", "user", "metadata", "store", "service_tier", "parallel_tool_calls",
            "prompt_cache_key", "safety_identifier")  # fmt: skip
MESSAGE_UNSUPPORTED = ("tool_calls", "function_call", "tool_call_id", "audio", "refusal")


@dataclass(frozen=True)
class ChatRequest:
    messages: list[Message]
    params: GenerationParams = field(default_factory=GenerationParams)
    stream: bool = False
    include_usage: bool = False
    conversation: str | None = None


def unsupported(param: str, what: str = "is not supported by this server") -> ApiError:
    return invalid(f"'{param}' {what}", param, "unsupported_parameter")


def parse_chat(body: dict[str, Any], limits: ServerLimits) -> ChatRequest:
    """A validated request; ApiError (400, with ``param``) for anything it cannot honour."""
    _check_keys(body)
    _check_harmless(body)
    _check_unsupported_values(body)
    messages = parse_messages(body.get("messages"), limits, chat=True)
    stream = _typed(body, "stream", bool, "a boolean") or False
    return ChatRequest(
        messages=messages,
        params=_generation(body),
        stream=stream,
        include_usage=_include_usage(body, stream),
        conversation=_typed(body, "conversation", str, "a string"),
    )


def _check_keys(body: dict[str, Any]) -> None:
    for key, value in body.items():
        if key in UNSUPPORTED and value is not None:
            raise unsupported(key)
        if key not in KNOWN:
            raise invalid(
                f"unrecognized request argument supplied: {key}", key, "unknown_parameter"
            )


def _check_harmless(body: dict[str, Any]) -> None:
    for name in ("model", "user", "service_tier", "prompt_cache_key", "safety_identifier"):
        _typed(body, name, str, "a string")
    for name in ("store", "parallel_tool_calls"):
        _typed(body, name, bool, "a boolean")
    _typed(body, "metadata", dict, "an object")


def _check_unsupported_values(body: dict[str, Any]) -> None:
    n = _integer(body, "n", 1, 128)
    if n is not None and n > 1:
        raise unsupported("n", "above 1 is not supported: one reply per request")
    if _typed(body, "logprobs", bool, "a boolean"):
        raise unsupported("logprobs")
    if _integer(body, "top_logprobs", 0, 20):
        raise unsupported("top_logprobs")
    for name in ("frequency_penalty", "presence_penalty"):
        if _number(body, name, -2.0, 2.0):
            raise unsupported(name, "other than 0 is not supported by this server")
    if _typed(body, "logit_bias", dict, "an object"):
        raise unsupported("logit_bias")
    fmt = _typed(body, "response_format", dict, "an object")
    if fmt is not None and fmt != {"type": "text"}:
        raise unsupported("response_format", 'other than {"type": "text"} is not supported')
    modalities = _typed(body, "modalities", list, "an array")
    if modalities is not None and modalities != ["text"]:
        raise unsupported("modalities", 'other than ["text"] is not supported')


def _generation(body: dict[str, Any]) -> GenerationParams:
    max_tokens = _integer(body, "max_tokens", 1, INT64 - 1)
    newer = _integer(body, "max_completion_tokens", 1, INT64 - 1)
    return GenerationParams(
        max_tokens=newer if newer is not None else max_tokens,
        temperature=_number(body, "temperature", 0.0, 2.0),
        top_p=_number(body, "top_p", 0.0, 1.0),
        seed=_integer(body, "seed", -INT64, INT64 - 1),
        stop=_stop(body.get("stop")),
    )


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise _type_error("stop", "a string or an array of strings", value)
    if len(items) > 4:
        raise invalid(f"'stop' holds at most 4 sequences, got {len(items)}", "stop")
    if any(not s for s in items):
        raise invalid("'stop' sequences must not be empty", "stop")
    return tuple(items)


def _include_usage(body: dict[str, Any], stream: bool) -> bool:
    options = _typed(body, "stream_options", dict, "an object")
    if options is None:
        return False
    if not stream:
        raise invalid("'stream_options' is only allowed when 'stream' is true", "stream_options")
    for key in options:
        if key not in ("include_usage", "include_obfuscation"):
            raise invalid(f"unrecognized stream option: {key}", f"stream_options.{key}",
                          "unknown_parameter")  # fmt: skip
    _typed(options, "include_obfuscation", bool, "a boolean", "stream_options.")
    return bool(_typed(options, "include_usage", bool, "a boolean", "stream_options."))


# -- messages --------------------------------------------------------------------------------
def parse_messages(raw: Any, limits: ServerLimits, *, chat: bool) -> list[Message]:
    """The messages (untrusted: roles, content and sizes are checked); ``chat`` requires the
    last one to be the user's."""
    if not isinstance(raw, list) or not raw:
        raise invalid("'messages' must be a non-empty array", "messages")
    out = [_message(item, f"messages[{i}]", limits) for i, item in enumerate(raw)]
    if chat and out[-1].role != "user":
        raise invalid("the last message must be from the user", f"messages[{len(out) - 1}].role")
    return out


def _message(item: Any, where: str, limits: ServerLimits) -> Message:
    if not isinstance(item, dict):
        raise invalid(f"{where} must be an object", where, "invalid_type")
    for key, value in item.items():
        if key in MESSAGE_UNSUPPORTED and value is not None:
            raise unsupported(f"{where}.{key}")
        if key not in ("role", "content", "name", *MESSAGE_UNSUPPORTED):
            raise invalid(f"unrecognized field in {where}: {key}", f"{where}.{key}",
                          "unknown_parameter")  # fmt: skip
    role = "system" if item.get("role") == "developer" else item.get("role")
    content = _content(item.get("content"), f"{where}.content")
    if len(content.encode("utf-8", "surrogatepass")) > limits.max_message_bytes:
        raise invalid(
            f"{where}.content is longer than this server accepts "
            f"({limits.max_message_bytes:,} bytes of UTF-8)",
            f"{where}.content",
            "string_above_max_length",
        )
    try:
        return Message.from_dict({"role": role, "content": content})
    except InputError as exc:
        raise invalid(f"{where}: {exc}", f"{where}.role") from None


def _content(content: Any, where: str) -> str:
    """Text content, or the text of its parts; any other part (an image, audio) is a 400."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _type_error(where, "a string or an array of text parts", content)
    texts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text":
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise unsupported(f"{where}[{j}]", f"is a {kind!r} part; only text parts are supported")
        if not isinstance(part.get("text"), str):
            raise _type_error(f"{where}[{j}].text", "a string", part.get("text"))
        texts.append(part["text"])
    return "".join(texts)


# -- tokenize --------------------------------------------------------------------------------
def parse_tokenize(
    body: dict[str, Any], limits: ServerLimits, served: str
) -> tuple[str | None, list[Message] | None]:
    """(text, None) or (None, messages) of a tokenize request; its ``model`` must be ours."""
    for key in body:
        if key not in ("text", "messages", "model"):
            raise invalid(
                f"unrecognized request argument supplied: {key}", key, "unknown_parameter"
            )
    model = _typed(body, "model", str, "a string")
    if model is not None and model != served:
        message = f"The model `{model}` does not exist or you do not have access to it."
        raise ApiError(404, message, "model_not_found", "model")
    if ("text" in body) == ("messages" in body):
        raise invalid(
            "give exactly one of 'text' and 'messages'", None, "missing_required_parameter"
        )
    if "messages" in body:
        return None, parse_messages(body["messages"], limits, chat=False)
    text = _typed(body, "text", str, "a string")
    if text is None:
        raise _type_error("text", "a string", None)
    if len(text.encode("utf-8", "surrogatepass")) > limits.max_message_bytes:
        raise invalid(f"'text' is longer than this server accepts ({limits.max_message_bytes:,}"
                      " bytes of UTF-8)", "text", "string_above_max_length")  # fmt: skip
    return text, None


# -- typed fields ----------------------------------------------------------------------------
def _type_error(param: str, expected: str, value: Any) -> ApiError:
    got = "null" if value is None else type(value).__name__
    return invalid(f"Invalid type for '{param}': expected {expected}, got {got}", param,
                   "invalid_type")  # fmt: skip


def _typed(body: dict[str, Any], name: str, kind: type, expected: str, prefix: str = "") -> Any:
    """``body[name]`` if it is a ``kind`` (None when absent or null), else a 400."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise _type_error(prefix + name, expected, value)
    return value


def _ranged(check: Callable[[Any], bool], expected: str) -> Callable[..., Any]:
    def read(body: dict[str, Any], name: str, lo: Any, hi: Any) -> Any:
        value = body.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not check(value):
            raise _type_error(name, expected, value)
        if not lo <= value <= hi:
            raise invalid(f"Invalid '{name}': expected {expected} from {lo:g} to {hi:g}, "
                          f"got {value:g}", name)  # fmt: skip
        return value

    return read


_integer: Callable[[dict[str, Any], str, int, int], int | None] = _ranged(
    lambda v: isinstance(v, int), "an integer"
)
_number: Callable[[dict[str, Any], str, float, float], float | None] = _ranged(
    lambda v: isinstance(v, int | float), "a number"
)

KNOWN = frozenset(
    {"messages", "stream", "stream_options", "max_tokens", "max_completion_tokens",
     "temperature", "top_p", "stop", "seed", "n", "logprobs", "top_logprobs",
     "frequency_penalty", "presence_penalty", "logit_bias", "response_format", "modalities",
     "conversation", *HARMLESS, *UNSUPPORTED}
)  # fmt: skip
