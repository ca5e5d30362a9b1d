"""The core imports only the standard library; importing memchat does no I/O."""

from __future__ import annotations

import subprocess
import sys

HEAVY = [
    "gradio",
    "starlette",
    "openai",
    "llama_cpp",
    "sqlite3",
    "psycopg",
    "tiktoken",
    "numpy",
    "onnxruntime",
    "bm25s",
    "click",
    "rich",
]


def _modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_core_imports_only_the_standard_library() -> None:
    baseline = _modules_after("pass")  # whatever site-packages' .pth files load at startup
    loaded = _modules_after("import memchat.core") - baseline
    stdlib = set(sys.stdlib_module_names)
    foreign = {m.split(".")[0] for m in loaded} - stdlib - {"memchat"}
    assert not foreign, f"memchat.core pulled in {sorted(foreign)}"


def test_importing_memchat_loads_no_adapter_or_sdk() -> None:
    loaded = _modules_after("import memchat")
    assert not {m for m in HEAVY if m in loaded}
