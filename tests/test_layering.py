"""The core imports only the standard library; importing memchat does no I/O; no module of the
package takes part in an import cycle; the adapters are three subpackages that import each other
only lazily (the CLI starts the web app and the server)."""

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


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, *, everywhere: bool = False) -> set[str]:
    """The memchat modules ``path`` imports at module level (with ``everywhere``, also under
    ``if TYPE_CHECKING:`` and inside functions, the lazy imports); a name imported from a
    package counts as its submodule when there is one."""
    package = path.parent.relative_to(PACKAGE.parent).parts
    tree = ast.parse(path.read_text())
    nodes = ast.walk(tree) if everywhere else iter(tree.body)
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            module = ".".join([*base, *filter(None, [node.module])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n in MODULES}


def _top_level_imports(path: Path) -> set[str]:
    return _imports(path)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module, or with a self-import."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_anywhere_in_the_package() -> None:
    """Counting every import: module level, ``TYPE_CHECKING`` blocks and lazy ones alike."""
    graph = {name: _imports(path, everywhere=True) for name, path in MODULES.items()}
    assert not _cycles(graph)


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"a"}}) == [["a"]]


def test_no_face_imports_another_at_module_level() -> None:
    for face in FACES:
        others = tuple(f"memchat.adapters.{o}" for o in FACES if o != face)
        for path in sorted((ADAPTERS / face).glob("*.py")):
            crossing = sorted(n for n in _top_level_imports(path) if n.startswith(others))
            assert not crossing, f"{path.relative_to(PACKAGE)} imports {crossing}"
