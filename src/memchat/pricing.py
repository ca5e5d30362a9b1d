"""What a turn costs: list prices per model, so the meter can show dollars.

``PRICES`` holds OpenAI's public list prices in US dollars per million tokens (input, cached
input, output) as published on the OpenAI pricing page in August 2025 (standard tier, no batch
or flex discounts). Prices change: they are a convenience, not a bill. Pass ``overrides`` (from
settings) to correct them or to price another provider's models. The embedded model costs 0.

A model name matches the longest table key it starts with, followed by the end of the name or a
``-``: dated snapshots such as ``gpt-4o-2024-08-06`` get the ``gpt-4o`` price, while
``gpt-4o-mini-2024-07-18`` gets the ``gpt-4o-mini`` one. Names are matched case-insensitively
and a provider prefix (``openai/gpt-4o``) is ignored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from .core.errors import ConfigError
from .core.meter import Price

__all__ = ["LOCAL_PRICE", "PRICES", "PRICES_AS_OF", "match_model", "price_for"]

PRICES_AS_OF = "2025-08"

LOCAL_PRICE = Price(input=0.0, output=0.0, cached_input=0.0)

PRICES: dict[str, Price] = {
    "gpt-5": Price(input=1.25, cached_input=0.125, output=10.00),
    "gpt-5-mini": Price(input=0.25, cached_input=0.025, output=2.00),
    "gpt-5-nano": Price(input=0.05, cached_input=0.005, output=0.40),
    "gpt-4.1": Price(input=2.00, cached_input=0.50, output=8.00),
    "gpt-4.1-mini": Price(input=0.40, cached_input=0.10, output=1.60),
    "gpt-4.1-nano": Price(input=0.10, cached_input=0.025, output=0.40),
    "gpt-4o": Price(input=2.50, cached_input=1.25, output=10.00),
    "gpt-4o-mini": Price(input=0.15, cached_input=0.075, output=0.60),
    "o3": Price(input=2.00, cached_input=0.50, output=8.00),
    "o3-mini": Price(input=1.10, cached_input=0.55, output=4.40),
    "o4-mini": Price(input=1.10, cached_input=0.275, output=4.40),
    "gpt-3.5-turbo": Price(input=0.50, output=1.50),  # no cached-input discount
}

_FIELDS = ("input", "output", "cached_input")


def match_model(model: str, keys: Iterable[str]) -> str | None:
    """The longest key that ``model`` starts with, ending at the name's end or a ``-``."""
    name = model.strip().lower().rsplit("/", 1)[-1]
    best: str | None = None
    for key in keys:
        k = key.lower()
        if name.startswith(k) and name[len(k) : len(k) + 1] in ("", "-"):
            if best is None or len(k) > len(best):
                best = key
    return best


def price_for(
    model: str,
    overrides: Mapping[str, Mapping[str, float] | Price] | None = None,
    *,
    local: bool = False,
) -> Price | None:
    """The price of ``model`` per million tokens, or None when unknown.

    ``overrides`` maps a model name (matched like the table's keys) to a ``Price`` or to a dict
    with ``input``, ``output`` and optionally ``cached_input``; an override beats the table. A
    partial dict for a model in the table keeps the table's other figures. ``local=True`` (the
    embedded model) and ``.gguf`` model files cost 0.
    """
    if local or model.lower().endswith(".gguf"):
        return LOCAL_PRICE
    table = dict(PRICES)
    for name, value in (overrides or {}).items():
        key = name.strip().lower()
        table[key] = _as_price(name, value, PRICES.get(key))
    found = match_model(model, table)
    return None if found is None else table[found]


def _as_price(name: str, value: Mapping[str, float] | Price, base: Price | None) -> Price:
    if isinstance(value, Price):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(f"the price override for {name!r} must be a mapping, got {value!r}")
    unknown = set(value) - set(_FIELDS)
    if unknown:
        raise ConfigError(f"unknown price field(s) for {name!r}: {', '.join(sorted(unknown))}")
    figures: dict[str, float | None] = {f: getattr(base, f) if base else None for f in _FIELDS}
    for field_name, figure in value.items():
        if isinstance(figure, bool) or not isinstance(figure, int | float):
            raise ConfigError(f"price {name}.{field_name} must be a number, got {figure!r}")
        if not math.isfinite(figure) or figure < 0:
            raise ConfigError(f"price {name}.{field_name} must be >= 0, got {figure!r}")
        figures[field_name] = float(figure)
    input_, output = figures["input"], figures["output"]
    if input_ is None or output is None:
        raise ConfigError(f"the price override for {name!r} needs 'input' and 'output'")
    return Price(input_, output, figures["cached_input"])
