"""The command registry: lazily registered commands and the `memchat web` stub."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from memchat.adapters import cli as cli_module
from memchat.adapters.cli import App, cli
from memchat.adapters.cli._common import exit_code
from memchat.backends.fake import ScriptedBackend
from memchat.core.errors import (
    BackendUnavailable,
    ConfigError,
    InputError,
    MigrationError,
    NotFound,
    RateLimited,
    StorageError,
    UsageError,
)


def invoke(tmp_path: Path, *args: str):
    app = App(environ={"MEMCHAT_HOME": str(tmp_path), "MEMCHAT_STORE": "none"})
    return CliRunner().invoke(cli, list(args), obj=app)


def test_a_lazy_command_is_listed_and_runs_only_when_its_module_exists(tmp_path, monkeypatch):
    (tmp_path / "memchat_demo_cmd.py").write_text(
        "import click\n\n@click.command()\ndef hello():\n    click.echo('hello from a plugin')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli_module.LAZY_COMMANDS, "hello", "memchat_demo_cmd:hello")
    monkeypatch.setitem(cli_module.LAZY_COMMANDS, "ghost", "memchat_no_such_module:cmd")
    listing = invoke(tmp_path, "--help").stdout
    assert "hello" in listing and "ghost" not in listing
    assert invoke(tmp_path, "hello").stdout == "hello from a plugin\n"
    assert invoke(tmp_path, "ghost").exit_code == 2  # click: no such command


def test_a_lazy_command_whose_import_fails_explains_itself(tmp_path, monkeypatch):
    (tmp_path / "memchat_broken_cmd.py").write_text("import memchat_missing_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli_module.LAZY_COMMANDS, "broken", "memchat_broken_cmd:cmd")
    result = invoke(tmp_path, "broken")
    assert result.exit_code == 3
    assert result.stderr.startswith("error: `memchat broken` is not available")


def test_web_passes_the_resolved_settings_to_launch(tmp_path, monkeypatch):
    calls = []
    fake = types.ModuleType("memchat.adapters.web")
    fake.launch = lambda settings, **kw: calls.append((settings, kw))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "memchat.adapters.web", fake)
    result = invoke(tmp_path, "web", "--port", "7999", "--backend", "echo", "--budget", "900")
    assert result.exit_code == 0, result.output
    settings, kw = calls[0]
    assert (settings.backend, settings.budget) == ("echo", 900)
    assert kw == {"host": None, "port": 7999, "users": None, "max_idle_sessions": 256}


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_web_refuses_a_max_idle_sessions_below_one(tmp_path, monkeypatch, value):
    monkeypatch.setitem(sys.modules, "memchat.adapters.web", types.ModuleType("unused"))
    result = invoke(tmp_path, "web", "--max-idle-sessions", value)
    assert result.exit_code == 2
    assert "Invalid value for '--max-idle-sessions'" in result.stderr


def test_web_without_the_extra_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "memchat.adapters.web", None)  # import raises ImportError
    result = invoke(tmp_path, "web")
    assert result.exit_code == 3
    assert 'pip install "memchat[web]"' in result.stderr


@pytest.mark.parametrize(
    "error, code",
    [
        (BackendUnavailable("down"), 1),
        (RateLimited("slow down"), 1),
        (UsageError("empty"), 2),
        (InputError("bad line"), 2),
        (NotFound("no such conversation"), 2),
        (ConfigError("bad setting"), 3),
        (MigrationError("schema is newer"), 4),
        (StorageError("disk full"), 4),
    ],
)
def test_every_memchat_error_is_one_line_and_an_exit_code(tmp_path, error, code):
    backend = ScriptedBackend(replies=[error])
    app = App(environ={"MEMCHAT_STORE": "none"}, make_backend=lambda s: backend)
    result = CliRunner().invoke(cli, ["ask", "hi"], obj=app)
    assert result.exit_code == code
    assert result.stderr == f"error: {error}\n"
    assert exit_code(error) == code
