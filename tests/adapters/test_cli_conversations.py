"""`memchat conversations list|show|rename|rm`, `export`, `import` (issue 4), on a shared
InMemoryStore and on the real SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from memchat.adapters.cli import App, cli
from memchat.core.messages import Message
from memchat.storage import InMemoryStore


def run(tmp_path: Path, *args: str, store: InMemoryStore | None, input: str | None = None,
        env: dict[str, str] | None = None) -> Result:  # fmt: skip
    environ = {
        "MEMCHAT_HOME": str(tmp_path),
        "MEMCHAT_STORE": "memory:",
        "MEMCHAT_BACKEND": "echo",
        "MEMCHAT_STRATEGY": "cache",
    }
    environ.update(env or {})
    app = App(environ=environ, make_store=(lambda url: store) if store is not None else None)
    return CliRunner().invoke(cli, list(args), input=input, obj=app)


def assert_one_line_error(result: Result, code: int, *parts: str) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for part in parts:
        assert part in lines[0]


@pytest.fixture
def store() -> InMemoryStore:
    store = InMemoryStore()
    trip = store.create_conversation("trip")
    store.append(trip.id, [Message("user", "Book Oslo"), Message("assistant", "Booked")])
    work = store.create_conversation("work")
    store.append(work.id, [Message("user", "Fix bug 12", pinned=True)])
    return store


def test_list_newest_first(tmp_path, store):
    result = run(tmp_path, "conversations", "list", "--json", store=store)
    listed = json.loads(result.stdout)
    assert [c["title"] for c in listed] == ["work", "trip"]
    assert [c["message_count"] for c in listed] == [1, 2]
    table = run(tmp_path, "conversations", "list", store=store).stdout
    assert "trip" in table and "work" in table and "messages" in table


def test_list_search_finds_titles_and_message_text(tmp_path, store):
    found = run(tmp_path, "conversations", "list", "--search", "oslo", "--json", store=store)
    assert [c["title"] for c in json.loads(found.stdout)] == ["trip"]


def test_list_when_empty_says_how_to_start(tmp_path):
    result = run(tmp_path, "conversations", "list", store=InMemoryStore())
    assert result.exit_code == 0 and "memchat chat" in result.stderr


def test_show_prints_messages_with_ids_and_pins(tmp_path, store):
    result = run(tmp_path, "conversations", "show", "trip", store=store)
    assert "Book Oslo" in result.stdout and "Booked" in result.stdout
    shown = json.loads(run(tmp_path, "conversations", "show", "work", "--json", store=store).stdout)
    assert shown[0]["content"] == "Fix bug 12" and shown[0]["pinned"] is True
    last = json.loads(run(tmp_path, "conversations", "show", "trip", "-n", "1", "--json",
                          store=store).stdout)  # fmt: skip
    assert [m["content"] for m in last] == ["Booked"]


def test_rename_and_name_clashes(tmp_path, store):
    assert run(tmp_path, "conversations", "rename", "trip", "holiday", store=store).exit_code == 0
    assert store.find_conversation("holiday").message_count == 2
    clash = run(tmp_path, "conversations", "rename", "holiday", "work", store=store)
    assert_one_line_error(clash, 2, "already exists")


def test_rm_asks_first_and_deletes(tmp_path, store):
    declined = run(tmp_path, "conversations", "rm", "trip", store=store, input="n\n")
    assert declined.exit_code == 1
    assert len(store.list_conversations()) == 2
    result = run(tmp_path, "conversations", "rm", "trip", store=store, input="y\n")
    assert result.exit_code == 0
    assert [c.title for c in store.list_conversations()] == ["work"]
    assert run(tmp_path, "conversations", "rm", "work", "--yes", store=store).exit_code == 0
    assert store.list_conversations() == []


@pytest.mark.parametrize("command", [
    ["conversations", "show", "nope"], ["conversations", "rename", "nope", "x"],
    ["conversations", "rm", "nope", "-y"], ["export", "nope"],
])  # fmt: skip
def test_unknown_conversation_names_are_a_clear_error(tmp_path, store, command):
    assert_one_line_error(run(tmp_path, *command, store=store), 2, "no conversation named 'nope'")


def test_conversation_commands_without_a_store(tmp_path):
    result = run(tmp_path, "conversations", "list", store=None, env={"MEMCHAT_STORE": "none"})
    assert_one_line_error(result, 3, "no store is configured")


def test_export_json_to_stdout_reads_back_through_import(tmp_path, store):
    exported = run(tmp_path, "export", "trip", store=store)
    assert exported.exit_code == 0
    document = json.loads(exported.stdout)
    assert document["title"] == "trip"
    path = tmp_path / "trip.json"
    path.write_text(exported.stdout)
    other = InMemoryStore()
    result = run(tmp_path, "import", str(path), store=other)
    assert result.exit_code == 0, result.output
    conv = other.find_conversation("trip")
    assert [(m.role, m.content) for m in other.load(conv.id)] == [
        ("user", "Book Oslo"), ("assistant", "Booked"),
    ]  # fmt: skip


def test_export_markdown_to_a_file_by_suffix(tmp_path, store):
    target = tmp_path / "trip.md"
    result = run(tmp_path, "export", "trip", "-o", str(target), store=store)
    assert result.exit_code == 0 and "wrote 2 messages" in result.stderr
    text = target.read_text()
    assert text.startswith("# trip") and "Book Oslo" in text
    forced = run(tmp_path, "export", "trip", "--format", "json", "-o", str(target), store=store)
    assert forced.exit_code == 0 and json.loads(target.read_text())["title"] == "trip"


def test_export_to_an_unwritable_path(tmp_path, store):
    result = run(tmp_path, "export", "trip", "-o", str(tmp_path / "no" / "dir.json"), store=store)
    assert_one_line_error(result, 2, "cannot write")


def test_import_jsonl_with_name_and_created_at(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text(
        '{"role": "user", "content": "hi", "created_at": "2024-05-01T10:00:00Z"}\n'
        '{"role": "assistant", "content": "hello", "created_at": 1714557601}\n'
    )
    store = InMemoryStore()
    result = run(tmp_path, "import", str(path), "--name", "greeting", store=store,
                 env={"MEMCHAT_BACKEND": "echo"})  # fmt: skip
    assert result.exit_code == 0 and "imported 2 messages as 'greeting'" in result.stderr
    messages = store.load(store.find_conversation("greeting").id)
    assert [m.created_at for m in messages] == [1714557600.0, 1714557601.0]
    assert all(m.tokens for m in messages)  # counted with the configured model's counter


def test_import_openai_array_defaults_the_title_to_the_file_name(tmp_path):
    path = tmp_path / "support-chat.json"
    path.write_text(json.dumps([{"role": "user", "content": "q"}, {"role": "assistant",
                                                                   "content": "a"}]))  # fmt: skip
    store = InMemoryStore()
    assert run(tmp_path, "import", str(path), store=store).exit_code == 0
    assert store.find_conversation("support-chat").message_count == 2


def test_malformed_import_reports_the_line_and_imports_nothing(tmp_path):
    good = "".join(json.dumps({"role": "user", "content": f"m{i}"}) + "\n" for i in range(50))
    path = tmp_path / "bad.jsonl"
    path.write_text(good + '{"role": "user", "content": 7}\n' + good)
    store = InMemoryStore()
    result = run(tmp_path, "import", str(path), store=store)
    assert_one_line_error(result, 2, "bad.jsonl", "line 51", "'content' must be a string")
    assert store.list_conversations() == []


def test_import_refuses_an_existing_name(tmp_path, store):
    path = tmp_path / "trip.jsonl"
    path.write_text('{"role": "user", "content": "x"}\n')
    assert_one_line_error(run(tmp_path, "import", str(path), store=store), 2, "already exists")
    assert store.find_conversation("trip").message_count == 2


def test_import_and_list_on_the_real_sqlite_store(tmp_path):
    path = tmp_path / "big.jsonl"
    lines = [json.dumps({"role": ("user", "assistant")[i % 2], "content": f"message {i}"})
             for i in range(3000)]  # fmt: skip
    path.write_text("\n".join(lines))
    env = {"MEMCHAT_STORE": f"sqlite:///{tmp_path / 'm.db'}", "MEMCHAT_BACKEND": "echo"}
    imported = run(tmp_path, "import", str(path), store=None, env=env)
    assert imported.exit_code == 0, imported.output
    listed = json.loads(run(tmp_path, "conversations", "list", "--json", store=None,
                            env=env).stdout)  # fmt: skip
    assert [(c["title"], c["message_count"]) for c in listed] == [("big", 3000)]
    assert listed[0]["total_tokens"] > 0


def test_import_embeds_the_messages_when_the_strategy_recalls_by_embeddings(tmp_path):
    from memchat.strategies import make_strategy

    path = tmp_path / "facts.jsonl"
    path.write_text("".join(
        json.dumps({"role": "user", "content": f"fact {i}"}) + "\n"
        + json.dumps({"role": "assistant", "content": f"ok {i}"}) + "\n"
        for i in range(70)
    ))  # fmt: skip
    store = InMemoryStore()
    result = run(tmp_path, "import", str(path), "--strategy", "recall-embed", store=store)
    assert result.exit_code == 0, result.output
    conv = store.find_conversation("facts")
    model = make_strategy("recall-embed").retriever.vector_model
    assert len(store.get_vectors(conv.id, model)) == 140  # one entry per message, stored


def test_import_keeps_the_speakers_names_and_export_writes_them(tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_text(
        '{"role": "user", "content": "hi Elise", "speaker": "Kate"}\n'
        '{"role": "assistant", "content": "hey Kate", "name": "Elise"}\n'
    )
    store = InMemoryStore()
    assert run(tmp_path, "import", str(path), "--name", "pals", store=store).exit_code == 0
    info = store.find_conversation("pals")
    assert info.participants == {"user": "Kate", "assistant": "Elise"}
    assert info.metadata == {"user_name": "Kate", "assistant_name": "Elise"}
    exported = run(tmp_path, "export", "pals", store=store)
    assert json.loads(exported.stdout)["participants"] == {"user": "Kate", "assistant": "Elise"}
