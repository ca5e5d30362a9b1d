"""Shared pieces of the embedded-model benchmark: the scripted chat and its names."""

from __future__ import annotations

import random
from typing import Any

import numpy as np

from memchat import GenerationParams
from memchat.core import Budget

BUDGET = Budget(window=2000, reserve_for_reply=32)
REPLY = GenerationParams(max_tokens=24)
SYSTEM = "You are a friendly assistant. Keep every answer to one or two short sentences."
SUBJECTS = (
    "my vegetable garden; the night train to Vienna; the Sicilian defence in chess; sourdough "
    "bread; learning the cello; the moons of Jupiter; a trip to Lisbon; rainwater tanks; old "
    "mechanical watches; volcanic islands; my cat Miso; the history of paper; winter cycling; "
    "bees and pollination; public libraries; tide pools; Japanese joinery; a marathon plan; "
    "cheap solar panels; jazz chords"
).split("; ")
TEMPLATES = [
    "I was thinking about {a} today. What is one thing people often get wrong about it?",
    "Can you compare {a} and {b} in a single sentence?",
    "My friend says {a} is overrated. Give me a short counterpoint.",
    "Quick tip about {a}, please; I only have a minute before I leave for work.",
    "Earlier we talked about {b}. How does that connect to {a}, if at all?",
    "What is a good first step if I want to get into {a} this month?",
    "Tell me a surprising fact about {a}.",
    "I just spent the whole afternoon on {a} and {b}. Which one should I keep doing?",
]


def user_messages(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = rng.sample(SUBJECTS, 2)
        out.append(f"({i + 1}) " + rng.choice(TEMPLATES).format(a=a, b=b))
    return out


DEFAULT_ARM = "chunked (CacheAware) + shift [default]"
RECALL_ARM = "recall (providers' default) + shift"
LOCAL_RECALL_ARM = "recall-local (embedded default) + shift"
FLOOR_CONTEXTS = (250, 500, 1000, 1500, 1900)


def floor_at(floor: dict[str, Any], context: float) -> float:
    """The floor interpolated at a context length."""
    xs = [int(k) for k in floor["seconds_at_context"]]
    return float(np.interp(context, xs, list(floor["seconds_at_context"].values())))
