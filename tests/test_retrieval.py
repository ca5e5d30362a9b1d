"""Retrieval memory: BM25 segments, vectors, fusion, the real embedding model, and the wiring."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from memchat.backends.fake import ScriptedBackend
from memchat.core import Budget, ChatSession, ConfigError, Message, UsageError
from memchat.retrieval import (
    Bm25Index,
    ConversationIndex,
    OnnxEmbedder,
    VectorIndex,
    default_embedder,
    reciprocal_rank_fusion,
    standard_score_fusion,
)
from memchat.retrieval.lexical import names, without_names
from memchat.storage import InMemoryStore
from memchat.strategies import STRATEGY_NAMES, make_strategy

DOCS = [
    "My sister Alice moved to Lisbon for a new job.",
    "We adopted a kitten and named it Biscuit.",
    "The weather was grey and I stayed home reading.",
    "I signed up for pottery lessons every Tuesday.",
    "Alice from work sent me a funny video.",
]


def test_reciprocal_rank_fusion_by_hand() -> None:
    lexical = [("a", 9.0), ("b", 5.0), ("c", 1.0)]
    dense = [("c", 0.9), ("a", 0.8), ("d", 0.1)]
    fused = dict(reciprocal_rank_fusion([lexical, dense], k=60))
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert fused["b"] == pytest.approx(1 / 62)
    assert [key for key, _ in reciprocal_rank_fusion([lexical, dense])][:2] == ["a", "c"]
    weighted = reciprocal_rank_fusion([lexical, dense], weights=[0.0, 1.0])
    assert weighted[0][0] == "c"
    with pytest.raises(UsageError):
        reciprocal_rank_fusion([lexical], weights=[1.0, 2.0])


def test_standard_score_fusion_by_hand() -> None:
    lexical = [("a", 9.0), ("b", 5.0), ("c", 1.0)]
    dense = [("c", 0.9), ("a", 0.8), ("d", 0.1)]
    lex_sd, dense_sd = np.std([9.0, 5.0, 1.0]), np.std([0.9, 0.8, 0.1])
    fused = standard_score_fusion([lexical, dense])
    assert fused["a"] == pytest.approx(8 / lex_sd + 0.7 / dense_sd)
    assert fused["b"] == pytest.approx(4 / lex_sd)
    assert fused["c"] == pytest.approx(0.8 / dense_sd)
    assert fused["d"] == 0.0  # the lowest listed hit of its only ranking
    assert standard_score_fusion([lexical, dense], weights=[0.0, 1.0]).keys() == {"c", "a", "d"}
    assert standard_score_fusion([[("x", 3.0), ("y", 3.0)], []]) == {"x": 1.0, "y": 1.0}
    with pytest.raises(UsageError):
        standard_score_fusion([lexical], weights=[1.0, 2.0])


def test_a_day_holding_several_hits_raises_its_messages() -> None:
    """Four messages match "kettle" equally; three were said on one day. With the day raise,
    the lone one on another day ranks last; without it, all four score the same."""
    day = 86_400.0
    texts = [(0, "blue kettle"), (0, "old kettle"), (0, "new kettle"), (1, "red kettle"),
             (1, "walk in the park"), (1, "cat nap on the sofa")]  # fmt: skip
    rounds = [
        (Message("user", text, id=f"m{i}", created_at=10 * day + d * day + i),)
        for i, (d, text) in enumerate(texts)
    ]

    def scores(raise_by: float) -> dict[str, float]:
        index = ConversationIndex("bm25", neighbour=0.0, date_boost=0.0, day=raise_by)
        index.sync(rounds)
        return dict(index.search("kettle", 6))

    plain, raised = scores(0.0), scores(0.3)
    assert len({plain[k] for k in ("m0", "m1", "m2", "m3")}) == 1
    assert min(("m0", "m1", "m2", "m3"), key=lambda k: raised[k]) == "m3"
    assert raised["m0"] > plain["m0"]
    with pytest.raises(ConfigError):
        ConversationIndex("bm25", fusion="max")


def test_bm25_tail_scores_match_a_rebuilt_index() -> None:
    tail = Bm25Index(min_rebuild=1000)  # nothing rebuilt: every doc scored in the tail
    built = Bm25Index(min_rebuild=1000)
    keys = [f"k{i}" for i in range(len(DOCS))]
    tail.add(keys, DOCS)
    built.add(keys, DOCS)
    built.rebuild()
    assert tail.built == 0 and built.built == len(DOCS)
    for query in ("Where does Alice live? Lisbon", "kitten name", "pottery Tuesday lessons"):
        a, b = dict(tail.search(query, 5)), dict(built.search(query, 5))
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-4)
    assert tail.search("lisbon", 1)[0][0] == "k0"
    assert built.search("adopting kittens", 1)[0][0] == "k1"  # stemmed


def test_bm25_remove_and_rebuild() -> None:
    index = Bm25Index(min_rebuild=2)
    index.add([f"k{i}" for i in range(len(DOCS))], DOCS)
    assert index.search("Alice", 5)[0][0] in {"k0", "k4"}
    index.remove({"k0", "k4"})
    assert all(key not in {"k0", "k4"} for key, _ in index.search("Alice Lisbon", 5))
    index.rebuild()
    assert len(index) == 3 and index.search("Alice", 5) == []


def test_vector_index_returns_nearest_and_forgets() -> None:
    index = VectorIndex(3)
    vecs = np.eye(3, dtype=np.float32)
    for i in range(70):  # past the first growth
        index.add([f"k{i}"], vecs[i % 3][None, :])
    top = index.search(np.array([0, 1, 0], dtype=np.float32), 3)
    assert all(key in {f"k{i}" for i in range(1, 70, 3)} for key, _ in top)
    assert top[0][1] == pytest.approx(1.0)
    index.remove({key for key, _ in top})
    assert not {key for key, _ in top} & {key for key, _ in index.search(vecs[1], 10)}


def test_vector_index_mean_of_live_keys() -> None:
    index = VectorIndex(3)
    index.add(["a", "b", "c"], np.eye(3, dtype=np.float32))
    assert np.allclose(index.mean(["a", "b"]), [0.5, 0.5, 0.0])
    index.remove({"a"})
    assert np.allclose(index.mean(["a", "b", "zzz"]), [0.0, 1.0, 0.0])
    assert index.mean(["a"]) is None


class Lexicon:
    """A tiny embedder: one dimension per word of a fixed vocabulary (normalised counts)."""

    name, dim = "lexicon", 6
    words = ["sister", "lisbon", "moved", "job", "kitten", "biscuit"]

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().replace(".", " ").replace("?", " ").split():
                if word in self.words:
                    out[i, self.words.index(word)] += 1
            norm = np.linalg.norm(out[i])
            out[i] /= norm if norm else 1.0
        return out


def test_feedback_moves_the_query_toward_its_best_hits() -> None:
    """ "sister" alone finds the Lisbon message; feedback then brings up the other one about
    moving to Lisbon, which shares no word with the query (plain search ranks it last)."""
    docs = [
        "my sister moved to lisbon",
        "a kitten called biscuit",
        "the lisbon job is great",
        "biscuit the kitten again",
    ]
    rounds = [(Message("user", d, id=f"m{i}"),) for i, d in enumerate(docs)]

    def ranks(feedback: float) -> list[str]:
        index = ConversationIndex(
            "embed", embedder=Lexicon(), neighbour=0.0, feedback=feedback, feedback_m=1
        )
        index.sync(rounds)
        index.paired = VectorIndex(Lexicon.dim)  # only the message vectors: a clear signal
        return [key for key, _ in index.search("sister", 4)]

    plain, moved = ranks(0.0), ranks(1.0)
    assert plain[0] == moved[0] == "m0"
    assert moved.index("m2") < plain.index("m2")


def test_names_and_without_names() -> None:
    assert names("What is Kate's job in Galveston? Paris is nice, I think") == [
        "Kate",
        "Galveston",
    ]
    drop = {"Kate", "Paola"}.__contains__
    assert without_names("What is Kate's job in Galveston?", drop) == "What is job in Galveston?"
    # the first word of a sentence and "I" are never taken for names
    assert without_names("Kate said Paola left. Kate? I", drop) == "Kate said left. Kate? I"
    assert without_names("Paola", drop) == "Paola"  # nothing would be left: unchanged


def test_dense_query_drops_unknown_and_participant_names_but_not_topics() -> None:
    """Kate is greeted by the assistant in most messages (a participant), Lisbon is talked
    about by both sides (a topic), Marta is never mentioned."""
    docs = [
        ("user", "my sister moved to Lisbon"),
        ("assistant", "Hi Kate, how is Lisbon?"),
        ("user", "Lisbon is sunny"),
        ("assistant", "Good night Kate!"),
    ]
    rounds = [
        tuple(Message(role, text, id=f"m{2 * i + j}") for j, (role, text) in enumerate(pair))
        for i, pair in enumerate([docs[:2], docs[2:]])
    ]
    index = ConversationIndex(embedder=Lexicon(), names=0.5)
    index.sync(rounds)
    question = "Where did Kate's sister move? Does Marta like Lisbon?"
    assert index.dense_query(question) == "Where did sister move? Does like Lisbon?"
    # forgetting a greeting: Kate is now in 1 message of 3, below the share, so she is kept
    index.remove(["m3"])
    left = [rounds[0], rounds[1][:1]]
    index.sync(left)
    assert index.dense_query(question) == "Where did Kate's sister move? Does like Lisbon?"
    fresh = ConversationIndex(embedder=Lexicon(), names=0.5)
    fresh.sync(left)
    assert (index._named, index._roles) == (fresh._named, fresh._roles)
    off = ConversationIndex(embedder=Lexicon(), names=0.0)
    off.sync(rounds)
    assert off.dense_query(question) == question


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ConfigError, match=r'pip install "memchat\[embed\]"'):
        OnnxEmbedder().embed(["hello"])
    with pytest.raises(ConfigError, match="unknown retrieval"):
        ConversationIndex("fuzzy")


@pytest.mark.model
def test_embedder_gives_normalised_vectors_that_rank_a_paraphrase_first() -> None:
    vecs = default_embedder().embed(
        [
            "My sister moved to Lisbon last week.",
            "Where does my sibling live now?",
            "The printer ran out of toner again.",
        ]
    )
    assert vecs.shape == (3, 384) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2] + 0.15
    again = default_embedder().embed(["Where does my sibling live now?"])[0]
    assert np.allclose(again, vecs[1], atol=1e-5)  # batch size does not change a vector


@pytest.mark.model
def test_hybrid_index_stores_vectors_and_reuses_them() -> None:
    store = InMemoryStore()
    conv = store.create_conversation("v")
    rounds = [(Message("user", d), Message("assistant", "ok")) for d in DOCS]
    store.append(conv.id, [m for r in rounds for m in r])

    class Counting:
        name, dim = "counting-minilm", 384

        def __init__(self) -> None:
            self.texts = 0

        def embed(self, texts: list[str]) -> np.ndarray:
            self.texts += len(texts)
            return default_embedder().embed(texts)

    first = Counting()
    index = ConversationIndex("hybrid", embedder=first)  # type: ignore[arg-type]
    index.attach(store, conv.id)
    index.sync(rounds)
    messages = 2 * len(DOCS)
    assert first.texts == 2 * messages  # each message alone and with the one before it
    assert len(store.get_vectors(conv.id, index.vector_model)) == messages
    assert index.search("what is the cat called?", 2)[0][0] == rounds[1][0].id
    second = Counting()
    resumed = ConversationIndex("hybrid", embedder=second)  # type: ignore[arg-type]
    resumed.attach(store, conv.id)
    resumed.sync(rounds)
    assert second.texts == 0  # nothing embedded again
    assert resumed.search("which town did Alice relocate to", 1)[0][0] == rounds[0][0].id


@pytest.mark.model
@pytest.mark.parametrize("name", ["recall", "recall-bm25", "recall-embed", "hybrid"])
def test_registry_strategies_recall_through_a_session_and_forget(name: str) -> None:
    assert name in STRATEGY_NAMES
    store = InMemoryStore()
    conv = store.create_conversation(name)
    session = ChatSession(
        ScriptedBackend(),
        strategy=make_strategy(name),
        budget=Budget(400, 60),
        store=store,
        conversation_id=conv.id,
        summarize=lambda previous, messages, n: "summary of older chat",
    )
    session.ask("We adopted a kitten and named it Biscuit.")
    for i in range(30):
        session.ask(f"Small talk {i}: the weather was grey and I stayed home reading.")
    ctx = session.context_for("What did we call our new kitten?")
    assert any("Biscuit" in r.round[0].content for r in ctx.recalled)
    kitten = session.history.rounds[0]
    session.forget([kitten[0].id])
    ctx = session.context_for("What did we call our new kitten?")
    assert all("Biscuit" not in m.content for m in ctx.messages)
    assert kitten[0].id not in store.get_vectors(conv.id, session.strategy.retriever.vector_model)  # type: ignore[attr-defined]
