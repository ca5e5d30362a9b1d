"""memchat's one exception tree.

MemchatError                      catch this to catch everything memchat raises
├── ConfigError                   a setting is missing or invalid (model file, backend name, …)
├── UsageError                    the library or CLI was misused (empty message, bad budget, …)
│   └── InputError                bad input data (unreadable transcript, unknown role, …)
├── BackendError                  the model backend failed; carries the user's text for resend
│   ├── RateLimited               429 after the retries ran out (retry_after when known)
│   ├── ContextTooLong            the prompt did not fit the model's context
│   ├── AuthError                 401/403: bad or missing key
│   ├── BackendTimeout            the request timed out
│   ├── BackendUnavailable        connection refused/reset, 5xx, model not loadable
│   └── BadRequest                any other 4xx the provider rejected
└── StorageError                  the store failed
    ├── NotFound                  no such conversation, message or key
    ├── AlreadyExists             that id or name is taken (a conversation id, a key name)
    ├── ConversationBusy          another turn holds the conversation (another process, too)
    └── MigrationError            the store's schema is newer than this code
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "AuthError",
    "BackendError",
    "BackendTimeout",
    "BackendUnavailable",
    "BadRequest",
    "ConfigError",
    "ContextTooLong",
    "ConversationBusy",
    "InputError",
    "MemchatError",
    "MigrationError",
    "NotFound",
    "RateLimited",
    "StorageError",
    "UsageError",
]


class MemchatError(Exception):
    """Base class of every error memchat raises."""


class ConfigError(MemchatError):
    """A setting is missing or invalid."""


class UsageError(MemchatError):
    """The library or the CLI was used in a way that cannot work."""


class InputError(UsageError):
    """Input data (a transcript, an import file) is malformed."""


class BackendError(MemchatError):
    """The model backend failed.

    ``user_text`` holds the message that was being sent, so a caller can offer to resend it;
    ``status`` is the HTTP status when there was one.
    """

    def __init__(
        self, message: str, *, status: int | None = None, user_text: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.user_text = user_text


class RateLimited(BackendError):
    """The provider answered 429 and the retries ran out."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = 429,
        user_text: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, user_text=user_text)
        self.retry_after = retry_after


class ContextTooLong(BackendError):
    """The prompt was longer than the model's context window."""


class AuthError(BackendError):
    """The provider rejected the credentials."""


class BackendTimeout(BackendError):
    """The backend did not answer in time."""


class BackendUnavailable(BackendError):
    """The backend could not be reached or failed on its side."""


class BadRequest(BackendError):
    """The provider rejected the request (a 4xx other than 401/403/429)."""


class StorageError(MemchatError):
    """The store failed."""


class NotFound(StorageError):
    """No such conversation or message."""


class AlreadyExists(StorageError):
    """The id or name given is already taken; nothing was written."""


class ConversationBusy(StorageError):
    """Another turn (perhaps in another process) holds the conversation; send again later."""


class MigrationError(StorageError):
    """The store's schema cannot be used by this version of memchat."""
