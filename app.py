"""memchat's web app as a Hugging Face Space (or anywhere): ``python app.py``.

Runs unchanged on a Space: it uses the memchat source next to it (``src/``) when memchat is not
installed, and reads every setting from the environment, which is where a Space puts its
variables and secrets:

    MEMCHAT_BACKEND   local (default: the embedded model, no key) | openai | echo
    MEMCHAT_BASE_URL, MEMCHAT_MODEL, MEMCHAT_API_KEY (or OPENAI_API_KEY)   an OpenAI-compatible API
    MEMCHAT_STRATEGY, MEMCHAT_BUDGET, MEMCHAT_RESERVE, MEMCHAT_SYSTEM      memory settings
    MEMCHAT_STORE     where conversations live (default: SQLite in MEMCHAT_HOME)
    MEMCHAT_HOME      data directory (default: /data/memchat on a Space with persistent storage,
                      else ~/.memchat)
    MEMCHAT_USERS     "name:password,…" to require a login (each user sees their conversations
                      on any browser); unset, each browser has its own private conversations
    GRADIO_SERVER_NAME / GRADIO_SERVER_PORT   where to listen (a Space sets these)

See docs/deploy.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent


def _use_checkout() -> None:
    """Import memchat from ./src when it is not installed (a Space holds the source tree)."""
    src = ROOT / "src"
    if (src / "memchat").is_dir() and str(src) not in sys.path:
        try:
            import memchat  # noqa: F401
        except ImportError:
            sys.path.insert(0, str(src))


def environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment with a Space's persistent disk as the data dir, when there is one."""
    env = dict(os.environ if environ is None else environ)
    data = Path("/data")
    if "MEMCHAT_HOME" not in env and data.is_dir() and os.access(data, os.W_OK):
        env["MEMCHAT_HOME"] = str(data / "memchat")
    return env


def main(block: bool = True) -> Any:
    _use_checkout()
    from memchat.adapters.web import launch
    from memchat.settings import load_settings

    env = environment()
    settings = load_settings({}, environ=env)
    port = env.get("GRADIO_SERVER_PORT")
    return launch(
        settings,
        host=env.get("GRADIO_SERVER_NAME"),
        port=int(port) if port else None,
        users=env.get("MEMCHAT_USERS"),
        block=block,
    )


if __name__ == "__main__":
    main()
