"""The server's limits: body size (refused while it arrives), JSON depth, one message's size."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import openai
import pytest
from tests.stubs.memchat_server import Running

from memchat.adapters.server import ServerLimits
from memchat.backends.fake import EchoBackend
from memchat.core import ConfigError

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    with Running(EchoBackend()) as r:
        yield r


def _raw(running: Running, head: bytes, body_parts: list[bytes]) -> tuple[int, dict[str, str]]:
    """Send a request by hand (so the body can stop short) and read the answer's status and
    JSON; the socket stays open, so an answer means the server did not wait for the rest."""
    with socket.create_connection(("127.0.0.1", running.port), timeout=5) as sock:
        sock.sendall(head)
        for part in body_parts:
            sock.sendall(part)
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            more = sock.recv(65536)
            if not more:
                break
            data += more
    head_text, _, body = data.partition(b"\r\n\r\n")
    status = int(head_text.split()[1])
    if b"chunked" in head_text.lower():
        body = body.split(b"\r\n", 1)[1].rsplit(b"\r\n0\r\n", 1)[0].strip()
    return status, json.loads(body)["error"]


def _head(extra: str) -> bytes:
    return (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: application/json\r\n{extra}\r\n"
    ).encode()


def test_a_declared_20_mb_body_is_refused_before_it_is_read(running: Running) -> None:
    start = time.monotonic()
    status, error = _raw(running, _head(f"Content-Length: {20 * MiB}\r\n"), [b"{" + b" " * 1000])
    assert status == 413 and error["code"] == "request_too_large"
    assert time.monotonic() - start < 2  # 20 MB were never sent


def test_a_chunked_body_is_refused_once_it_passes_the_limit(running: Running) -> None:
    piece = b" " * 65536
    chunk = b"%x\r\n%s\r\n" % (len(piece), piece)
    # "{" and 4 MiB: one byte past the limit, and no final chunk (the body is unfinished)
    parts = [b"1\r\n{\r\n"] + [chunk] * (4 * MiB // len(piece))
    status, error = _raw(running, _head("Transfer-Encoding: chunked\r\n"), parts)
    assert status == 413 and error["code"] == "request_too_large"


def test_a_body_within_the_limit_is_read_whole(running: Running) -> None:
    filler = {"k" * 10: "v" * 3 * MiB}  # metadata is accepted and changes nothing
    out = running.client().chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], metadata=filler
    )
    assert out.choices[0].message.content == "echo: hi"


def test_json_50000_deep_is_a_400_at_once(running: Running) -> None:
    http = running.http()
    start = time.monotonic()
    response = http.post("/chat/completions", content=b"[" * 50_000 + b"]" * 50_000)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "json_too_deep"
    deep_object = '{"a":' * 50_000 + "1" + "}" * 50_000
    response = http.post("/chat/completions", content=deep_object)
    assert response.status_code == 400
    assert time.monotonic() - start < 1


def nested(depth: int) -> object:
    value: object = "x"
    for _ in range(depth):
        value = {"n": value}
    return value


def test_json_depth_limit_is_exact(running: Running) -> None:
    # the body is level 1 and metadata's own object level 2: 63 objects reach level 64
    client = running.client()
    ok = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], metadata=nested(63)
    )
    assert ok.choices[0].message.content == "echo: hi"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], metadata=nested(64)
        )
    assert caught.value.code == "json_too_deep"


def test_a_message_over_1_mib_is_a_400_naming_it(running: Running) -> None:
    client = running.client()
    for text in ("x" * (MiB + 1), "é" * (MiB // 2 + 1)):  # bytes of UTF-8, not characters
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(
                model="m",
                messages=[{"role": "system", "content": "s"}, {"role": "user", "content": text}],
            )
        assert caught.value.param == "messages[1].content"
        assert caught.value.code == "string_above_max_length"
    out = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "y" * MiB}]
    )
    assert out.choices[0].message.content  # exactly 1 MiB is accepted (and cut to the budget)


@pytest.mark.parametrize(
    ("content", "code"),
    [(b"{not json", "invalid_json"), (b"[1, 2]", "invalid_type"), (b"\xff\xfe{", "invalid_json")],
)
def test_a_body_that_is_not_a_json_object_is_a_400(
    running: Running, content: bytes, code: str
) -> None:
    response = running.http().post("/chat/completions", content=content)
    assert response.status_code == 400 and response.json()["error"]["code"] == code


def test_limits_are_arguments() -> None:
    limits = ServerLimits(max_body_bytes=2048, max_json_depth=3, max_message_bytes=10)
    with Running(EchoBackend(), limits=limits) as r:
        http = r.http()
        big = http.post("/chat/completions", json={"messages": [], "pad": "x" * 4096})
        assert big.status_code == 413
        deep = http.post("/chat/completions", json={"messages": [{"role": "user", "content": [
            {"type": "text", "text": "hi"}]}]})  # fmt: skip
        assert deep.status_code == 400 and deep.json()["error"]["code"] == "json_too_deep"
        long = http.post("/chat/completions", json={"messages": [{"role": "user", "content":
            "eleven char"}]})  # fmt: skip
        assert long.json()["error"]["param"] == "messages[0].content"
    with pytest.raises(ConfigError, match="max_body_bytes"):
        ServerLimits(max_body_bytes=0)
