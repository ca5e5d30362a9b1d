"""`memchat keys create|list|revoke` on the real SQLite store: the key is printed once and
stored only as its hash."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from memchat.adapters.cli import App, cli
from memchat.core.keys import key_hash
from memchat.storage import SQLiteStore


def run(tmp_path: Path, *args: str) -> Result:
    environ = {"MEMCHAT_HOME": str(tmp_path), "MEMCHAT_STORE": f"sqlite:///{tmp_path}/k.db"}
    return CliRunner().invoke(cli, list(args), obj=App(environ=environ))


def test_create_prints_the_key_once_and_stores_its_hash(tmp_path: Path) -> None:
    made = run(tmp_path, "keys", "create", "laptop")
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip()
    assert secret.startswith("mc-") and len(secret) > 40 and "\n" not in secret
    assert "not shown again" in made.stderr and secret not in made.stderr
    listed = run(tmp_path, "keys", "list")
    assert listed.exit_code == 0 and "laptop" in listed.stdout
    assert secret[:7] + "…" in listed.stdout and secret not in listed.stdout
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("k.db*"))
    assert secret.encode() not in raw
    with SQLiteStore(tmp_path / "k.db") as store:
        found = store.find_key(key_hash(secret))
        assert found is not None and found.name == "laptop"


def test_list_json_and_revoke(tmp_path: Path) -> None:
    run(tmp_path, "keys", "create", "a")
    run(tmp_path, "keys", "create", "b")
    revoked = run(tmp_path, "keys", "revoke", "a")
    assert revoked.exit_code == 0 and "revoked key 'a'" in revoked.stderr
    rows = json.loads(run(tmp_path, "keys", "list", "--json").stdout)
    assert [(r["name"], r["revoked_at"] is not None) for r in rows] == [("a", True), ("b", False)]
    assert all(r["key"].startswith("mc-") and r["key"].endswith("…") for r in rows)
    assert rows[0]["last_used_at"] is None


def test_errors_are_one_line(tmp_path: Path) -> None:
    run(tmp_path, "keys", "create", "a")
    taken = run(tmp_path, "keys", "create", "a")
    assert taken.exit_code == 2 and taken.stderr.startswith("error: a key named 'a' exists")
    assert taken.stdout == ""  # no key printed for a refused name
    unknown = run(tmp_path, "keys", "revoke", "zed")
    assert unknown.exit_code == 2 and "no key named 'zed'" in unknown.stderr
    empty = run(tmp_path / "other", "keys", "list")
    assert empty.exit_code == 0 and "no keys yet" in empty.stderr


def test_keys_need_a_store(tmp_path: Path) -> None:
    environ = {"MEMCHAT_HOME": str(tmp_path), "MEMCHAT_STORE": "none"}
    result = CliRunner().invoke(cli, ["keys", "list"], obj=App(environ=environ))
    assert result.exit_code == 3 and "no store is configured" in result.stderr
