"""The server's errors, OpenAI-shaped: ``{"error": {"message", "type", "code", "param"}}``.

One value, ``ApiError``, carries every error the server answers with: request errors raised by
the server itself (a bad parameter, a body too large, a busy conversation) and memchat errors
translated by ``api_error``. The same body goes into a JSON response and, once a stream has
begun, into its SSE error event, so ``code`` and ``type`` are the same strings in both.

    memchat error          status  code
    RateLimited            429     rate_limit_exceeded (+ Retry-After when the delay is known)
    ContextTooLong         400     context_length_exceeded
    AuthError (upstream)   502     upstream_auth_error
    BackendTimeout         504     timeout
    BackendUnavailable     502     upstream_unavailable
    other BackendError     502     backend_error
    NotFound               404     not_found
    AlreadyExists          409     already_exists
    ConversationBusy       409     conversation_busy
    UsageError             400     invalid_request_error
    ConfigError            500     server_config_error
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from starlette.responses import JSONResponse

from ...core.errors import (
    AlreadyExists,
    AuthError,
    BackendTimeout,
    BackendUnavailable,
    ConfigError,
    ContextTooLong,
    ConversationBusy,
    MemchatError,
    NotFound,
    RateLimited,
    UsageError,
)

__all__ = ["ApiError", "api_error", "error_response"]

INVALID = "invalid_request_error"


@dataclass
class ApiError(Exception):
    """An error answer: HTTP status, message, ``code`` and the ``param`` it is about."""

    status: int
    message: str
    code: str
    param: str | None = None
    type: str = INVALID
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message

    def body(self) -> dict[str, Any]:
        """The error as JSON; the message is one line (a field name or value it quotes from
        the request may hold control characters: they are shown escaped)."""
        message = _CONTROL.sub(lambda m: repr(m.group())[1:-1], self.message)
        error = {"message": message, "type": self.type, "code": self.code}
        return {"error": {**error, "param": self.param}}


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def invalid(message: str, param: str | None, code: str = "invalid_value") -> ApiError:
    """A 400 about one request parameter."""
    return ApiError(400, message, code, param)


_TABLE: list[tuple[type[MemchatError], int, str, str]] = [
    (RateLimited, 429, "rate_limit_exceeded", "rate_limit_exceeded"),
    (ContextTooLong, 400, "context_length_exceeded", INVALID),
    (AuthError, 502, "upstream_auth_error", "upstream_auth_error"),
    (BackendTimeout, 504, "timeout", "timeout"),
    (BackendUnavailable, 502, "upstream_unavailable", "upstream_unavailable"),
    (NotFound, 404, "not_found", INVALID),
    (AlreadyExists, 409, "already_exists", INVALID),
    (ConversationBusy, 409, "conversation_busy", INVALID),
    (UsageError, 400, INVALID, INVALID),
    (ConfigError, 500, "server_config_error", "server_config_error"),
]


def api_error(exc: MemchatError) -> ApiError:
    """The answer to a memchat error (the table in the module docstring)."""
    status, code, kind = next(
        ((s, c, k) for cls, s, c, k in _TABLE if isinstance(exc, cls)),
        (502, "backend_error", "backend_error"),
    )
    param = "messages" if isinstance(exc, ContextTooLong) else None
    headers = {}
    if isinstance(exc, RateLimited) and exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    return ApiError(status, str(exc), code, param, kind, headers)


def error_response(
    error: ApiError | MemchatError, scrub: Callable[[str], str] = str
) -> JSONResponse:
    """The JSON answer; ``scrub`` cleans the message (``_auth``: no key in it)."""
    if isinstance(error, MemchatError):
        error = api_error(error)
    body = replace(error, message=scrub(error.message)).body()
    return JSONResponse(body, status_code=error.status, headers=error.headers)
