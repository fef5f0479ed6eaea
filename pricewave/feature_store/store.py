"""Open the Feast feature store of the pricewave feature repo with the configured profile.

The repo (``feature_repo/`` next to the package, unless told otherwise) holds two profiles:
``feature_store.yaml`` (embedded SQLite online store, the default) and
``feature_store.redis.yaml`` (Redis). pricewave's ``store_profile`` setting chooses
(``--profile``, ``PRICEWAVE_STORE_PROFILE`` or the YAML config); when it is empty, Feast's own
``FEAST_FS_YAML_FILE_PATH`` does, so a plain ``feast`` command and pricewave agree. The job pins
the profile, the repo and the model directory once in its driver (:func:`pinned_settings`) and
ships them to every Python worker: a TaskManager never sees the submitting shell's environment.

Feast expands ``${VAR}`` in the yaml from the environment; :func:`feast_environment` supplies the
Redis address from pricewave's settings and the password from ``PRICEWAVE_REDIS_PASSWORD`` only.
A Redis profile's connection string gets socket connect and read timeouts
(``settings.redis.timeout_s``, unless the yaml sets them): redis-py has none by default, and a hung
server blocked a call for minutes.

Example:
    >>> from pricewave.feature_store.store import profile_path, default_repo_path
    >>> profile_path(default_repo_path(), "redis").name
    'feature_store.redis.yaml'
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from pricewave.config import REDIS_PASSWORD_ENV, Settings, load_settings, mask_secrets
from pricewave.errors import ConfigError, PricewaveError, StackError, StoreBusyError
from pricewave.feature_store.stores import StoreUnavailableError

if TYPE_CHECKING:  # feast is heavy: imported when a store is opened
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

PROFILE_ENV = "FEAST_FS_YAML_FILE_PATH"
"""The one setting that selects the profile (Feast's own variable)."""
PROFILES = {"sqlite": "feature_store.yaml", "redis": "feature_store.redis.yaml"}
"""Profile name -> yaml file inside the feature repo."""
DEFAULT_REPO_PATH = Path(__file__).resolve().parents[2] / "feature_repo"
REDIS_HOST_ENV = "PRICEWAVE_REDIS__HOST"
REDIS_PORT_ENV = "PRICEWAVE_REDIS__PORT"

_VARIABLE = re.compile(r"\$(\w+|\{([^}]*)\})")
REDIS_TIMEOUT_PARAMETERS = ("socket_timeout", "socket_connect_timeout")
"""redis-py client arguments the Redis profile's connection string gets from ``settings.redis.timeout_s``."""
LOG = logging.getLogger(__name__)


def default_repo_path(settings: Settings | None = None) -> Path:
    """The feature repo: ``settings.feature_repo`` when the settings define one, else ``<repo>/feature_repo``."""
    configured = settings.feature_repo if settings is not None else ""
    return Path(configured).expanduser().resolve() if configured else DEFAULT_REPO_PATH


def profile_path(repo_path: Path, profile: str | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The yaml file of a profile.

    Args:
        repo_path: The feature repo.
        profile: ``"sqlite"``, ``"redis"`` or a yaml path (relative to the repo or absolute).
            ``None`` means ``$FEAST_FS_YAML_FILE_PATH``, else the SQLite default.
        env: The environment to read ``FEAST_FS_YAML_FILE_PATH`` from (default ``os.environ``).
    """
    env = os.environ if env is None else env
    chosen = profile or env.get(PROFILE_ENV) or PROFILES["sqlite"]
    chosen = PROFILES.get(chosen, chosen)
    path = Path(chosen).expanduser()
    return path if path.is_absolute() else repo_path / path


def feast_environment(settings: Settings, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment Feast should expand ``feature_store*.yaml`` with.

    The Redis host and port come from ``settings``; the password only from
    ``PRICEWAVE_REDIS_PASSWORD`` (empty when unset, i.e. no AUTH).
    """
    merged = dict(os.environ if env is None else env)
    merged[REDIS_HOST_ENV] = settings.redis.host
    merged[REDIS_PORT_ENV] = str(settings.redis.port)
    merged.setdefault(REDIS_PASSWORD_ENV, "")
    return merged


def feast_executable() -> str:
    """The ``feast`` command of this environment: beside the interpreter, else on ``PATH``."""
    beside = Path(sys.executable).with_name("feast")
    found = str(beside) if beside.exists() else shutil.which("feast")
    if not found:
        raise StackError("the 'feast' command is not installed: install pricewave's dependencies (feast[redis])")
    return found


def apply_repo(
    repo: str | Path,
    settings: Settings,
    profile: str | None = None,
    *,
    show_output: bool = False,
    timeout_s: float = 600,
) -> Path:
    """Run ``feast apply`` in ``repo`` with ``profile``: the one way pricewave applies a feature repo.

    Args:
        repo: The feature repo.
        settings: Settings (the Redis address the yaml expands).
        profile: ``"sqlite"``, ``"redis"`` or a yaml path; ``None``: the ``store_profile`` setting, else
            ``$FEAST_FS_YAML_FILE_PATH``, else SQLite.
        show_output: Let Feast print to the terminal (the CLI); otherwise its output is kept and the
            last lines go into the error.
        timeout_s: How long ``feast apply`` may take.

    Returns:
        The repo path.

    Raises:
        PricewaveError: ``feast apply`` failed.
    """
    repo_path = Path(repo).expanduser().resolve()
    env = feast_environment(settings)
    env[PROFILE_ENV] = str(profile_path(repo_path, profile or settings.store_profile or None))
    completed = subprocess.run([feast_executable(), "apply"], cwd=repo_path, env=env, capture_output=not show_output,
                               text=True, timeout=timeout_s, check=False)  # fmt: skip
    if completed.returncode != 0:
        tail = " | ".join((completed.stderr or completed.stdout or "").strip().splitlines()[-3:])
        raise PricewaveError(f"'feast apply' failed in {repo_path}: {tail or 'see above'}")
    return repo_path


def _expand(text: str, env: Mapping[str, str]) -> str:
    """``os.path.expandvars`` (what Feast uses) over an explicit mapping; unknown variables stay."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(2) if match.group(2) is not None else match.group(1)
        return env.get(name, match.group(0))

    return _VARIABLE.sub(replace, text)


def _unexpanded(node: Any) -> str | None:
    """The first ``$VAR`` left in a parsed config's strings (an unset variable), if any."""
    if isinstance(node, dict):
        node = list(node.values())
    if isinstance(node, list):
        for item in node:
            found = _unexpanded(item)
            if found:
                return found
        return None
    match = _VARIABLE.search(node) if isinstance(node, str) else None
    return (match.group(2) or match.group(1)) if match else None


def with_timeouts(connection_string: str, timeout_s: float) -> str:
    """A Redis connection string with socket connect and read timeouts, unless it sets them already.

    Feast's Redis store passes the ``key=value`` parts of its connection string to ``redis.Redis``.

    Example:
        >>> with_timeouts("127.0.0.1:6379,password=", 2.0)
        '127.0.0.1:6379,password=,socket_timeout=2.0,socket_connect_timeout=2.0'
        >>> with_timeouts("h:1,socket_timeout=5", 2.0)
        'h:1,socket_timeout=5,socket_connect_timeout=2.0'
    """
    present = {part.split("=", 1)[0].strip() for part in connection_string.split(",") if "=" in part}
    added = [f"{name}={float(timeout_s)!r}" for name in REDIS_TIMEOUT_PARAMETERS if name not in present]
    return ",".join([connection_string, *added])


def _first_problem(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            first = errors()[0]
            where = ".".join(str(part) for part in first.get("loc", ())) or "(root)"
            return f"{where}: {first.get('msg')}"
        except (IndexError, TypeError, AttributeError):
            pass
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def load_repo_config(
    repo_path: Path,
    profile: str | None = None,
    settings: Settings | None = None,
    env: Mapping[str, str] | None = None,
    *,
    client_timeouts: bool = False,
) -> RepoConfig:
    """Read and validate a profile's ``feature_store.yaml`` the way Feast does.

    Args:
        repo_path: The feature repo.
        profile: See :func:`profile_path`.
        settings: pricewave settings (Redis address, timeout); loaded when omitted.
        env: The environment to expand the yaml with (default ``os.environ``).
        client_timeouts: Add ``settings.redis.timeout_s`` as socket timeouts to a Redis
            connection string (:func:`with_timeouts`; what :func:`open_store` does).

    Raises:
        ConfigError: The file is missing, not YAML, uses an unset variable, or is not a valid Feast
            config. The message names the file and the first problem.
    """
    from feast.repo_config import RepoConfig

    settings = settings or load_settings()
    path = profile_path(repo_path, profile or settings.store_profile or None, env)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(
            f"feature store config {path} does not exist: choose a profile in {sorted(PROFILES)} "
            f"or point {PROFILE_ENV} at an existing yaml"
        ) from None
    expanded = _expand(text, feast_environment(settings, env))
    try:
        raw: Any = yaml.safe_load(expanded)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"invalid feature_store.yaml {path}: not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise ConfigError(
            f"invalid feature_store.yaml {path}: must be a mapping (project, registry, online_store, ...)"
        )
    unset = _unexpanded(raw)
    if unset:
        raise ConfigError(f"{path} uses ${{{unset}}} but it is not set: export {unset} (see feature_repo/README.md)")
    online = raw.get("online_store")
    if client_timeouts and isinstance(online, dict) and online.get("type") == "redis":
        connection = str(online.get("connection_string", "localhost:6379"))
        raw["online_store"] = {**online, "connection_string": with_timeouts(connection, settings.redis.timeout_s)}
    try:
        config = RepoConfig(**raw)
    except Exception as exc:  # pydantic.ValidationError, FeastConfigError, unknown store type, ...
        raise ConfigError(f"invalid feature_store.yaml {path}: {_first_problem(exc)}") from None
    config.repo_path = repo_path
    return config


def _registry_file(config: RepoConfig, repo_path: Path) -> Path | None:
    registry = config.registry
    registry_path = getattr(registry, "path", None)
    if not registry_path or "://" in str(registry_path) or getattr(registry, "registry_type", "file") != "file":
        return None
    path = Path(registry_path)
    return path if path.is_absolute() else repo_path / path


def open_store(
    settings: Settings | None = None,
    *,
    repo_path: str | Path | None = None,
    profile: str | None = None,
    require_applied: bool = True,
    tolerate_outage: bool = False,
) -> FeatureStore:
    """Open the FeatureStore of the feature repo with the configured profile.

    Args:
        settings: pricewave settings (Redis address); loaded when omitted.
        repo_path: The feature repo; default :func:`default_repo_path`.
        profile: ``"sqlite"``, ``"redis"`` or a yaml path; default the ``store_profile`` setting, else
            ``$FEAST_FS_YAML_FILE_PATH``, else SQLite.
        require_applied: Fail with a clear message when ``feast apply`` has not run yet.
        tolerate_outage: Log, instead of raising, that the online store cannot be reached or read
            now (Redis down, a corrupt SQLite file): the streaming job's workers open the store
            this way and degrade until it answers (:mod:`pricewave.feature_store.degraded`).

    Raises:
        ConfigError: The repo or its config is missing or invalid, or it was never applied.
        StackError: The Redis profile's server is unreachable or refuses the password, or the
            SQLite file cannot be read (unless ``tolerate_outage``).
    """
    from feast import FeatureStore

    settings = settings or load_settings()
    repo = Path(repo_path).expanduser().resolve() if repo_path else default_repo_path(settings)
    if not repo.is_dir():
        raise ConfigError(f"feature repo {repo} does not exist")
    config = load_repo_config(repo, profile, settings, client_timeouts=True)
    registry = _registry_file(config, repo)
    if require_applied and registry is not None and not registry.exists():
        raise ConfigError(f"feature repo {repo} has not been applied (no {registry}): run 'pricewave features apply'")
    store = FeatureStore(repo_path=str(repo), config=config)
    LOG.info("feature repo %s, online store %s", repo, online_store_type(store))
    try:
        _check_online(store, registry)
    except (StoreUnavailableError, StoreBusyError) as exc:  # a wrong password is no outage: it raises
        if not tolerate_outage:
            raise
        LOG.warning("online store not available when opened, continuing degraded: %s", mask_secrets(str(exc)))
    return store


def _check_online(store: FeatureStore, registry: Path | None) -> None:
    """Log in to Redis / create missing SQLite tables; store failures become StackError."""
    if online_store_type(store) == "redis":
        from pricewave.feature_store.stores.redis import OPS

        OPS.check_login(store)  # a missing or wrong password: one line now, not on the first read
    elif online_store_type(store) == "sqlite":
        from pricewave.feature_store.stores.sqlite import OPS as SQLITE
        from pricewave.feature_store.stores.sqlite import create_missing_tables, use_write_ahead_log

        with SQLITE.translate_errors(store):  # a corrupt file: one line, not a raw DatabaseError
            if registry is None or registry.exists():
                create_missing_tables(store)
            use_write_ahead_log(store)


def pinned_settings(settings: Settings, profile: str | None = None) -> Settings:
    """The settings with the feature repo, store profile and model directory as absolute paths.

    What a process elsewhere (a TaskManager's Python worker, a driver in a temporary folder) needs
    to open the same store and models as this one, whatever its working directory and environment.

    Example:
        >>> from pricewave.config import load_settings
        >>> pinned = pinned_settings(load_settings(env={}), "redis")
        >>> Path(pinned.store_profile).name, Path(pinned.feature_repo).is_absolute()
        ('feature_store.redis.yaml', True)
    """
    repo = default_repo_path(settings)
    chosen = profile_path(repo, profile or settings.store_profile or None)
    models = settings.models.model_copy(update={"model_dir": str(settings.model_dir)})
    return settings.model_copy(update={"feature_repo": str(repo), "store_profile": str(chosen), "models": models})


def online_store_type(store: FeatureStore) -> str:
    """``"sqlite"``, ``"redis"``, ... for an open store."""
    online = store.config.online_store
    return str(online if isinstance(online, str) else getattr(online, "type", "sqlite"))
