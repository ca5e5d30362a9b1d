"""Moving saved KV cells to other positions in numpy, instead of by llama.cpp's K-shift.

Why: llama.cpp moves cells (``llama_memory_seq_add``) by marking them, and at the next decode
it re-rotates the keys of *every* cell of the cache, in use or not. At the embedded model's
8,192-token context that pass costs ~80 ms on this 2-core CPU whatever moved: splicing a
30-token recall line paid as much as shifting the whole conversation, on every turn that
spliced (bench_embedded (g): recall-local's turns were ~0.1 s slower than ``cache``'s).

A saved sequence (``llama_state_seq_get_data``) holds each cell's position and then, layer by
layer, its keys as rows. Writing new positions into a copy and rotating the key rows by RoPE
costs time in proportion to what moves; restored, the copy sits at its new place with nothing
left for llama.cpp to rotate.

Only the layout this llama.cpp writes is handled: one stream, one sequence per cell, f16 keys,
NORM or NEOX RoPE without scaling. Anything else gives no ``Mover`` and callers fall back to
``llama_memory_seq_add``. ``checked`` compares the rotation once per model, in idle time, with
llama.cpp's own K-shift; the fallback is taken until then, and for good when they disagree.
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Layout", "Mover", "Spare", "checked", "decode_at", "move_cells", "mover_for"]

_F16 = 1  # GGML_TYPE_F16
_ROPE_NORM, _ROPE_NEOX = 0, 2  # LLAMA_ROPE_TYPE_*: pairs (2i, 2i+1) or (i, i + n_rot/2)
_MAGIC = 0xAF143CD8  # a saved sequence starts with it, then the sequence id (i32)
_CELL = 12  # a cell's metadata in a one-sequence save: pos (i32), n_seq_id (u32), seq_id (i32)
_CHECK = (7, 300)  # the check reads this many tokens at 0, and moves them this far


@dataclass(frozen=True, slots=True)
class Layout:
    """Where a saved sequence of ``cells`` cells keeps its positions and its key rows (the
    value rows follow them, and are not touched)."""

    cells: int
    pos: int  # offset of the first cell's position; one every _CELL bytes
    keys: int  # offset of layer 0's first key row
    layer_stride: int  # bytes from one layer's first key row to the next one's


class Spare:
    """A byte buffer used again and again: a moved copy lives only until llama.cpp has read it,
    and a new buffer of a few MB costs more in page faults than moving the cells in it."""

    def __init__(self) -> None:
        self._buf: Any = None

    def get(self, size: int) -> Any:
        if self._buf is None or len(self._buf) < size:
            self._buf = (ctypes.c_uint8 * size)()
        return self._buf


@dataclass(frozen=True, slots=True)
class Mover:
    """Moves saved sequences of one model's context (see ``mover_for``)."""

    layers: int
    heads: int  # key/value heads
    head_dim: int
    n_rot: int
    neox: bool
    inv_freq: npt.NDArray[np.float64]  # base ** (-2i / n_rot), i < n_rot / 2
    spare: Spare = field(default_factory=Spare, compare=False, repr=False)
    """Where cells are moved on their way back into the cache (the caller holds the lock)."""

    @property
    def row(self) -> int:
        return self.heads * self.head_dim * 2  # f16

    def layout(self, data: Any, size: int) -> Layout | None:
        """The layout of a saved sequence, or None when it is not the one this mover knows."""
        buf = np.frombuffer(data, dtype=np.uint8, count=size)
        if size < 16 or _u32(buf, 0) != _MAGIC or _u32(buf, 8) != 1:  # one stream
            return None
        cells = _u32(buf, 12)
        meta = 16 + cells * _CELL
        if cells == 0 or size < meta + 8:
            return None
        seqs = np.ndarray((cells,), np.uint32, buf, 20, (_CELL,))  # n_seq_id of each cell
        if not np.all(seqs == 1) or _u32(buf, meta + 4) != self.layers:
            return None
        v_trans, at = _u32(buf, meta), meta + 8  # after v_trans and n_layer
        stride = 12 + cells * self.row
        for layer in range(self.layers):
            head = at + layer * stride
            if head + stride > size:
                return None
            if _i32(buf, head) != _F16 or _u64(buf, head + 4) != self.row:
                return None
        end = at + self.layers * stride
        for _ in range(self.layers):  # the value rows: the save must end with them
            if end + 12 > size:
                return None
            if v_trans:  # type, element size, row length, then one row per dimension
                end += 12 + _u32(buf, end + 4) * _u32(buf, end + 8) * cells
            else:  # type, row size, then one row per cell
                end += 12 + _u64(buf, end + 4) * cells
        return Layout(cells, 16, at + 12, stride) if end == size else None

    def moved(self, data: Any, size: int, layout: Layout, delta: int, out: Any = None) -> Any:
        """A copy of the saved sequence with every position and key moved by ``delta``, in
        ``out`` (a buffer of at least ``size`` bytes, e.g. ``spare``; default a new one)."""
        if out is None:
            out = (ctypes.c_uint8 * size)()
        ctypes.memmove(out, data, size)
        self.move(out, size, layout, delta)
        return out

    def move(self, data: Any, size: int, layout: Layout, delta: int) -> None:
        """Move the saved sequence in ``data`` by ``delta``, in place."""
        if delta:
            buf = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8, count=size)
            pos = np.ndarray((layout.cells,), np.int32, buf, layout.pos, (_CELL,))
            pos += delta
            self._rotate(self._rows(buf, layout), delta)

    def same(self, ours: Any, theirs: Any, size: int, layout: Layout) -> bool:
        """Whether two saves of one sequence hold the same cells: positions and values equal,
        keys equal to f16 rounding (a rotation computed twice may round a last bit apart)."""
        a = np.frombuffer(ours, dtype=np.uint8, count=size)
        b = np.frombuffer(theirs, dtype=np.uint8, count=size)
        ka, kb = self._keys(a, layout), self._keys(b, layout)
        scale = np.maximum(np.abs(ka), np.abs(kb)).max(axis=-1, keepdims=True)  # per head
        close = np.abs(ka - kb) <= scale * 2.0**-8 + 2.0**-14
        if not close.all():
            return False
        a, b = a.copy(), b.copy()  # the rest must be equal byte for byte
        self._rows(a, layout)[...] = 0
        self._rows(b, layout)[...] = 0
        return bool(np.array_equal(a, b))

    def _keys(self, buf: npt.NDArray[np.uint8], layout: Layout) -> npt.NDArray[np.float32]:
        """The key rows as (layer, cell, head, dimension), in float32."""
        rows = self._rows(buf, layout).astype(np.float32)
        return rows.reshape(self.layers, layout.cells, self.heads, self.head_dim)

    def _rows(self, buf: npt.NDArray[np.uint8], layout: Layout) -> npt.NDArray[np.float16]:
        """The key rows as (layer, cell, row), a view into ``buf`` (each layer's contiguous)."""
        return np.ndarray(
            (self.layers, layout.cells, self.heads * self.head_dim),
            np.float16,
            buf,
            layout.keys,
            (layout.layer_stride, self.row, 2),
        )

    def _rotate(self, rows: npt.NDArray[np.float16], delta: int) -> None:
        """Rotate the first ``n_rot`` dimensions of each head by ``delta`` positions, in place.

        One pass each way between f16 and f32 (ggml's SIMD conversions: numpy's f32 -> f16
        cast is ~10x slower), the rotation as one complex product (a piece is moved on every
        turn that splices it: ~1,000 cells on a recalling turn).
        """
        half = self.n_rot // 2
        turn = np.exp(1j * delta * self.inv_freq).astype(np.complex64)
        keys = _f32(rows).reshape(*rows.shape[:2], self.heads, self.head_dim)
        if self.neox:  # pairs (i, i + n_rot/2)
            z = keys[..., :half] + 1j * keys[..., half : self.n_rot]
            z *= turn
            keys[..., :half], keys[..., half : self.n_rot] = z.real, z.imag
        else:  # pairs (2i, 2i+1): adjacent floats are a complex64
            rot = np.ascontiguousarray(keys[..., : self.n_rot]).view(np.complex64)
            rot *= turn
            keys[..., : self.n_rot] = rot.view(np.float32)
        _put_f16(keys.reshape(rows.shape), rows)


def checked(llama: Any, mover: Mover | None, scratch: int) -> Mover | None:
    """``mover`` if moving a few cells with it agrees with llama.cpp's own K-shift, else None.

    The check reads a few tokens in ``scratch``, moves them both ways, and compares the saves.
    It costs ~0.2-0.4 s (a first decode in the scratch sequence and one K-shift), so callers
    run it once, in idle time (``PieceStore.check``).
    """
    if mover is None:
        return None
    try:
        return mover if _agrees(llama, mover, scratch) else None
    except RuntimeError:
        return None


def mover_for(llama: Any) -> Mover | None:
    """A mover for this context's model, not checked yet (``checked``); None when its RoPE
    or its KV cache is not one the mover knows."""
    import llama_cpp

    model = llama._model.model
    rope = llama_cpp.llama_model_rope_type(model)
    if rope not in (_ROPE_NORM, _ROPE_NEOX):
        return None
    if llama_cpp.llama_model_rope_freq_scale_train(model) != 1.0:
        return None
    meta = llama.metadata
    arch = meta.get("general.architecture", "")
    if meta.get(f"{arch}.rope.scaling.type", "none") not in ("none", ""):
        return None
    n_embd, n_head = llama_cpp.llama_model_n_embd(model), llama_cpp.llama_model_n_head(model)
    if n_head <= 0 or n_embd % n_head:
        return None
    head_dim = int(meta.get(f"{arch}.attention.key_length", n_embd // n_head))
    n_rot = int(meta.get(f"{arch}.rope.dimension_count", head_dim))
    if n_rot % 2 or n_rot > head_dim:
        return None
    base = float(meta.get(f"{arch}.rope.freq_base", 10000.0))
    params = llama.context_params
    if float(params.rope_freq_base or base) != base or float(params.rope_freq_scale or 1.0) != 1:
        return None
    return Mover(
        layers=llama_cpp.llama_model_n_layer(model),
        heads=llama_cpp.llama_model_n_head_kv(model),
        head_dim=head_dim,
        n_rot=n_rot,
        neox=rope == _ROPE_NEOX,
        inv_freq=base ** (-np.arange(0, n_rot, 2, dtype=np.float64) / n_rot),
    )


def _agrees(llama: Any, mover: Mover, scratch: int) -> bool:
    """Whether ``mover`` moves cells as llama.cpp's K-shift does, to f16 rounding."""
    import llama_cpp

    ctx, mem = llama.ctx, llama._ctx.memory
    n, delta = _CHECK
    tokens = np.array(llama.tokenize(b"The quick brown fox jumps", add_bos=True)[:n], np.intc)
    n = len(tokens)
    try:
        llama_cpp.llama_memory_seq_rm(mem, scratch, -1, -1)
        decode_at(llama, tokens, 0, scratch)
        before, size = _save(llama_cpp, ctx, scratch)
        llama_cpp.llama_memory_seq_add(mem, scratch, 0, n, delta)
        decode_at(llama, tokens[-1:], n + delta, scratch)  # applies the K-shift
        llama_cpp.llama_memory_seq_rm(mem, scratch, n + delta, -1)
        after, size_after = _save(llama_cpp, ctx, scratch)
    finally:
        llama_cpp.llama_memory_seq_rm(mem, scratch, -1, -1)
    if before is None or after is None or size != size_after:
        return False
    layout = mover.layout(before, size)
    if layout is None or layout.cells != n:
        return False
    ours = mover.moved(before, size, layout, delta)
    return mover.same(ours, after, size, layout)


def _save(llama_cpp: Any, ctx: Any, seq: int, spare: Spare | None = None) -> tuple[Any, int]:
    """Sequence ``seq`` saved, in ``spare`` (default a new buffer), and its size; (None, 0)
    when it is empty or the save falls short."""
    size = llama_cpp.llama_state_seq_get_size(ctx, seq)
    buf = spare.get(size) if spare is not None else (ctypes.c_uint8 * size)()
    if not size or llama_cpp.llama_state_seq_get_data(ctx, buf, size, seq) != size:
        return None, 0
    return buf, size


def decode_at(llama: Any, tokens: npt.NDArray[np.intc], pos: int, seq: int) -> None:
    """Decode ``tokens`` at positions ``pos ..`` in sequence ``seq`` (logits of the last)."""
    import llama_cpp

    batch = llama_cpp.llama_batch_init(len(tokens), 0, 1)
    try:
        batch.n_tokens = len(tokens)
        for i, token in enumerate(tokens):
            batch.token[i] = int(token)
            batch.pos[i] = pos + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = i == len(tokens) - 1
        rc = llama_cpp.llama_decode(llama.ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
    finally:
        llama_cpp.llama_batch_free(batch)


@functools.cache
def _ggml_cpu() -> Any:
    """ggml-cpu's row conversions between f16 and f32 (ggml-cpu.h), None if not found."""
    try:
        import llama_cpp
        from llama_cpp._ctypes_extensions import load_shared_library

        lib = load_shared_library("ggml-cpu", Path(llama_cpp.__file__).parent / "lib")
        for name in ("ggml_cpu_fp16_to_fp32", "ggml_cpu_fp32_to_fp16"):
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64], None
    except (ImportError, OSError, AttributeError, RuntimeError, FileNotFoundError):
        return None
    return lib


def _f32(rows: npt.NDArray[np.float16]) -> npt.NDArray[np.float32]:
    """(layer, cell, row) f16 rows, each layer contiguous, as one contiguous f32 array."""
    out = np.empty(rows.shape, np.float32)
    lib = _ggml_cpu()
    if lib is None:
        out[...] = rows
        return out
    for layer in range(rows.shape[0]):
        src = rows[layer]
        lib.ggml_cpu_fp16_to_fp32(src.ctypes.data, out[layer].ctypes.data, src.size)
    return out


def _put_f16(values: npt.NDArray[np.float32], rows: npt.NDArray[np.float16]) -> None:
    """Write contiguous f32 ``values`` into (layer, cell, row) f16 ``rows`` (rounded to even)."""
    lib = _ggml_cpu()
    if lib is None:
        rows[...] = values
        return
    for layer in range(rows.shape[0]):
        dst = rows[layer]
        lib.ggml_cpu_fp32_to_fp16(values[layer].ctypes.data, dst.ctypes.data, dst.size)


def _u32(buf: npt.NDArray[np.uint8], at: int) -> int:
    return int(np.frombuffer(buf, np.uint32, 1, at)[0])


def _i32(buf: npt.NDArray[np.uint8], at: int) -> int:
    return int(np.frombuffer(buf, np.int32, 1, at)[0])


def _u64(buf: npt.NDArray[np.uint8], at: int) -> int:
    return int(np.frombuffer(buf, np.uint64, 1, at)[0])


def move_cells(llama: Any, mover: Mover, scratch: int, p0: int, p1: int, delta: int) -> bool:
    """Move sequence 0's cells at positions ``[p0, p1)`` by ``delta``, through ``scratch``.

    False, with nothing changed, when the save is not in the mover's layout. Raises
    RuntimeError when llama.cpp refuses the moved cells back (they are gone from sequence 0).
    """
    import llama_cpp

    ctx, mem = llama.ctx, llama._ctx.memory
    llama_cpp.llama_memory_seq_rm(mem, scratch, -1, -1)
    llama_cpp.llama_memory_seq_cp(mem, 0, scratch, p0, p1)
    try:
        data, size = _save(llama_cpp, ctx, scratch, mover.spare)
    finally:
        llama_cpp.llama_memory_seq_rm(mem, scratch, -1, -1)
    layout = mover.layout(data, size) if data is not None else None
    if layout is None or layout.cells != p1 - p0:
        return False
    mover.move(data, size, layout, delta)
    llama_cpp.llama_memory_seq_rm(mem, 0, p0, p1)
    try:
        if llama_cpp.llama_state_seq_set_data(ctx, data, size, scratch) == 0:
            raise RuntimeError("llama.cpp refused moved KV cells")
        llama_cpp.llama_memory_seq_cp(mem, scratch, 0, p0 + delta, p1 + delta)
    finally:
        llama_cpp.llama_memory_seq_rm(mem, scratch, -1, -1)
    return True
