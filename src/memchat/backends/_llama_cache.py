"""KV-cache reuse for the embedded model: shifting out trimmed spans, and a cache per conversation.

Why: when memory trims the oldest rounds, the new prompt is the old one with spans removed plus
a new tail. Re-reading it costs seconds on a CPU; removing the spans from llama.cpp's KV cache
(``llama_memory_seq_rm``) and sliding the later positions down (their keys rotated in numpy,
``_llama_rope``; else ``llama_memory_seq_add``) costs milliseconds. The kept tokens keep the keys
and values they were computed with, i.e. they still "saw" the removed text; llama.cpp's own
context shift makes the same trade. docs/benchmarks/embedded.md measures how often the greedy
answer differs.

Everything here works on sequence 0, the only sequence ``llama_cpp.Llama`` uses (and on the
scratch sequence splicing adds, to move runs through it).
"""

from __future__ import annotations

import ctypes
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ._llama_rope import Mover, move_cells

__all__ = [
    "CacheStats",
    "ConversationCache",
    "Run",
    "SavedState",
    "ShiftPlan",
    "apply_shift",
    "common_prefix",
    "compact",
    "plan_shift",
    "restore_state",
    "save_state",
]

Tokens = npt.NDArray[np.intc]
MIN_RUN = 16  # a kept span must be at least this long: shorter matches are likely coincidence
MOVE_SHARE = 4  # a run moves in numpy while it is at most 1/MOVE_SHARE of the context's cells


@dataclass(frozen=True, slots=True)
class Run:
    """Cached tokens ``[src, src_end)`` that become prompt tokens ``[dst, dst + len)``."""

    src: int
    src_end: int
    dst: int

    @property
    def length(self) -> int:
        return self.src_end - self.src


@dataclass(frozen=True, slots=True)
class ShiftPlan:
    """The cached spans to keep, in order; everything between and after them is removed."""

    runs: tuple[Run, ...]

    @property
    def kept(self) -> int:
        """Prompt tokens served from the cache after the shift."""
        return self.runs[-1].dst + self.runs[-1].length

    @property
    def removed(self) -> int:
        """Cached tokens removed from between the kept spans."""
        return self.runs[-1].src_end - self.kept


def common_prefix(a: Tokens, b: Tokens) -> int:
    """Length of the longest common prefix of two token arrays."""
    n = min(len(a), len(b))
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if diff.size else n


def _find(haystack: bytes, needle: bytes, start: int) -> int:
    """Token index of ``needle`` in ``haystack`` (both int32 bytes) at or after ``start``."""
    pos = haystack.find(needle, start * 4)
    while pos >= 0 and pos % 4:
        pos = haystack.find(needle, pos + 1)
    return pos // 4 if pos >= 0 else -1


def plan_shift(cached: Tokens, prompt: Tokens, min_run: int = MIN_RUN) -> ShiftPlan | None:
    """How to turn the cached tokens into a prefix of ``prompt`` by removing spans.

    Keeps the common prefix, then repeatedly finds where the rest of the prompt resumes further
    on in the cache (an anchor of ``min_run`` tokens) and keeps that run. Stops at the first
    prompt token that is not in the cache (new or changed text): from there on the prompt is
    evaluated normally. Returns None when there is nothing to remove (plain prefix reuse).
    """
    cached = np.ascontiguousarray(cached, dtype=np.intc)
    prompt = np.ascontiguousarray(prompt, dtype=np.intc)
    head = common_prefix(cached, prompt)
    runs = [Run(0, head, 0)]
    if head == len(cached):
        return None
    hay = cached.tobytes()
    src, dst = head, head
    while len(prompt) - dst >= min_run:
        at = _find(hay, prompt[dst : dst + min_run].tobytes(), src + 1)
        if at < 0:
            break
        length = common_prefix(cached[at:], prompt[dst:])
        runs.append(Run(at, at + length, dst))
        src, dst = at + length, dst + length
    return ShiftPlan(tuple(runs)) if len(runs) > 1 else None


def apply_shift(
    llama: Any, plan: ShiftPlan, prompt: Tokens, mover: Mover | None = None, scratch: int = 1
) -> bool:
    """Carry out ``plan`` on the model's KV cache and its token bookkeeping.

    A run moves by ``mover`` (in numpy, through the ``scratch`` sequence: ``_llama_rope``) when
    one is given and the run is short next to the cache, else by ``llama_memory_seq_add``,
    whose key re-rotation at the next decode passes over every cell of the cache.

    Returns False (and falls back to the common prefix) when the memory cannot shift, e.g. a
    recurrent model. Afterwards ``llama.input_ids[:n_tokens]`` equals ``prompt[:plan.kept]`` and
    the cache holds exactly those tokens at positions ``0 .. kept-1``.
    """
    import llama_cpp

    mem = llama._ctx.memory
    head = plan.runs[0].src_end
    shiftable = (
        mem is not None
        and llama_cpp.llama_memory_can_shift(mem)
        and not (llama._is_recurrent or llama._is_hybrid)
    )
    ok = shiftable and llama_cpp.llama_memory_seq_rm(mem, 0, plan.runs[-1].src_end, -1)
    prev = plan.runs[0]
    for run in plan.runs[1:]:
        if not ok:
            break
        if run.src > prev.src_end:
            ok = llama_cpp.llama_memory_seq_rm(mem, 0, prev.src_end, run.src)
        prev = run
    for run in plan.runs[1:] if ok else ():
        delta = run.dst - run.src
        if not delta:
            continue
        try:
            if mover is not None and run.length * MOVE_SHARE <= llama._n_ctx:
                if move_cells(llama, mover, scratch, run.src, run.src_end, delta):
                    continue
        except RuntimeError:
            ok = False
            break
        llama_cpp.llama_memory_seq_add(mem, 0, run.src, run.src_end, delta)
    if not ok:
        if mem is not None:
            llama_cpp.llama_memory_seq_rm(mem, 0, head, -1)
        _set_tokens(llama, prompt[:head])
        return False
    _set_tokens(llama, prompt[: plan.kept])
    return True


def _set_tokens(llama: Any, tokens: Tokens) -> None:
    n = len(tokens)
    llama.input_ids[:n] = tokens
    llama.n_tokens = n
    llama._requires_eval = True  # the logits belong to the old sequence: decode before sampling


def compact(llama: Any) -> bool:
    """Pack the live cache's cells together again after a shift freed many of them.

    Why: llama.cpp attends over every cell up to the highest one in use, freed or not, so after
    a trim the cache costs what the untrimmed one did (docs/benchmarks.md, embedded). Saving
    the sequence and restoring it writes its cells contiguously. Only call it once a decode has run
    since the shift: llama.cpp rotates shifted keys lazily, at the next decode, and a saved
    state does not carry a pending rotation.
    """
    state = save_state(llama)
    return state is not None and restore_state(llama, state)


# -- a cache per conversation ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SavedState:
    """One conversation's KV cache (sequence 0): ``size`` bytes of ``data``, and its tokens."""

    data: Any  # a ctypes byte array, kept as is: no copy on save or restore
    size: int
    tokens: Tokens

    @property
    def nbytes(self) -> int:
        return self.size + self.tokens.nbytes


def save_state(llama: Any, max_bytes: int | None = None) -> SavedState | None:
    """Copy the live KV cache out of the context.

    None when it is empty or larger than ``max_bytes`` (then nothing is copied).
    """
    import llama_cpp

    if llama.n_tokens == 0:
        return None
    size = llama_cpp.llama_state_seq_get_size(llama.ctx, 0)
    if max_bytes is not None and size > max_bytes:
        return None
    buf = (ctypes.c_uint8 * size)()
    written = llama_cpp.llama_state_seq_get_data(llama.ctx, buf, size, 0)
    if written == 0:
        return None
    tokens = np.array(llama.input_ids[: llama.n_tokens], dtype=np.intc)
    return SavedState(buf, int(written), tokens)


def restore_state(llama: Any, state: SavedState) -> bool:
    """Replace the live KV cache with a saved one; on failure the cache is left empty."""
    import llama_cpp

    mem = llama._ctx.memory
    llama_cpp.llama_memory_seq_rm(mem, 0, -1, -1)
    if llama_cpp.llama_state_seq_set_data(llama.ctx, state.data, state.size, 0) == 0:
        llama_cpp.llama_memory_seq_rm(mem, 0, -1, -1)
        _set_tokens(llama, state.tokens[:0])
        return False
    _set_tokens(llama, state.tokens)
    return True


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Per-conversation cache counters.

    A hit is a turn whose conversation was live or restored from a saved state; a miss is one
    that had to start from whatever the model held. ``bytes_held`` counts saved states only.
    """

    hits: int = 0
    misses: int = 0
    evictions: int = 0
    entries: int = 0
    bytes_held: int = 0
    max_bytes: int = 0
    shifts: int = 0
    shifted_tokens: int = 0
    pieces: int = 0
    """Pieces held for splicing (``LlamaCppBackend.precompute``), and their bytes."""
    piece_bytes: int = 0
    pieces_made: int = 0
    spliced: int = 0
    """Pieces spliced into prompts, and their tokens (tokens not read)."""
    spliced_tokens: int = 0


class ConversationCache:
    """Saved KV states of idle conversations, least recently used first out, under a byte cap.

    The live conversation's cache sits in the llama.cpp context itself; switching conversations
    saves it here and restores the other one's (``activate``). Not thread safe: the caller holds
    the model's lock.
    """

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self.live: Hashable = None
        self.fragmented = False  # the live cache has many freed cells (see ``compact``)
        self._states: OrderedDict[Hashable, SavedState] = OrderedDict()
        self._bytes = 0
        self._counts = {"hits": 0, "misses": 0, "evictions": 0, "shifts": 0, "shifted": 0}

    def activate(self, llama: Any, key: Hashable) -> bool:
        """Make ``key`` the live conversation; True on a cache hit."""
        if key == self.live and llama.n_tokens > 0:
            self._counts["hits"] += 1
            return True
        self.fragmented = False  # a restored state is packed; an empty cache has nothing to pack
        state = self._states.pop(key, None)  # taken out first: saving may evict
        if state is not None:
            self._bytes -= state.nbytes
        if self.live is not None:
            self.put(self.live, save_state(llama, self._max_bytes))
        self.live = key
        if state is not None:
            if restore_state(llama, state):
                self._counts["hits"] += 1
                return True
        self._counts["misses"] += 1
        return False

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @max_bytes.setter
    def max_bytes(self, value: int) -> None:
        self._max_bytes = value
        self._evict()

    def put(self, key: Hashable, state: SavedState | None) -> None:
        """Keep ``state`` for ``key``, evicting the least recently used states to fit."""
        old = self._states.pop(key, None)
        if old is not None:
            self._bytes -= old.nbytes
        if state is None or state.nbytes > self.max_bytes:
            return
        self._states[key] = state
        self._bytes += state.nbytes
        self._evict()

    def _evict(self) -> None:
        while self._bytes > self._max_bytes:
            _, evicted = self._states.popitem(last=False)
            self._bytes -= evicted.nbytes
            self._counts["evictions"] += 1

    def clear(self) -> None:
        """Drop every saved state (the counters stay)."""
        self._states.clear()
        self._bytes = 0
        self.live = None
        self.fragmented = False

    def forget_live(self) -> None:
        """The live cache can no longer be trusted (an error mid-evaluation)."""
        self.live = None
        self.fragmented = False

    def note_shift(self, removed: int, held: int) -> None:
        """Count a shift; when it freed at least a quarter of the cells, pack them next turn."""
        self._counts["shifts"] += 1
        self._counts["shifted"] += removed
        self.fragmented = self.fragmented or removed * 4 >= held

    def __contains__(self, key: Hashable) -> bool:
        return key in self._states

    def stats(self) -> CacheStats:
        c = self._counts
        return CacheStats(
            hits=c["hits"],
            misses=c["misses"],
            evictions=c["evictions"],
            entries=len(self._states),
            bytes_held=self._bytes,
            max_bytes=self.max_bytes,
            shifts=c["shifts"],
            shifted_tokens=c["shifted"],
        )
