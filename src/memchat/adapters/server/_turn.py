"""One chat turn as an ASGI response: JSON or SSE, its reply on one worker thread.

Why one thread for the whole reply: a reply is a blocking generator (the backend's HTTP stream,
or the embedded model's decode holding its lock), and the embedded model refuses a second
reply opened by the thread that holds it. Starlette's own streaming moves each ``next()`` to
whichever pool thread is free, so a thread that holds the model could take another turn. Here
the reply runs start to end on one thread taken from the server's own limiter
(``max_concurrent_turns``, not anyio's default pool of 40), and hands its pieces to the event
loop without waiting for it (``_Handoff``: a blocking thread-to-loop round trip per piece costs
the thread time on every piece); the pieces ready at once go out in one write.

Nothing is sent until the reply has its first text (or has failed): an error before the first
token (a 429 from upstream, an empty message) is a plain JSON error with its HTTP status; after
it, an SSE ``error`` event with the same body. When the client hangs up, the reply stops at its
next chunk and commits nothing. The conversation is held (``hold``) until the reply has closed
and the turn's memory upkeep has run, so the next turn sees the finished history; a committed
turn's context is recorded for ``GET /v1/conversations/{id}/context`` before it is let go.
Error texts pass through ``scrub`` (no key in an answer).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, MutableMapping
from contextlib import closing
from dataclasses import dataclass, replace
from typing import Any

import anyio
import anyio.to_thread
from anyio import CapacityLimiter
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from ...core.errors import MemchatError
from ...core.reply import Reply
from ...core.session import ChatSession
from ...core.store import Store
from ._context import context_record
from ._errors import ApiError, api_error, error_response
from ._request import ChatRequest
from ._sessions import Hold

__all__ = ["Turn"]

log = logging.getLogger("memchat.server")


@dataclass(frozen=True)
class _End:
    reply: Reply


@dataclass(frozen=True)
class _Failure:
    error: ApiError


Piece = str | _End | _Failure


class Turn(Response):
    """The response to one chat request on ``session``; releases ``hold`` when all is done."""

    def __init__(
        self,
        session: ChatSession,
        chat: ChatRequest,
        *,
        model: str,
        limiter: CapacityLimiter,
        hold: Hold,
        headers: dict[str, str],
        store: Store | None = None,
        scrub: Callable[[str], str] = str,
    ) -> None:
        self.session = session
        self.chat = chat
        self.model = model
        self.limiter = limiter
        self.hold = hold
        self.extra_headers = headers
        self.store = store
        self.scrub = scrub
        self.reply: Reply | None = None
        self._committed = False  # the reply is in the history: run the upkeep at the end
        self.completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if self.chat.stream:
                await self._stream(scope, receive, send)
            else:
                await self._json(scope, receive, send)
        finally:
            if self.hold.active:
                with anyio.CancelScope(shield=True):  # always let the conversation go
                    await anyio.to_thread.run_sync(self._end, self._committed, limiter=self.limiter)

    def _turn_ended(self, reply: Reply) -> None:
        """On the worker thread, once the reply is committed and before its last chunk (or
        its JSON) is sent: the next request now waits for the upkeep instead of getting a
        409, so a client that sends again as soon as it reads ``[DONE]`` is let in; and the
        turn's context record is stored, so ``GET .../context`` read after the reply (on any
        worker) shows this turn, not the one before."""
        if reply.done and self.session.conversation_id is not None:  # stateless: thrown away
            self._reply_over()
            self._committed = True
            self._record()

    def _reply_over(self) -> None:
        """On the worker thread, before the client hears that the reply ended (whole or
        failed): a request sent as soon as it does now waits for this one's end, not a 409."""
        if self.session.conversation_id is not None:
            self.hold.reply_done()
            self.hold.upkeep()

    def _end(self, upkeep: bool) -> None:
        """On a worker thread: the turn's memory upkeep, then release the conversation (in
        this process and across processes)."""
        try:
            self.hold.reply_done()
            if upkeep:
                self.session.upkeep()
        finally:
            self.hold.release()

    def _record(self) -> None:
        cid = self.session.conversation_id
        record = None if self.reply is None else context_record(self.session, self.reply)
        if record is None or self.store is None or cid is None:
            return
        try:
            self.store.put_turn_context(cid, record)
        except MemchatError as exc:  # the inspector's record must not fail a finished turn
            log.warning("could not record the turn's context: %s", exc)

    # -- JSON ---------------------------------------------------------------------------------
    async def _json(self, scope: Scope, receive: Receive, send: Send) -> None:
        stop = threading.Event()
        response: Response | None = None
        async with anyio.create_task_group() as group:
            group.start_soon(_watch, receive, stop, group.cancel_scope)
            try:
                reply = await anyio.to_thread.run_sync(self._complete, stop, limiter=self.limiter)
            except MemchatError as exc:
                response = self._error(exc)
            else:
                response = JSONResponse(self._completion(reply), headers=self.extra_headers)
            group.cancel_scope.cancel()  # the watcher
        if response is not None and not stop.is_set():
            await response(scope, receive, send)

    def _complete(self, stop: threading.Event) -> Reply:
        """On the worker thread: the whole reply; a client gone meanwhile stops it uncommitted."""
        try:
            reply = self.reply = self.session.send(self.chat.messages[-1].content, self.chat.params)
            with closing(reply):
                for _ in reply:
                    if stop.is_set():
                        break
        except MemchatError:
            self._reply_over()
            raise
        self._turn_ended(reply)
        return reply

    def _completion(self, reply: Reply) -> dict[str, Any]:
        message = {"role": "assistant", "content": reply.text}
        choice = {"index": 0, "finish_reason": _finish(reply), "message": message}
        return {**self._base("chat.completion"), "choices": [choice], "usage": _usage(reply)}

    def _error(self, error: ApiError | MemchatError) -> JSONResponse:
        response = error_response(error, self.scrub)
        response.headers.update(self.extra_headers)
        return response

    # -- SSE ----------------------------------------------------------------------------------
    async def _stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        pieces = _Handoff(asyncio.get_running_loop())
        stop = threading.Event()
        async with anyio.create_task_group() as group:

            async def produce() -> None:
                await anyio.to_thread.run_sync(self._produce, pieces, stop, limiter=self.limiter)

            group.start_soon(produce)
            group.start_soon(_watch, receive, stop, group.cancel_scope)
            try:
                await self._relay(pieces, scope, receive, send)
            finally:
                stop.set()
                pieces.close()
                group.cancel_scope.cancel()  # the watcher; the reply's thread is waited for

    def _produce(self, pieces: _Handoff, stop: threading.Event) -> None:
        """On the worker thread: run the reply, hand each piece over; stop if nobody reads."""

        def emit(piece: Piece) -> bool:
            return pieces.put(piece) and not stop.is_set()

        try:
            reply = self.reply = self.session.send(self.chat.messages[-1].content, self.chat.params)
            try:
                for text in reply:
                    if stop.is_set() or not emit(text):
                        return
            finally:
                reply.close()  # commits nothing unless the stream had ended
            self._turn_ended(reply)
            emit(_End(reply))
        except MemchatError as exc:
            self._reply_over()
            emit(_Failure(api_error(exc)))
        except Exception:  # a bug: log it, tell the client, never a hung stream
            log.exception("the reply failed")
            self._reply_over()
            emit(_Failure(ApiError(500, "the server failed", "server_error", type="server_error")))
        finally:
            pieces.end()

    async def _relay(self, pieces: _Handoff, scope: Scope, receive: Receive, send: Send) -> None:
        batch = await pieces.take()
        if not batch:
            return  # stopped before anything was said: the client is gone
        if isinstance(batch[0], _Failure):
            await self._error(batch[0].error)(scope, receive, send)
            return
        headers = [(b"content-type", b"text/event-stream; charset=utf-8"),
                   (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]  # fmt: skip
        headers += [(k.lower().encode(), v.encode()) for k, v in self.extra_headers.items()]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        out = _Buffer()  # the hooks (_send, _finish) write to it; each batch is one write
        await self._send(out, self._delta({"role": "assistant"}))
        done = False
        while True:
            for piece in batch:
                if isinstance(piece, str):
                    await self._send(out, self._delta({"content": piece}))
                elif isinstance(piece, _Failure):
                    error = replace(piece.error, message=self.scrub(piece.error.message))
                    await self._send(out, error.body())
                    done = True
                    break
                else:
                    await self._finish(out, piece.reply)
                    done = True
                    break
            await send({"type": "http.response.body", "body": out.take(), "more_body": not done})
            if done:
                return
            batch = await pieces.take()
            if not batch:
                break
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _finish(self, send: Send, reply: Reply) -> None:
        await self._send(send, self._delta({}, _finish(reply)))
        if self.chat.include_usage:
            await self._send(send, {**self._base(), "choices": [], "usage": _usage(reply)})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": True})

    async def _send(self, send: Send, event: dict[str, Any]) -> None:
        data = f"data: {json.dumps(event)}\n\n".encode()
        await send({"type": "http.response.body", "body": data, "more_body": True})

    def _delta(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return {**self._base(), "choices": [choice]}

    def _base(self, kind: str = "chat.completion.chunk") -> dict[str, Any]:
        return {"id": self.completion_id, "object": kind, "created": self.created,
                "model": self.model}  # fmt: skip


class _Buffer:
    """A ``send`` for the SSE hooks that keeps the bodies they write, for one write."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    async def __call__(self, message: MutableMapping[str, Any]) -> None:
        self._parts.append(message["body"])

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


FIRST_WAIT = 0.05  # seconds the reply's thread waits at most for the loop to take its first piece


class _Handoff:
    """The reply's pieces, from its worker thread to the event loop, without a blocking round
    trip per piece: ``put`` appends and wakes the loop only when it waits (one
    ``call_soon_threadsafe``), ``take`` returns every piece ready. At most ``high`` pieces wait
    unread: past that ``put`` blocks until the loop reads (a slow client slows the reply, not
    the server's memory). ``close`` (the reader is gone) makes ``put`` return False."""

    def __init__(self, loop: asyncio.AbstractEventLoop, high: int = 256) -> None:
        self._loop = loop
        self._high = high
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)
        self._pieces: deque[Piece] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False
        self._closed = False
        self._first = True
        self._taken = threading.Event()

    def put(self, piece: Piece) -> bool:
        """On the worker thread; False once the reader is gone.

        The first piece waits (briefly) until the loop has taken it: a thread that goes on
        reading an upstream whose chunks are already buffered keeps the GIL for up to the
        switch interval (5 ms), and the first token would wait that long to be sent."""
        with self._lock:
            while len(self._pieces) >= self._high and not self._closed:
                self._space.wait()
            if self._closed:
                return False
            self._pieces.append(piece)
            self._wake()
            first, self._first = self._first, False
        if first:
            self._taken.wait(FIRST_WAIT)
        return True

    def end(self) -> None:
        """On the worker thread: nothing more will come."""
        with self._lock:
            self._ended = True
            self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            self._loop.call_soon_threadsafe(_resolve, waiter)

    async def take(self) -> list[Piece]:
        """In the event loop: the pieces ready (waiting for one), or [] at the end."""
        while True:
            with self._lock:
                if self._pieces:
                    ready = list(self._pieces)
                    self._pieces.clear()
                    self._space.notify_all()
                    self._taken.set()
                    return ready
                if self._ended or self._closed:
                    return []
                waiter = self._waiter = self._loop.create_future()
            await waiter

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._pieces.clear()
            self._space.notify_all()
            self._taken.set()


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def _watch(receive: Receive, stop: threading.Event, scope: anyio.CancelScope) -> None:
    """Until the client hangs up; then stop the reply (at its next chunk) and cancel ``scope``."""
    while (await receive())["type"] != "http.disconnect":
        pass
    stop.set()
    scope.cancel()


def _finish(reply: Reply) -> str:
    return reply.finish_reason or "stop"


def _usage(reply: Reply) -> dict[str, Any] | None:
    u = reply.usage
    if u is None:
        return None
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    }
