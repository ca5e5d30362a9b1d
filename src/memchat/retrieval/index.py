"""The recall index of one conversation: every message, ranked lexically, densely or both.

``ConversationIndex`` implements ``memchat.core.memory.recall.RoundIndex``: the session keeps it
in sync (``sync`` after each turn, ``remove`` on forget) and ``RecallMemory`` asks it to
``search``. The unit is a single message, indexed under its id: on real chats the answer is
usually in one message, and a whole round costs twice the tokens (docs/benchmarks/recall.md).

A message is ranked three ways, fused by standard scores (``fusion.standard_score_fusion``;
reciprocal rank fusion with ``fusion="rrf"``):

- BM25 over its text;
- the cosine of its embedding;
- the cosine of the embedding of the message together with the one before it, so a short reply
  ("yes, every Sunday!") is found by what it answers.

With ``feedback``, the dense rankings are run a second time for the query vector moved toward
the mean vector of the ``feedback_m`` best first-pass hits (pseudo-relevance feedback, Rocchio):
a question whose words match one piece of the evidence finds the messages that talk like it.
Then each message's fused score is raised by ``neighbour`` x the better of its two neighbours'
scores: the evidence for a question often spans adjacent messages; by ``author`` x the best
score when the query names one participant (``participants``: role -> name, from the
conversation's metadata) and the message is theirs: "What are Kate's hobbies?" is answered by
what Kate said; and by ``day`` x the best
score x its day's share of the hits (the sum of the day's best ``DAY_TOP`` scores over the best
day's): a real chat talks about one thing over a sitting, so a day holding several good hits
holds the rest of the answer too. Vectors are kept in the
conversation's store (``put_vectors``), so a resumed conversation is not embedded again.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

from ..core.errors import ConfigError, NotFound
from ..core.history import Round
from ..core.messages import Message
from ..core.store import Store
from .embedder import OnnxEmbedder, default_embedder, require
from .fusion import RRF_K, reciprocal_rank_fusion, standard_score_fusion
from .lexical import Bm25Index, bare_word, names, without_names
from .vectors import VectorIndex
from .when import Named, day_keys, named_dates

__all__ = ["RETRIEVAL_MODES", "ConversationIndex", "context_text"]

RETRIEVAL_MODES = ("hybrid", "bm25", "embed")
EMBED_STEP = 128  # messages embedded per progress report
TEXT_VERSION = "message-v1"  # bump when what is embedded changes: stored vectors are recomputed
FUSIONS = ("z", "rrf")
# Standard-score fusion, the day raise and a date raise of 0.5 (was RRF, none, 1.0): on the real
# chats recall at 1,000 tokens 0.683 -> 0.703, on the long-replies stand-in 0.784 -> 0.822
# (docs/benchmarks.md, abl:rrf, abl:no-day)
FUSION = "z"
NEIGHBOUR = 0.3  # share of the better neighbour's score a message gains
# A message of the one participant a query names gains this x the best score, after the
# neighbours' raise: on the real chats recall at 1,000 tokens 0.703 -> 0.746 (raised before
# the neighbours' raise: 0.730; docs/benchmarks.md, abl:no-author)
AUTHOR = 0.5
DATE_BOOST = 0.5  # a message of a day the query names gains this x the best fused score
DAY = 0.3  # a message gains this x the best score x its day's share of the hits
DAY_TOP = 3  # ... a day's share counts its best this many hits
DAY_POOL = 300  # ... among the best this many hits (the rest keep their score)
# Pseudo-relevance feedback is off by default: on the real chats it gained +0.007 at 1,000
# tokens (weight 1.0, 5 hits), but on the generated benchmark it lost 0.074 (it pulls the query
# toward distractor facts about other people) and doubled the dense search time.
FEEDBACK = 0.0  # weight of the best first-pass hits' mean vector added to the query's
FEEDBACK_M = 5  # ... the hits averaged
# The dense query leaves out the names the conversation never mentions and the participants'
# (``ConversationIndex.noise_name``): on the real chats +0.049 at 1,000 tokens
# (docs/benchmarks.md, abl:keep-names). A participant's name is in at least this share of the
# messages and named by one side far more than by the other (greeted by name, while what they
# say about themselves never names them); a topic both sides talk about is kept.
NAME_SHARE = 0.03
NAME_SIDES = 3.0  # ... at least this many times as often by one role as by the other


def context_text(previous: Message | None, message: Message) -> str:
    """What the second embedding of a message sees: the message before it, then the message."""
    return f"{previous.content}\n{message.content}" if previous is not None else message.content


class ConversationIndex:
    """Ranks a conversation's messages for a query.

    ``mode``: "bm25" (lexical), "embed" (dense) or "hybrid" (both). Each ranking contributes its
    top ``depth``, fused with ``weights`` (BM25, message, message with the one before it);
    ``neighbour`` and ``date_boost`` are the raises described above, ``feedback`` (weight) and
    ``feedback_m`` (hits) the second dense pass (0 turns one off); ``author`` the raise of a
    named participant's messages (needs ``participants``); ``names`` the share of
    messages from which a name counts as a participant's (``dense_query``; 0 keeps every name).
    ``progress(done, total)``, when set, is called while a backlog is embedded
    (a resumed or imported conversation), for a progress bar.
    """

    progress: Callable[[int, int], None] | None = None

    def __init__(
        self,
        mode: str = "hybrid",
        *,
        embedder: OnnxEmbedder | None = None,
        depth: int = 200,
        rrf_k: int = RRF_K,
        neighbour: float = NEIGHBOUR,
        date_boost: float = DATE_BOOST,
        weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
        feedback: float = FEEDBACK,
        feedback_m: int = FEEDBACK_M,
        names: float = NAME_SHARE,
        fusion: str = FUSION,
        day: float = DAY,
        author: float = AUTHOR,
    ) -> None:
        if mode not in RETRIEVAL_MODES:
            raise ConfigError(
                f"unknown retrieval {mode!r}; use one of {', '.join(RETRIEVAL_MODES)}"
            )
        if fusion not in FUSIONS:
            raise ConfigError(f"unknown fusion {fusion!r}; use one of {', '.join(FUSIONS)}")
        self.mode, self.depth, self.rrf_k, self.neighbour = mode, depth, rrf_k, neighbour
        self.date_boost, self.weights = date_boost, weights
        self.feedback, self.feedback_m, self.names = feedback, feedback_m, names
        self.fusion, self.day, self.author = fusion, day, author
        self.participants: dict[str, str] = {}  # role -> name (``attach`` reads them)
        self.embedder = None
        if mode != "bm25":
            self.embedder = embedder or default_embedder()
        self._store: Store | None = None
        self._conversation: str | None = None
        self._clear()

    def _clear(self) -> None:
        self.bm25 = Bm25Index() if self.mode != "embed" else None
        dim = self.embedder.dim if self.embedder else 0
        self.vectors = VectorIndex(dim) if self.embedder else None
        self.paired = VectorIndex(dim) if self.embedder else None
        self._keys: set[str] = set()
        self._prev: dict[str, str] = {}
        self._next: dict[str, str] = {}
        self._tail: Message | None = None
        self._dated: dict[Named, list[str]] = {}
        self._days: dict[str, Named] = {}  # id -> its day
        self._cased: dict[str, tuple[str, frozenset[str]]] = {}  # id -> role, its names
        self._named: dict[tuple[str, str], int] = {}  # (name, role) -> messages naming it
        self._roles: dict[str, int] = {}  # role -> messages indexed
        self._stored: dict[str, bytes] = {}
        self._stale: set[str] = set()
        self._full_scan = False

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def vector_model(self) -> str:
        return f"{self.embedder.name}/{TEXT_VERSION}" if self.embedder else ""

    @property
    def nbytes(self) -> int:
        """Bytes held by the vector matrices."""
        return sum(v.nbytes for v in (self.vectors, self.paired) if v is not None)

    def attach(self, store: Store | None, conversation_id: str | None) -> None:
        """Bind to a conversation; its stored vectors are reused and its participants' names
        (``ConversationInfo.participants``) read. A new binding starts empty."""
        if store is self._store and conversation_id == self._conversation:
            return
        if self._keys:
            self._clear()
        self._store, self._conversation = store, conversation_id
        if store is None or conversation_id is None:
            return
        try:
            self.participants = store.get_conversation(conversation_id).participants
        except NotFound:  # not created yet: a session may bind before its first append
            self.participants = {}
        if self.embedder is not None:
            self._stored = store.get_vectors(conversation_id, self.vector_model)

    def sync(self, rounds: Sequence[Round]) -> None:
        """Index the messages not indexed yet (normally only the newest round's)."""
        if self._full_scan:
            self._full_scan = False
            messages = [m for r in rounds for m in r]
            self._prev, self._next = {}, {}
            self._add(messages)
            return
        i = len(rounds)
        while i > 0 and not all(m.id in self._keys for m in rounds[i - 1]):
            i -= 1
        if i < len(rounds):  # from the newest fully indexed round on, for the links
            self._add([m for r in rounds[max(0, i - 1) :] for m in r])

    def add(self, rounds: Sequence[Round]) -> None:
        """Index these rounds' messages, in order, after what is indexed (an import's batches)."""
        head = [self._tail] if self._tail is not None else []
        self._add([*head, *(m for r in rounds for m in r)])

    def _add(self, messages: Sequence[Message]) -> None:
        """Index the messages of this run of consecutive messages that are not indexed yet."""
        items = [(j, m) for j, m in enumerate(messages) if m.id not in self._keys]
        if items:
            keys = [m.id for _, m in items]
            texts = [m.content for _, m in items]
            if self.bm25 is not None:
                self.bm25.add(keys, texts)
            if self.vectors is not None and self.paired is not None:
                pairs = [context_text(messages[j - 1] if j else None, m) for j, m in items]
                alone, paired = self._vectors(keys, texts, pairs)
                self.vectors.add(keys, alone)
                self.paired.add(keys, paired)
            self._keys.update(keys)
            for _, m in items:
                days = day_keys(m.created_at)
                self._days[m.id] = days[0]
                for when in days:
                    self._dated.setdefault(when, []).append(m.id)
                cased = frozenset(n.lower() for n in names(m.content))
                self._cased[m.id] = (m.role, cased)
                self._count_names(m.role, cased, 1)
        for a, b in zip(messages, messages[1:], strict=False):
            self._prev[b.id], self._next[a.id] = a.id, b.id
        if messages:
            self._tail = messages[-1]

    def _vectors(self, keys: list[str], texts: list[str], pairs: list[str]) -> tuple[Any, Any]:
        np = require("numpy")
        assert self.embedder is not None
        dim = self.embedder.dim
        out = np.zeros((len(keys), 2 * dim), dtype=np.float32)
        missing = []
        for j, key in enumerate(keys):
            data = None if key in self._stale else self._stored.pop(key, None)
            if data is not None and len(data) == 8 * dim:
                out[j] = np.frombuffer(data, dtype=np.float32)
            else:
                missing.append(j)
        for start in range(0, len(missing), EMBED_STEP):
            part = missing[start : start + EMBED_STEP]
            out[part] = np.concatenate(
                [
                    self.embedder.embed([texts[j] for j in part]),
                    self.embedder.embed([pairs[j] for j in part]),
                ],
                axis=1,
            )
            if self.progress is not None:
                self.progress(start + len(part), len(missing))
        if missing:
            self._stale.difference_update(keys[j] for j in missing)
            if self._store is not None and self._conversation is not None:
                fresh = {keys[j]: out[j].tobytes() for j in missing}
                self._store.put_vectors(self._conversation, self.vector_model, fresh)
        return out[:, :dim], out[:, dim:]

    def remove(self, message_ids: Collection[str]) -> None:
        """Forget these messages. The message after each one is re-embedded (its paired vector
        saw the forgotten text); the next ``sync`` re-indexes it."""
        gone = {i for i in message_ids if i in self._keys}
        if not gone:
            return
        followers = {self._next[i] for i in gone if i in self._next} - gone
        drop = gone | followers
        for index in (self.bm25, self.vectors, self.paired):
            if index is not None:
                index.remove(drop)
        self._keys -= drop
        self._stale |= drop
        for key in drop & self._cased.keys():
            self._count_names(*self._cased.pop(key), -1)
        for key in drop:
            self._days.pop(key, None)
        self._full_scan = True

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        """The ``k`` best messages for ``query``: (message id, score), best first."""
        lexical = self.bm25.search(query, self.depth) if self.bm25 is not None else None
        vector = None
        if self.embedder is not None:
            vector = self.embedder.embed([self.dense_query(query)])[0]
        fused = self._fuse(lexical, vector)
        if self.feedback and vector is not None and self.vectors is not None and fused:
            # pseudo-relevance feedback: the query moves toward its best first-pass hits
            top = sorted(fused, key=lambda key: -fused[key])[: self.feedback_m]
            centre = self.vectors.mean(top)
            if centre is not None:
                moved = vector + self.feedback * centre
                fused = self._fuse(lexical, moved / max(float((moved**2).sum()) ** 0.5, 1e-9))
        fused = self._authors(query, self._smooth(self._dates(query, fused)))
        ranked = sorted(fused.items(), key=lambda item: -item[1])
        return self._by_day(ranked)[:k]

    def dense_query(self, query: str) -> str:
        """What the embedding ranks for ``query``: without its ``noise_name`` names (when
        ``names`` is set and there is a lexical index to count them in)."""
        if not self.names or self.bm25 is None or not len(self.bm25):
            return query
        return without_names(query, self.noise_name)

    def noise_name(self, name: str) -> bool:
        """Whether ``name`` only misleads a dense ranking: no indexed message contains it (it
        pulls the query's embedding toward unrelated messages), or it is a participant's."""
        assert self.bm25 is not None
        seen = self.bm25.frequency(name)
        if seen is None or seen == 0:
            return seen == 0
        if seen < self.names * len(self.bm25):
            return False
        shares = sorted(
            self._named.get((name.lower(), role), 0) / count for role, count in self._roles.items()
        )
        return len(shares) > 1 and shares[-1] >= NAME_SIDES * shares[0]

    def _count_names(self, role: str, cased: frozenset[str], step: int) -> None:
        _bump(self._roles, role, step)
        for name in cased:
            _bump(self._named, (name, role), step)

    def _fuse(self, lexical: list[tuple[str, float]] | None, vector: Any) -> dict[str, float]:
        rankings, weights = [], []
        if lexical is not None:
            rankings.append(lexical)
            weights.append(self.weights[0])
        if vector is not None and self.vectors is not None and self.paired is not None:
            rankings += [self.vectors.search(vector, self.depth)]
            rankings += [self.paired.search(vector, self.depth) if self.weights[2] else []]
            weights += self.weights[1:]
        if self.fusion == "rrf":
            return dict(reciprocal_rank_fusion(rankings, k=self.rrf_k, weights=weights))
        return standard_score_fusion(rankings, weights=weights)

    def _dates(self, query: str, fused: dict[str, float]) -> dict[str, float]:
        """Raise the messages of the days (half as much: the months) the query names."""
        named = named_dates(query) if self.date_boost else set()
        if not named or not fused:
            return fused
        top = max(fused.values())
        for when in named:
            boost = self.date_boost * top * (1.0 if when.day is not None else 0.5)
            for key in self._dated.get(when, ()):
                if key in self._keys:
                    fused[key] = fused.get(key, 0.0) + boost
        return fused

    def named_role(self, query: str) -> str | None:
        """The role of the one participant ``query`` names (a word of their name, any case,
        "'s" aside); None when it names none of them or more than one."""
        if not self.participants:
            return None
        words = {bare_word(w).lower() for w in query.split()}
        roles = {
            role
            for role, name in self.participants.items()
            if words & {w.lower() for w in name.split()}
        }
        return roles.pop() if len(roles) == 1 else None

    def _authors(self, query: str, fused: dict[str, float]) -> dict[str, float]:
        """Raise the messages of the participant the query names by ``author`` x the best."""
        role = self.named_role(query) if self.author and fused else None
        if role is None:
            return fused
        gain, cased = self.author * max(fused.values()), self._cased
        return {
            key: score + gain if key in cased and cased[key][0] == role else score
            for key, score in fused.items()
        }

    def _by_day(self, ranked: list[tuple[str, float]]) -> list[tuple[str, float]]:
        """Raise the best hits by their day's share of the hits (``day``), ordered again."""
        if not self.day or not ranked:
            return ranked
        head, days = ranked[:DAY_POOL], self._days
        best: dict[Named | None, list[float]] = {}
        for key, score in head:
            scores = best.setdefault(days.get(key), [])
            if len(scores) < DAY_TOP:  # ranked is best first
                scores.append(score)
        share = {day: sum(scores) for day, scores in best.items()}
        top = max(share.values())
        if top <= 0:
            return ranked
        gain = self.day * head[0][1] / top
        raised = [(key, score + gain * share[days.get(key)]) for key, score in head]
        raised.sort(key=lambda item: -item[1])
        return [*raised, *ranked[DAY_POOL:]]

    def _smooth(self, fused: dict[str, float]) -> dict[str, float]:
        """Each message gains ``neighbour`` x the better fused score of the two beside it."""
        if not self.neighbour:
            return fused
        gains: dict[str, float] = {}
        prev, nxt, alive = self._prev.get, self._next.get, self._keys
        for key, score in fused.items():
            gain = self.neighbour * score
            for near in (prev(key), nxt(key)):
                if near is not None and near in alive and gain > gains.get(near, 0.0):
                    gains[near] = gain
        out = dict(fused)
        for key, gain in gains.items():
            out[key] = out.get(key, 0.0) + gain
        return out


def _bump(counts: dict[Any, int], key: Any, step: int) -> None:
    counts[key] = count = counts.get(key, 0) + step
    if not count:
        del counts[key]
