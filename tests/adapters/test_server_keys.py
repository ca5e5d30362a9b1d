"""API keys on the server: stored keys (``memchat keys``) and ``--keys``, no cross-talk between
keys, revocation at once, and no key ever in an answer or a log line."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from tests.stubs.memchat_server import Running
from tests.stubs.openai_stub import OpenAIStub, ok, status

from memchat.adapters.server import HEADER, _auth
from memchat.adapters.server._auth import REDACTED, Scrubber, scrub_logs
from memchat.backends.fake import EchoBackend
from memchat.backends.openai_compat import OpenAIBackend
from memchat.core import Budget
from memchat.core.keys import key_hash, key_prefix, new_key

USER = [{"role": "user", "content": "hi"}]


def add_key(r: Running, name: str) -> str:
    secret = new_key()
    r.store.add_key(name, key_hash(secret), key_prefix(secret))
    return secret


def http(r: Running, key: str | None) -> httpx.Client:
    client = r.http()
    if key is not None:
        client.headers["authorization"] = f"Bearer {key}"
    return client


def chat(r: Running, key: str, cid: str, text: str) -> httpx.Response:
    body = {"model": "m", "messages": [{"role": "user", "content": text}]}
    return http(r, key).post("/chat/completions", json=body, headers={HEADER: cid})


@pytest.fixture
def keyed() -> Iterator[tuple[Running, str, str]]:
    with Running(EchoBackend(), budget=Budget(2000, 100), store_keys=True) as r:
        yield r, add_key(r, "alice"), add_key(r, "bob")


def test_two_keys_never_see_each_others_conversations(keyed: tuple[Running, str, str]) -> None:
    r, alice, bob = keyed
    assert chat(r, alice, "plans", "alice's secret plan").status_code == 200
    assert chat(r, bob, "notes", "bob's note").status_code == 200
    a, b = http(r, alice), http(r, bob)
    assert [c["id"] for c in a.get("/conversations").json()["data"]] == ["plans"]
    assert [c["id"] for c in b.get("/conversations").json()["data"]] == ["notes"]
    mid = a.get("/conversations/plans/messages").json()["data"][0]["id"]
    for method, path, body in [
        ("GET", "/conversations/plans", None),
        ("POST", "/conversations/plans", {"title": "mine now"}),
        ("GET", "/conversations/plans/messages", None),
        ("GET", "/conversations/plans/context", None),
        ("POST", "/conversations/plans/fork", {"message_id": mid}),
        ("POST", f"/conversations/plans/messages/{mid}/pin", None),
        ("DELETE", f"/conversations/plans/messages/{mid}", None),
        ("DELETE", "/conversations/plans", None),
    ]:
        got = b.request(method, path, json=body)
        assert got.status_code == 404, (method, path, got.text)
        assert "alice" not in got.text and "secret" not in got.text
    # the same id names bob's own, new conversation: nothing of alice's is sent or shown
    assert chat(r, bob, "plans", "is anything here?").status_code == 200
    assert [m.content for m in r.backend.calls[-1]] == ["is anything here?"]
    assert [m["content"] for m in b.get("/conversations/plans/messages").json()["data"]] == [
        "is anything here?", "echo: is anything here?",
    ]  # fmt: skip
    assert a.get("/conversations/plans").json()["title"] == "alice's secret plan"
    assert a.get("/conversations/plans/messages").json()["data"][0]["content"] == (
        "alice's secret plan"
    )


def test_missing_wrong_and_revoked_keys_get_401_at_once(keyed: tuple[Running, str, str]) -> None:
    r, alice, _ = keyed
    for key in (None, "mc-wrong", "Bearer", alice[:-1]):
        got = http(r, key).get("/models")
        assert got.status_code == 401 and got.json()["error"]["code"] == "invalid_api_key"
    assert http(r, alice).get("/models").status_code == 200
    r.store.revoke_key("alice")
    got = http(r, alice).get("/models")  # the very next request: no restart, no cache
    assert got.status_code == 401 and alice not in got.text
    assert chat(r, alice, "x", "hi").status_code == 401
    with pytest.raises(openai.AuthenticationError):
        r.client(alice).chat.completions.create(model="m", messages=USER)  # type: ignore[arg-type]


def test_a_new_key_works_at_once_and_last_use_is_recorded(keyed: tuple[Running, str, str]) -> None:
    r, _, _ = keyed
    carol = add_key(r, "carol")
    before = time.time()
    assert http(r, carol).get("/models").status_code == 200
    used = next(k for k in r.store.list_keys() if k.name == "carol").last_used_at
    assert used is not None and used >= before - 1


def test_revoking_every_key_keeps_the_server_closed(keyed: tuple[Running, str, str]) -> None:
    r, _, _ = keyed
    r.store.revoke_key("alice")
    r.store.revoke_key("bob")
    assert http(r, None).get("/models").status_code == 401


def test_an_open_server_closes_when_its_first_key_is_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_auth, "RECHECK", 0.05)
    with Running(EchoBackend(), store_keys=True) as r:
        assert http(r, None).get("/models").status_code == 200  # open: no key anywhere
        assert chat(r, "anything", "c", "hi").status_code == 200
        key = add_key(r, "first")
        time.sleep(0.1)
        assert http(r, None).get("/models").status_code == 401
        assert http(r, key).get("/models").status_code == 200


def test_flag_keys_and_stored_keys_work_together() -> None:
    with Running(EchoBackend(), keys=frozenset({"flag-key-1234"}), store_keys=True) as r:
        stored = add_key(r, "stored")
        assert chat(r, "flag-key-1234", "c", "hi").status_code == 200
        assert http(r, stored).get("/conversations").json()["data"] == []
        assert http(r, "flag-key-1234").get("/conversations/c").status_code == 200
        assert http(r, "nope").get("/models").status_code == 401


# -- no key in answers or logs ---------------------------------------------------------------
@pytest.fixture
def scrubbed_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    factory = logging.getLogRecordFactory()
    caplog.set_level(logging.DEBUG)
    yield caplog
    logging.setLogRecordFactory(factory)


def test_no_key_ever_appears_in_answers_or_logs(scrubbed_logs: pytest.LogCaptureFixture) -> None:
    provider = "sk-provider-" + "9" * 24
    flag = "flag-key-" + "7" * 16
    with OpenAIStub() as stub:
        echoed = f"Incorrect API key provided: {provider}"
        stub.enqueue(status(401, message=echoed), status(500, message=f"boom {provider}"),
                     ok("fine"))  # fmt: skip
        backend = OpenAIBackend("gpt-4o-mini", base_url=stub.url, api_key=provider,
                                max_retries=0)  # fmt: skip
        with Running(backend, budget=Budget(4000, 500), keys=frozenset({flag}),
                     store_keys=True, secrets=(provider,)) as r:  # fmt: skip
            scrub_logs(Scrubber([provider, flag]))
            stored = add_key(r, "stored")
            bodies: list[str] = []
            for key, cid in [(flag, "a"), (stored, "b"), (stored, "b"), ("mc-" + "x" * 40, "c")]:
                for stream in (False, True):
                    body: dict[str, Any] = {"model": "m", "stream": stream, "messages": USER}
                    got = http(r, key).post("/chat/completions", json=body,
                                            headers={HEADER: cid})  # fmt: skip
                    bodies.append(got.text)
            r.store.revoke_key("stored")
            bodies.append(http(r, stored).get("/conversations").text)
            logging.getLogger("memchat.test").warning("upstream said %s", echoed)
        backend.close()
    assert any(REDACTED in b for b in bodies), bodies  # the upstream's echo was scrubbed
    assert any('"fine"' in b or "fine" in b for b in bodies)
    logs = "\n".join(
        [rec.getMessage() for rec in scrubbed_logs.records]
        + [rec.exc_text or "" for rec in scrubbed_logs.records]
    )
    assert REDACTED in logs
    for secret in (provider, flag, stored):
        for text in (*bodies, logs):
            assert secret not in text
    assert stub.chat_requests[0].headers["authorization"] == f"Bearer {provider}"  # it was sent


def test_scrubber_leaves_short_words_alone() -> None:
    scrub = Scrubber(["k", None, "none", "a-real-secret-123"])
    assert scrub("k none a-real-secret-123!") == f"k none {REDACTED}!"
