"""Converted weights for the embedded model: cached by hash, a fallback, and the same answers.

The conversion tests run llama.cpp's quantizer on the real shipped model (~1 s each); the
agreement test compares the real Q8_0 model with the real Q4_1 original.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from memchat import Message
from memchat.backends._llama_convert import convert_weights, file_digest, resolve_weights
from memchat.backends.llama_cpp import LlamaCppBackend, default_model_path
from memchat.core.errors import ConfigError
from memchat.settings import load_settings
from memchat.wiring import build_backend

SYSTEM = "You are a helpful assistant. Answer in a few words."
PROMPTS = [
    "What is the capital of France?",
    "Name three colours of the rainbow.",
    "I have two cats, Miso and Tofu. What are my cats called?",
    "Write one sentence about the sea.",
    "How many days are there in a week?",
    "My sister lives in Lisbon and works as a nurse. Where does she live?",
    "Give me a tip for sleeping better.",
    "What is two plus three?",
]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A private copy of the shipped model, so a test may touch or change it."""
    path = tmp_path / "src" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    path.parent.mkdir()
    shutil.copyfile(default_model_path(), path)
    return path


def test_auto_is_q8_0_for_the_shipped_model_and_original_for_a_named_file() -> None:
    assert resolve_weights("auto", default_model=True) == "q8_0"
    assert resolve_weights("auto", default_model=False) == "original"
    assert resolve_weights("F16", default_model=False) == "f16"
    with pytest.raises(ConfigError, match="unknown weights 'q2'"):
        resolve_weights("q2", default_model=True)


def test_a_bad_weights_setting_names_its_source() -> None:
    with pytest.raises(ConfigError, match="MEMCHAT_WEIGHTS"):
        load_settings(environ={"MEMCHAT_WEIGHTS": "q3"})


@pytest.mark.model
def test_converted_once_then_reused_while_the_source_is_unchanged(
    source: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "models"
    said: list[str] = []
    first = convert_weights(source, "q8_0", cache, notice=said.append)
    assert first != source and first.read_bytes()[:4] == b"GGUF"
    assert len(said) == 1 and "Q8_0" in said[0]
    assert not list(cache.glob("*.part"))  # written aside, renamed into place
    made = first.stat().st_mtime_ns
    again = convert_weights(source, "q8_0", cache, notice=said.append)
    assert again == first and len(said) == 1 and first.stat().st_mtime_ns == made
    os.utime(source, ns=(made, made + 10**9))  # touched, same content: the hash decides
    assert convert_weights(source, "q8_0", cache, notice=said.append) == first
    assert len(said) == 1


@pytest.mark.model
def test_a_changed_source_or_a_truncated_copy_is_converted_again(
    source: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "models"
    said: list[str] = []
    target = convert_weights(source, "q8_0", cache, notice=said.append)
    with target.open("r+b") as f:
        f.truncate(1000)
    assert convert_weights(source, "q8_0", cache, notice=said.append) == target
    assert len(said) == 2 and target.stat().st_size > 1000
    digest = file_digest(source)
    with source.open("r+b") as f:  # same size, other content: a different model
        f.seek(source.stat().st_size - 1)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 1]))
    assert file_digest(source) != digest
    convert_weights(source, "q8_0", cache, notice=said.append)
    assert len(said) == 3


@pytest.mark.model
def test_a_failed_conversion_falls_back_to_the_original(source: Path, tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the cache folder should be")
    said: list[str] = []
    assert convert_weights(source, "q8_0", blocked, notice=said.append) == source
    assert "using the original" in said[-1]


@pytest.mark.model
def test_original_weights_are_read_as_they_are(tmp_path: Path) -> None:
    backend = LlamaCppBackend(weights="original", cache_dir=tmp_path / "models")
    assert backend.model == "SmolLM2-135M-Instruct.Q4_1"
    backend.token_counter()
    assert backend.weights_path == default_model_path()
    assert not (tmp_path / "models").exists()


@pytest.mark.model
def test_settings_put_converted_weights_in_the_model_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    settings = load_settings(environ={"MEMCHAT_MODEL_CACHE": str(cache)})
    backend = build_backend(settings)
    assert backend.weights == "q8_0" and backend.cache_dir == cache
    assert backend.model == "SmolLM2-135M-Instruct.Q8_0"


def _greedy(llama: object, forced: list[int] | None, n: int = 16) -> list[int]:
    out = []
    for i in range(n):
        logits = np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(llama._n_vocab,))  # type: ignore[attr-defined]
        out.append(int(np.argmax(logits)))
        llama.eval([forced[i] if forced else out[-1]])  # type: ignore[attr-defined]
    return out


@pytest.mark.model
def test_the_converted_model_predicts_like_the_original(tmp_path: Path) -> None:
    """Teacher-forced greedy agreement over 16 tokens of 8 fixed prompts.

    Measured on 40 scripted prompts: 0.953 for Q8_0 (0.958 for F16, the noise of a different
    kernel); the bound leaves room for other CPUs' kernels, not for a broken conversion (a model
    of the wrong weights agrees on a few per cent of tokens).
    """
    original = LlamaCppBackend(weights="original")
    converted = LlamaCppBackend(weights="q8_0", cache_dir=tmp_path / "models")
    scores, first = [], []
    for text in PROMPTS:
        tokens = original.prompt_tokens([Message("system", SYSTEM), Message("user", text)])
        a = original._model().llama
        a.reset()
        a.eval(tokens.tolist())
        ref = _greedy(a, None)
        b = converted._model().llama
        b.reset()
        b.eval(tokens.tolist())
        got = _greedy(b, ref)
        scores.append(np.mean(np.array(got) == np.array(ref)))
        first.append(got[0] == ref[0])
    original.clear_cache()
    converted.clear_cache()
    assert np.mean(scores) >= 0.85, scores
    assert sum(first) >= len(PROMPTS) - 1
