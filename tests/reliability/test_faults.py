"""The fault matrix: every upstream fault of ``upstream.FAULTS`` on every face.

For each fault × (library, CLI ``ask``, CLI ``chat`` on piped input, server JSON, server SSE,
web): the upstream fails once (then answers) or keeps failing. memchat must retry exactly where
its documented policy says (``Fault.retries``; waiting at least ``min_gap`` between attempts),
show a clear one-line error where it does not, and leave the stored conversation exactly as it
was before the turn, or that plus the whole turn: never a partial or duplicated turn, and the
user's message kept for a resend.

The cases of one face run at once (each on its own conversation, its requests told apart by
their ``[case …]`` tag), and each test checks one case's outcome.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.stubs.openai_stub import Scripted, cut_mid_stream, ok
from tests.stubs.serve_process import Served
from tests.web.conftest import Pages, bot_texts, wait_for, wait_idle

import memchat
from memchat.backends.openai_compat import OpenAIBackend
from memchat.storage import open_store

from .conftest import (
    PROVIDER_KEY,
    RETRIES,
    SOAK,
    WebProcess,
    hermetic_env,
    no_traceback,
    provider_flags,
    run_cli,
)
from .gradio_http import App, Visitor
from .upstream import FAULTS, REPLY, TIMEOUT, Fault, FaultyUpstream

Turns = list[tuple[str, str]]


def _cases() -> list[tuple[Fault, str]]:
    out = []
    for fault in FAULTS:
        modes = ["once", "always"] if fault.retries else ["always"]
        out += [(fault, mode) for mode in (modes if fault.error else ["once"])]
    return out


CASES = _cases()
PARAMS = [pytest.param(f"{f}-{m}", id=f"{f}-{m}") for f, m in CASES]
BY_ID = {f"{f}-{m}": (f, m) for f, m in CASES}


# `memchat chat` on a pipe runs the same turn code as `ask`: the fast run plays one fault of
# each kind through it (retried and recovered, retried and failed, not retried, mid-stream,
# slow), the soak all of them
CHAT_CASES = (
    list(BY_ID)
    if SOAK
    else [
        "503-once",
        "429-always",
        "401-always",
        "reset-mid-stream-always",
        "very-slow-stream-once",
    ]
)
CHAT_PARAMS = [pytest.param(c, id=c) for c in CHAT_CASES]


def script(fault: Fault, mode: str) -> list[Scripted]:
    """What the upstream answers: the fault once then a reply, or the fault every time."""
    if mode == "once" or not fault.retries:
        return [fault.scripted(), ok(REPLY)]  # a reply queued behind an unretried fault
    return [fault.scripted()] * (RETRIES + 2)


def expected(fault: Fault, mode: str) -> tuple[bool, int]:
    """(the turn completes, attempts upstream)."""
    if fault.error is None:
        return True, 1
    if not fault.retries:
        return False, 1
    if mode == "once":
        return True, 2
    return False, 2 if fault.retries == "session" else 1 + RETRIES


@dataclass
class Outcome:
    completed: bool
    shown: str  # what the user saw: the reply, or the error
    before: Turns
    after: Turns
    text: str
    attempts: int = 0
    gaps: tuple[float, ...] = ()
    exit_code: int = 0


def run_matrix(
    up: FaultyUpstream,
    face: str,
    run: Callable[[Fault, str, str], Outcome],
    workers: int = 32,
    cases: list[str] | None = None,
) -> dict[str, Outcome | BaseException]:
    """Every case (of ``cases``) on ``face`` at once; ``run(fault, mode, text)`` plays one."""
    chosen = cases or list(BY_ID)

    def one(case: str) -> Outcome | BaseException:
        fault, mode = BY_ID[case]
        tag = f"{face}:{case}"
        up.script(tag, *script(fault, mode))
        try:
            outcome = run(fault, mode, f"{face} question [case {tag}]")
        except BaseException as exc:  # re-raised by the case's own test
            return exc
        outcome.attempts, outcome.gaps = up.attempts(tag), tuple(up.gaps(tag))
        return outcome

    with ThreadPoolExecutor(workers) as pool:
        return dict(zip(chosen, pool.map(one, chosen), strict=True))


def check(results: dict[str, Outcome | BaseException], case: str) -> None:
    outcome = results[case]
    if isinstance(outcome, BaseException):
        raise outcome
    fault, mode = BY_ID[case]
    completes, attempts = expected(fault, mode)
    where = f"{case}: {outcome.shown[:300]!r}"
    assert outcome.attempts == attempts, where
    if attempts > 1 and fault.retries == "backend":
        assert min(outcome.gaps) >= fault.min_gap, f"{where}: retried too soon: {outcome.gaps}"
    assert outcome.completed is completes, where
    no_traceback(outcome.shown)
    if completes:
        assert REPLY in outcome.shown, where
        whole = [*outcome.before, ("user", outcome.text), ("assistant", REPLY)]
        assert outcome.after == whole, where
    else:
        assert outcome.after == outcome.before, f"{where}: the store changed"
        assert outcome.shown.strip() and "\n" not in outcome.shown.strip(), where


# -- library ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def library(upstream: FaultyUpstream, tmp_path_factory: pytest.TempPathFactory) -> Any:
    store = open_store(f"sqlite:///{tmp_path_factory.mktemp('lib')}/lib.db")
    backend = OpenAIBackend(
        "stub-model",
        base_url=upstream.url,
        api_key=PROVIDER_KEY,
        timeout=TIMEOUT,
        max_retries=RETRIES,
    )

    def run(fault: Fault, mode: str, text: str) -> Outcome:
        cid = store.create_conversation(text).id
        session = memchat.ChatSession(backend, store=store, conversation_id=cid)
        session.ask("a first question")
        before = stored(session)
        try:
            shown, completed = session.ask(text), True
        except memchat.MemchatError as exc:
            shown, completed = str(exc), False
            assert type(exc).__name__ == fault.error, exc
            assert isinstance(exc, memchat.BackendError) and exc.user_text == text  # resend
        in_memory = [(m.role, m.content) for m in session.history.messages()]
        assert in_memory == stored(session)  # the session's history is the store's
        return Outcome(completed, shown, before, stored(session), text)

    yield run_matrix(upstream, "lib", run)
    backend.close()
    store.close()


def stored(session: memchat.ChatSession) -> Turns:
    assert session.store is not None and session.conversation_id is not None
    return [(m.role, m.content) for m in session.store.load(session.conversation_id)]


@pytest.mark.parametrize("case", PARAMS)
def test_library(library: dict[str, Any], case: str) -> None:
    check(library, case)


# -- CLI -------------------------------------------------------------------------------------
def cli_turns(url: str, name: str) -> Turns:
    store = open_store(url)
    try:
        info = next((c for c in store.list_conversations() if c.title == name), None)
        return [] if info is None else [(m.role, m.content) for m in store.load(info.id)]
    finally:
        store.close()


def cli_face(up: FaultyUpstream, home: Path, command: str) -> dict[str, Any]:
    url = f"sqlite:///{home}/cli-{command}.db"
    env = hermetic_env(home)
    # the budget strategy: a recall strategy would load the embedding model in every process
    flags = [*provider_flags(up.url), "--store", url, "--strategy", "budget"]

    def run(fault: Fault, mode: str, text: str) -> Outcome:
        name = text.split("[case ")[1].rstrip("]")
        seed(url, name)
        before = cli_turns(url, name)
        args = [command, "-c", name, *flags]
        out = run_cli([*args, text], env) if command == "ask" else run_cli(args, env, text + "\n")
        no_traceback(out.stdout, out.stderr)
        if command == "ask":
            completed = out.returncode == 0
            shown = out.stdout
            if not completed:
                lines = out.stderr.splitlines()
                assert out.returncode == 1 and lines[-1].startswith("error:"), out
                assert all(line.startswith("! ") for line in lines[:-1]), out  # retry notices
                shown = lines[-1]
        else:
            completed = "error:" not in out.stdout
            shown = out.stdout
            if not completed:  # chat prints the error and keeps the message for /retry
                assert "your message was kept" in shown and text in shown, shown
                error = shown[shown.index("error:") :].split("\nthe turn failed")[0]
                shown = " ".join(error.split())  # rich wraps at 80 columns on a pipe
        after = cli_turns(url, name)
        return Outcome(completed, shown, before, after, text, exit_code=out.returncode)

    cases = CHAT_CASES if command == "chat" else None
    return run_matrix(up, f"cli-{command}", run, workers=6, cases=cases)


def seed(url: str, name: str) -> None:
    """A stored conversation NAME holding one earlier turn."""
    store = open_store(url)
    try:
        cid = store.create_conversation(name).id
        store.append(cid, [memchat.user("a first question"), memchat.assistant("an answer")])
    finally:
        store.close()


@pytest.fixture(scope="module")
def cli_ask(upstream: FaultyUpstream, home: Path) -> dict[str, Any]:
    return cli_face(upstream, home, "ask")


@pytest.fixture(scope="module")
def cli_chat(upstream: FaultyUpstream, home: Path) -> dict[str, Any]:
    return cli_face(upstream, home, "chat")


@pytest.mark.parametrize("case", PARAMS)
def test_cli_ask(cli_ask: dict[str, Any], case: str) -> None:
    check(cli_ask, case)


@pytest.mark.parametrize("case", CHAT_PARAMS)
def test_cli_chat_piped(cli_chat: dict[str, Any], case: str) -> None:
    check(cli_chat, case)


def test_cli_chat_piped_exits_non_zero_after_a_failed_turn(cli_chat: dict[str, Any]) -> None:
    """It printed the error and kept the message, then exited 0: a script could not tell."""
    codes = {c: (o.completed, o.exit_code) for c, o in cli_chat.items() if isinstance(o, Outcome)}
    assert any(not done for done, _ in codes.values()), codes
    assert all(code == (0 if done else 1) for done, code in codes.values()), codes


# -- server ----------------------------------------------------------------------------------
def server_turns(s: Served, cid: str) -> Turns:
    got = httpx.get(f"{s.url}/conversations/{cid}/messages", params={"limit": 100}, timeout=10)
    if got.status_code == 404:
        return []
    return [(m["role"], m["content"]) for m in got.json()["data"]]


def sse_events(body: str) -> list[Any]:
    data = [line[6:] for line in body.splitlines() if line.startswith("data: ")]
    return [json.loads(d) for d in data if d != "[DONE]"]


def server_face(up: FaultyUpstream, served: Served, stream: bool) -> dict[str, Any]:
    def post(cid: str, text: str) -> httpx.Response:
        body = {"model": "m", "stream": stream, "messages": [{"role": "user", "content": text}]}
        return httpx.post(
            f"{served.url}/chat/completions",
            json=body,
            timeout=30,
            headers={"X-Memchat-Conversation": cid},
        )

    def run(fault: Fault, mode: str, text: str) -> Outcome:
        cid = text.split("[case ")[1].rstrip("]")
        assert post(cid, "a first question").status_code == 200
        before = server_turns(served, cid)
        got = post(cid, text)
        if got.status_code != 200:
            error = got.json()["error"]
            assert (got.status_code, error["code"]) == (fault.status, fault.code), got.text
            if "retry-after" in fault.name:
                assert got.headers["retry-after"] == "1"
            shown, completed = error["message"], False
        elif not stream:
            shown, completed = got.json()["choices"][0]["message"]["content"], True
        else:
            shown, completed = read_stream(fault, got)
        return Outcome(completed, shown, before, server_turns(served, cid), text)

    results = run_matrix(up, f"server-{'sse' if stream else 'json'}", run)
    no_traceback(served.log())
    return results


def read_stream(fault: Fault, got: httpx.Response) -> tuple[str, bool]:
    """(text or error, completed) of an SSE answer."""
    assert got.headers["content-type"].startswith("text/event-stream")
    events = sse_events(got.text)
    errors = [e["error"] for e in events if "error" in e]
    if errors:
        assert fault.midstream, f"{fault}: an error after a 200 though not mid-stream"
        assert errors[0]["code"] == fault.code, errors
        return errors[0]["message"], False
    text = "".join(c["delta"].get("content") or "" for e in events for c in e["choices"])
    finished = [c["finish_reason"] for e in events for c in e["choices"] if c["finish_reason"]]
    assert got.text.rstrip().endswith("data: [DONE]") and finished == ["stop"], got.text
    return text, True


@pytest.fixture(scope="module")
def server_json(upstream: FaultyUpstream, served: Served) -> dict[str, Any]:
    return server_face(upstream, served, stream=False)


@pytest.fixture(scope="module")
def server_sse(upstream: FaultyUpstream, served: Served) -> dict[str, Any]:
    return server_face(upstream, served, stream=True)


@pytest.mark.parametrize("case", PARAMS)
def test_server_json(server_json: dict[str, Any], case: str) -> None:
    check(server_json, case)


@pytest.mark.parametrize("case", PARAMS)
def test_server_sse(server_sse: dict[str, Any], case: str) -> None:
    check(server_sse, case)


# -- web -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def web(upstream: FaultyUpstream, web_app: WebProcess) -> dict[str, Any]:
    """Each case from its own visitor (a tab speaking the page's Gradio queue protocol)."""
    app = App.read(web_app.url)

    def run(fault: Fault, mode: str, text: str) -> Outcome:
        visitor = Visitor(app)
        try:
            visitor.open()
            visitor.send("a first question")
            cid = visitor.browser["conversation"]
            before = web_app.messages(cid)
            chat = visitor.send(text)
            kept = visitor.text  # what the input box holds after the turn
            shown = chat[-1]["content"] if chat[-1]["role"] == "assistant" else ""
            completed = REPLY in shown and kept == ""
            if not completed:
                assert kept == text, f"the message was not kept for a resend: {kept!r}"
                shown = " ".join(shown.split())
            return Outcome(completed, shown, before, web_app.messages(cid), text)
        finally:
            visitor.close()

    results = run_matrix(upstream, "web", run)
    no_traceback(web_app.log())
    return results


@pytest.mark.parametrize("case", PARAMS)
def test_web(web: dict[str, Any], case: str) -> None:
    check(web, case)


@pytest.mark.browser
def test_web_in_chromium_shows_the_error_and_keeps_the_message(
    upstream: FaultyUpstream, web_app: WebProcess, pages: Pages
) -> None:
    """The same as the visitors above see, in the browser: an upstream failing mid-stream."""
    upstream.script("web:chromium", cut_mid_stream(2, REPLY))
    page = pages.open(web_app.url)
    text = "web question [case web:chromium]"
    page.locator("#mc-input textarea").fill(text)
    page.locator("#mc-send").click()
    wait_for(lambda: bot_texts(page) and page.locator("#mc-stop").is_hidden(), timeout=30)
    wait_idle(page)
    assert "broke mid-reply" in bot_texts(page)[-1]
    assert page.locator("#mc-input textarea").input_value() == text
