"""Feast's Redis online store: what the writer must know about it.

Feast's Redis store keeps one hash per entity key with a ``_ts:<view>`` field and skips a write
whose event time is older OR EQUAL to it. The writer lets a row with an equal event time through
only when it wins the deterministic tie-break; :meth:`RedisOps.prepare_overwrite` then removes the
stored ``_ts:<view>`` field of those keys (one pipelined round trip) so Feast accepts the write,
and SQLite and Redis end in the same state.

The lean write path (:class:`RedisDirectWriter`) writes that same layout itself, one Lua script per
row in one pipelined round trip per batch: the script compares the row's rank with the one stored
in the hash (``_pw_rank:<view>``) and writes the features, ``_ts:<view>`` and the rank only when
the row ranks higher, atomically on the server. Feast's reads see an ordinary Feast hash. The rank
is trusted only while ``_pw_ts:<view>`` (the ``_ts`` written with it) equals ``_ts:<view>``: a hash
that something else wrote since (``feast materialize``, Feast's own writer) is ranked from its
stored values first.

The sku price history (:mod:`pricewave.feature_store.price_history`) is one sorted set per sku,
``pricewave:<project>:price_history:<sku>``, scored by event time (ms); a member is
``<event ms>:<price>``, so one event time has one member and the price round-trips exactly.

Example:
    >>> OPS.NAME
    'redis'
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pricewave.config import REDIS_PASSWORD_ENV
from pricewave.errors import StackError
from pricewave.feature_store.stores import EncodedRow, StoreUnavailableError, feast_millis

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto


def client(store: FeatureStore) -> Any:
    """The redis-py client Feast's Redis online store uses (same connection settings)."""
    provider: Any = store._get_provider()
    return provider.online_store._get_client(store.config.online_store)


def _address(store: FeatureStore) -> str:
    # Only host:port parts: the connection string also carries the password.
    parts = str(store.config.online_store.connection_string).split(",")
    return ",".join(part for part in parts if "=" not in part)


def _timeout_s(store: FeatureStore) -> float:
    """The socket timeout of the store's connection string (5 s when it sets none)."""
    for part in str(store.config.online_store.connection_string).split(","):
        name, _, value = part.partition("=")
        if name.strip() == "socket_timeout":
            try:
                return float(value)
            except ValueError:
                break
    return 5.0


def _has_password(store: FeatureStore) -> bool:
    parts = str(store.config.online_store.connection_string).split(",")
    return any(part.startswith("password=") and part != "password=" for part in parts)


# KEYS[1]: the entity's hash. ARGV: rank field, _pw_ts field, _ts field, the row's rank, its _ts
# value, the key TTL in seconds (0: none), then feature field / value pairs. Ranks compare byte by
# byte (Lua's string "<" follows the server's collation locale, which need not be bytewise).
# Returns 1 written, 0 not newer, -1 stored by something else (no rank, or _ts changed since).
_UPSERT_IF_NEWER = """
local stored = redis.call('HMGET', KEYS[1], ARGV[1], ARGV[2], ARGV[3])
local rank, ranked_ts, ts = stored[1], stored[2], stored[3]
if ts then
  if (not rank) or ranked_ts ~= ts then return -1 end
  local new = ARGV[4]
  if new == rank then return 0 end
  local newer = #new > #rank
  for i = 1, math.min(#new, #rank) do
    local a, b = string.byte(new, i), string.byte(rank, i)
    if a ~= b then newer = a > b; break end
  end
  if not newer then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[5], ARGV[1], ARGV[4], ARGV[2], ARGV[5], unpack(ARGV, 7))
local ttl = tonumber(ARGV[6])
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
return 1
"""
# KEYS[1]: the entity's hash. ARGV: rank field, _pw_ts field, _ts field, the stored row's rank.
_ADOPT_RANK = """
local ts = redis.call('HGET', KEYS[1], ARGV[3])
if not ts then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4], ARGV[2], ts)
return 1
"""


class RedisDirectWriter:
    """The lean write path on Feast's Redis layout (see the module docstring).

    Args:
        store: The open FeatureStore whose Redis to write (Feast's own client and settings).
    """

    def __init__(self, store: FeatureStore) -> None:
        from feast.infra.online_stores.helpers import compute_versioned_name

        self.store = store
        config = store.config
        self._project = config.project.encode("utf-8")
        self._versioning = config.registry.enable_online_feature_view_versioning
        self._ttl_s = int(config.online_store.key_ttl_seconds or 0)
        self._view_name = lambda view: compute_versioned_name(view, self._versioning)
        self._client = client(store)
        self._shas: dict[str, str] = {}

    def _run(self, script: str, calls: Sequence[tuple[bytes, Sequence[Any]]]) -> list[Any]:
        """``EVALSHA`` of ``script`` once per (key, args), all in ONE pipelined round trip.

        The script is loaded once per writer, and again when the server lost it (a restart): not
        with redis-py's registered scripts, whose pipelines ask ``SCRIPT EXISTS`` before every batch.
        """
        import redis.exceptions as rex

        for attempt in (1, 2):
            sha = self._shas.get(script)
            if sha is None:
                sha = self._shas[script] = self._client.script_load(script)
            try:
                with self._client.pipeline(transaction=False) as pipe:
                    for key, args in calls:
                        pipe.evalsha(sha, 1, key, *args)
                    return list(pipe.execute())
            except rex.NoScriptError:
                self._shas.pop(script, None)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _fields(self, view: FeatureView) -> tuple[str, str, str, str]:
        name = self._view_name(view)
        return name, f"_pw_rank:{name}", f"_pw_ts:{name}", f"_ts:{name}"

    def upsert_if_newer(self, view: FeatureView, rows: Sequence[EncodedRow]) -> list[bool | None]:
        """One pipelined round trip: the compare-and-set script per row."""
        if not rows:
            return []
        from feast.infra.online_stores.helpers import _mmh3
        from google.protobuf.timestamp_pb2 import Timestamp

        name, rank_field, ranked_ts_field, ts_field = self._fields(view)
        hashed = {feature: _mmh3(f"{name}:{feature}") for feature in rows[0].values}
        calls: list[tuple[bytes, Sequence[Any]]] = []
        for row in rows:
            stamp = Timestamp()
            stamp.FromDatetime(row.event_time.replace(tzinfo=UTC))  # as Feast stores it
            args: list[Any] = [rank_field, ranked_ts_field, ts_field, row.rank, stamp.SerializeToString(), self._ttl_s]
            for feature, value in row.values.items():
                args.extend((hashed[feature], value))
            calls.append((row.key + self._project, args))
        return [None if reply == -1 else bool(reply) for reply in self._run(_UPSERT_IF_NEWER, calls)]

    def adopt_ranks(self, view: FeatureView, ranks: Sequence[tuple[bytes, int, str]]) -> None:
        """Record the ranks of hashes something else wrote (pinned to their current ``_ts``)."""
        if not ranks:
            return
        _, rank_field, ranked_ts_field, ts_field = self._fields(view)
        self._run(
            _ADOPT_RANK,
            [(key + self._project, [rank_field, ranked_ts_field, ts_field, rank]) for key, _, rank in ranks],
        )

    def close(self) -> None:
        """Nothing to release: the connection pool is Feast's."""


def _hash_keys(
    store: FeatureStore, view: FeatureView, entity_keys: Sequence[EntityKeyProto]
) -> tuple[str, list[bytes]]:
    """Feast's own Redis layout, through its public helpers: the view's (versioned) name, which prefixes
    its fields (``_ts:<name>``), and each entity's hash key, the serialized entity key followed by the project."""
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.infra.online_stores.helpers import compute_versioned_name

    config = store.config
    name = compute_versioned_name(view, config.registry.enable_online_feature_view_versioning)
    project = config.project.encode("utf-8")
    version = config.entity_key_serialization_version
    keys = [serialize_entity_key(key, entity_key_serialization_version=version) + project for key in entity_keys]
    return name, keys


def _history_key(project: str, sku: str) -> str:
    return f"pricewave:{project}:price_history:{sku}"


def _decoded(member: bytes | str) -> str:
    return member.decode() if isinstance(member, bytes) else member


class RedisOps:
    """Store-specific operations for the Redis online store."""

    NAME = "redis"

    def stored_event_millis(
        self,
        store: FeatureStore,
        view: FeatureView,
        entity_keys: Sequence[EntityKeyProto],
        feast_times: Sequence[datetime | None],
    ) -> list[int | None]:
        """Feast's Redis store keeps the exact event time (``_ts:<view>``, nanoseconds): use it."""
        return [feast_millis(when) for when in feast_times]

    def after_write(
        self, store: FeatureStore, view: FeatureView, entity_keys: Sequence[EntityKeyProto], millis: Sequence[int]
    ) -> None:
        """Nothing to record: Feast stored the exact event time."""

    def prepare_overwrite(self, store: FeatureStore, view: FeatureView, entity_keys: Sequence[EntityKeyProto]) -> None:
        """Delete the stored ``_ts:<view>`` of these keys so an equal-time tie-break winner is written."""
        if not entity_keys:
            return
        view_name, keys = _hash_keys(store, view, entity_keys)
        with client(store).pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hdel(key, f"_ts:{view_name}")
            pipe.execute()

    def latest_prices_before(self, store: FeatureStore, keys: Sequence[tuple[str, int]]) -> list[float | None]:
        """One pipelined round trip: per key, the highest-scored member below its event time."""
        if not keys:
            return []
        project = store.config.project
        with client(store).pipeline(transaction=False) as pipe:
            for sku, ms in keys:
                pipe.zrevrangebyscore(_history_key(project, sku), f"({int(ms)}", "-inf", start=0, num=1)
            found = pipe.execute()
        return [float(_decoded(members[0]).split(":", 1)[1]) if members else None for members in found]

    def record_prices(self, store: FeatureStore, rows: Sequence[tuple[str, int, float]], retention_ms: int) -> None:
        """One pipelined round trip: replace each event time's member, then trim by retention."""
        if not rows:
            return
        project = store.config.project
        newest: dict[str, int] = {}
        with client(store).pipeline(transaction=False) as pipe:
            for sku, ms, price in rows:
                key = _history_key(project, sku)
                pipe.zremrangebyscore(key, int(ms), int(ms))
                pipe.zadd(key, {f"{int(ms)}:{float(price)!r}": int(ms)})
                newest[sku] = max(newest.get(sku, int(ms)), int(ms))
            for sku, ms in newest.items():
                pipe.zremrangebyscore(_history_key(project, sku), "-inf", f"({ms - retention_ms}")
            pipe.execute()

    def direct_writer(self, store: FeatureStore) -> RedisDirectWriter | None:
        """The lean path on a single Redis server (a cluster or sentinel setup goes through Feast)."""
        redis_type = getattr(store.config.online_store, "redis_type", "redis")
        if getattr(redis_type, "value", redis_type) != "redis":
            return None
        return RedisDirectWriter(store)

    def delete_rows(self, store: FeatureStore, view: FeatureView, entity_keys: Sequence[EntityKeyProto]) -> int:
        """Delete the view's fields from the keys' hashes (Feast's layout: other views' fields stay)."""
        if not entity_keys:
            return 0
        from feast.infra.online_stores.helpers import _mmh3

        name, keys = _hash_keys(store, view, entity_keys)
        fields = [f"_ts:{name}", f"_pw_rank:{name}", f"_pw_ts:{name}"]
        fields += [_mmh3(f"{name}:{feature.name}") for feature in view.features]
        with client(store).pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hdel(key, *fields)
            removed = pipe.execute()
        return sum(1 for count in removed if count)

    def check_login(self, store: FeatureStore) -> None:
        """Ping the server with the store's address and password.

        Raises:
            StackError: Redis is unreachable, requires a password that is not set, or rejects it.
        """
        import redis

        parts = str(store.config.online_store.connection_string).split(",")
        host, _, port = parts[0].rpartition(":")
        password = next((part.split("=", 1)[1] for part in parts if part.startswith("password=")), "")
        with self.translate_errors(store):
            timeout = _timeout_s(store)
            client = redis.Redis(
                host=host,
                port=int(port),
                password=password or None,
                socket_connect_timeout=timeout,
                socket_timeout=timeout,
            )
            try:
                client.ping()
            finally:
                client.close()

    @contextmanager
    def translate_errors(self, store: FeatureStore) -> Iterator[None]:
        """Turn Redis failures into :class:`StackError`.

        Unreachable, timed out (a hung server: the socket timeout of the connection string) or still
        loading its data: :class:`StoreUnavailableError`.
        """
        import redis.exceptions as rex

        address = _address(store)
        try:
            yield
        except rex.AuthenticationError as exc:
            if not _has_password(store):
                raise StackError(f"Redis at {address} requires a password ({exc}): set {REDIS_PASSWORD_ENV}") from None
            raise StackError(
                f"Redis at {address} rejected the password ({exc}): set {REDIS_PASSWORD_ENV} to the server's password"
            ) from None
        except rex.ResponseError as exc:
            if "NOAUTH" in str(exc) or "AUTH" in str(exc).upper():
                raise StackError(f"Redis at {address} requires a password ({exc}): set {REDIS_PASSWORD_ENV}") from None
            raise StackError(f"Redis at {address} failed: {exc}") from None
        except rex.BusyLoadingError as exc:
            raise StoreUnavailableError(f"Redis at {address} is loading its data ({exc}): try again shortly") from None
        except rex.ConnectionError as exc:
            raise StoreUnavailableError(
                f"cannot reach Redis at {address} ({exc}): start it ('pricewave stack up --only redis') "
                "or set PRICEWAVE_REDIS__HOST/PORT"
            ) from None
        except rex.TimeoutError as exc:
            raise StoreUnavailableError(
                f"Redis at {address} did not answer within {_timeout_s(store):g} s ({exc or 'timeout'}): "
                "is it hung or overloaded? (the limit is PRICEWAVE_REDIS__TIMEOUT_S)"
            ) from None
        except rex.RedisError as exc:
            raise StackError(f"Redis at {address} failed: {exc}") from None


OPS = RedisOps()
