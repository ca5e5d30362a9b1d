"""Memory strategies: properties that must hold for every history and budget."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memchat.core import (
    ApproxCounter,
    Budget,
    CacheAware,
    History,
    Message,
    RoundWindow,
    TokenBudget,
    UsageError,
)

COUNTER = ApproxCounter()
STRATEGIES = [TokenBudget(), CacheAware(), CacheAware(high=0.9, low=0.5), RoundWindow(5)]

words = st.text(alphabet="abcdefghij .", min_size=1, max_size=200)


@st.composite
def histories(draw: st.DrawFn) -> History:
    system = draw(st.none() | st.text(alphabet="xyz ", min_size=1, max_size=60))
    rounds = draw(st.lists(st.tuples(words, st.lists(words, max_size=2)), max_size=40))
    pins = draw(st.sets(st.integers(0, 39), max_size=2))
    msgs = [Message("system", system)] if system else []
    for i, (question, answers) in enumerate(rounds):
        msgs.append(Message("user", question, pinned=i in pins))
        msgs.extend(Message("assistant", a) for a in answers)
    return History(msgs, COUNTER)


def rounds_of(history: History) -> dict[str, tuple[str, ...]]:
    return {m.id: tuple(x.id for x in r) for r in history.rounds for m in r}


@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: repr(s))
@settings(max_examples=60, deadline=None)
@given(history=histories(), window=st.integers(50, 3000), reserve=st.integers(0, 40))
def test_strategy_properties(strategy, history: History, window: int, reserve: int) -> None:
    budget = Budget(window, reserve)
    try:
        ctx = strategy.select(history, budget)
    except UsageError:
        # only allowed when the system prompt alone does not fit
        assert history.system_tokens + history.overhead > budget.available
        return
    sent = ctx.messages
    # the count the strategy reports is the real count, and it never exceeds the budget
    assert ctx.tokens == sum(m.tokens or 0 for m in sent) + COUNTER.per_reply
    pinned_cost = sum(history.round_tokens(i) for i in history.pinned_rounds)
    if history.system_tokens + history.overhead + pinned_cost <= budget.available:
        assert ctx.tokens <= budget.available
    # the system prompt is always first
    assert sent[: len(history.system)] == history.system
    # rounds are never split: a sent message's whole round is sent
    sent_ids = {m.id for m in sent}
    for ids in rounds_of(history).values():
        assert set(ids) <= sent_ids or not (set(ids) & sent_ids)
    # order is preserved
    order = [m.id for m in history.messages()]
    assert [m.id for m in sent] == sorted((m.id for m in sent), key=order.index)
    # the newest round is always kept when it fits
    if history.rounds:
        newest = history.rounds[-1]
        cost = history.system_tokens + history.overhead + pinned_cost
        if newest[0].pinned or cost + history.round_tokens(len(history.rounds) - 1) <= (
            budget.available
        ):
            assert all(m.id in sent_ids for m in newest)
    # everything is either sent or reported dropped
    assert sent_ids | {m.id for m in ctx.dropped} == {m.id for m in history.messages()}


@settings(max_examples=60, deadline=None)
@given(history=histories(), window=st.integers(200, 3000))
def test_pinned_rounds_always_sent_when_they_fit(history: History, window: int) -> None:
    ctx = TokenBudget().select(history, Budget(window * 4)) if history.rounds else None
    if ctx is None:
        return
    pinned = {m.id for i in history.pinned_rounds for m in history.rounds[i]}
    assert pinned <= {m.id for m in ctx.messages}


def make_history(n: int, words_per_msg: int = 20, system: str = "You are helpful.") -> History:
    msgs = [Message("system", system)]
    for i in range(n):
        msgs.append(Message("user", f"question {i} " + "word " * words_per_msg))
        msgs.append(Message("assistant", f"answer {i} " + "word " * words_per_msg))
    return History(msgs, COUNTER)


def test_round_window_keeps_last_n_rounds() -> None:
    history = make_history(12)
    ctx = RoundWindow(3).select(history, Budget(100_000))
    assert [m.content.split()[1] for m in ctx.messages[1:]] == ["9", "9", "10", "10", "11", "11"]
    assert len(ctx.dropped) == 18 and list(ctx.dropped) == history.messages()[1:19]
    assert ctx.notes and "dropped" in ctx.notes[0]


def test_round_window_rejects_zero() -> None:
    with pytest.raises(UsageError):
        RoundWindow(0)


def test_budget_smaller_than_system_prompt_is_a_clear_error() -> None:
    history = make_history(1, system="word " * 400)
    with pytest.raises(UsageError, match="smaller than the system prompt"):
        TokenBudget().select(history, Budget(200))


@pytest.mark.parametrize("window, reserve", [(0, 0), (-5, 0), (100, 100), (100, -1)])
def test_bad_budget(window: int, reserve: int) -> None:
    with pytest.raises(UsageError):
        Budget(window, reserve)


def test_cache_aware_keeps_prefix_stable_across_turns() -> None:
    """Once trimmed, the front stays put until another chunk's worth of tokens has arrived."""
    budget = Budget(2000, 200)
    history = make_history(0)
    starts: list[str] = []
    for i in range(300):
        history.append(Message("user", f"question {i} " + "word " * 20))
        history.append(Message("assistant", f"answer {i} " + "word " * 20))
        ctx = CacheAware(high=1.0, low=0.6).select(history, budget)
        starts.append(ctx.messages[1].id)
        assert ctx.tokens <= budget.available
    changes = sum(a != b for a, b in zip(starts, starts[1:], strict=False))
    budget_changes = _changes(TokenBudget(), budget)
    assert changes <= 300 // 10  # the front moves rarely …
    assert budget_changes > 200  # … while drop-oldest moves it nearly every turn


def _changes(strategy: TokenBudget, budget: Budget) -> int:
    history = make_history(0)
    last, changes = None, 0
    for i in range(300):
        history.append(Message("user", f"question {i} " + "word " * 20))
        history.append(Message("assistant", f"answer {i} " + "word " * 20))
        first = strategy.select(history, budget).messages[1].id
        changes += last is not None and first != last
        last = first
    return changes


def test_cache_aware_is_a_pure_function_of_history() -> None:
    """The same history gives the same cut whether built turn by turn or all at once."""
    incremental = make_history(0)
    for i in range(150):
        incremental.append(Message("user", f"q {i} " + "x " * (i % 17)))
        incremental.append(Message("assistant", f"a {i} " + "y " * (i % 13)))
    rebuilt = History(incremental.messages(), COUNTER)
    budget = Budget(900, 100)
    assert [m.id for m in CacheAware().select(incremental, budget).messages] == [
        m.id for m in CacheAware().select(rebuilt, budget).messages
    ]


def test_cache_aware_bad_thresholds() -> None:
    with pytest.raises(UsageError):
        CacheAware(high=0.5, low=0.6)
