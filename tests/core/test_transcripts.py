"""Transcripts: JSONL / JSON array / memchat export in; every bad file is one InputError with
the file and the line (or index); exports read back."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from memchat.core.errors import InputError
from memchat.core.messages import Message
from memchat.transcripts import export_json, export_markdown, load_transcript, read_transcript


def write(tmp_path: Path, text: str | bytes, name: str = "t.jsonl") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_ignores_extra_keys_and_blank_lines(tmp_path):
    path = write(
        tmp_path,
        '{"role": "system", "content": "S", "name": "x"}\n'
        "\n"
        '{"role": "user", "content": "héllo", "created_at": 1700000000}\n'
        '{"role": "assistant", "content": "hi", "created_at": "2024-01-02T03:04:05Z"}\n',
    )
    messages = load_transcript(path)
    assert [(m.role, m.content) for m in messages] == [
        ("system", "S"), ("user", "héllo"), ("assistant", "hi"),
    ]  # fmt: skip
    assert messages[1].created_at == 1700000000.0
    assert messages[2].created_at == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
    assert len({m.id for m in messages}) == 3


def test_a_time_under_another_key_or_in_a_dotted_day_first_date(tmp_path):
    """Chat exports name a message's time ``timestamp``, ``time`` or ``date`` and write it as
    "29.12.2023, 22:42:04" (a day-first European date): the messages keep that time, so a
    question naming a day finds them; ``created_at`` wins when a message has several."""
    path = write(
        tmp_path,
        '{"role": "user", "content": "a", "date": "29.12.2023, 22:42:04", "speaker": "Emi"}\n'
        '{"role": "assistant", "content": "b", "timestamp": "2024-01-02 03:04"}\n'
        '{"role": "user", "content": "c", "time": 1700000000, "date": "01.01.2020"}\n'
        '{"role": "user", "content": "d", "created_at": 5, "date": "02.01.2020"}\n'
        '{"role": "user", "content": "e", "date": "03.01.2020"}\n',
    )
    got = [m.created_at for m in load_transcript(path)]
    assert got == [
        datetime(2023, 12, 29, 22, 42, 4, tzinfo=UTC).timestamp(),
        datetime(2024, 1, 2, 3, 4, tzinfo=UTC).timestamp(),
        1700000000.0,
        5.0,
        datetime(2020, 1, 3, tzinfo=UTC).timestamp(),
    ]


def test_openai_style_json_array_with_developer_role(tmp_path):
    data = [
        {"role": "developer", "content": "rules"},
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a", "refusal": None},
    ]
    path = write(tmp_path, json.dumps(data, indent=2), "t.json")
    assert [(m.role, m.content) for m in load_transcript(path)] == [
        ("system", "rules"), ("user", "q"), ("assistant", "a"),
    ]  # fmt: skip


def test_a_one_line_jsonl_file_is_one_message(tmp_path):
    path = write(tmp_path, '{"role": "user", "content": "only"}')
    assert [m.content for m in load_transcript(path)] == ["only"]


def test_json_export_reads_back_with_title_times_and_pins(tmp_path):
    messages = [
        Message("system", "S", created_at=1700000000.5),
        Message("user", "line one\nline two", created_at=1700000001.25, pinned=True),
        Message("assistant", "答え", created_at=1700000002.0),
    ]
    path = write(tmp_path, export_json("My chat", messages), "e.json")
    back = read_transcript(path)
    assert back.title == "My chat"
    assert [(m.role, m.content, m.pinned) for m in back.messages] == [
        (m.role, m.content, m.pinned) for m in messages
    ]
    assert [m.created_at for m in back.messages] == pytest.approx([m.created_at for m in messages])
    assert [m.id for m in back.messages] != [m.id for m in messages]  # fresh ids: no clashes


def test_markdown_export_has_the_title_roles_and_contents():
    text = export_markdown("Trip", [Message("user", "Where to?"), Message("assistant", "Oslo")])
    assert text.startswith("# Trip\n")
    assert "## user · " in text and "## assistant · " in text
    assert text.index("Where to?") < text.index("Oslo")


U = '{"role": "user", "content": "a"}'
BAD_FILES = [
    ("", "the file is empty"),
    ("  \n\n", "the file is empty"),
    ("[]", "contains no messages"),
    ('{"role": "user", "content": "a"}\n{"role": "user", "content": ', "line 2: invalid JSON"),
    (U + '\n\n{"role": "bot", "content": "b"}\n', "line 3: unknown role 'bot'"),
    ('{"role": "user"}\n', "line 1: the message has no 'content'"),
    ('{"role": "user", "content": 5}\n', "line 1: 'content' must be a string, got int"),
    ('{"role": "user", "content": null}\n', "line 1: 'content' must be a string, got null"),
    (U + '\n"just text"\n', "line 2: expected a message object, got str"),
    ("[" + U + ', {"role": "tool", "content": "b"}]', "index 1: unknown role 'tool'"),
    ('[{"role": "user", "content": ["part"]}]', "index 0: 'content' must be a string, got list"),
    ('[\n  {"role": "user", "content": "a"},\n]', "line 3: invalid JSON"),
    ('{"role": "user", "content": "a", "created_at": "yesterday"}', "'created_at' must be"),
    ('{"role": "user", "content": "a", "date": "12/29/2023"}', "line 1: 'date' must be"),
    ('{"role": "user", "content": "a", "date": "31.02.2024"}', "line 1: 'date' must be"),
    ('{"role": "user", "content": "a", "pinned": "yes"}', "'pinned' must be true or false"),
]  # fmt: skip


@pytest.mark.parametrize("text, expected", BAD_FILES)
def test_bad_files_name_the_file_and_the_line_or_index(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(InputError) as info:
        load_transcript(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_non_utf8_names_the_line(tmp_path):
    path = write(
        tmp_path, b'{"role": "user", "content": "ok"}\n{"role": "user", "content": "\xff"}\n'
    )
    with pytest.raises(InputError, match=r"line 2: not UTF-8 text \(byte 0xff"):
        load_transcript(path)


def test_unreadable_files(tmp_path):
    with pytest.raises(InputError, match="cannot read the file"):
        load_transcript(tmp_path / "missing.jsonl")
    with pytest.raises(InputError, match="cannot read the file"):
        load_transcript(tmp_path)


def test_all_or_nothing_a_late_error_returns_no_messages(tmp_path):
    good = "".join(json.dumps({"role": "user", "content": f"m{i}"}) + "\n" for i in range(500))
    path = write(tmp_path, good + '{"role": "robot", "content": "x"}\n')
    with pytest.raises(InputError, match="line 501"):
        load_transcript(path)


def test_utf8_bom_is_accepted(tmp_path):
    path = write(tmp_path, '\ufeff{"role": "user", "content": "bom"}\n')
    assert load_transcript(path)[0].content == "bom"


def test_speaker_names_become_the_participants(tmp_path):
    path = write(
        tmp_path,
        '{"role": "system", "content": "S", "name": "rules"}\n'
        '{"role": "user", "content": "hi", "name": "Kate"}\n'
        '{"role": "assistant", "content": "hey", "speaker": "Elise Moreau"}\n'
        '{"role": "user", "content": "how are you?"}\n'
        '{"role": "assistant", "content": "good", "speaker": " Elise Moreau "}\n',
    )
    back = read_transcript(path)
    assert back.participants == {"user": "Kate", "assistant": "Elise Moreau"}
    assert [m.content for m in back.messages] == ["S", "hi", "hey", "how are you?", "good"]


def test_a_role_several_names_speak_in_is_no_participant(tmp_path):
    path = write(
        tmp_path,
        '{"role": "user", "content": "hi", "name": "Kate"}\n'
        '{"role": "user", "content": "me too", "name": "Tom"}\n'
        '{"role": "assistant", "content": "hello both", "name": "bot"}\n',
    )
    assert read_transcript(path).participants == {"assistant": "bot"}
    assert read_transcript(write(tmp_path, '{"role": "user", "content": "x"}')).participants == {}


def test_a_name_that_is_not_text_is_an_error_naming_the_line(tmp_path):
    path = write(
        tmp_path, '{"role": "user", "content": "a"}\n{"role": "user", "content": "b", "name": 3}\n'
    )
    with pytest.raises(InputError, match=r"t\.jsonl: line 2: 'name' must be a string"):
        read_transcript(path)


def test_participants_survive_an_export_and_show_in_markdown(tmp_path):
    messages = [Message("user", "Where to?"), Message("assistant", "Oslo")]
    names = {"user": "Kate", "assistant": "<b>Elise</b>"}
    back = read_transcript(write(tmp_path, export_json("Trip", messages, names), "e.json"))
    assert back.participants == names
    text = export_markdown("Trip", messages, names)
    assert "## user (Kate) · " in text and "## assistant (&lt;b>Elise&lt;/b>) · " in text
    bad = json.dumps({"messages": [{"role": "user", "content": "x"}], "participants": ["Kate"]})
    with pytest.raises(InputError, match="'participants' must map roles to names"):
        read_transcript(write(tmp_path, bad, "bad.json"))
