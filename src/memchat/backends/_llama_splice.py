"""KV splicing for the embedded model: recalled text costs (almost) no prompt reading.

Why: a recall block is new text every turn, and reading ~800 tokens on a 2-core CPU takes seconds.
But its lines are old messages that come back again and again. Each line is read once, in idle
time (``PieceStore.make``, after the turn), in a scratch sequence (1) behind a fixed prefix (the
prefix gives the piece an attention sink, as the start of the recall block does in a real
prompt); its KV cells are kept (``llama_state_seq_get_data``). When a prompt holds that exact
token run, a copy of the cells moved to their place (positions rewritten, keys rotated in
numpy: ``_llama_rope``) is restored into the scratch sequence, copied into the live sequence 0
(``llama_memory_seq_cp``: needs a unified KV cache) and the scratch is dropped. Where the
rotation cannot be done in numpy, or disagrees with llama.cpp's, the cells are restored as read
and moved by ``llama_memory_seq_add``, whose re-rotation at the next decode passes over every
cell of the cache (~80 ms at 8,192 cells on this CPU, on every turn that splices).

A spliced piece attended only to its prefix and itself when it was read, not to the text that
precedes it in the prompt, so the answer after it can differ from a fresh read:
docs/benchmarks.md (embedded, splice fidelity) measures how often. ``splice`` never changes
which tokens the model holds: ``input_ids`` always equals the prompt's prefix.
"""

from __future__ import annotations

import ctypes
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._llama_cache import Tokens, _set_tokens, common_prefix
from ._llama_rope import Layout, Mover, checked, decode_at

__all__ = ["MIN_PIECE", "Piece", "PieceStore", "splice", "splice_supported"]

MIN_PIECE = 3  # a shorter run is read (a line is at least "user: x")
HEAD = 8  # pieces are looked up by their first HEAD tokens (all of a shorter piece)
SCRATCH = 1  # the sequence pieces are read in and restored into
_BATCH = 512

log = logging.getLogger("memchat")


@dataclass(frozen=True, slots=True)
class Piece:
    """The KV cells of ``tokens``, read at positions ``offset ..`` behind the store's prefix."""

    tokens: Tokens
    data: Any  # ctypes byte array
    size: int
    offset: int
    layout: Layout | None = None  # where the mover finds its positions and keys

    @property
    def nbytes(self) -> int:
        return self.size + self.tokens.nbytes


def splice_supported(llama: Any) -> bool:
    """Whether this context can splice: a shiftable, unified memory with a scratch sequence."""
    import llama_cpp

    params = llama._ctx.params
    mem = llama._ctx.memory
    return bool(
        mem is not None
        and params.n_seq_max > SCRATCH
        and params.kv_unified
        and llama_cpp.llama_memory_can_shift(mem)
        and not (llama._is_recurrent or llama._is_hybrid)
    )


class PieceStore:
    """Pieces by their tokens, least recently used first out, under a byte cap.

    Content-addressed: the same line in two conversations is one piece. Not thread safe: the
    caller holds the model's lock.
    """

    def __init__(self, max_bytes: int, mover: Mover | None = None) -> None:
        self.max_bytes = max_bytes
        self.mover: Mover | None = None
        """Moves pieces (and shifted runs) in numpy once ``check`` has found it right."""
        self._unchecked = mover
        self._pieces: OrderedDict[bytes, Piece] = OrderedDict()
        self._by_head: dict[bytes, set[bytes]] = {}
        self._bytes = 0
        self.made = 0
        self.spliced = 0
        self.spliced_tokens = 0

    def check(self, llama: Any) -> None:
        """Check the mover against llama.cpp, the first time only (idle time: ~0.3 s)."""
        if self._unchecked is not None:
            mover, self._unchecked = self._unchecked, None
            self.mover = checked(llama, mover, SCRATCH)
            if self.mover is None:
                log.info(
                    "KV cells of this model move by llama.cpp's K-shift (slower): moving "
                    "them in numpy did not agree with it"
                )

    def __len__(self) -> int:
        return len(self._pieces)

    @property
    def bytes_held(self) -> int:
        return self._bytes

    def make(self, llama: Any, tokens: Tokens, prefix: Tokens) -> int:
        """Read ``tokens`` behind ``prefix`` in the scratch sequence and keep their cells.

        Returns the tokens read (0 when the piece is held already, too short, or too big).
        The live sequence is not touched.
        """
        import llama_cpp

        tokens = np.ascontiguousarray(tokens, dtype=np.intc)
        key = _key(tokens)
        if key in self._pieces:
            self._pieces.move_to_end(key)
            return 0
        if len(tokens) < MIN_PIECE or self.max_bytes <= 0:
            return 0
        ctx, mem = llama.ctx, llama._ctx.memory
        start = len(prefix)
        llama_cpp.llama_memory_seq_rm(mem, SCRATCH, -1, -1)
        try:
            run = np.concatenate([prefix, tokens]).astype(np.intc)
            if len(run) + int(llama.n_tokens) >= llama._n_ctx:
                return 0  # no room beside the live sequence
            for at in range(0, len(run), _BATCH):
                decode_at(llama, run[at : at + _BATCH], at, SCRATCH)
            llama_cpp.llama_memory_seq_rm(mem, SCRATCH, 0, start)
            size = llama_cpp.llama_state_seq_get_size(ctx, SCRATCH)
            if size > self.max_bytes:
                return 0
            buf = (ctypes.c_uint8 * size)()
            written = llama_cpp.llama_state_seq_get_data(ctx, buf, size, SCRATCH)
        finally:
            llama_cpp.llama_memory_seq_rm(mem, SCRATCH, -1, -1)
        if not written:
            return 0
        size = int(written)
        layout = self.mover.layout(buf, size) if self.mover is not None else None
        self._put(key, Piece(tokens, buf, size, start, layout))
        self.made += 1
        return len(run)

    def _put(self, key: bytes, piece: Piece) -> None:
        self._pieces[key] = piece
        self._by_head.setdefault(_head(key), set()).add(key)
        self._bytes += piece.nbytes
        while self._bytes > self.max_bytes and self._pieces:
            old, evicted = self._pieces.popitem(last=False)
            self._drop(old, evicted)

    def _drop(self, key: bytes, piece: Piece) -> None:
        self._bytes -= piece.nbytes
        heads = self._by_head.get(_head(key))
        if heads is not None:
            heads.discard(key)
            if not heads:
                del self._by_head[_head(key)]

    def clear(self) -> None:
        self._pieces.clear()
        self._by_head.clear()
        self._bytes = 0

    def match(self, prompt: Tokens, at: int, end: int) -> tuple[Piece, int] | None:
        """The longest held piece that ``prompt[at:end]`` starts with, and how many of its
        tokens match: all of them, or all but the last for a piece of HEAD tokens or more (a
        block's last line has no newline)."""
        best: tuple[Piece, int] | None = None
        for h in range(min(HEAD, end - at), MIN_PIECE - 1, -1):
            keys = self._by_head.get(prompt[at : at + h].tobytes())
            if not keys:
                continue
            for key in keys:
                piece = self._pieces[key]
                n = len(piece.tokens)
                m = common_prefix(prompt[at : min(end, at + n)], piece.tokens)
                if m < n and (m < n - 1 or n < HEAD):
                    continue
                if best is None or m > best[1]:
                    best = (piece, m)
            if best is not None:
                break
        if best is not None:
            self._pieces.move_to_end(_key(best[0].tokens))
        return best

    def next_match(self, prompt: Tokens, at: int, end: int) -> tuple[int, Piece, int] | None:
        """The first position from ``at`` on where ``match`` finds a piece, with its match."""
        for pos in range(at, end):
            found = self.match(prompt, pos, end)
            if found is not None:
                return (pos, *found)
        return None


def splice(llama: Any, store: PieceStore, prompt: Tokens, end: int) -> int:
    """Splice held pieces into the live cache where ``prompt`` goes beyond it, up to ``end``.

    The cache is first cut to its common prefix with the prompt; tokens between pieces are
    read (one decode per gap), so the cache always holds a prefix of ``prompt``. Stops after
    the last piece: generation reads the rest. Returns the tokens spliced; on a failure the
    cache keeps what was placed before it.
    """
    import llama_cpp

    placed = common_prefix(llama.input_ids[: llama.n_tokens], prompt)
    found = store.next_match(prompt, placed, end)
    if found is None:
        return 0
    mem = llama._ctx.memory
    llama_cpp.llama_memory_seq_rm(mem, 0, placed, -1)
    _set_tokens(llama, prompt[:placed])
    spliced = 0
    while found is not None:
        at, piece, m = found
        if at > placed:  # read the gap first: positions must follow on in the live sequence
            llama.eval(prompt[placed:at].tolist())
        if not _restore(llama_cpp, llama, mem, store, piece, at, m):
            break
        spliced += m
        store.spliced += 1
        store.spliced_tokens += m
        placed = at + m
        _set_tokens(llama, prompt[:placed])
        found = store.next_match(prompt, placed, end)
    return spliced


def _restore(
    llama_cpp: Any, llama: Any, mem: Any, store: PieceStore, piece: Piece, at: int, m: int
) -> bool:
    """Put ``m`` of the piece's cells into the live sequence at positions ``at ..``."""
    ctx, mover = llama.ctx, store.mover
    data, delta = piece.data, at - piece.offset
    if delta and mover is not None and piece.layout is not None:
        out = mover.spare.get(piece.size)
        data, delta = mover.moved(piece.data, piece.size, piece.layout, delta, out), 0
    llama_cpp.llama_memory_seq_rm(mem, SCRATCH, -1, -1)
    if llama_cpp.llama_state_seq_set_data(ctx, data, piece.size, SCRATCH) == 0:
        llama_cpp.llama_memory_seq_rm(mem, SCRATCH, -1, -1)
        return False
    n = len(piece.tokens)
    if delta:
        llama_cpp.llama_memory_seq_add(mem, SCRATCH, piece.offset, piece.offset + n, delta)
    llama_cpp.llama_memory_seq_cp(mem, SCRATCH, 0, at, at + m)
    llama_cpp.llama_memory_seq_rm(mem, SCRATCH, -1, -1)
    return True


def _head(key: bytes) -> bytes:
    return key[: HEAD * 4]


def _key(tokens: Tokens) -> bytes:
    return np.ascontiguousarray(tokens, dtype=np.intc).tobytes()
