"""The OpenAI-compatible backend: OpenAI itself, or any server that speaks its chat API.

It is a thin layer on the official ``openai`` SDK (extra ``openai``). The SDK owns the HTTP
client and the timeouts. Its retry policy (408/409/429/5xx and connection errors, capped,
jittered exponential backoff, a bounded ``Retry-After``) runs in ``_retry`` instead of inside
the SDK for the chat stream, so the stream can say "rate limited (429) — retrying in 3 s" while
it waits (a ``Chunk`` with ``status``); other calls keep the SDK's own retries. Only opening the
stream is retried: once the first token has streamed a failure is surfaced, never retried (a
retry would duplicate the text the user already saw).

Every SDK exception is translated to memchat's tree in one place, ``_map_errors``, which guards
both the request and the stream iteration:

    RateLimitError (429)                     -> RateLimited (retry_after from the headers)
    400 context_length_exceeded              -> ContextTooLong (the session trims and retries)
    401, 403                                 -> AuthError
    APITimeoutError, 408                     -> BackendTimeout
    APIConnectionError, 5xx, cut stream      -> BackendUnavailable (names the base URL)
    any other 4xx                            -> BadRequest
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import ssl
import time
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.backend import Chunk, GenerationParams, Usage
from ..core.errors import (
    AuthError,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    BadRequest,
    ConfigError,
    ContextTooLong,
    RateLimited,
)
from ..core.messages import Message
from ..core.tokens import TokenCounter
from ..pricing import match_model
from ..tokenizers import counter_for_model
from . import _retry

if TYPE_CHECKING:
    import openai

__all__ = ["CONTEXT_WINDOWS", "NO_KEY", "OpenAIBackend"]

log = logging.getLogger("memchat.openai")

NO_KEY = "memchat-no-key"
"""Sent when no key is configured: local servers ignore it, and the SDK refuses an empty key."""

CONTEXT_WINDOWS: dict[str, int] = {
    "gpt-5": 400_000,
    "gpt-5-chat": 128_000,
    "gpt-4.1": 1_047_576,
    "gpt-4o": 128_000,
    "gpt-4-turbo": 128_000,
    "gpt-4": 8_192,
    "gpt-3.5-turbo": 16_385,
    "o1": 200_000,
    "o3": 200_000,
    "o4-mini": 200_000,
}
"""Context windows of OpenAI models (longest-prefix match, like prices); others are unknown."""

_OVERFLOW = re.compile(
    r"maximum context length|context[ _](length|size|window)|prompt is too long", re.IGNORECASE
)


@dataclass
class _Call:
    streaming: bool = False
    retries: int = 0


class OpenAIBackend:
    """A model behind an OpenAI-compatible ``/v1/chat/completions`` endpoint.

    ``base_url`` defaults to OpenAI (or ``OPENAI_BASE_URL``, as the SDK reads it). ``api_key``
    falls back to ``OPENAI_API_KEY`` and then to a placeholder, so keyless local servers work;
    a 401 then says that no key was given. ``context_window`` None looks the model up in
    ``CONTEXT_WINDOWS``.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 600.0,
        connect_timeout: float = 5.0,
        max_retries: int = 2,
        context_window: int | None = None,
    ) -> None:
        _check_config(model, timeout, connect_timeout, max_retries, context_window)
        sdk = _import_openai()
        key = api_key or os.environ.get("OPENAI_API_KEY") or NO_KEY
        self._model = model
        self._keyless = key == NO_KEY
        self._key = key
        self._timeout = (timeout, connect_timeout)
        limits = sdk.Timeout(timeout, connect=connect_timeout)
        self._http = sdk.DefaultHttpxClient(timeout=limits, verify=_tls_context())
        self._client = sdk.OpenAI(
            api_key=key,
            base_url=base_url,
            timeout=limits,
            max_retries=0,  # the chat stream retries in _open; other calls ask for max_retries
            http_client=self._http,
        )
        self.base_url = str(self._client.base_url).rstrip("/")
        self._chat_url = f"{self.base_url}/chat/completions"
        # the SDK's own headers (user agent, platform, organization / project, the key), once
        sdk_headers = {**self._client.default_headers, **self._client.auth_headers}
        self._headers = {k: v for k, v in sdk_headers.items() if isinstance(v, str)}
        self.max_retries = max_retries
        found = match_model(model, CONTEXT_WINDOWS)
        self._window = context_window or (CONTEXT_WINDOWS[found] if found else None)
        self._official = self._client.base_url.host == "api.openai.com"

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self._model!r}, base_url={self.base_url!r})"

    @property
    def model(self) -> str:
        return self._model

    @property
    def context_window(self) -> int | None:
        return self._window

    def token_counter(self) -> TokenCounter:
        """Exact tiktoken counts for OpenAI models; an estimate (flagged) for others."""
        return counter_for_model(self._model)

    def stream(self, messages: Sequence[Message], params: GenerationParams) -> Iterator[Chunk]:
        """Stream the reply; the last chunk has ``finish_reason`` and ``usage``.

        Closing the generator early closes the HTTP response (the server sees the hang-up).
        """
        call = _Call()
        with self._map_errors(call):
            response = yield from self._open(messages, params, call)
            call.streaming = True
            try:
                yield from self._read(response)
            finally:
                response.close()

    def models(self) -> list[str]:
        """The model ids the server offers (``GET /models``)."""
        client = self._client.with_options(max_retries=self.max_retries)
        with self._map_errors(_Call(retries=self.max_retries)):
            return [m.id for m in client.models.list()]

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def __enter__(self) -> OpenAIBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------
    def _open(
        self, messages: Sequence[Message], params: GenerationParams, call: _Call
    ) -> Generator[Chunk, None, Any]:
        """Open the stream, retrying by ``_retry``'s policy; says so (a status chunk) each time."""
        import openai

        request = {
            "model": self._model,
            "messages": [m.to_wire() for m in messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            **self._options(params),
        }
        body = json.dumps(request, ensure_ascii=False).encode()
        while True:
            try:
                return self._post_stream(body, call.retries)
            except (openai.APIStatusError, openai.APIConnectionError) as exc:
                failed = exc.response if isinstance(exc, openai.APIStatusError) else None
                code = failed.status_code if failed is not None else None
                headers: Mapping[str, str] = failed.headers if failed is not None else {}
                if call.retries >= self.max_retries or not _retry.should_retry(code, headers):
                    raise
                wait = _retry.delay(call.retries, headers)
                call.retries += 1
                note = _retry.describe(code, wait, call.retries, self.max_retries)
                log.debug("%s: %s", self.base_url, note)
                yield Chunk(status=note)
                time.sleep(wait)

    def _post_stream(self, body: bytes, retries: int) -> Any:
        """POST the chat request on the SDK's own connection pool, with the SDK's headers, and
        hand back the unread streaming response; failures are raised as the SDK raises them.

        The SDK's ``post`` would do the same through its typed request options, at ~1 ms of
        CPU per request here (bench_server: memchat's own CPU per streamed request is ~3 ms);
        its error types are kept so that retries and error mapping stay one code path.
        """
        import openai

        httpx = _httpx()
        headers = {**self._headers, "x-stainless-retry-count": str(retries)}
        request = self._http.build_request("POST", self._chat_url, content=body, headers=headers)
        try:
            response = self._http.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise openai.APITimeoutError(request=request) from exc
        except httpx.TransportError as exc:
            raise openai.APIConnectionError(request=request) from exc
        if response.status_code >= 400:
            try:
                response.read()
            finally:
                response.close()
            raise self._client._make_status_error_from_response(response)
        return response

    def _options(self, params: GenerationParams) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if params.max_tokens is not None:
            # OpenAI's reasoning models refuse max_tokens; many local servers only know it
            name = "max_completion_tokens" if self._official else "max_tokens"
            options[name] = params.max_tokens
        for name in ("temperature", "top_p", "seed"):
            if getattr(params, name) is not None:
                options[name] = getattr(params, name)
        if params.stop:
            options["stop"] = list(params.stop)
        if params.cache_key and self._official:
            options["prompt_cache_key"] = params.cache_key
        return options

    def _read(self, response: Any) -> Iterator[Chunk]:
        """The SSE chunks of ``response`` as plain dicts (no typed object per chunk)."""
        finish: str | None = None
        usage: Usage | None = None
        for data in _sse(response):
            if not isinstance(data, dict):
                raise BackendUnavailable(f"{self.base_url} sent an event that is not an object")
            if data.get("error"):
                _raise_stream_error(data["error"], response)
            if data.get("usage"):
                usage = _usage(data["usage"])
            for choice in data.get("choices") or ():
                if choice.get("index", 0) != 0:
                    continue
                finish = choice.get("finish_reason") or finish
                delta = choice.get("delta") or {}
                text = delta.get("content") or delta.get("refusal")
                if text:
                    yield Chunk(text)
        if finish is None:
            raise BackendUnavailable(f"the reply from {self.base_url} ended before it was complete")
        yield Chunk("", finish, usage)

    @contextlib.contextmanager
    def _map_errors(self, call: _Call) -> Iterator[None]:
        """Translate every SDK exception into memchat's tree (``raise ... from``), the API key
        redacted from the error and its cause (an upstream may echo the key it was sent)."""
        try:
            with self._translate(call):
                yield
        except BackendError as exc:
            for err in (exc, exc.__cause__):
                if err is not None:
                    err.args = tuple(self._redact(a) for a in err.args)
                    if isinstance(getattr(err, "message", None), str):
                        err.message = self._redact(err.message)  # type: ignore[attr-defined]
            raise

    def _redact(self, text: object) -> object:
        key = self._key
        if self._keyless or len(key) < 8 or not isinstance(text, str) or key not in text:
            return text
        return text.replace(key, "[redacted]")

    @contextlib.contextmanager
    def _translate(self, call: _Call) -> Iterator[None]:
        import openai

        try:
            yield
        except openai.APIStatusError as exc:
            raise self._status_error(exc, call) from exc
        except openai.APITimeoutError as exc:
            total, connect = self._timeout
            limits = f"timeout {total:g} s, connect {connect:g} s"
            where = "mid-reply" if call.streaming else _after(call)
            message = f"{self.base_url} did not answer in time ({limits}) {where}"
            raise BackendTimeout(message) from exc
        except openai.APIConnectionError as exc:
            raise BackendUnavailable(self._connection_message(exc, call)) from exc
        except openai.APIError as exc:  # an error event inside the stream
            detail = _detail(exc.body) or exc.message
            cls = ContextTooLong if _is_overflow(exc, detail) else BackendUnavailable
            raise cls(f"{self.base_url} reported an error mid-reply: {detail}") from exc
        except openai.OpenAIError as exc:
            raise BackendError(f"{self.base_url}: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise BackendUnavailable(f"{self.base_url} sent a malformed event: {exc}") from exc
        except _httpx().TimeoutException as exc:  # reading the raw stream
            total, connect = self._timeout
            message = f"{self.base_url} did not answer in time (timeout {total:g} s) mid-reply"
            raise BackendTimeout(message) from exc
        except _httpx().TransportError as exc:
            reason = f": {exc}" if str(exc) else ""
            message = f"the connection to {self.base_url} broke mid-reply{reason}"
            raise BackendUnavailable(message) from exc

    def _status_error(self, exc: openai.APIStatusError, call: _Call) -> BackendError:
        code = exc.status_code
        detail = str(self._redact(_detail(exc.body) or f"HTTP {code}"))
        where = f"{self.base_url} answered {code}"
        retried = _after(call)
        log.debug("mapping HTTP %s from %s: %s", code, self.base_url, detail)
        if code == 429:
            retry_after = _retry.retry_after(exc.response.headers)
            return RateLimited(
                f"{where} (rate limited) {retried}: {detail}", retry_after=retry_after
            )
        if code in (401, 403):
            return AuthError(self._auth_message(code, detail), status=code)
        if code == 400 and _is_overflow(exc, detail):
            return ContextTooLong(f"the prompt is too long for {self._model}: {detail}", status=400)
        if code == 408:
            return BackendTimeout(f"{where} (request timeout) {retried}: {detail}", status=code)
        if code >= 500:
            return BackendUnavailable(f"{where} {retried}: {detail}", status=code)
        return BadRequest(f"{where}: {detail}", status=code)

    def _auth_message(self, code: int, detail: str) -> str:
        if self._keyless:
            return (
                f"{self.base_url} needs an API key ({code}) and none was given: set "
                f"OPENAI_API_KEY or the api_key setting. The server said: {detail}"
            )
        verb = "rejected the API key" if code == 401 else "refused access with this API key"
        return f"{self.base_url} {verb} ({code}): {detail}"

    def _connection_message(self, exc: openai.APIConnectionError, call: _Call) -> str:
        cause = exc.__cause__ or exc.__context__
        reason = f": {cause}" if cause and str(cause) else ""
        if call.streaming:
            return f"the connection to {self.base_url} broke mid-reply{reason}"
        return f"cannot reach {self.base_url}{reason} ({_after(call)})"


def _after(call: _Call) -> str:
    return f"after {call.retries} {'retry' if call.retries == 1 else 'retries'}"


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verified TLS context per process: each new one loads the CA bundle again."""
    context: ssl.SSLContext = _httpx().create_ssl_context()
    return context


def _import_openai() -> Any:
    try:
        import openai
    except ImportError as exc:
        raise ConfigError(
            'the OpenAI backend needs the openai package: pip install "memchat[openai]"'
        ) from exc
    return openai


def _check_config(
    model: str, timeout: float, connect_timeout: float, max_retries: int, window: int | None
) -> None:
    if not isinstance(model, str) or not model.strip():
        raise ConfigError("the OpenAI backend needs a model name")
    for name, value in (("timeout", timeout), ("connect_timeout", connect_timeout)):
        if not isinstance(value, int | float) or not value > 0:
            raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ConfigError(f"max_retries must be a whole number >= 0, got {max_retries!r}")
    if window is not None and (not isinstance(window, int) or window <= 0):
        raise ConfigError(f"context_window must be a positive number of tokens, got {window!r}")


def _httpx() -> Any:
    try:
        import httpx2 as httpx  # openai >= 3
    except ImportError:  # pragma: no cover - older SDKs use httpx
        import httpx  # type: ignore[no-redef]
    return httpx


def _sse(response: Any) -> Iterator[Any]:
    """The JSON ``data`` of each server-sent event of ``response``, up to ``[DONE]``.

    After ``[DONE]`` the rest of the body is read (the end of its chunked encoding), as the
    SDK's own ``Stream`` does: a response closed unread closes its connection, and the next
    turn would open a new one (a TCP and, on a provider, a TLS handshake before its reply).
    """
    data: list[str] = []
    lines = response.iter_lines()
    for line in lines:
        if line:
            if line.startswith("data:"):
                data.append(line[6:] if line.startswith("data: ") else line[5:])
            continue  # event:, id:, retry: and comments carry nothing for chat chunks
        if not data:
            continue
        text = "\n".join(data)
        data = []
        if text.startswith("[DONE]"):
            for _ in lines:  # normally nothing: the body ends here
                pass
            return
        yield json.loads(text)
    if data:
        text = "\n".join(data)
        if not text.startswith("[DONE]"):
            yield json.loads(text)


def _raise_stream_error(error: Any, response: Any) -> None:
    """An ``error`` inside the stream, raised as the SDK's own stream would raise it."""
    import openai

    message = error.get("message") if isinstance(error, Mapping) else None
    if not message or not isinstance(message, str):
        message = "An error occurred during streaming"
    raise openai.APIError(message=message, request=response.request, body=error)


def _usage(usage: Mapping[str, Any]) -> Usage:
    details = usage.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens") or 0
    return Usage(usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0, cached)


def _detail(body: object) -> str:
    """The server's own error message, from an OpenAI-shaped error body or plain text."""
    if isinstance(body, Mapping):
        message = body.get("message") or body.get("error")
        return str(message) if message else json.dumps(body)[:300]
    return str(body).strip()[:300] if body else ""


def _is_overflow(exc: openai.APIError, detail: str) -> bool:
    kind = exc.body.get("type") if isinstance(exc.body, Mapping) else None
    return (
        exc.code == "context_length_exceeded"
        or kind == "exceed_context_size_error"  # llama.cpp server
        or bool(_OVERFLOW.search(detail))
    )
