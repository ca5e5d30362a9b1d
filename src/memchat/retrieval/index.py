"""The recall index of one conversation: every round, ranked lexically, densely or both.

``ConversationIndex`` implements ``memchat.core.memory.recall.RoundIndex``: the session keeps it
in sync (``sync`` after each turn, ``remove`` on forget) and ``RecallMemory`` asks it to
``search``. A round is indexed under its first message's id, as the text of its messages. Vectors
are kept in the conversation's store (``put_vectors``), so a resumed conversation is not
embedded again.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

from ..core.errors import ConfigError
from ..core.history import Round
from ..core.memory.recall import round_key
from ..core.store import Store
from .embedder import OnnxEmbedder, default_embedder, require
from .fusion import RRF_K, reciprocal_rank_fusion
from .lexical import Bm25Index
from .vectors import VectorIndex

__all__ = ["RETRIEVAL_MODES", "ConversationIndex", "round_text"]

RETRIEVAL_MODES = ("hybrid", "bm25", "embed")
EMBED_STEP = 256  # rounds embedded per progress report
TEXT_VERSION = "round-v1"  # bump when round_text changes: stored vectors are then recomputed


def round_text(rnd: Round) -> str:
    """What is indexed for a round: its messages' text, the user's first."""
    return "\n".join(m.content for m in rnd)


class ConversationIndex:
    """Ranks a conversation's rounds for a query.

    ``mode``: "bm25" (lexical), "embed" (dense) or "hybrid" (both, fused by reciprocal rank
    fusion over the top ``depth`` of each). ``progress(done, total)``, when set, is called while
    a large backlog is embedded (a resumed or imported conversation), for a progress bar.
    """

    progress: Callable[[int, int], None] | None = None

    def __init__(
        self,
        mode: str = "hybrid",
        *,
        embedder: OnnxEmbedder | None = None,
        depth: int = 50,
        rrf_k: int = RRF_K,
    ) -> None:
        if mode not in RETRIEVAL_MODES:
            raise ConfigError(
                f"unknown retrieval {mode!r}; use one of {', '.join(RETRIEVAL_MODES)}"
            )
        self.mode, self.depth, self.rrf_k = mode, depth, rrf_k
        self.embedder = None
        if mode != "bm25":
            self.embedder = embedder or default_embedder()
        self._store: Store | None = None
        self._conversation: str | None = None
        self._clear()

    def _clear(self) -> None:
        self.bm25 = Bm25Index() if self.mode != "embed" else None
        self.vectors = VectorIndex(self.embedder.dim) if self.embedder else None
        self._keys: set[str] = set()
        self._members: dict[str, str] = {}
        self._stored: dict[str, bytes] = {}
        self._stale: set[str] = set()
        self._full_scan = False

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def vector_model(self) -> str:
        return f"{self.embedder.name}/{TEXT_VERSION}" if self.embedder else ""

    def attach(self, store: Store | None, conversation_id: str | None) -> None:
        """Bind to a conversation; its stored vectors are reused. A new binding starts empty."""
        if store is self._store and conversation_id == self._conversation:
            return
        if self._keys:
            self._clear()
        self._store, self._conversation = store, conversation_id
        if store is not None and conversation_id is not None and self.embedder is not None:
            self._stored = store.get_vectors(conversation_id, self.vector_model)

    def sync(self, rounds: Sequence[Round]) -> None:
        """Index the rounds not indexed yet (normally only the newest few)."""
        if self._full_scan:
            new = [r for r in rounds if round_key(r) not in self._keys]
            self._full_scan = False
        else:
            i = len(rounds)
            while i > 0 and round_key(rounds[i - 1]) not in self._keys:
                i -= 1
            new = list(rounds[i:])
        if new:
            self.add(new)

    def add(self, rounds: Sequence[Round]) -> None:
        keys = [round_key(r) for r in rounds]
        texts = [round_text(r) for r in rounds]
        vectors = self._vectors(keys, texts) if self.vectors is not None else None
        if self.bm25 is not None:
            self.bm25.add(keys, texts)
        if self.vectors is not None:
            self.vectors.add(keys, vectors)
        self._keys.update(keys)
        for key, rnd in zip(keys, rounds, strict=True):
            self._members.update((m.id, key) for m in rnd)

    def _vectors(self, keys: list[str], texts: list[str]) -> Any:
        np = require("numpy")
        assert self.embedder is not None
        out = np.zeros((len(keys), self.embedder.dim), dtype=np.float32)
        missing = []
        for j, key in enumerate(keys):
            data = None if key in self._stale else self._stored.pop(key, None)
            if data is not None and len(data) == 4 * self.embedder.dim:
                out[j] = np.frombuffer(data, dtype=np.float32)
            else:
                missing.append(j)
        for start in range(0, len(missing), EMBED_STEP):
            part = missing[start : start + EMBED_STEP]
            out[part] = self.embedder.embed([texts[j] for j in part])
            if self.progress is not None:
                self.progress(start + len(part), len(missing))
        if missing:
            self._stale.difference_update(keys[j] for j in missing)
            if self._store is not None and self._conversation is not None:
                fresh = {keys[j]: out[j].tobytes() for j in missing}
                self._store.put_vectors(self._conversation, self.vector_model, fresh)
        return out

    def remove(self, message_ids: Collection[str]) -> None:
        """Drop the rounds these messages belong to; rounds that remain are re-indexed."""
        keys = {self._members[i] for i in message_ids if i in self._members}
        if not keys:
            return
        if self.bm25 is not None:
            self.bm25.remove(keys)
        if self.vectors is not None:
            self.vectors.remove(keys)
        self._keys -= keys
        self._stale |= keys
        self._members = {m: k for m, k in self._members.items() if k not in keys}
        self._full_scan = True

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        if self.mode == "bm25":
            assert self.bm25 is not None
            return self.bm25.search(query, k)
        assert self.embedder is not None and self.vectors is not None
        dense = self.vectors.search(self.embedder.embed([query])[0], self.depth)
        if self.mode == "embed":
            return dense[:k]
        assert self.bm25 is not None
        lexical = self.bm25.search(query, self.depth)
        return reciprocal_rank_fusion([lexical, dense], k=self.rrf_k)[:k]
