from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memchat.core import ApproxCounter, cut_to_tokens

C = ApproxCounter()


def test_short_text_is_untouched() -> None:
    cut = cut_to_tokens("Hello. World!", 100, C)
    assert cut.text == "Hello. World!" and not cut.was_cut


def test_cuts_at_sentence_end() -> None:
    text = "First sentence here. Second one is longer than that! Third? Fourth."
    cut = cut_to_tokens(text, 14, C)
    assert cut.text == "First sentence here. Second one is longer than that!"
    assert cut.was_cut and cut.cut_tokens > 0 and cut.kept_tokens <= 14


def test_cjk_sentence_punctuation() -> None:
    text = "今日は晴れです。明日は雨が降るでしょう！本当ですか？" * 3
    cut = cut_to_tokens(text, 6, C)
    assert cut.text and cut.text[-1] in "。！？"
    assert text.startswith(cut.text)


def test_falls_back_to_a_word_boundary_never_mid_word() -> None:
    text = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu"
    cut = cut_to_tokens(text, 5, C)
    assert text.startswith(cut.text) and cut.text.split() == text.split()[: len(cut.text.split())]
    assert text[len(cut.text)] == " "


@settings(max_examples=80, deadline=None)
@given(text=st.text(alphabet="abc de.!?。", min_size=1, max_size=400), limit=st.integers(1, 60))
def test_cut_always_fits_and_is_a_prefix(text: str, limit: int) -> None:
    cut = cut_to_tokens(text, limit, C)
    assert text.startswith(cut.text)
    assert C.count(cut.text) <= limit
    assert cut.cut_chars == len(text) - len(cut.text) or not cut.was_cut


@pytest.mark.parametrize("limit", [1, 3])
def test_a_word_too_long_for_the_limit_is_not_split(limit: int) -> None:
    cut = cut_to_tokens("internationalisation is long", limit, C)
    assert cut.text == ""
    assert cut.cut_chars == len("internationalisation is long")
