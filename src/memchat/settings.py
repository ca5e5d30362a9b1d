"""Settings, resolved in one place: flags > environment > config file > defaults.

A face that lets the user change settings later (the web page, a server request) layers its
values on top with ``Settings.override(values, source)``: the same parsers and cross-checks,
and each value remembers that source.

Environment variables (an empty value counts as unset):

    MEMCHAT_BACKEND     local | openai | echo (fake)   MEMCHAT_BUDGET   prompt window, tokens
    MEMCHAT_MODEL       model name (openai backend)    MEMCHAT_RESERVE  tokens for the reply
    MEMCHAT_MODEL_PATH  GGUF file (local backend)      MEMCHAT_SYSTEM   system prompt
    MEMCHAT_BASE_URL    OpenAI-compatible server URL   MEMCHAT_STORE    store URL, or "none"
    MEMCHAT_API_KEY     API key                        MEMCHAT_HOME     data dir (~/.memchat)
    MEMCHAT_STRATEGY    memory strategy                MEMCHAT_CONFIG   config file path
    MEMCHAT_TIMEOUT     request timeout, seconds       MEMCHAT_MAX_RETRIES       SDK retries
    MEMCHAT_CONNECT_TIMEOUT   connect timeout          MEMCHAT_USERS    web logins "name:pw,…"
    MEMCHAT_KV_SHIFT    embedded model: shift the KV cache when memory trims (true/false)
    MEMCHAT_KV_CACHE_MB embedded model: ceiling for idle conversations' saved caches (512)
    MEMCHAT_KV_SPLICE_MB embedded model: ceiling for recalled lines read ahead (256; 0: off)
    MEMCHAT_THREADS     embedded model: CPU threads (default: every CPU it may use)
    MEMCHAT_WEIGHTS     embedded model: auto | q8_0 | f16 | original (auto: Q8_0 for the
                        shipped model, converted once into MEMCHAT_MODEL_CACHE)
    MEMCHAT_MODEL_CACHE embedded model: converted weights ($MEMCHAT_HOME/models)
    OPENAI_API_KEY, OPENAI_BASE_URL                    fallbacks for the key and the URL

The config file is TOML (default ``$MEMCHAT_HOME/config.toml``) with the same names in lower
case (``store`` for the store URL) and an optional ``[prices."model"]`` table of overrides.
Nothing is read at import: ``load_settings`` takes the flags, the environment and the config path
as arguments, so tests inject them. Every value remembers where it came from (``sources``), and a
bad value raises ConfigError naming the setting and that source. ``memchat.wiring`` builds the
backend, store, strategy and session from the result.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .core.errors import ConfigError
from .strategies import STRATEGIES, default_strategy

__all__ = [
    "BACKEND_NAMES",
    "DEFAULT_OPENAI_MODEL",
    "LOCAL_CONTEXT",
    "MAX_IDLE_SESSIONS",
    "WEB_PAGE",
    "Settings",
    "default_strategy",
    "load_settings",
    "mask_secret",
]

BACKEND_NAMES = ("local", "openai", "echo", "fake")
DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
LOCAL_CONTEXT = 8192
MAX_IDLE_SESSIONS = 256  # conversations `memchat serve` and `memchat web` keep live between turns
WEIGHTS = ("auto", "q8_0", "f16", "original")  # the embedded model's (backends/_llama_convert)
DEFAULT = "default"
WEB_PAGE = "web page"  # the source of a value set on the web app's Settings tab


@dataclass(frozen=True, repr=False)
class Settings:
    """Everything a chat needs to know; ``sources[name]`` says where each value came from."""

    backend: str = "local"
    model: str | None = None
    model_path: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    strategy: str = ""  # empty: the backend's default (``default_strategy``)
    budget: int | None = None
    reserve: int | None = None
    system: str | None = None
    store_url: str = ""
    home: str = ""
    timeout: float = 600.0
    connect_timeout: float = 5.0
    max_retries: int = 2
    users: str | None = None
    kv_shift: bool = True
    kv_cache_mb: int = 512
    kv_splice_mb: int = 256
    threads: int | None = None
    weights: str = "auto"
    model_cache: str = ""  # converted weights; default $MEMCHAT_HOME/models
    config_path: str = ""
    prices: Mapping[str, Any] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.strategy:
            object.__setattr__(self, "strategy", default_strategy(self.backend))

    @property
    def persistent(self) -> bool:
        """Whether conversations are stored (``store = "none"`` turns storage off)."""
        return self.store_url.lower() not in ("", "none")

    def source(self, name: str) -> str:
        return self.sources.get(name, DEFAULT)

    def override(self, values: Mapping[str, Any], source: str) -> Settings:
        """These settings with ``values`` on top, each remembered as coming from ``source``
        (e.g. ``WEB_PAGE``): the same parsers and cross-checks as
        ``load_settings``. ``values`` maps setting names (``budget``, ``store``, …) to raw
        values; None puts a setting back to its default (the strategy: the backend's)."""
        specs = {spec.key: spec for spec in _SPECS}
        unknown = set(values) - set(specs)
        if unknown:
            raise ConfigError(f"unknown setting(s) from {source}: {', '.join(sorted(unknown))}")
        changes: dict[str, Any] = {}
        sources = dict(self.sources)
        for key, raw in values.items():
            spec = specs[key]
            if raw is None:
                changes[spec.field] = _FIELDS[spec.field].default
                sources.pop(spec.field, None)
            else:
                changes[spec.field] = _parse(spec, raw, source)
                sources[spec.field] = source
        merged = {"budget": self.budget, "reserve": self.reserve, **changes}
        _check_reserve(merged, sources)
        return replace(self, **changes, sources=sources)

    def masked(self) -> dict[str, Any]:
        """The settings for display: API keys as ``sk-…abcd``, passwords in URLs hidden."""
        shown: dict[str, Any] = {}
        for f in fields(self):
            if f.name in ("sources", "prices"):
                continue
            value = getattr(self, f.name)
            if f.name == "api_key":
                value = mask_secret(value)
            elif f.name == "users" and value:
                value = ",".join(f"{u.partition(':')[0].strip()}:…" for u in value.split(","))
            elif f.name in ("base_url", "store_url") and value:
                value = _mask_url(value)
            shown[f.name] = value
        return shown

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.masked().items())
        return f"Settings({inner})"


def mask_secret(value: str | None) -> str | None:
    """``sk-…abcd``: enough to recognise a key, not enough to use it."""
    if not value:
        return value
    return "…" if len(value) <= 8 else f"{value[:3]}…{value[-4:]}"


def _mask_url(url: str) -> str:
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":…@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


# -- parsing ---------------------------------------------------------------------------------
def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected text")
    return value


def _name(choices: Iterable[str] | Callable[[], Iterable[str]]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        name = _text(value).strip().lower()
        valid = tuple(choices() if callable(choices) else choices)
        if name not in valid:
            raise ValueError(f"expected one of {', '.join(valid)}")
        return name

    return parse


def _number(kind: type[int] | type[float], minimum: float, inclusive: bool = False) -> Any:
    def parse(value: Any) -> int | float:
        try:
            if isinstance(value, bool) or (kind is int and isinstance(value, float)):
                raise ValueError
            number = kind(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise ValueError(f"expected {'an integer' if kind is int else 'a number'}") from None
        if number < minimum or (number == minimum and not inclusive):
            raise ValueError(f"must be {'at least' if inclusive else 'more than'} {minimum:g}")
        return number

    return parse


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = _text(value).strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _url(value: Any) -> str:
    url = _text(value).strip()
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise ValueError("expected an http(s) URL (http:// or https://)")
    return url


def _path(value: Any) -> str:
    return str(Path(_text(value)).expanduser())


@dataclass(frozen=True, slots=True)
class _Spec:
    """One setting: its config/flag key, its field, its parser and its environment variables."""

    key: str
    parse: Callable[[Any], Any]
    env: tuple[str, ...] = ()
    attr: str = ""

    @property
    def field(self) -> str:
        return self.attr or self.key


_SPECS = (
    _Spec("backend", _name(BACKEND_NAMES), ("MEMCHAT_BACKEND",)),
    _Spec("model", _text, ("MEMCHAT_MODEL",)),
    _Spec("model_path", _path, ("MEMCHAT_MODEL_PATH",)),
    _Spec("base_url", _url, ("MEMCHAT_BASE_URL", "OPENAI_BASE_URL")),
    _Spec("api_key", _text, ("MEMCHAT_API_KEY", "OPENAI_API_KEY")),
    _Spec("strategy", _name(lambda: STRATEGIES), ("MEMCHAT_STRATEGY",)),
    _Spec("budget", _number(int, 0), ("MEMCHAT_BUDGET",)),
    _Spec("reserve", _number(int, 0, inclusive=True), ("MEMCHAT_RESERVE",)),
    _Spec("system", _text, ("MEMCHAT_SYSTEM",)),
    _Spec("store", _text, ("MEMCHAT_STORE",), attr="store_url"),
    _Spec("timeout", _number(float, 0), ("MEMCHAT_TIMEOUT",)),
    _Spec("connect_timeout", _number(float, 0), ("MEMCHAT_CONNECT_TIMEOUT",)),
    _Spec("max_retries", _number(int, 0, inclusive=True), ("MEMCHAT_MAX_RETRIES",)),
    _Spec("users", _text, ("MEMCHAT_USERS",)),
    _Spec("kv_shift", _bool, ("MEMCHAT_KV_SHIFT",)),
    _Spec("kv_cache_mb", _number(int, 0, inclusive=True), ("MEMCHAT_KV_CACHE_MB",)),
    _Spec("kv_splice_mb", _number(int, 0, inclusive=True), ("MEMCHAT_KV_SPLICE_MB",)),
    _Spec("threads", _number(int, 1, inclusive=True), ("MEMCHAT_THREADS",)),
    _Spec("weights", _name(WEIGHTS), ("MEMCHAT_WEIGHTS",)),
    _Spec("model_cache", _path, ("MEMCHAT_MODEL_CACHE",)),
)
_KEYS = {s.key for s in _SPECS}
_FIELDS = {f.name: f for f in fields(Settings)}
_FLAG_ONLY = {"config", "home"}


# -- resolution ------------------------------------------------------------------------------
def load_settings(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_path: str | Path | None = None,
) -> Settings:
    """Resolve every setting: flags > environment > config file > defaults.

    ``flags`` maps setting names (``backend``, ``budget``, ``store``, ``config``, ``home``, …) to
    values; None means "not given". ``environ`` defaults to ``os.environ`` read now.
    """
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    unknown = set(given) - _KEYS - _FLAG_ONLY
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    env = {k: v for k, v in (os.environ if environ is None else environ).items() if v != ""}
    home, home_src = _home(given, env)
    path, path_src = _config_location(given, env, config_path, home)
    config = _read_config(path, required=path_src != DEFAULT)
    values: dict[str, Any] = {}
    sources = {"home": home_src, "config_path": path_src}
    for spec in _SPECS:
        found = _lookup(spec, given, env, config, path)
        if found is not None:
            raw, source = found
            values[spec.field] = _parse(spec, raw, source)
            sources[spec.field] = source
    prices = _prices(config.get("prices", {}), path)
    _derive(values, sources, home)
    return Settings(**values, home=home, config_path=str(path), prices=prices, sources=sources)


def _home(given: Mapping[str, Any], env: Mapping[str, str]) -> tuple[str, str]:
    if "home" in given:
        return _path(str(given["home"])), "flag --home"
    if "MEMCHAT_HOME" in env:
        return _path(env["MEMCHAT_HOME"]), "env MEMCHAT_HOME"
    return _path("~/.memchat"), DEFAULT


def _config_location(
    given: Mapping[str, Any], env: Mapping[str, str], explicit: str | Path | None, home: str
) -> tuple[Path, str]:
    if "config" in given:
        return Path(given["config"]).expanduser(), "flag --config"
    if explicit is not None:
        return Path(explicit).expanduser(), "argument config_path"
    if "MEMCHAT_CONFIG" in env:
        return Path(env["MEMCHAT_CONFIG"]).expanduser(), "env MEMCHAT_CONFIG"
    return Path(home) / "config.toml", DEFAULT


def _read_config(path: Path, *, required: bool) -> dict[str, Any]:
    """The config file's table; a missing default file is fine, a named one must exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config file {path} does not exist") from None
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    unknown = set(data) - _KEYS - {"prices"}
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown setting(s) {', '.join(sorted(unknown))}; "
            f"valid: {', '.join(sorted(_KEYS | {'prices'}))}"
        )
    return data


def _lookup(
    spec: _Spec,
    given: Mapping[str, Any],
    env: Mapping[str, str],
    config: Mapping[str, Any],
    path: Path,
) -> tuple[Any, str] | None:
    if spec.key in given:
        return given[spec.key], f"flag --{spec.key.replace('_', '-')}"
    for name in spec.env:
        if name in env:
            return env[name], f"env {name}"
    if spec.key in config:
        return config[spec.key], f"config {path}"
    return None


def _parse(spec: _Spec, raw: Any, source: str) -> Any:
    try:
        return spec.parse(raw)
    except ValueError as exc:
        raise ConfigError(f"invalid {spec.key} {raw!r} (from {source}): {exc}") from None


def _prices(table: Any, path: Path) -> dict[str, Any]:
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise ConfigError(f'config file {path}: [prices] must hold tables like [prices."model"]')
    return table


def _derive(values: dict[str, Any], sources: dict[str, str], home: str) -> None:
    """Defaults that depend on other settings: the backend, the OpenAI model, the store."""
    if "backend" not in values:
        if "base_url" in values:
            values["backend"] = "openai"
            sources["backend"] = f"derived from base_url ({sources['base_url']})"
        elif "model" in values and _is_openai_model(values["model"]):
            values["backend"] = "openai"
            sources["backend"] = f"derived from model ({sources['model']})"
    if values.get("backend") == "fake":
        values["backend"] = "echo"
    if values.get("backend") == "openai" and "model" not in values:
        values["model"] = DEFAULT_OPENAI_MODEL
    if "store_url" not in values:
        values["store_url"] = f"sqlite:///{Path(home) / 'memchat.db'}"
    if "model_cache" not in values:
        values["model_cache"] = str(Path(home) / "models")
    _check_reserve(values, sources)


def _check_reserve(values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
    budget, reserve = values.get("budget"), values.get("reserve")
    if budget is not None and reserve is not None and reserve >= budget:
        raise ConfigError(
            f"reserve {reserve} (from {sources.get('reserve', DEFAULT)}) must be smaller than "
            f"budget {budget} (from {sources.get('budget', DEFAULT)})"
        )


def _is_openai_model(model: str) -> bool:
    from .tokenizers import encoding_name_for

    return encoding_name_for(model)[1]
