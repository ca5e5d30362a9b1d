from __future__ import annotations

import memchat
import memchat.core


def test_all_names_exist_and_are_public() -> None:
    for module in (memchat, memchat.core):
        for name in module.__all__:
            assert hasattr(module, name), name
        assert len(set(module.__all__)) == len(module.__all__)


def test_library_surface() -> None:
    expected = {
        "ChatSession",
        "Message",
        "Budget",
        "CacheAware",
        "TokenBudget",
        "RoundWindow",
        "ScriptedBackend",
        "MemchatError",
        "BackendError",
        "RateLimited",
        "ContextTooLong",
    }
    assert expected <= set(memchat.__all__)
