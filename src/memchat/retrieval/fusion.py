"""Fusing rankings: reciprocal rank fusion (Cormack, Clarke & Buettcher, SIGIR 2009).

RRF uses ranks only, so BM25 scores (unbounded) and cosines (-1..1) need no calibration:
score(d) = sum over rankings of weight / (k + rank of d), rank counted from 1.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..core.errors import UsageError

__all__ = ["RRF_K", "reciprocal_rank_fusion"]

RRF_K = 2  # the paper used 60; with two short rankings 2 measured best (docs/embeddings.md)


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
