"""The core imports only the standard library; importing memchat does no I/O; the adapters are
three subpackages that import each other only lazily (the CLI starts the web app and the server)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import memchat

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
PACKAGE = Path(memchat.__file__).parent
ADAPTERS = PACKAGE / "adapters"
FACES = ("cli", "server", "web")


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


def test_the_adapters_are_one_subpackage_per_face() -> None:
    flat = sorted(p.name for p in ADAPTERS.glob("*.py") if p.name != "__init__.py")
    assert not flat, f"adapters/ holds modules outside a face's subpackage: {flat}"
    assert {p.name for p in ADAPTERS.iterdir() if (p / "__init__.py").exists()} == set(FACES)


def test_the_cli_loads_neither_the_web_app_nor_the_server() -> None:
    loaded = _modules_after("import memchat.adapters.cli")
    assert not {m for m in ("gradio", "starlette", "uvicorn") if m in loaded}


def _top_level_imports(path: Path) -> set[str]:
    """Absolute names of the memchat modules ``path`` imports at module level."""
    package = path.parent.relative_to(PACKAGE.parent).parts
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            names.add(".".join([*base, *filter(None, [node.module])]))
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.startswith("memchat")}


def test_no_face_imports_another_at_module_level() -> None:
    for face in FACES:
        others = tuple(f"memchat.adapters.{o}" for o in FACES if o != face)
        for path in sorted((ADAPTERS / face).glob("*.py")):
            crossing = sorted(n for n in _top_level_imports(path) if n.startswith(others))
            assert not crossing, f"{path.relative_to(PACKAGE)} imports {crossing}"
