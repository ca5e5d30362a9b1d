"""Turns run concurrently; one conversation runs one turn at a time (409 for a second one).

The upstream is the OpenAI stub answering after a delay, behind the real OpenAI backend, so
"concurrent" means what a deployment sees: requests in flight upstream at the same time.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import openai
import pytest
from tests.stubs.memchat_server import Running
from tests.stubs.openai_stub import OpenAIStub, ok

from memchat.adapters.server import HEADER, ServerLimits
from memchat.backends.fake import EchoBackend, ScriptedBackend
from memchat.backends.openai_compat import OpenAIBackend
from memchat.core import (
    ApproxCounter,
    BackendUnavailable,
    Budget,
    ChatSession,
    Chunk,
    GenerationParams,
    Message,
    UsageError,
)

USER = [{"role": "user", "content": "hi"}]


def new_conversation(client: openai.OpenAI) -> str:
    """A stored conversation made by a first turn ("hi"): its id."""
    raw = client.chat.completions.with_raw_response.create(
        model="m",
        messages=USER,
        extra_body={"conversation": "new"},  # type: ignore[arg-type]
    )
    return raw.headers[HEADER]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    """An upstream that answers after 0.3 s."""
    with OpenAIStub() as stub:
        stub.default = ok("slow answer", latency=0.3)
        yield stub


@pytest.fixture
def slow_upstream(stub: OpenAIStub) -> Iterator[Running]:
    """memchat in front of the slow upstream."""
    backend = OpenAIBackend("gpt-4o-mini", base_url=stub.url, api_key="k", max_retries=0)
    with Running(backend, budget=Budget(4000, 500)) as r:
        yield r
    backend.close()


@pytest.mark.anyio
async def test_ten_stateless_requests_run_at_once(slow_upstream: Running, stub: OpenAIStub) -> None:
    async with slow_upstream.async_client() as client:
        start = time.monotonic()
        outs = await asyncio.gather(
            *(client.chat.completions.create(model="m", messages=USER) for _ in range(10))  # type: ignore[arg-type]
        )
        elapsed = time.monotonic() - start
    assert [o.choices[0].message.content for o in outs] == ["slow answer"] * 10
    assert elapsed < 1.5, f"10 x 0.3 s took {elapsed:.2f} s: the turns ran one after another"
    assert stub.max_in_flight == 10


@pytest.mark.anyio
async def test_ten_conversations_run_at_once(slow_upstream: Running) -> None:
    async with slow_upstream.async_client() as client:
        start = time.monotonic()
        raws = await asyncio.gather(
            *(
                client.chat.completions.with_raw_response.create(
                    model="m",
                    messages=USER,
                    extra_headers={HEADER: "new"},  # type: ignore[arg-type]
                )
                for _ in range(10)
            )
        )
        elapsed = time.monotonic() - start
    ids = {raw.headers[HEADER] for raw in raws}
    assert len(ids) == 10 and elapsed < 1.5
    assert all(len(slow_upstream.store.load(cid)) == 2 for cid in ids)


@pytest.mark.anyio
async def test_fifty_streaming_clients_all_succeed_at_once(
    slow_upstream: Running, stub: OpenAIStub
) -> None:
    """More than anyio's default pool of 40 threads: all 50 must be upstream together (with a
    limit of 40 turns, 40 were: 0.96 s against 0.66 s, measured with 0.3 s upstream)."""
    stub.default = ok("slow answer", latency=1.0)  # time for 50 clients to connect on a busy CI

    async def one(client: openai.AsyncOpenAI, n: int) -> str:
        stream = await client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": f"client {n}"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        return "".join(parts)

    async with slow_upstream.async_client() as client:
        start = time.monotonic()
        texts = await asyncio.gather(*(one(client, n) for n in range(50)))
        elapsed = time.monotonic() - start
    assert texts == ["slow answer"] * 50
    assert stub.max_in_flight == 50
    assert elapsed < 5, f"50 streams took {elapsed:.2f} s (one after another: 50 s)"


def test_two_sends_to_one_conversation_give_one_200_and_one_409(slow_upstream: Running) -> None:
    client = slow_upstream.client()
    cid = new_conversation(client)
    results: list[Any] = []

    def send(text: str) -> None:
        try:
            client.chat.completions.create(
                model="m",
                messages=[{"role": "user", "content": text}],
                extra_headers={HEADER: cid},
            )
            results.append(200)
        except openai.APIStatusError as exc:
            results.append(exc)

    threads = [threading.Thread(target=send, args=(t,)) for t in ("second", "third")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    busy = [r for r in results if r != 200]
    assert results.count(200) == 1 and len(busy) == 1
    assert busy[0].status_code == 409 and busy[0].code == "conversation_busy"
    assert busy[0].type == "invalid_request_error"
    stored = [m.content for m in slow_upstream.store.load(cid)]
    assert len(stored) == 4 and stored[2] in ("second", "third")  # exactly one new round
    send("fourth")  # released: the next send is let in
    assert results[-1] == 200
    assert [m.role for m in slow_upstream.store.load(cid)] == ["user", "assistant"] * 3


def _send_when_free(client: openai.OpenAI, cid: str, text: str) -> None:
    """Send ``text`` once the conversation is free (409 until then), within 3 s."""
    deadline = time.monotonic() + 3
    while True:
        try:
            client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": text}], extra_headers={HEADER: cid}
            )
            return
        except openai.ConflictError:
            assert time.monotonic() < deadline, "the abandoned reply kept the conversation"
            time.sleep(0.05)


def test_a_failed_or_abandoned_stream_releases_its_conversation() -> None:
    # the abandoned reply takes 6 s to stream: it cannot finish before the hang-up is seen
    replies: list[Any] = ["first", "a slow reply, one letter at a time " * 9, "after it"]
    backend = ScriptedBackend(replies=replies, chunk_size=1, delay=0.02, default="fine")
    with Running(backend, budget=Budget(4000, 500)) as r:
        client = r.client()
        cid = new_conversation(client)
        body = {"messages": [{"role": "user", "content": "abandoned"}], "stream": True}
        with httpx.Client(base_url=r.url, timeout=10) as http:
            with http.stream("POST", "/chat/completions", json=body, headers={HEADER: cid}) as resp:
                lines = resp.iter_lines()
                assert next(lines).startswith("data:")  # reading: then the client hangs up
        _send_when_free(client, cid, "after")  # the reply stops at its next chunk
        assert [m.content for m in r.store.load(cid) if m.role == "user"] == ["hi", "after"]

        backend.fail_after = (1, BackendUnavailable("upstream died"))
        with pytest.raises(openai.APIError, match="upstream died"):
            list(
                client.chat.completions.create(
                    model="m",
                    messages=USER,
                    stream=True,
                    extra_headers={HEADER: cid},  # type: ignore[arg-type]
                )
            )
        backend.fail_after = None
        client.chat.completions.create(model="m", messages=USER, extra_headers={HEADER: cid})  # type: ignore[arg-type]
        assert len(r.store.load(cid)) == 6


def test_a_client_may_send_again_as_soon_as_a_reply_fails() -> None:
    # the conversation is marked free-soon before the failure is sent, streamed or JSON: the
    # next request waits for the hold's release instead of a 409 (it raced before)
    backend = ScriptedBackend(replies=[], default="fine, thanks")
    with Running(backend) as r:
        client = r.client()
        cid = new_conversation(client)
        for stream in (True, False) * 4:
            backend.fail_after = (1, BackendUnavailable("upstream died"))
            with pytest.raises(openai.APIError, match="upstream died"):
                answer = client.chat.completions.create(
                    model="m",
                    messages=USER,
                    stream=stream,
                    extra_headers={HEADER: cid},  # type: ignore[arg-type]
                )
                if stream:
                    list(answer)  # type: ignore[arg-type]
            backend.fail_after = None
            client.chat.completions.create(model="m", messages=USER, extra_headers={HEADER: cid})  # type: ignore[arg-type]
        assert len(r.store.load(cid)) == 2 + 2 * 8  # the failed turns kept nothing


def test_a_client_gone_before_a_json_reply_stops_it_uncommitted() -> None:
    backend = ScriptedBackend(replies=["first", "slow " * 100], chunk_size=1, delay=0.01)
    with Running(backend) as r:
        client = r.client()
        cid = new_conversation(client)
        impatient = openai.OpenAI(base_url=r.url, api_key="k", max_retries=0, timeout=0.3)
        with impatient, pytest.raises(openai.APITimeoutError):
            impatient.chat.completions.create(
                model="m",
                messages=[{"role": "user", "content": "gone"}],
                extra_headers={HEADER: cid},
            )
        _send_when_free(client, cid, "hi")  # at its next chunk (10 ms), 5 s before its end
        assert [m.content for m in r.store.load(cid)] == ["hi", "first", "hi", "ok"]


class _SlowUpkeep(ChatSession):
    gate = threading.Event()
    upkeeps: list[float] = []

    def upkeep(self) -> list[str]:
        if self._upkeep_due:
            self.gate.wait(5)
            self.upkeeps.append(time.monotonic())
        return super().upkeep()


def test_memory_upkeep_holds_the_conversation_and_the_next_send_waits_for_it() -> None:
    """A client that sends as soon as it has read the reply must not get a 409 because the
    last turn's upkeep (a summary fold) is still running: its request waits for it."""
    _SlowUpkeep.gate.clear()
    backend = ScriptedBackend(default="fine")
    with Running(backend, session_class=_SlowUpkeep) as r:
        client = r.client()
        raw = client.chat.completions.with_raw_response.create(
            model="m", messages=USER, extra_body={"conversation": "new"}
        )
        assert raw.parse().choices[0].message.content == "fine"  # answered before its upkeep
        cid = raw.headers[HEADER]
        sent_at: list[float] = []
        threading.Timer(0.3, _SlowUpkeep.gate.set).start()
        backend.enqueue(lambda messages: str(sent_at.append(time.monotonic())))
        client.chat.completions.create(model="m", messages=USER, extra_headers={HEADER: cid})
        assert _SlowUpkeep.upkeeps and sent_at[0] > _SlowUpkeep.upkeeps[0]  # waited for it
        assert len(r.store.load(cid)) == 4


def test_a_delete_during_the_upkeep_waits_for_it() -> None:
    _SlowUpkeep.gate.clear()
    _SlowUpkeep.upkeeps.clear()
    with Running(ScriptedBackend(default="fine"), session_class=_SlowUpkeep) as r:
        cid = new_conversation(r.client())
        threading.Timer(0.3, _SlowUpkeep.gate.set).start()
        deleting = r.http().delete(f"/conversations/{cid}")  # not while the upkeep runs
        assert deleting.status_code == 200 and deleting.json()["deleted"] is True
        assert _SlowUpkeep.upkeeps  # the upkeep had ended when the delete answered
        assert r.store.list_conversations() == []


def test_idle_sessions_are_bounded_and_evicted_ones_resume_from_the_store() -> None:
    backend = EchoBackend()
    with Running(backend, limits=ServerLimits(max_idle_sessions=2)) as r:
        client = r.client()
        ids = []
        for n in range(3):
            raw = client.chat.completions.with_raw_response.create(
                model="m",
                messages=[{"role": "user", "content": f"I am number {n}"}],
                extra_headers={HEADER: "new"},
            )
            ids.append(raw.headers[HEADER])
        made = len(r.sessions)
        client.chat.completions.create(  # the most recent: still in memory
            model="m",
            messages=[{"role": "user", "content": "again"}],
            extra_headers={HEADER: ids[2]},
        )
        assert len(r.sessions) == made
        client.chat.completions.create(  # the oldest was evicted: rebuilt from the store
            model="m",
            messages=[{"role": "user", "content": "who?"}],
            extra_headers={HEADER: ids[0]},
        )
        assert len(r.sessions) == made + 1
        sent = [m.content for m in backend.calls[-1] if m.role == "user"]
        assert sent == ["I am number 0", "who?"]


class _ThreadBound:
    """A backend that, like the embedded model, decodes one reply at a time under a lock and
    refuses a reply opened by the thread that holds it."""

    model, context_window = "bound", 4096

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.owner: int | None = None

    def token_counter(self) -> ApproxCounter:
        return ApproxCounter()

    def stream(self, messages: Sequence[Message], params: GenerationParams) -> Iterator[Chunk]:
        if self.owner == threading.get_ident():
            raise UsageError("another reply is still open in this thread")
        with self.lock:
            self.owner = threading.get_ident()
            try:
                for word in ("one ", "reply ", "at ", "a ", "time"):
                    time.sleep(0.01)
                    yield Chunk(word)
                yield Chunk("", "stop")
            finally:
                self.owner = None


@pytest.mark.anyio
async def test_a_backend_that_serialises_itself_serves_every_stream() -> None:
    """Each reply runs on one thread start to end. Starlette's own streaming of a sync iterator
    moves each chunk to any free pool thread; with requests arriving 13 ms apart, 5 of 40 then
    landed on the thread holding the lock and failed (measured)."""
    with Running(_ThreadBound()) as r:  # type: ignore[arg-type]

        async def one(client: openai.AsyncOpenAI, n: int) -> str:
            await asyncio.sleep(n * 0.013)
            stream = await client.chat.completions.create(model="m", messages=USER, stream=True)  # type: ignore[arg-type]
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

        async with r.async_client() as client:
            texts = await asyncio.gather(*(one(client, n) for n in range(40)))
    assert texts == ["one reply at a time"] * 40


def test_a_sequential_client_never_gets_409_sending_right_after_done() -> None:
    """The conversation is let go (for the next request to wait on the upkeep) before the
    last chunk and ``[DONE]`` go out: a client that sends again the moment it has read them
    never sees ``conversation_busy``."""
    with Running(EchoBackend(), budget=Budget(4000, 500)) as r:
        with httpx.Client(base_url=r.url, timeout=10) as http:
            first = http.post("/chat/completions", json={"messages": USER, "conversation": "new"})
            cid = first.headers[HEADER]
            statuses: list[int] = []
            for i in range(50):
                body = {"messages": [{"role": "user", "content": f"turn {i}"}], "stream": i % 5 > 0}
                with http.stream(
                    "POST", "/chat/completions", json=body, headers={HEADER: cid}
                ) as resp:
                    statuses.append(resp.status_code)
                    for line in resp.iter_lines():
                        if line == "data: [DONE]":
                            break  # send the next one at once, before the body has ended
        assert statuses == [200] * 50
        assert len(r.store.load(cid)) == 2 * 51
