"""`memchat chat` through click's CliRunner with the public fake backends."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from memchat.adapters.cli import App, cli
from memchat.adapters.cli._chat import ChatLoop
from memchat.backends.fake import EchoBackend, ScriptedBackend
from memchat.core.backend import Chunk, GenerationParams
from memchat.core.errors import BackendUnavailable
from memchat.core.messages import Message
from memchat.core.meter import MeterReading
from memchat.settings import Settings
from memchat.storage import InMemoryStore
from memchat.wiring import build_session


def chat(
    tmp_path: Path,
    lines: Sequence[str],
    *args: str,
    backend: object | None = None,
    store: InMemoryStore | None = None,
) -> Result:
    environ = {"MEMCHAT_HOME": str(tmp_path), "MEMCHAT_STORE": "memory:" if store else "none"}
    app = App(
        environ=environ,
        make_backend=(lambda s: backend) if backend is not None else None,
        make_store=(lambda url: store) if store is not None else None,
    )
    text = "".join(f"{line}\n" for line in lines)
    return CliRunner().invoke(cli, ["chat", "--backend", "echo", *args], input=text, obj=app)


def test_basic_turn_streams_the_reply_and_prints_the_meter(tmp_path):
    result = chat(tmp_path, ["hello there"])
    assert result.exit_code == 0, result.output
    assert "memchat › echo: hello there" in result.stdout
    meter = next(line for line in result.stdout.splitlines() if line.startswith("⟨"))
    assert "/ 4,096 tokens" in meter and meter.endswith("⟩")


def test_tokens_shows_window_reserve_and_counter(tmp_path):
    result = chat(tmp_path, ["hi", "/tokens"], "--budget", "1000", "--reserve", "200")
    assert "history: 2 messages in 1 rounds" in result.stdout
    assert "window 1,000 tokens, 200 kept for the reply, the prompt may use 800" in result.stdout
    assert "counter approx (an estimate)" in result.stdout


def test_context_lists_kept_and_dropped_messages(tmp_path):
    words = " ".join(["word"] * 40)
    lines = [f"{i} {words}" for i in range(6)] + ["/context all"]
    result = chat(tmp_path, lines, "--budget", "260", "--reserve", "20", "--strategy", "budget")
    out = result.stdout
    assert "dropped" in out and "kept" in out
    assert "left out" in out and "strategy budget" in out
    assert "trimmed: 2 older messages are no longer sent" in out  # notice when trimming began


def test_context_before_any_turn(tmp_path):
    assert "nothing has been sent yet" in chat(tmp_path, ["/context"]).stdout


def test_forget_the_last_round_then_a_message_by_id(tmp_path):
    backend = EchoBackend()
    result = chat(tmp_path, ["one", "two", "/forget", "three"], backend=backend)
    assert "forgot the last 1 round(s) (2 messages)" in result.stdout
    sent = [m.content for m in backend.calls[-1]]
    assert sent == ["one", "echo: one", "three"]


def test_forget_by_short_id_and_n_rounds(tmp_path):
    store = InMemoryStore()
    chat(tmp_path, ["a", "b", "c"], "-c", "t", store=store)
    conv = store.find_conversation("t")
    first = store.load(conv.id)[0]
    short = first.id.rsplit("-", 1)[-1]
    result = chat(tmp_path, [f"/forget {short}", "/forget 1"], "-c", "t", store=store)
    assert f"forgot message {first.id}" in result.stdout
    assert [m.content for m in store.load(conv.id)] == ["echo: a", "b", "echo: b"]


def test_pin_keeps_an_old_round_in_the_context(tmp_path):
    store = InMemoryStore()
    backend = EchoBackend()
    filler = " ".join(["pad"] * 30)
    chat(tmp_path, ["remember: my code is 4711"], "-c", "p", store=store)
    mid = store.load(store.find_conversation("p").id)[0].id
    lines = [f"/pin {mid[-8:]}"] + [f"{i} {filler}" for i in range(8)]
    args = ("-c", "p", "--budget", "300", "--reserve", "20", "--strategy", "budget")
    result = chat(tmp_path, lines, *args, backend=backend, store=store)
    assert f"pinned message {mid}" in result.stdout
    last_prompt = [m.content for m in backend.calls[-1]]
    assert last_prompt[0] == "remember: my code is 4711"
    assert "0 " + filler not in last_prompt  # old unpinned rounds were dropped
    assert store.load(store.find_conversation("p").id)[0].pinned


def test_unpin_and_unknown_ids(tmp_path):
    result = chat(tmp_path, ["x", "/pin", "/pin nope", "/unpin nope"])
    assert "usage: /pin ID" in result.stdout
    assert result.stdout.count("no message 'nope' in this conversation") == 2


def test_system_sets_shows_and_removes_the_prompt(tmp_path):
    backend = EchoBackend()
    lines = ["/system You are terse.", "/system", "hi", "/system -", "again"]
    result = chat(tmp_path, lines, backend=backend)
    assert "system prompt set" in result.stdout and "You are terse." in result.stdout
    assert [m.role for m in backend.calls[0]] == ["system", "user"]
    assert backend.calls[0][0].content == "You are terse."
    assert [m.role for m in backend.calls[1]] == ["user", "assistant", "user"]


def test_reset_clears_the_conversation_in_the_store_too(tmp_path):
    store = InMemoryStore()
    result = chat(tmp_path, ["one", "two", "/reset", "three"], "-c", "r", store=store)
    assert "cleared 4 messages" in result.stdout
    assert [m.content for m in store.load(store.find_conversation("r").id)] == [
        "three", "echo: three",
    ]  # fmt: skip


def test_help_lists_every_command_and_unknown_commands_say_so(tmp_path):
    result = chat(tmp_path, ["/help", "/frobnicate"])
    for name in ("/tokens", "/context", "/forget", "/pin", "/system", "/reset", "/retry", "/exit"):
        assert name in result.stdout
    assert "unknown command /frobnicate" in result.stdout


def test_exit_stops_reading(tmp_path):
    backend = EchoBackend()
    result = chat(tmp_path, ["one", "/exit", "never sent"], backend=backend)
    assert result.exit_code == 0
    assert len(backend.calls) == 1


def test_double_slash_sends_a_literal_slash(tmp_path):
    assert "echo: /etc/hosts is a file" in chat(tmp_path, ["//etc/hosts is a file"]).stdout


def test_failed_turn_keeps_the_message_and_retry_resends_it(tmp_path):
    store = InMemoryStore()
    backend = ScriptedBackend(replies=[BackendUnavailable("server down"), "fine now"])
    result = chat(tmp_path, ["my long question", "/retry"], "-c", "f", backend=backend,
                  store=store)  # fmt: skip
    out = result.stdout
    assert result.exit_code == 0
    assert "error: server down" in out
    assert "your message was kept" in out and "my long question" in out
    assert "memchat › fine now" in out
    assert [m.content for m in store.load(store.find_conversation("f").id)] == [
        "my long question", "fine now",
    ]  # fmt: skip


def test_failure_mid_stream_commits_nothing(tmp_path):
    store = InMemoryStore()
    backend = ScriptedBackend(replies=["a long answer"], chunk_size=2,
                              fail_after=(2, BackendUnavailable("cut")))  # fmt: skip
    result = chat(tmp_path, ["question"], "-c", "m", backend=backend, store=store)
    assert "error: cut" in result.stdout and "/retry" in result.stdout
    assert store.load(store.find_conversation("m").id) == []


class Interrupted(ScriptedBackend):
    """Streams one chunk, then the user presses Ctrl-C (the first time only)."""

    def stream(self, messages: Sequence[Message], params: GenerationParams) -> Iterator[Chunk]:
        self.calls.append(list(messages))
        yield Chunk("partial ")
        if len(self.calls) == 1:
            raise KeyboardInterrupt
        yield Chunk("complete")
        yield Chunk("", "stop")


def test_ctrl_c_cancels_the_turn_and_keeps_the_message(tmp_path):
    store = InMemoryStore()
    backend = Interrupted()
    result = chat(tmp_path, ["tell me a story", "/retry"], "-c", "k", backend=backend,
                  store=store)  # fmt: skip
    assert result.exit_code == 0
    assert "cancelled: nothing was saved" in result.stdout
    assert [m.content for m in store.load(store.find_conversation("k").id)] == [
        "tell me a story", "partial complete",
    ]  # fmt: skip


def test_conversation_resumes_and_is_created_when_missing(tmp_path):
    store = InMemoryStore()
    chat(tmp_path, ["first"], "-c", "notes", store=store)
    backend = EchoBackend()
    result = chat(tmp_path, ["second"], "-c", "notes", backend=backend, store=store)
    assert "conversation 'notes' (2 messages)" in result.stdout
    assert [m.content for m in backend.calls[0]] == ["first", "echo: first", "second"]
    assert len(store.list_conversations()) == 1


def test_a_new_chat_is_titled_by_its_first_message_and_empty_ones_vanish(tmp_path):
    store = InMemoryStore()
    chat(tmp_path, ["plan the trip to Oslo"], store=store)
    chat(tmp_path, ["/exit"], store=store)
    assert [c.title for c in store.list_conversations()] == ["plan the trip to Oslo"]


def test_chat_persists_to_the_default_sqlite_store(tmp_path):
    app = App(environ={"MEMCHAT_HOME": str(tmp_path)})
    runner = CliRunner()
    runner.invoke(cli, ["chat", "--backend", "echo", "-c", "db"], input="saved?\n", obj=app)
    again = runner.invoke(cli, ["conversations", "show", "db", "--json"], obj=App(
        environ={"MEMCHAT_HOME": str(tmp_path)}))  # fmt: skip
    assert again.exit_code == 0, again.output
    assert '"content": "echo: saved?"' in again.stdout
    assert (tmp_path / "memchat.db").exists()


def test_conversation_without_a_store_is_a_usage_error(tmp_path):
    result = chat(tmp_path, [], "-c", "x")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --conversation needs a store")


@pytest.mark.parametrize(
    "tokens, style, words",
    [(100, "dim", None), (820, "bold orange1", "nearly full"), (960, "bold red", "nearly full")],
)
def test_meter_is_amber_from_80_and_red_from_95_percent(tokens, style, words):
    from memchat.adapters.cli._render import meter_text

    text = meter_text(MeterReading(context_tokens=tokens, window=1000))
    assert text.style == style
    assert (words in text.plain) if words else "nearly" not in text.plain


class ScriptedConsole(Console):
    """A console whose input() replays a script; exceptions in it are raised (Ctrl-C, Ctrl-D)."""

    def __init__(self, script: list[str | BaseException]) -> None:
        super().__init__(file=io.StringIO(), width=100)
        self.script = script

    def input(self, *args: object, **kw: object) -> str:  # type: ignore[override]
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item


def loop_reading(script: list[str | BaseException]) -> ChatLoop:
    session = build_session(Settings(backend="echo"))
    return ChatLoop(App(out=ScriptedConsole(script)), session, Settings(backend="echo"))


def test_one_ctrl_c_at_the_prompt_only_hints_two_leave():
    loop = loop_reading([KeyboardInterrupt(), "next line"])
    assert loop.read() == "next line"
    assert "Ctrl-C again" in loop.out.file.getvalue()  # type: ignore[attr-defined]
    assert loop_reading([KeyboardInterrupt(), KeyboardInterrupt()]).read() is None
    assert loop_reading([EOFError()]).read() is None


def test_a_retry_is_announced_before_the_answer_and_not_repeated_after(tmp_path):
    from tests.stubs.openai_stub import OpenAIStub, ok, status

    with OpenAIStub() as stub:
        stub.enqueue(status(503, headers={"retry-after-ms": "20"}), ok("back again"))
        result = chat(tmp_path, ["hello"], "--backend", "openai", "--base-url", stub.url,
                      "--model", "gpt-4o")  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    note = "! the provider is failing (503) — retrying in 20 ms (retry 1 of 2)"
    assert lines.count(note) == 1
    assert lines[lines.index(note) + 1] == "memchat › back again"
