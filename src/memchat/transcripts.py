"""Reading and writing conversation transcripts (for `memchat context`, import and export).

Accepted input, detected from the content:

- JSONL: one ``{"role", "content"}`` object per line (blank lines skipped, extra keys ignored,
  optional ``created_at`` (or ``timestamp``, ``time``, ``date``: when it was said) as epoch
  seconds, ISO 8601 or a day-first dotted date such as ``29.12.2023, 22:42:04``, optional
  ``name`` or ``speaker``: who wrote it; a role that one name speaks in throughout becomes a
  participant);
- an OpenAI-style JSON array of messages;
- memchat's own JSON export (an object with a ``messages`` array), so exports read back.

Reading is all or nothing: the first problem raises InputError naming the file and the line
(JSONL) or the array index, and no message is returned. Messages read get fresh ids (so a file
can be imported twice) and no token counts (they depend on the model that counts them); roles,
contents, times and pins are kept, so an export reads back as the same conversation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .core.errors import InputError
from .core.messages import ROLES, Message
from .core.store import PARTICIPANT_KEYS

__all__ = ["Transcript", "export_json", "export_markdown", "load_transcript", "read_transcript"]

# roles other tools write that mean one of ours
_ROLE_ALIASES = {"developer": "system"}


@dataclass(frozen=True, slots=True)
class Transcript:
    """The messages of a file, its title when the file names one (memchat exports do), and
    role -> the name of who speaks in it, when the file tells (``participants``)."""

    messages: list[Message]
    title: str | None = None
    participants: dict[str, str] = field(default_factory=dict)


def load_transcript(path: str | Path) -> list[Message]:
    """The messages of a transcript file; InputError (with line or index) on any problem."""
    return read_transcript(path).messages


def read_transcript(path: str | Path) -> Transcript:
    """Like ``load_transcript`` but also returns the title of a memchat export and the
    participants' names."""
    path = Path(path)
    text = _read_text(path)
    if not text.strip():
        raise InputError(f"{path}: the file is empty")
    if text.lstrip().startswith("["):
        return _transcript(_from_items(path, _json_document(path, text), "index"))
    document = _whole_json(text)
    if isinstance(document, dict) and isinstance(document.get("messages"), list):
        title = document.get("title")
        read = _from_items(path, document["messages"], "messages index")
        named = document.get("participants")
        if named is not None and not (
            isinstance(named, dict) and all(isinstance(v, str) for v in named.values())
        ):
            raise InputError(f"{path}: 'participants' must map roles to names")
        return _transcript(read, title if isinstance(title, str) and title else None, named)
    return _transcript(list(_from_jsonl(path, text)))


def _transcript(
    read: list[tuple[Message, str | None]],
    title: str | None = None,
    named: dict[str, str] | None = None,
) -> Transcript:
    """The messages, and as participants each role whose named messages all name one speaker
    (a role that several names speak in, like a group chat's users, is left out)."""
    names: dict[str, set[str]] = {}
    for message, name in read:
        if name:
            names.setdefault(message.role, set()).add(name)
    found = {role: next(iter(n)) for role, n in names.items() if len(n) == 1}
    found.update((role, name.strip()) for role, name in (named or {}).items() if name.strip())
    found = {role: name for role, name in found.items() if role in PARTICIPANT_KEYS}
    return Transcript([m for m, _ in read], title, found)


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise InputError(
            f"{path}: line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
            f"{exc.start})"
        ) from exc


def _json_document(path: Path, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg})") from exc


def _whole_json(text: str) -> Any:
    """The file as one JSON document, or None when it is not one (then it is JSONL)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def _from_items(path: Path, items: Sequence[Any], where: str) -> list[tuple[Message, str | None]]:
    if not items:
        raise InputError(f"{path}: the file contains no messages")
    return [_message(item, f"{path}: {where} {i}") for i, item in enumerate(items)]


def _from_jsonl(path: Path, text: str) -> Iterator[tuple[Message, str | None]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: line {number}: invalid JSON ({exc.msg})") from exc
        yield _message(item, f"{path}: line {number}")


def _message(item: Any, where: str) -> tuple[Message, str | None]:
    """The message of ``item`` and the name of its speaker (``name``, as OpenAI's messages
    carry it, or ``speaker``), if it has one."""
    if not isinstance(item, dict):
        raise InputError(f"{where}: expected a message object, got {_kind(item)}")
    role = item.get("role")
    role = _ROLE_ALIASES.get(role, role) if isinstance(role, str) else role
    if role not in ROLES:
        raise InputError(f"{where}: unknown role {role!r}; expected one of {', '.join(ROLES)}")
    if "content" not in item:
        raise InputError(f"{where}: the message has no 'content'")
    content = item["content"]
    if not isinstance(content, str):
        raise InputError(f"{where}: 'content' must be a string, got {_kind(content)}")
    extra: dict[str, Any] = {}
    key = next((k for k in _TIME_KEYS if item.get(k) is not None), None)
    if key is not None:
        extra["created_at"] = _timestamp(item[key], f"{where}: {key!r}")
    if item.get("pinned") is not None:
        if not isinstance(item["pinned"], bool):
            raise InputError(f"{where}: 'pinned' must be true or false")
        extra["pinned"] = item["pinned"]
    name = item.get("name", item.get("speaker"))
    if name is not None and not isinstance(name, str):
        raise InputError(f"{where}: 'name' must be a string, got {_kind(name)}")
    return Message(role, content, **extra), (name.strip() or None) if name else None


# the keys other tools' exports give a message's time in, in the order they are looked for
_TIME_KEYS = ("created_at", "timestamp", "time", "date")
# day-first dotted dates (as European chat exports write them), optionally with a time
_DOTTED = tuple(f"%d.%m.%Y{t}" for t in (", %H:%M:%S", " %H:%M:%S", ", %H:%M", " %H:%M", ""))


def _timestamp(value: Any, where: str) -> float:
    """Epoch seconds from a number, an ISO 8601 string or a day-first dotted date (naive
    means UTC)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        stamp: datetime | None
        try:
            stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            stamp = next(filter(None, (_parsed(text, form) for form in _DOTTED)), None)
        if stamp is not None:
            return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()
    raise InputError(
        f"{where} must be epoch seconds, ISO 8601 or DD.MM.YYYY[, HH:MM[:SS]], got {value!r}"
    )


def _parsed(text: str, form: str) -> datetime | None:
    try:
        return datetime.strptime(text, form)
    except ValueError:
        return None


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def export_json(
    title: str, messages: Sequence[Message], participants: Mapping[str, str] | None = None
) -> str:
    """A JSON document ``{"title", "exported_at", "participants", "messages": [...]}`` that
    reads back."""
    document = {
        "title": title,
        "exported_at": _iso(datetime.now(UTC).timestamp()),
        "participants": dict(participants or {}),
        "messages": [
            {
                "id": m.id,
                "role": m.role,
                "content": m.content,
                "created_at": _iso(m.created_at),
                "pinned": m.pinned,
                "tokens": m.tokens,
            }
            for m in messages
        ],
    }
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def export_markdown(
    title: str, messages: Sequence[Message], participants: Mapping[str, str] | None = None
) -> str:
    """A readable Markdown rendering: one heading per message with its role (and speaker's
    name) and time. Raw HTML in a title, name or message shows as text wherever the file is
    rendered (``_inert``)."""
    lines = [f"# {_inert(title or 'Untitled conversation')}", ""]
    names = participants or {}
    for m in messages:
        stamp = datetime.fromtimestamp(m.created_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
        pin = " · pinned" if m.pinned else ""
        who = f"{m.role} ({_inert(names[m.role])})" if m.role in names else m.role
        lines += [f"## {who} · {stamp}{pin}", "", _inert(m.content.rstrip()), ""]
    return "\n".join(lines)


_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def _inert(text: str) -> str:
    """``text`` with ``<`` and ``&`` escaped outside code, so a Markdown renderer that allows
    raw HTML (CommonMark does) shows a ``<script>`` instead of running it; fenced blocks and
    inline code spans keep them as they are (they show them literally anyway)."""
    out, fence = [], ""
    for line in text.split("\n"):
        opened = _FENCE.match(line)
        if fence or opened:
            mark = opened.group(1) if opened else ""
            if not fence:
                fence = mark
            elif mark[:1] == fence[0] and len(mark) >= len(fence):
                fence = ""
            out.append(line)
            continue
        parts = line.split("`")
        closed = len(parts) % 2 == 1  # an odd count of backticks leaves the last one open
        out.append("`".join(
            p if i % 2 and (closed or i < len(parts) - 1)
            else p.replace("&", "&amp;").replace("<", "&lt;")
            for i, p in enumerate(parts)
        ))  # fmt: skip
    return "\n".join(out)
