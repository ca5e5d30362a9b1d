"""Dense ranking: cosine similarity over normalised vectors, exact, in one numpy matrix.

Exact search over a conversation's rounds is cheap (10,000 x 384 float32 = 15 MB and ~3 ms per
query here), so there is no approximate index to tune or to get wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .embedder import require

__all__ = ["VectorIndex"]


class VectorIndex:
    """Vectors by key, grown by doubling; ``search`` returns (key, cosine), best first."""

    def __init__(self, dim: int) -> None:
        self._np = require("numpy")
        self.dim = dim
        self.keys: list[str] = []
        self._matrix: Any = self._np.zeros((64, dim), dtype=self._np.float32)
        self._alive: Any = self._np.zeros(64, dtype=bool)
        self._rows: dict[str, int] = {}

    def __len__(self) -> int:
        return int(self._alive[: len(self.keys)].sum())

    @property
    def nbytes(self) -> int:
        return int(self._matrix.nbytes + self._alive.nbytes)

    def add(self, keys: Sequence[str], vectors: Any) -> None:
        np = self._np
        n = len(self.keys)
        need = n + len(keys)
        if need > len(self._matrix):
            size = max(need, 2 * len(self._matrix))
            matrix = np.zeros((size, self.dim), dtype=np.float32)
            matrix[:n] = self._matrix[:n]
            alive = np.zeros(size, dtype=bool)
            alive[:n] = self._alive[:n]
            self._matrix, self._alive = matrix, alive
        self._matrix[n:need] = vectors
        self._alive[n:need] = True
        self._rows.update((key, n + j) for j, key in enumerate(keys))
        self.keys.extend(keys)

    def remove(self, keys: set[str]) -> None:
        for i, key in enumerate(self.keys):
            if key in keys:
                self._alive[i] = False
                if self._rows.get(key) == i:
                    del self._rows[key]

    def mean(self, keys: Sequence[str]) -> Any:
        """The mean vector of these keys (the live ones); None if none is here."""
        rows = [self._rows[k] for k in keys if k in self._rows]
        return self._matrix[rows].mean(axis=0) if rows else None

    def search(self, query: Any, k: int) -> list[tuple[str, float]]:
        np = self._np
        n = len(self.keys)
        if not n:
            return []
        # einsum, not ``@``: a BLAS matrix-vector product spins up BLAS threads that stay busy
        # after it and slowed the next query embedding 2x on 2 cores (measured); this is ~3 ms
        query = np.asarray(query, dtype=np.float32).reshape(self.dim)
        scores = np.einsum("ij,j->i", self._matrix[:n], query)
        scores[~self._alive[:n]] = -np.inf
        k = min(k, n)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self.keys[i], float(scores[i])) for i in top if np.isfinite(scores[i])]
