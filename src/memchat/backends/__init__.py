"""Backends: embedded llama.cpp (default), OpenAI-compatible, and public fakes."""

from .fake import EchoBackend, ScriptedBackend

__all__ = ["EchoBackend", "ScriptedBackend"]
