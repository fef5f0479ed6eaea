"""Feast's Redis online store: what the writer must know about it.

Feast's Redis store keeps one hash per entity key with a ``_ts:<view>`` field and skips a write
whose event time is older OR EQUAL to it. The writer lets a row with an equal event time through
only when it wins the deterministic tie-break; :meth:`RedisOps.prepare_overwrite` then removes the
stored ``_ts:<view>`` field of those keys (one pipelined round trip) so Feast accepts the write,
and SQLite and Redis end in the same state.

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
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pricewave.config import REDIS_PASSWORD_ENV
from pricewave.errors import StackError
from pricewave.feature_store.stores import StoreUnavailableError, feast_millis

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
        from feast.infra.key_encoding_utils import serialize_entity_key
        from feast.infra.online_stores.helpers import compute_versioned_name

        config = store.config
        # Feast's own Redis layout, through its public helpers: the hash key is the serialized
        # entity key followed by the project, the event time field ``_ts:<view name>``.
        view_name = compute_versioned_name(view, config.registry.enable_online_feature_view_versioning)
        project = config.project.encode("utf-8")
        version = config.entity_key_serialization_version
        with client(store).pipeline(transaction=False) as pipe:
            for entity_key in entity_keys:
                key = serialize_entity_key(entity_key, entity_key_serialization_version=version) + project
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
