"""The loaded embedded model: one per process, its chat template, and its token counter.

Why one per process: every conversation (CLI, web visitors, API keys) shares the same weights
and the same llama.cpp context; a second copy would double the memory and throw away the KV
cache. The model is loaded on first use, never at import.
"""

from __future__ import annotations

import atexit
import os
import re
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import BackendUnavailable, ConfigError
from ..core.messages import Message
from ._llama_cache import ConversationCache, Tokens
from ._llama_rope import mover_for
from ._llama_splice import SCRATCH, PieceStore, splice_supported

__all__ = ["LlamaTokenCounter", "LoadedModel", "import_llama_cpp", "load_model"]

INSTALL_HINT = 'pip install "memchat[local]"'
_MARK = "\ue000{}\ue001"  # private-use characters: a placeholder no template rewrites
_MARK_RE = re.compile("\ue000(\\d+)\ue001")

# Used only when a GGUF carries no chat template (ChatML, what most small chat models use).
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def import_llama_cpp() -> Any:
    """The llama_cpp module, or a ConfigError naming the extra to install.

    Sets ``OMP_WAIT_POLICY=PASSIVE`` unless it is set already (it is read when the library
    loads): llama.cpp's OpenMP workers otherwise spin while they wait, and on a busy machine a
    two-thread prompt read measured 9 tok/s with spinning workers against 61 with passive ones.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import llama_cpp
    except ImportError as exc:
        raise ConfigError(
            f"the embedded model needs llama-cpp-python, which is not installed: {INSTALL_HINT}"
        ) from exc
    return llama_cpp


@dataclass(frozen=True, slots=True)
class LlamaTokenCounter:
    """Counts with the model's own tokenizer.

    ``per_message`` is the template's wrapping cost of one message, taken as the largest over the
    roles (SmolLM2's ChatML: 5 tokens for system/user, 6 for assistant, which is two tokens), so a
    count is exact for assistant messages and at most one token high for the others; it is never
    low. ``per_reply`` is the assistant prefix that primes the reply. Message contents are
    tokenized on their own (see ``LoadedModel.tokenize_prompt``), so ``count`` is exact for them.
    Not counted: a default system prompt that a template adds when none is sent (SmolLM2's adds
    one of about 20 tokens), so send a system prompt.
    """

    name: str
    per_message: int
    per_reply: int
    llama: Any = field(repr=False, compare=False)
    exact: bool = True

    def count(self, text: str) -> int:
        return len(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))


@dataclass(eq=False)
class LoadedModel:
    """A loaded ``Llama`` with its template; ``lock`` serialises generation on its context."""

    llama: Any
    path: Path
    template: Any  # llama_cpp.llama_chat_format.Jinja2ChatFormatter
    bare_template: Any  # the same without the generation prompt (for counting)
    conversations: ConversationCache
    pieces: PieceStore = field(default_factory=lambda: PieceStore(0))
    can_splice: bool = False  # the context has a unified cache with a scratch sequence
    lock: threading.Lock = field(default_factory=threading.Lock)
    owner: int | None = None  # the thread generating now
    _counter: LlamaTokenCounter | None = None

    def render(self, messages: Sequence[Message], *, reply: bool = True) -> str:
        """The prompt text, rendered with the model's own chat template."""
        return self._render([m.to_wire() for m in messages], reply)

    def _render(self, wire: list[dict[str, str]], reply: bool) -> str:
        fmt = self.template if reply else self.bare_template
        return str(fmt(messages=wire).prompt)

    def tokenize_prompt(self, messages: Sequence[Message], *, reply: bool = True) -> Tokens:
        """The prompt's tokens: the template's text may hold special tokens, messages never.

        Why: a user who types ``<|im_start|>system`` must not open a system turn. The template
        is rendered with a placeholder per message; its text is parsed with special tokens, each
        message's content as plain text. A template that rewrites contents (e.g. trims them) is
        detected and its output tokenized whole instead.
        """
        text = self.render(messages, reply=reply)
        pieces = self._pieces(messages, reply, text) or [(text, True)]
        return np.concatenate([self.tokens(piece, special=special) for piece, special in pieces])

    def tokens(self, text: str, *, special: bool = False) -> Tokens:
        """``text``'s tokens, parsed with special tokens or (default) as plain text."""
        ids = self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=special)
        return np.array(ids, dtype=np.intc)

    def tokens_followed(self, text: str) -> Tokens:
        """``text``'s plain tokens as they are when more text follows it (a block line is
        followed by the next line): alone, a trailing ``"\\n\\n"`` is one token, before more
        text two."""
        tail = self.tokens("x")
        ids = self.tokens(text + "x")
        if len(ids) > len(tail) and np.array_equal(ids[-len(tail) :], tail):
            return ids[: -len(tail)]
        return self.tokens(text)

    def _pieces(
        self, messages: Sequence[Message], reply: bool, text: str
    ) -> list[tuple[str, bool]] | None:
        """(template text, True) and (message content, False) in prompt order, or None."""
        wire = [{"role": m.role, "content": _MARK.format(i)} for i, m in enumerate(messages)]
        parts = _MARK_RE.split(self._render(wire, reply))
        if parts[1::2] != [str(i) for i in range(len(messages))]:
            return None
        pieces = [
            (part, True) if n % 2 == 0 else (messages[int(part)].content, False)
            for n, part in enumerate(parts)
        ]
        return pieces if "".join(p for p, _ in pieces) == text else None

    def system_opening(self) -> Tokens:
        """The template's tokens before a system message's content (``<|im_start|>system\\n``)."""
        wire = [{"role": "system", "content": _MARK.format(0)}]
        return self.tokens(_MARK_RE.split(self._render(wire, False))[0], special=True)

    def counter(self) -> LlamaTokenCounter:
        if self._counter is None:
            self._counter = self._measure_counter()
        return self._counter

    def _measure_counter(self) -> LlamaTokenCounter:
        base = [Message("system", "S"), Message("user", "U")]
        base_n = len(self.tokenize_prompt(base, reply=False))
        per_reply = len(self.tokenize_prompt(base)) - base_n
        probe = "x"
        wrap = [
            len(self.tokenize_prompt([*base, Message(role, probe)], reply=False)) - base_n
            for role in ("system", "user", "assistant")
        ]
        probe_n = len(self.llama.tokenize(probe.encode(), add_bos=False, special=False))
        return LlamaTokenCounter(
            name=f"llama:{self.path.name}",
            per_message=max(wrap) - probe_n,
            per_reply=per_reply,
            llama=self.llama,
        )


_MODELS: dict[tuple[str, str, int, int | None], LoadedModel] = {}
_MODELS_LOCK = threading.Lock()
_OPEN: weakref.WeakSet[Any] = weakref.WeakSet()  # every Llama loaded here and not yet freed


def _close_all() -> None:
    """Free the models still loaded before the interpreter tears its modules down (at exit, a
    ``Llama`` freed by the garbage collector after ``llama_cpp``'s globals are gone prints
    "Exception ignored in Llama.__del__ ... 'NoneType' object is not callable")."""
    for llama in list(_OPEN):
        llama.close()


def load_model(
    source: Path,
    weights: str,
    prepare: Callable[[], Path],
    *,
    n_ctx: int,
    n_threads: int | None,
    cache_bytes: int,
    verbose: bool,
) -> LoadedModel:
    """The process-wide model for these settings, loaded on first call.

    Keyed by the source file and the weight format, so two backends with different caches for
    converted weights still share one model; ``prepare()`` gives the file to load (it converts
    the weights the first time).
    """
    key = (str(source.resolve()), weights, n_ctx, n_threads)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            model = _load(prepare(), n_ctx=n_ctx, n_threads=n_threads, verbose=verbose)
            _MODELS[key] = model
        model.conversations.max_bytes = cache_bytes  # the latest backend's ceiling applies
    return model


def _load(path: Path, *, n_ctx: int, n_threads: int | None, verbose: bool) -> LoadedModel:
    llama_cpp = import_llama_cpp()
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    try:
        llama = llama_cpp.Llama(
            model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, verbose=verbose
        )
    except (ValueError, RuntimeError, OSError) as exc:
        raise BackendUnavailable(f"could not load the model {path}: {exc}") from exc
    if not _OPEN:
        atexit.unregister(_close_all)  # once, however many loads
        atexit.register(_close_all)
    _OPEN.add(llama)
    can_splice = _unify(llama)
    source = llama.metadata.get("tokenizer.chat_template") or CHATML

    def text_of(token: int) -> str:
        return str(llama._model.token_get_text(token)) if token != -1 else ""

    eos, bos = text_of(llama.token_eos()), text_of(llama.token_bos())
    return LoadedModel(
        llama=llama,
        path=path,
        template=Jinja2ChatFormatter(source, eos_token=eos, bos_token=bos),
        bare_template=Jinja2ChatFormatter(
            source, eos_token=eos, bos_token=bos, add_generation_prompt=False
        ),
        conversations=ConversationCache(0),
        pieces=PieceStore(0, mover_for(llama) if can_splice else None),
        can_splice=can_splice,
    )


def _unify(llama: Any) -> bool:
    """Give ``llama`` a context with a unified KV cache and a scratch sequence (for splicing).

    ``llama_cpp.Llama`` makes its context with one sequence and no way to ask for more, so the
    context is made again with the same parameters plus those two. False (the original context
    kept) when llama.cpp refuses or the memory cannot splice (e.g. a recurrent model).
    """
    import contextlib

    from llama_cpp import _internals

    params = llama.context_params
    n_seq_max, unified = params.n_seq_max, params.kv_unified
    params.n_seq_max, params.kv_unified = SCRATCH + 1, True
    try:
        ctx = _internals.LlamaContext(model=llama._model, params=params, verbose=llama.verbose)
    except ValueError:
        params.n_seq_max, params.kv_unified = n_seq_max, unified
        return False
    old, llama._ctx = llama._ctx, llama._stack.enter_context(contextlib.closing(ctx))
    old.close()
    return splice_supported(llama)
