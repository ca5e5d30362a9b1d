"""memchat: a chatbot memory system that stays coherent inside a fixed context window.

The library API. Adapters (CLI, web, server) are not imported here.
"""

from .backends.fake import EchoBackend, ScriptedBackend
from .core import *  # noqa: F403
from .core import __all__ as _core_all

__version__ = "0.1.0"

__all__ = [*_core_all, "EchoBackend", "ScriptedBackend", "__version__"]
