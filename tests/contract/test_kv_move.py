"""Moving KV cells in numpy (``_llama_rope``) instead of by llama.cpp's K-shift."""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from tests.contract.test_kv_shift import argmaxes, chat, kv_positions, last_usage
from tests.contract.test_kv_splice import old_messages, prompt_with

from memchat import Message
from memchat.backends._llama_rope import _MAGIC, Mover, _f32, _ggml_cpu, _put_f16, mover_for
from memchat.backends.llama_cpp import _NO_KEY, LlamaCppBackend
from memchat.core.memory.recall import RECALL_LEAD, block_pieces

# -- the layout and the rotation (pure) --------------------------------------------------------


def small_mover(neox: bool = False, n_rot: int = 8) -> Mover:
    return Mover(
        layers=2,
        heads=3,
        head_dim=8,
        n_rot=n_rot,
        neox=neox,
        inv_freq=10000.0 ** (-np.arange(0, n_rot, 2, dtype=np.float64) / n_rot),
    )


def saved(
    mover: Mover, keys: np.ndarray, positions: list[int], *, k_type: int = 1, seqs: int = 1
) -> tuple[ctypes.Array[ctypes.c_uint8], int]:
    """A one-sequence save as llama.cpp writes it: header, cells, then key and value rows."""
    cells = len(positions)
    parts = [np.array([_MAGIC, 1, 1, cells], np.uint32).tobytes()]
    for pos in positions:
        parts.append(np.array([pos, seqs, 1], np.int32).tobytes())
    parts.append(np.array([0, mover.layers], np.uint32).tobytes())  # v_trans, n_layer
    for layer in range(mover.layers):
        parts.append(np.array([k_type], np.int32).tobytes())
        parts.append(np.array([mover.row], np.uint64).tobytes())
        parts.append(keys[layer].astype(np.float16).tobytes())
    for layer in range(mover.layers):  # values: not moved
        parts.append(np.array([1], np.int32).tobytes())
        parts.append(np.array([mover.row], np.uint64).tobytes())
        parts.append(np.arange(layer, layer + cells * mover.row, dtype=np.uint8).tobytes())
    data = b"".join(parts)
    buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
    return buf, len(data)


def keys_of(mover: Mover, buf: ctypes.Array[ctypes.c_uint8], size: int) -> np.ndarray:
    layout = mover.layout(buf, size)
    assert layout is not None
    raw = np.frombuffer(buf, np.uint8, count=size)
    return mover._keys(raw, layout)


def random_keys(mover: Mover, cells: int) -> np.ndarray:
    rng = np.random.default_rng(5)
    return rng.normal(size=(mover.layers, cells, mover.heads, mover.head_dim)).astype(np.float16)


def test_a_move_rotates_each_pair_by_distance_times_its_frequency() -> None:
    for neox in (False, True):
        mover = small_mover(neox)
        keys = np.zeros((2, 1, 3, 8), np.float16)
        first = [0, 1, 2, 3] if neox else [0, 2, 4, 6]  # the first element of each pair
        second = [4, 5, 6, 7] if neox else [1, 3, 5, 7]
        keys[..., first] = 1.0
        buf, size = saved(mover, keys, [10])
        layout = mover.layout(buf, size)
        assert layout is not None
        moved = mover.moved(buf, size, layout, 5)
        out = keys_of(mover, moved, size)
        angle = 5 * mover.inv_freq
        assert np.allclose(out[..., first], np.cos(angle), atol=2e-3)
        assert np.allclose(out[..., second], np.sin(angle), atol=2e-3)


def test_moving_there_and_back_gives_the_cells_back() -> None:
    mover = small_mover()
    keys = random_keys(mover, 4)
    buf, size = saved(mover, keys, [20, 21, 22, 23])
    layout = mover.layout(buf, size)
    assert layout is not None
    there = mover.moved(buf, size, layout, -17)
    assert np.frombuffer(there, np.int32, 4, layout.pos)[0] == 3  # first cell's position
    back = mover.moved(there, size, layout, 17)
    assert mover.same(back, buf, size, layout)
    assert not mover.same(there, buf, size, layout)  # moved keys are not the same keys


def test_dimensions_past_n_rot_are_not_rotated() -> None:
    mover = small_mover(n_rot=4)
    keys = random_keys(mover, 2)
    buf, size = saved(mover, keys, [0, 1])
    layout = mover.layout(buf, size)
    assert layout is not None
    out = keys_of(mover, mover.moved(buf, size, layout, 9), size)
    assert np.array_equal(out[..., 4:], keys[..., 4:].astype(np.float32))
    assert not np.allclose(out[..., :4], keys[..., :4].astype(np.float32))


def test_a_save_in_another_layout_is_left_to_llama_cpp() -> None:
    mover = small_mover()
    keys = random_keys(mover, 3)
    good, size = saved(mover, keys, [0, 1, 2])
    assert mover.layout(good, size) is not None
    assert mover.layout(good, size - 1) is None  # cut short
    assert mover.layout(*saved(mover, keys, [0, 1, 2], k_type=8)) is None  # q8_0 keys
    assert mover.layout(*saved(mover, keys, [0, 1, 2], seqs=2)) is None  # shared cells
    bad = (ctypes.c_uint8 * size).from_buffer_copy(bytes(good))
    bad[0] ^= 0xFF  # not a sequence save
    assert mover.layout(bad, size) is None


def test_the_f16_conversions_are_ggml_cpus_and_round_like_numpy() -> None:
    assert _ggml_cpu() is not None  # else every move converts with numpy, ~10x slower
    rng = np.random.default_rng(3)
    values = rng.normal(size=(3, 50, 24)) * rng.choice([1e-6, 1.0, 300.0], (3, 50, 24))
    values = values.astype(np.float32)
    store = np.zeros((3, 60, 24), np.float16)[:, 5:55]  # layers apart, each one contiguous
    _put_f16(values, store)
    assert np.array_equal(store.view(np.uint16), values.astype(np.float16).view(np.uint16))
    assert np.array_equal(_f32(store), store.astype(np.float32))


# -- the embedded model (tests marked ``model``) -----------------------------------------------


@contextmanager
def without_mover(backend: LlamaCppBackend) -> Iterator[None]:
    pieces = backend._model().pieces
    mover, pieces.mover = pieces.mover, None
    try:
        yield
    finally:
        pieces.mover = mover


def logits(backend: LlamaCppBackend) -> np.ndarray:
    llama = backend._model().llama
    return np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(llama._n_vocab,)).copy()


def spliced_then_read(backend: LlamaCppBackend, prompt: np.ndarray) -> tuple[np.ndarray, list]:
    """Logits after ``prompt`` read with the old lines spliced in, and 12 greedy tokens."""
    backend.clear_cache()
    backend.precompute(block_pieces(old_messages()), after=RECALL_LEAD)
    model = backend._model()
    reused = backend._prepare(model, prompt, _NO_KEY)
    assert reused > 100
    held = backend.cached_tokens()
    assert held == prompt[: len(held)].tolist()
    assert kv_positions(backend) == (0, len(held) - 1)
    model.llama.eval(prompt[reused:].tolist())
    first = logits(backend)
    return first, argmaxes(model.llama, None)


def checked_mover(backend: LlamaCppBackend) -> None:
    """Run the mover's one check (idle work after a turn: ``prefill``/``precompute``)."""
    backend.prefill([Message("system", "Be brief."), Message("user", "Hi")])
    assert backend._model().pieces.mover is not None  # the shipped model's moves agree


@pytest.mark.model
def test_the_shipped_model_moves_cells_in_numpy_once_checked(fresh: LlamaCppBackend) -> None:
    pieces = fresh._model().pieces
    if pieces.mover is None:  # not checked yet in this process: shifts and splices use
        assert pieces._unchecked is not None  # llama.cpp's K-shift until the first idle time
    checked_mover(fresh)


@pytest.mark.model
def test_a_piece_moved_in_numpy_reads_like_one_moved_by_llama_cpp(fresh: LlamaCppBackend) -> None:
    checked_mover(fresh)
    prompt = fresh.prompt_tokens(prompt_with(old_messages(), "Which city did my sister move to?"))
    ours, our_tokens = spliced_then_read(fresh, prompt)
    with without_mover(fresh):
        theirs, their_tokens = spliced_then_read(fresh, prompt)
    fresh.clear_cache()
    assert our_tokens == their_tokens
    assert np.abs(ours - theirs).max() < 0.05 * np.abs(theirs).max()


@pytest.mark.model
def test_a_shift_moved_in_numpy_reads_like_one_moved_by_llama_cpp(fresh: LlamaCppBackend) -> None:
    def shifted() -> tuple[np.ndarray, list[int]]:
        fresh.clear_cache()
        last_usage(fresh, chat(0, 8, "Tell me about clouds."))
        before = fresh.cache_stats().shifts
        prompt = fresh.prompt_tokens(chat(3, 8, "Which topic came last?"))
        llama = fresh._model().llama
        reused = fresh._prepare(fresh._model(), prompt, _NO_KEY)
        assert fresh.cache_stats().shifts == before + 1 and reused > 100
        assert kv_positions(fresh) == (0, reused - 1)
        llama.eval(prompt[reused:].tolist())
        return logits(fresh), argmaxes(llama, None)

    checked_mover(fresh)
    ours, our_tokens = shifted()
    with without_mover(fresh):
        theirs, their_tokens = shifted()
    fresh.clear_cache()
    assert our_tokens == their_tokens
    assert np.abs(ours - theirs).max() < 0.05 * np.abs(theirs).max()


@pytest.mark.model
def test_moved_cells_llama_cpp_refuses_fall_back_to_reading(
    fresh: LlamaCppBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llama_cpp

    checked_mover(fresh)
    last_usage(fresh, chat(0, 8, "Tell me about clouds."))
    prompt = fresh.prompt_tokens(chat(3, 8, "Which topic came last?"))
    monkeypatch.setattr(llama_cpp, "llama_state_seq_set_data", lambda *args: 0)
    reused = fresh._prepare(fresh._model(), prompt, _NO_KEY)
    monkeypatch.undo()
    held = fresh.cached_tokens()
    assert held == prompt[: len(held)].tolist()  # the common prefix: the rest is read
    assert reused == len(held) < 40
    assert kv_positions(fresh) == (0, len(held) - 1)
    usage = last_usage(fresh, chat(3, 8, "Which topic came last?"))
    assert usage.cached_tokens == reused


@pytest.mark.model
def test_a_mover_that_disagrees_is_dropped_and_said(
    fresh: LlamaCppBackend, caplog: pytest.LogCaptureFixture
) -> None:
    from dataclasses import replace

    from memchat.backends._llama_splice import PieceStore

    llama = fresh._model().llama
    good = PieceStore(0, mover_for(llama))
    good.check(llama)
    assert good.mover is not None
    wrong = PieceStore(0, replace(mover_for(llama), neox=True))  # SmolLM2's RoPE pairs are NORM
    with caplog.at_level("INFO", logger="memchat"):
        wrong.check(llama)
    assert wrong.mover is None
    assert "llama.cpp's K-shift" in caplog.text
