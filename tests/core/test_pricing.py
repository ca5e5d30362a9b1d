"""The price table: longest-prefix matching of model names, overrides, and the free local model."""

from __future__ import annotations

import pytest

from memchat.core.backend import Usage
from memchat.core.errors import ConfigError
from memchat.core.meter import Price
from memchat.pricing import LOCAL_PRICE, PRICES, match_model, price_for

BRIEF_MODELS = ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-5",
                "gpt-5-mini", "gpt-5-nano", "o3", "o4-mini", "gpt-3.5-turbo"]  # fmt: skip


@pytest.mark.parametrize("model", BRIEF_MODELS)
def test_every_current_openai_model_has_a_sane_price(model):
    price = price_for(model)
    assert price is PRICES[model]
    assert 0 < price.input <= price.output
    assert price.cached_input is None or 0 < price.cached_input < price.input


@pytest.mark.parametrize(
    ("model", "key"),
    [
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4.1-nano-2025-04-14", "gpt-4.1-nano"),
        ("gpt-5-mini-2025-08-07", "gpt-5-mini"),
        ("o3-2025-04-16", "o3"),
        ("o3-mini-2025-01-31", "o3-mini"),
        ("OpenAI/GPT-4o", "gpt-4o"),
        ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
    ],
)
def test_dated_snapshots_match_the_longest_prefix(model, key):
    assert match_model(model, PRICES) == key
    assert price_for(model) is PRICES[key]


@pytest.mark.parametrize("model", ["gpt-4oo", "gpt-4", "llama-3.1-8b", "o", "", "gpt-4.10"])
def test_unknown_models_have_no_price(model):
    assert price_for(model) is None


def test_mini_is_cheaper_than_its_big_sibling():
    assert price_for("gpt-4o-mini-2024-07-18").input < price_for("gpt-4o-2024-08-06").input


def test_overrides_win_and_match_snapshots():
    overrides = {"gpt-4o": {"input": 1.0, "output": 2.0, "cached_input": 0.5}}
    assert price_for("gpt-4o-2024-08-06", overrides) == Price(1.0, 2.0, 0.5)
    assert price_for("gpt-4o-mini", overrides) is PRICES["gpt-4o-mini"]  # more specific key


def test_a_partial_override_keeps_the_table_figures():
    price = price_for("gpt-4.1", {"GPT-4.1": {"output": 9.0}})
    assert price == Price(PRICES["gpt-4.1"].input, 9.0, PRICES["gpt-4.1"].cached_input)


def test_overrides_price_other_providers_models():
    price = price_for("my-vllm-model", {"my-vllm-model": Price(0.2, 0.4)})
    assert price is not None and price.cost(Usage(1_000_000, 500_000)) == pytest.approx(0.4)


@pytest.mark.parametrize(
    "value",
    [{"input": 1.0}, {"input": -1, "output": 1}, {"input": "x", "output": 1},
     {"input": 1, "output": 1, "typo": 2}, {"input": float("nan"), "output": 1}, 3.0],
)  # fmt: skip
def test_bad_overrides_are_config_errors(value):
    with pytest.raises(ConfigError):
        price_for("new-model", {"new-model": value})


def test_the_embedded_model_costs_nothing():
    usage = Usage(prompt_tokens=5000, completion_tokens=700, cached_tokens=4000)
    assert price_for("SmolLM2-135M-Instruct.Q4_1.gguf").cost(usage) == 0.0
    assert price_for("anything", local=True) is LOCAL_PRICE


def test_cached_tokens_cost_the_cached_price():
    price = PRICES["gpt-4o"]
    usage = Usage(prompt_tokens=2000, completion_tokens=100, cached_tokens=1500)
    expected = (500 * price.input + 1500 * price.cached_input + 100 * price.output) / 1e6
    assert price.cost(usage) == pytest.approx(expected)
    assert price.cost(usage) < price.cost(Usage(2000, 100))


@pytest.mark.parametrize(
    ("cost", "total", "shown", "hidden"),
    [
        (0.0, 0.0, "no cost", "$"),  # the embedded model: no "$0.0000 this turn" noise
        (0.0123, 0.05, "$0.0123 this turn, $0.0500 total", "no cost"),
        (0.0, 0.05, "$0.0000 this turn, $0.0500 total", "no cost"),  # a free turn, paid before
        (None, None, "tokens in context (", "$"),  # unknown price: nothing said
    ],
)
def test_the_meter_says_what_a_turn_cost(cost, total, shown, hidden):
    from memchat.core.meter import MeterReading

    text = MeterReading(100, 1000, cost=cost, total_cost=total).describe()
    assert shown in text and hidden not in text
