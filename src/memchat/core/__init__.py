"""memchat's pure core: messages, token counting, memory strategies, the session.

Imports only the standard library. Backends and stores plug in through the protocols in
``backend.py`` and ``store.py``.
"""

from .backend import ChatBackend, Chunk, GenerationParams, Usage
from .errors import *  # noqa: F403
from .errors import __all__ as _errors_all
from .history import History, group_rounds
from .memory import (
    Budget,
    CacheAware,
    Context,
    Explained,
    MemoryStrategy,
    Recalled,
    RecallMemory,
    RoundWindow,
    Status,
    Summarize,
    SummaryMemory,
    TokenBudget,
)
from .messages import Message, assistant, system, user
from .meter import MeterReading, Price
from .session import ChatSession, Reply
from .store import ConversationInfo, Store, SummaryRecord
from .tokens import ApproxCounter, TokenCounter, message_tokens, prompt_tokens
from .truncate import Cut, cut_to_tokens

__all__ = [
    *_errors_all,
    "ApproxCounter",
    "Budget",
    "CacheAware",
    "ChatBackend",
    "ChatSession",
    "Chunk",
    "Context",
    "ConversationInfo",
    "Cut",
    "Explained",
    "GenerationParams",
    "History",
    "MemoryStrategy",
    "Message",
    "MeterReading",
    "Price",
    "RecallMemory",
    "Recalled",
    "Reply",
    "RoundWindow",
    "Status",
    "Store",
    "Summarize",
    "SummaryMemory",
    "SummaryRecord",
    "TokenBudget",
    "TokenCounter",
    "Usage",
    "assistant",
    "cut_to_tokens",
    "group_rounds",
    "message_tokens",
    "prompt_tokens",
    "system",
    "user",
]
