"""Online-store specific parts of the writer, one module per store (``sqlite``, ``redis``).

Everything store-agnostic (ordering, tie-breaks, batching) lives in
:mod:`pricewave.feature_store.writer`; a store module only supplies what differs:

* ``stored_event_millis``: the stored event time of keys at full precision (Feast's SQLite store
  keeps whole seconds only, so the SQLite module records the exact time beside it);
* ``prepare_overwrite``: make the store accept a write whose event time EQUALS the stored one
  (the writer only asks when the incoming row wins the deterministic tie-break);
* ``after_write``: bookkeeping once Feast wrote the rows;
* ``translate_errors``: turn driver errors into one-line :class:`pricewave.errors.PricewaveError`
  (:class:`StoreUnavailableError` when the store cannot answer now: down, hung, corrupt);
* ``latest_prices_before`` / ``record_prices``: the sku price history
  (:mod:`pricewave.feature_store.price_history`), kept beside the online store;
* ``delete_rows``: remove entities' rows of one view (a shopper's profile deleted on request);
* ``direct_writer``: the lean write path, a :class:`DirectWriter` that writes Feast's own layout
  with one guarded upsert per row, the comparison done by the store itself (see
  :mod:`pricewave.feature_store.writer`), or None where the store's configuration is one it does
  not know (the writer then goes through Feast's ``write_to_online_store``).

Example:
    >>> from pricewave.feature_store.stores import ops_for_type
    >>> ops_for_type("sqlite").NAME, ops_for_type("redis").NAME
    ('sqlite', 'redis')
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from pricewave.errors import ConfigError, StackError

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto


class StoreUnavailableError(StackError):
    """The online store cannot answer now (unreachable, timed out, loading, corrupt file).

    What the streaming job degrades on (:mod:`pricewave.feature_store.degraded`); the CLI prints
    the message on one line like any :class:`StackError`.
    """


@dataclass(frozen=True)
class EncodedRow:
    """One row as the online store keeps it, with its place in the writer's total order.

    Attributes:
        key: The serialized entity key (Feast's ``serialize_entity_key``).
        values: Per feature, the serialized ``ValueProto`` Feast stores.
        protos: Per feature, the ``ValueProto`` itself.
        event_time: The event time, naive UTC (what Feast's SQLite store is given).
        event_ms: The event time in epoch milliseconds.
        rank: The row's rank: a string whose byte order is the writer's "newer" order
            (:func:`pricewave.feature_store.writer.row_rank`).
    """

    key: bytes
    values: dict[str, bytes]
    protos: dict[str, ValueProto]
    event_time: datetime
    event_ms: int
    rank: str


class DirectWriter(Protocol):
    """The lean write path of one store: one guarded upsert per row, in one round trip per batch."""

    def upsert_if_newer(self, view: FeatureView, rows: Sequence[EncodedRow]) -> list[bool | None]:
        """Write each row whose rank is above the stored one, atomically per row.

        Returns, per row: True written, False not newer than what is stored, None when the stored
        row has no rank (written by Feast itself, ``feast materialize`` or an older pricewave):
        the caller ranks it from its stored values (:meth:`adopt_ranks`) and tries again.
        """

    def adopt_ranks(self, view: FeatureView, ranks: Sequence[tuple[bytes, int, str]]) -> None:
        """Record (key, event ms, rank) for stored rows that have no rank yet (others are left)."""

    def close(self) -> None:
        """Release the connection, if the writer holds one of its own."""


class StoreOps(Protocol):
    """What the writer needs from a specific online store."""

    NAME: str

    def stored_event_millis(
        self,
        store: FeatureStore,
        view: FeatureView,
        entity_keys: Sequence[EntityKeyProto],
        feast_times: Sequence[datetime | None],
    ) -> list[int | None]:
        """Exact stored event times (epoch ms) given Feast's ``online_read`` times."""

    def prepare_overwrite(self, store: FeatureStore, view: FeatureView, entity_keys: Sequence[EntityKeyProto]) -> None:
        """Make the next write of these keys succeed although its event time equals the stored one."""

    def after_write(
        self, store: FeatureStore, view: FeatureView, entity_keys: Sequence[EntityKeyProto], millis: Sequence[int]
    ) -> None:
        """Called after Feast wrote these keys with these event times (epoch ms)."""

    def translate_errors(self, store: FeatureStore) -> AbstractContextManager[None]:
        """A context in which driver errors become :class:`pricewave.errors.PricewaveError`."""

    def latest_prices_before(self, store: FeatureStore, keys: Sequence[tuple[str, int]]) -> list[float | None]:
        """Per (sku, event ms): the sku's recorded price with the latest event time strictly before it."""

    def record_prices(self, store: FeatureStore, rows: Sequence[tuple[str, int, float]], retention_ms: int) -> None:
        """Record (sku, event ms, price) rows, replacing an entry with the same sku and event time,
        and forget a sku's entries more than ``retention_ms`` older than the newest one written."""

    def direct_writer(self, store: FeatureStore) -> DirectWriter | None:
        """The store's lean write path, or None where its configuration is not one it knows."""

    def delete_rows(self, store: FeatureStore, view: FeatureView, entity_keys: Sequence[EntityKeyProto]) -> int:
        """Remove these entities' rows of ``view`` (Feast's and pricewave's bookkeeping); how many existed."""


def ops_for_type(store_type: str) -> StoreOps:
    """The store module for an online store type (``sqlite`` or ``redis``)."""
    if store_type == "sqlite":
        from pricewave.feature_store.stores import sqlite

        return sqlite.OPS
    if store_type == "redis":
        from pricewave.feature_store.stores import redis

        return redis.OPS
    raise ConfigError(f"online store type {store_type!r} is not supported by pricewave: use 'sqlite' or 'redis'")


def ops_for(store: FeatureStore) -> StoreOps:
    """The store module for an open FeatureStore."""
    from pricewave.feature_store.store import online_store_type

    return ops_for_type(online_store_type(store))


def online_read(
    store: FeatureStore, view: FeatureView, entity_keys: Sequence[EntityKeyProto], features: Sequence[str]
) -> list[tuple[datetime | None, dict[str, ValueProto] | None]]:
    """The stored (event time, values) of many entities of one view, in ONE online-store round trip.

    Uses the provider's ``online_read`` (what ``get_online_features`` calls underneath) because
    the writer needs the raw stored values and the event timestamp at full precision.
    """
    provider: Any = store._get_provider()
    return list(provider.online_read(store.config, view, list(entity_keys), list(features)))


def feast_millis(when: datetime | None) -> int | None:
    """A Feast online-read timestamp (naive = UTC) as epoch milliseconds (event times are ms)."""
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    # Feast's Redis store returns a float-derived datetime: round, do not truncate.
    return round(when.timestamp() * 1000)


def iter_chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
