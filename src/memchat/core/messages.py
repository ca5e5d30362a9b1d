"""Messages: small dataclasses; dicts exist only at the wire boundary."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from .errors import InputError

__all__ = ["ROLES", "Message", "Role", "assistant", "new_id", "system", "user"]

Role = Literal["system", "user", "assistant"]
ROLES: tuple[Role, ...] = ("system", "user", "assistant")


def new_id() -> str:
    """A new message id: sortable by creation time, unique across processes."""
    return f"{time.time_ns():x}-{uuid.uuid4().hex[:8]}"


@dataclass(slots=True)
class Message:
    """One chat message.

    ``tokens`` caches the message's token count (content plus per-message overhead) for the
    counter it was counted with; it is filled once and never recomputed.
    """

    role: Role
    content: str
    id: str = field(default_factory=new_id)
    created_at: float = field(default_factory=time.time)
    tokens: int | None = None
    pinned: bool = False

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise InputError(f"unknown role {self.role!r}; expected one of {', '.join(ROLES)}")
        if not isinstance(self.content, str):
            raise InputError(f"message content must be text, got {type(self.content).__name__}")

    def to_dict(self) -> dict[str, Any]:
        """Every field, for storage and export."""
        return {
            "id": self.id,
            "role": self.role,
            "content": self.content,
            "created_at": self.created_at,
            "tokens": self.tokens,
            "pinned": self.pinned,
        }

    def to_wire(self) -> dict[str, str]:
        """The OpenAI chat wire shape: role and content only."""
        return {"role": self.role, "content": self.content}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Message:
        """Build from a dict; unknown keys are ignored, ``role`` and ``content`` are required."""
        if not isinstance(data, Mapping):
            raise InputError(f"a message must be an object, got {type(data).__name__}")
        for key in ("role", "content"):
            if key not in data:
                raise InputError(f"a message needs {key!r}")
        extra: dict[str, Any] = {}
        for key in ("id", "created_at", "tokens", "pinned"):
            if data.get(key) is not None:
                extra[key] = data[key]
        return cls(role=cast(Role, data["role"]), content=data["content"], **extra)


def system(content: str, **kw: Any) -> Message:
    return Message("system", content, **kw)


def user(content: str, **kw: Any) -> Message:
    return Message("user", content, **kw)


def assistant(content: str, **kw: Any) -> Message:
    return Message("assistant", content, **kw)
