"""Fusing rankings: standard scores (the default) or reciprocal rank fusion.

- ``standard_score_fusion``: each ranking's scores become standard scores (minus their mean,
  over their standard deviation), shifted so its lowest listed hit counts 0 (each hit 1 when
  all are equal); a key gains the weighted sum over the rankings that list it (CombSUM of
  z-scores). A hit far ahead of the rest of its ranking keeps that lead, which ranks lose.
- ``reciprocal_rank_fusion`` (Cormack, Clarke & Buettcher, SIGIR 2009) uses ranks only:
  score(d) = sum over rankings of weight / (k + rank of d), rank counted from 1.

Both need no calibration between BM25 scores (unbounded) and cosines (-1..1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..core.errors import UsageError

__all__ = ["RRF_K", "reciprocal_rank_fusion", "standard_score_fusion"]

RRF_K = 60  # Cormack et al.'s constant; with three rankings it measured best on real chats


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[tuple[str, float]]],
    *,
    k: int = RRF_K,
    weights: Sequence[float] | None = None,
) -> list[tuple[str, float]]:
    """Merge (key, score) rankings, each best first, into one; ties keep first-seen order."""
    weights = weights or [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise UsageError(f"need one weight per ranking: {len(weights)} for {len(rankings)}")
    fused: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, (key, _) in enumerate(ranking, start=1):
            fused[key] = fused.get(key, 0.0) + weight / (k + rank)
    return sorted(fused.items(), key=lambda item: -item[1])


def standard_score_fusion(
    rankings: Sequence[Sequence[tuple[str, float]]], *, weights: Sequence[float] | None = None
) -> dict[str, float]:
    """Merge (key, score) rankings into key -> fused score (unordered), by standard scores."""
    weights = weights or [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise UsageError(f"need one weight per ranking: {len(weights)} for {len(rankings)}")
    fused: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        if not ranking or not weight:
            continue
        scores = [score for _, score in ranking]
        low, spread = min(scores), _spread(scores)
        for key, score in ranking:  # no spread (one hit, or all equal): each listed hit counts 1
            value = (score - low) / spread if spread else 1.0
            fused[key] = fused.get(key, 0.0) + weight * value
    return fused


def _spread(values: Sequence[float]) -> float:
    """The population standard deviation, in floats (``statistics.pstdev`` computes it exactly,
    with fractions: 1.5 ms of a 20 ms context on a 10,000-turn chat)."""
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
