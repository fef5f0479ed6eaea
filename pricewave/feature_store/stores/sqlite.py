"""Feast's SQLite online store: what the writer must know about it.

* Feast's SQLite store upserts every row it is given, without comparing event times: ordering is
  entirely the writer's job (pre-read + filter).
* It stores event times as whole SECONDS (its sqlite3 datetime adapter is ``int(ts.timestamp())``),
  while event times are epoch milliseconds. To order rows within a second the same way as on Redis,
  this module keeps the exact millisecond event time of every key it wrote in a side table,
  ``pricewave_event_time``, in the same database file. A side-table entry that disagrees with
  Feast's second (a row written by something else, e.g. ``feast materialize``) is ignored and the
  start of Feast's second is used instead.
* An equal event time is overwritten as-is, so a tie-break winner needs no preparation.

Example:
    >>> OPS.NAME
    'sqlite'
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pricewave.errors import StackError
from pricewave.feature_store.stores import feast_millis, iter_chunks

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto

SIDE_TABLE = "pricewave_event_time"
_CREATE = (
    f"CREATE TABLE IF NOT EXISTS {SIDE_TABLE} "
    "(feature_view TEXT NOT NULL, entity_key BLOB NOT NULL, event_ms INTEGER NOT NULL, "
    "PRIMARY KEY (feature_view, entity_key))"
)


def database_path(store: FeatureStore) -> Path:
    """The SQLite file of the online store."""
    path = Path(store.config.online_store.path)
    return path if path.is_absolute() else Path(store.repo_path) / path


def _connect(store: FeatureStore) -> sqlite3.Connection:
    connection = sqlite3.connect(database_path(store), timeout=30)
    connection.execute(_CREATE)
    return connection


def _table(store: FeatureStore, view: FeatureView) -> str:
    return f"{store.config.project}_{view.name}"


def _serialized(store: FeatureStore, entity_keys: Sequence[EntityKeyProto]) -> list[bytes]:
    from feast.infra.key_encoding_utils import serialize_entity_key

    version = store.config.entity_key_serialization_version
    return [serialize_entity_key(key, entity_key_serialization_version=version) for key in entity_keys]


class SqliteOps:
    """Store-specific operations for the SQLite online store."""

    NAME = "sqlite"

    def stored_event_millis(
        self,
        store: FeatureStore,
        view: FeatureView,
        entity_keys: Sequence[EntityKeyProto],
        feast_times: Sequence[datetime | None],
    ) -> list[int | None]:
        """Feast's whole-second times refined to milliseconds from the side table."""
        coarse = [feast_millis(when) for when in feast_times]
        wanted = [key for key, ms in zip(_serialized(store, entity_keys), coarse, strict=True) if ms is not None]
        exact: dict[bytes, int] = {}
        if wanted:
            with closing(_connect(store)) as connection:
                for chunk in iter_chunks(wanted, 5_000):
                    marks = ",".join("?" * len(chunk))
                    rows = connection.execute(
                        f"SELECT entity_key, event_ms FROM {SIDE_TABLE} "
                        f"WHERE feature_view = ? AND entity_key IN ({marks})",
                        (_table(store, view), *chunk),
                    )
                    exact.update((bytes(key), int(ms)) for key, ms in rows)
        refined: list[int | None] = []
        for key, ms in zip(_serialized(store, entity_keys), coarse, strict=True):
            precise = exact.get(key)
            # Trust the side table only when it describes the row Feast holds (same second).
            refined.append(precise if ms is not None and precise is not None and precise // 1000 == ms // 1000 else ms)
        return refined

    def prepare_overwrite(self, store: FeatureStore, view: FeatureView, entity_keys: Sequence[EntityKeyProto]) -> None:
        """Nothing to do: the SQLite upsert overwrites equal event times."""

    def after_write(
        self, store: FeatureStore, view: FeatureView, entity_keys: Sequence[EntityKeyProto], millis: Sequence[int]
    ) -> None:
        """Record the exact millisecond event time of the keys just written."""
        rows = [
            (_table(store, view), key, int(ms)) for key, ms in zip(_serialized(store, entity_keys), millis, strict=True)
        ]
        if not rows:
            return
        with closing(_connect(store)) as connection, connection:
            connection.executemany(
                f"INSERT INTO {SIDE_TABLE} (feature_view, entity_key, event_ms) VALUES (?, ?, ?) "
                "ON CONFLICT(feature_view, entity_key) DO UPDATE SET event_ms = excluded.event_ms",
                rows,
            )

    @contextmanager
    def translate_errors(self, store: FeatureStore) -> Iterator[None]:
        """Turn SQLite failures into :class:`StackError`."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            hint = " (run 'pricewave features apply' first)" if "no such table" in str(exc) else ""
            raise StackError(f"SQLite online store {database_path(store)}: {exc}{hint}") from None


OPS = SqliteOps()
