"""A fast fake OpenAI-compatible upstream for bench_server: stdlib asyncio, one process.

It speaks the chat-completions wire format the openai SDK and LiteLLM read: HTTP/1.1 with
keep-alive, ``text/event-stream`` in chunked encoding, a role chunk, ``CHUNKS`` content chunks
(one word each), a finish chunk, a usage chunk with empty ``choices`` when
``stream_options.include_usage`` is set, then ``data: [DONE]``. Each SSE event is its own
chunk and its own write. ``stream: false`` gets the same reply as one JSON completion.
``GET /v1/models`` lists the model. No artificial delay unless ``--chunk-delay-ms``.

    python bench/_server_upstream.py --port 8123 [--chunk-delay-ms 0]

It prints ``ready <port>`` once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import time

CHUNKS = 20
WORDS = (
    "this short reply comes from a fast fake upstream so what is measured is the proxy "
    "and not a model"
).split()
assert len(WORDS) == CHUNKS
REPLY = " ".join(WORDS)
PIECES = [w if i == 0 else " " + w for i, w in enumerate(WORDS)]


def _event(payload: object) -> bytes:
    data = b"data: " + (payload if isinstance(payload, bytes) else json.dumps(payload).encode())
    data += b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


def _chunk(model: str, delta: dict, finish: str | None = None) -> dict:
    choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
    return {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model, "choices": [choice]}  # fmt: skip


def _usage(body: dict) -> dict:
    prompt = len(json.dumps(body.get("messages"))) // 4
    return {"prompt_tokens": prompt, "completion_tokens": CHUNKS,
            "total_tokens": prompt + CHUNKS}  # fmt: skip


def stream_events(body: dict) -> list[bytes]:
    model = str(body.get("model") or "fake")
    events = [_event(_chunk(model, {"role": "assistant", "content": ""}))]
    events += [_event(_chunk(model, {"content": p})) for p in PIECES]
    events.append(_event(_chunk(model, {}, "stop")))
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = {**_chunk(model, {}), "choices": [], "usage": _usage(body)}
        events.append(_event(usage))
    events.append(_event(b"[DONE]"))
    events.append(b"0\r\n\r\n")
    return events


def _completion(body: dict) -> bytes:
    model = str(body.get("model") or "fake")
    choice = {"index": 0, "message": {"role": "assistant", "content": REPLY},
              "finish_reason": "stop"}  # fmt: skip
    return json.dumps({"id": "chatcmpl-fake", "object": "chat.completion",
                       "created": int(time.time()), "model": model, "choices": [choice],
                       "usage": _usage(body)}).encode()  # fmt: skip


def _head(status: str, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode()


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
    return await reader.readexactly(int(headers.get("content-length") or 0))


async def _respond(writer: asyncio.StreamWriter, method: str, path: str, raw: bytes,
                   delay: float) -> None:  # fmt: skip
    if method == "GET" and path.rstrip("/").endswith("/models"):
        data = json.dumps(
            {
                "object": "list",
                "data": [
                    {"id": "bench-model", "object": "model", "created": 0, "owned_by": "fake"}
                ],
            }
        ).encode()
        head = {"content-type": "application/json", "content-length": str(len(data))}
        writer.write(_head("200 OK", head) + data)
        return
    if not path.split("?")[0].endswith("/chat/completions"):
        data = b'{"error": {"message": "not found", "type": "invalid_request_error"}}'
        head = {"content-type": "application/json", "content-length": str(len(data))}
        writer.write(_head("404 Not Found", head) + data)
        return
    body = json.loads(raw or b"{}")
    if not body.get("stream"):
        data = _completion(body)
        head = {"content-type": "application/json", "content-length": str(len(data))}
        writer.write(_head("200 OK", head) + data)
        return
    writer.write(_head("200 OK", {"content-type": "text/event-stream",
                                  "cache-control": "no-cache",
                                  "transfer-encoding": "chunked"}))  # fmt: skip
    for event in stream_events(body):
        writer.write(event)
        if delay:
            await writer.drain()
            await asyncio.sleep(delay)
    await writer.drain()


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            raw = await _read_body(reader, headers)
            await _respond(writer, method, path, raw, delay)
            if headers.get("connection", "").lower() == "close":
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


async def main(port: int, delay: float) -> None:
    server = await asyncio.start_server(
        lambda r, w: _serve(r, w, delay), "127.0.0.1", port, backlog=1024
    )
    print(f"ready {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    asyncio.run(main(args.port, args.chunk_delay_ms / 1000))
