"""Reading a request body within the server's limits: size while it arrives, then JSON depth.

Why while it arrives: a 20 MB body must be refused after the first bytes past the limit, not
read whole first. A ``Content-Length`` over the limit is refused before any byte is read; a body
without one (chunked) is counted as it streams in.

Why a depth limit: a body nested 50,000 deep makes any recursive walk (json's own decoder
included) fail with RecursionError. The decoder's RecursionError is a 400, and a decoded body
deeper than ``max_json_depth`` is walked without recursion and refused too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

from starlette.requests import Request

from ..core.errors import ConfigError
from ._server_errors import ApiError, invalid

__all__ = ["MiB", "ServerLimits", "parse_json", "read_body", "read_json"]

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
    max_idle_sessions: int = 256

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
