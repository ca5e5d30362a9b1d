"""Faster weights for the embedded model: the shipped GGUF converted once, cached, checked by hash.

Why: reading the prompt is the cost of an embedded turn, and its speed depends on the weight
format more than on the CPU. SmolLM2 ships as Q4_1, which has no fast batched kernel on common
x86 CPUs; the same weights as Q8_0 read a 512-token block ~1.5x faster and a 35-token turn ~20 %
faster, for ~45 MB more memory (docs/benchmarks.md, "Weight formats"). Converting takes about a
second with llama.cpp's own quantizer (``llama_model_quantize``, ``allow_requantize``).

The converted file lives in ``cache_dir`` (``$MEMCHAT_HOME/models``) next to a JSON note of the
source's size, mtime and SHA-256: it is reused while the source is unchanged, and made again when
the source's content differs or the converted file is missing or truncated. A conversion that
fails (read-only home, full disk) falls back to the original weights with a notice; it never
fails the chat.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError

__all__ = ["WEIGHT_FORMATS", "convert_weights", "file_digest", "resolve_weights"]

log = logging.getLogger("memchat")

# name -> llama.cpp ftype constant name; "original" reads the file as it is
WEIGHT_FORMATS = {
    "original": "",
    "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "f16": "LLAMA_FTYPE_MOSTLY_F16",
}
AUTO = "auto"  # Q8_0 for the default model, the file as it is for a model the user names
DEFAULT_FORMAT = "q8_0"


def resolve_weights(weights: str, *, default_model: bool) -> str:
    """The format to run: ``auto`` is Q8_0 for the shipped model, ``original`` for any other."""
    name = weights.lower()
    if name == AUTO:
        return DEFAULT_FORMAT if default_model else "original"
    if name not in WEIGHT_FORMATS:
        raise ConfigError(
            f"unknown weights {weights!r}; use one of {AUTO}, {', '.join(WEIGHT_FORMATS)}"
        )
    return name


def file_digest(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_weights(
    source: Path,
    fmt: str,
    cache_dir: Path,
    *,
    notice: Callable[[str], None] | None = None,
    threads: int = 1,
) -> Path:
    """The path of ``source`` in format ``fmt``: cached, or converted now (``notice`` says so).

    Returns ``source`` itself for ``original`` or when the conversion fails.
    """
    if WEIGHT_FORMATS.get(fmt, "") == "":
        return source
    where = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:8]
    target = cache_dir / f"{source.stem}.{fmt}.{where}.gguf"
    note_path = target.with_suffix(".json")
    stat = source.stat()
    note = _read_note(note_path)
    digest: str | None = None
    if note is not None and target.is_file() and target.stat().st_size == note.get("size"):
        if (note.get("source_size"), note.get("source_mtime_ns")) == (
            stat.st_size,
            stat.st_mtime_ns,
        ):
            return target
        digest = file_digest(source)  # touched: the content decides
        if digest == note.get("source_sha256"):
            _write_note(note_path, {**note, "source_mtime_ns": stat.st_mtime_ns})
            return target
    say = notice or log.info
    say(
        f"converting the embedded model's weights to {fmt.upper()} for faster prompt reading "
        f"(once; cached in {cache_dir})"
    )
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        digest = digest or file_digest(source)
        _quantize(source, target, fmt, threads)
        _write_note(
            note_path,
            {
                "source": str(source),
                "source_sha256": digest,
                "source_size": stat.st_size,
                "source_mtime_ns": stat.st_mtime_ns,
                "format": fmt,
                "size": target.stat().st_size,
            },
        )
    except (OSError, RuntimeError) as exc:
        say(f"could not convert the weights ({exc}); using the original {source.name}")
        return source
    return target


def _quantize(source: Path, target: Path, fmt: str, threads: int = 1) -> None:
    """llama.cpp's quantizer into a temporary file, renamed into place when complete."""
    from ._llama_model import import_llama_cpp

    llama_cpp = import_llama_cpp()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, WEIGHT_FORMATS[fmt])
    params.allow_requantize = True
    params.nthread = threads
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".part")
    os.close(fd)
    try:
        with _quiet():
            code = llama_cpp.llama_model_quantize(str(source).encode(), tmp.encode(), params)
        if code != 0:
            raise RuntimeError(f"llama_model_quantize returned {code}")
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence llama.cpp's per-tensor report (printed by C code on the process's stdout/err)."""
    saved: list[int] = []
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        yield
        return
    try:
        for fd in (1, 2):
            saved.append(os.dup(fd))
            os.dup2(null, fd)
        yield
    finally:
        for fd, copy in zip((1, 2), saved, strict=False):
            os.dup2(copy, fd)
            os.close(copy)
        os.close(null)


def _read_note(path: Path) -> dict[str, Any] | None:
    try:
        note = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return note if isinstance(note, dict) else None


def _write_note(path: Path, note: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.part")
    tmp.write_text(json.dumps(note, indent=2), encoding="utf-8")
    os.replace(tmp, path)
