"""Lexical ranking: BM25 (Lucene variant) over conversation rounds, through ``bm25s``.

bm25s scores fast from a precomputed sparse matrix but cannot add a document without rebuilding
(about 0.7 s for 10,000 rounds here). So the index is kept in two parts, like a search engine's
segments: the bulk lives in a bm25s index rebuilt only when the tail has grown past an eighth of
the whole, and the newest rounds (the tail) are scored directly with the same formula and the
current corpus statistics. Adding a round therefore costs O(its tokens), and the rebuilds cost
O(1) per round amortised. Forgotten rounds are masked out until the next rebuild drops them.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .embedder import require

__all__ = ["Bm25Index", "bare_word", "names", "tokenize", "without_names"]

_WORD = re.compile(r"\w+", re.UNICODE)


def _stemmer() -> Any:
    return require("Stemmer").Stemmer("english")


def tokenize(text: str, stemmer: Any = None, stopwords: frozenset[str] = frozenset()) -> list[str]:
    """Lower-cased words without stopwords, Snowball-stemmed."""
    words = [w for w in _WORD.findall(text.lower()) if w not in stopwords]
    return list(stemmer.stemWords(words)) if stemmer is not None else words


_EDGE = "\"'“”‘’()[]{},;:.!?"
_POSSESSIVE = ("'s", "’s")


def names(text: str) -> list[str]:
    """The capitalised words of ``text`` that do not start a sentence (nor "I"), without a
    possessive "'s": the words that may be names."""
    return [core for _, core, named in _words(text) if named]


def without_names(query: str, drop: Callable[[str], bool]) -> str:
    """``query`` without the names (see ``names``) for which ``drop`` is true; unchanged if
    nothing would be left."""
    kept = [word for word, core, named in _words(query) if not (named and drop(core))]
    return " ".join(kept) if kept else query


def _words(text: str) -> Iterator[tuple[str, str, bool]]:
    """Each whitespace-separated word, its core (no edge punctuation, no "'s") and whether it
    may be a name (capitalised, not the first word of a sentence, not "I")."""
    start = True
    for word in text.split():
        core = bare_word(word)
        yield word, core, not start and core[:1].isupper() and core != "I"
        start = word.endswith((".", "?", "!"))


def bare_word(word: str) -> str:
    """``word`` without edge punctuation and a possessive "'s"."""
    core = word.strip(_EDGE)
    for ending in _POSSESSIVE:
        core = core.removesuffix(ending)
    return core


class Bm25Index:
    """BM25 over documents added one at a time; ``search`` returns (key, score), best first."""

    def __init__(self, *, k1: float = 1.5, b: float = 0.75, min_rebuild: int = 64) -> None:
        self.k1, self.b, self.min_rebuild = k1, b, min_rebuild
        self._bm25s = require("bm25s")
        self._np = require("numpy")
        self._stem = _stemmer()
        self._stop = frozenset(require("bm25s.stopwords").STOPWORDS_EN)
        self.keys: list[str] = []
        self.docs: list[list[str]] = []
        self.alive: list[bool] = []
        self._dead = 0
        self._tail: list[Counter[str]] = []  # term counts of docs[built:]
        self.df: Counter[str] = Counter()
        self.total_len = 0
        self.built = 0  # docs[:built] are in the bm25s index
        self._index: Any = None

    def __len__(self) -> int:
        return len(self.docs) - self._dead

    def add(self, keys: Sequence[str], texts: Sequence[str]) -> None:
        for key, text in zip(keys, texts, strict=True):
            tokens = tokenize(text, self._stem, self._stop)
            self.keys.append(key)
            self.docs.append(tokens)
            self.alive.append(True)
            self._tail.append(Counter(tokens))
            self.df.update(set(tokens))
            self.total_len += len(tokens)
        if len(self.docs) - self.built >= max(self.min_rebuild, len(self.docs) // 8):
            self.rebuild()

    def frequency(self, word: str) -> int | None:
        """How many live documents contain ``word`` (None for a stopword or a non-word)."""
        terms = tokenize(word, self._stem, self._stop)
        return self.df[terms[0]] if len(terms) == 1 else None

    def remove(self, keys: set[str]) -> None:
        for i, key in enumerate(self.keys):
            if key in keys and self.alive[i]:
                self.alive[i] = False
                self._dead += 1
                self.df.subtract(set(self.docs[i]))
                self.total_len -= len(self.docs[i])

    def rebuild(self) -> None:
        """Rebuild the bm25s part over every live document."""
        live = [i for i, ok in enumerate(self.alive) if ok]
        self.keys = [self.keys[i] for i in live]
        self.docs = [self.docs[i] for i in live]
        self.alive = [True] * len(live)
        self._dead = 0
        self._tail = []
        self.df = +self.df
        self.built = len(self.docs)
        self._index = None
        if self.docs:
            index = self._bm25s.BM25(k1=self.k1, b=self.b, method="lucene")
            index.index([d or [""] for d in self.docs], show_progress=False)
            self._index = index

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        np = self._np
        terms = tokenize(query, self._stem, self._stop)
        if not terms or not self.docs:
            return []
        scores = np.zeros(len(self.docs), dtype=np.float32)
        if self._index is not None:
            ids = self._index.get_tokens_ids(terms)
            if ids:
                scores[: self.built] = self._index.get_scores(ids)
        self._score_tail(terms, scores)
        if self._dead:
            scores[~np.asarray(self.alive, dtype=bool)] = 0.0
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self.keys[i], float(scores[i])) for i in top if scores[i] > 0]

    def _score_tail(self, terms: list[str], scores: Any) -> None:
        """Score the documents added since the last rebuild (Lucene BM25, current stats)."""
        n = max(1, len(self.docs) - self._dead)
        avgdl = max(1.0, self.total_len / n)
        idf = {t: math.log(1 + (n - self.df[t] + 0.5) / (self.df[t] + 0.5)) for t in set(terms)}
        for j, counts in enumerate(self._tail):
            hits = [t for t in terms if t in counts]
            if hits:
                i = self.built + j
                norm = self.k1 * (1 - self.b + self.b * len(self.docs[i]) / avgdl)
                scores[i] = sum(idf[t] * counts[t] / (counts[t] + norm) for t in hits)
