"""Export a conversation to a file the page offers for download, and import one back.

Exports hold the conversation's messages only (never settings or keys). An import is read whole
before anything is written, gets fresh message ids (so the same file can be imported twice), and
lands in a new conversation of the importing owner in one ``append``.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from ..core.errors import InputError
from ..core.messages import Message
from ..core.store import ConversationInfo, Store
from ..transcripts import export_json, export_markdown, read_transcript
from ._web_render import short_title

__all__ = ["EXPORT_FORMATS", "export_file", "import_file"]

EXPORT_FORMATS = {"JSON": (".json", export_json), "Markdown": (".md", export_markdown)}
MAX_IMPORT_BYTES = 20 * 1024 * 1024


def _filename(title: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", title).strip("-._")[:60]
    return stem or "conversation"


def export_file(store: Store, info: ConversationInfo, fmt: str, folder: Path) -> Path:
    """Write the conversation in ``fmt`` ("JSON" or "Markdown") to a new file under ``folder``."""
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"unknown export format {fmt!r}; use JSON or Markdown")
    suffix, render = EXPORT_FORMATS[fmt]
    messages = store.load(info.id)
    folder.mkdir(parents=True, exist_ok=True)
    out = Path(tempfile.mkdtemp(dir=folder)) / f"{_filename(info.title)}{suffix}"
    out.write_text(render(info.title, messages), encoding="utf-8")
    return out


def import_file(store: Store, owner: str, path: str | Path) -> ConversationInfo:
    """A new conversation of ``owner`` holding the transcript's messages; InputError if bad."""
    path = Path(path)
    if path.stat().st_size > MAX_IMPORT_BYTES:
        raise InputError(f"{path.name}: larger than {MAX_IMPORT_BYTES // 2**20} MiB")
    transcript = read_transcript(path)
    messages = [
        Message(m.role, m.content, created_at=m.created_at, pinned=m.pinned)
        for m in transcript.messages
    ]
    if not messages:
        raise InputError(f"{path.name}: no messages to import")
    first_user = next((m.content for m in messages if m.role == "user"), path.stem)
    title = short_title(transcript.title or first_user) or "Imported conversation"
    info = store.create_conversation(title, owner=owner)
    try:
        store.append(info.id, messages)
    except Exception:
        store.delete_conversation(info.id)
        raise
    return store.get_conversation(info.id)
