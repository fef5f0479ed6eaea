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
* The sku price history (:mod:`pricewave.feature_store.price_history`) is the table
  ``pricewave_price_history`` in the same file, keyed by (project, sku, event time).
* :func:`use_write_ahead_log` switches the file to write-ahead logging when the store is opened,
  so that reads never wait for writes, and :func:`create_missing_tables` recreates the tables of a
  deleted file.

Example:
    >>> OPS.NAME
    'sqlite'
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pricewave.errors import StackError, StoreBusyError
from pricewave.feature_store.stores import StoreUnavailableError, feast_millis, iter_chunks

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto

SIDE_TABLE = "pricewave_event_time"
_CREATE = (
    f"CREATE TABLE IF NOT EXISTS {SIDE_TABLE} "
    "(feature_view TEXT NOT NULL, entity_key BLOB NOT NULL, event_ms INTEGER NOT NULL, "
    "PRIMARY KEY (feature_view, entity_key))"
)
HISTORY_TABLE = "pricewave_price_history"
_CREATE_HISTORY = (
    f"CREATE TABLE IF NOT EXISTS {HISTORY_TABLE} "
    "(project TEXT NOT NULL, sku TEXT NOT NULL, event_ms INTEGER NOT NULL, price REAL NOT NULL, "
    "PRIMARY KEY (project, sku, event_ms))"
)


def database_path(store: FeatureStore) -> Path:
    """The SQLite file of the online store."""
    path = Path(store.config.online_store.path)
    return path if path.is_absolute() else Path(store.repo_path) / path


def use_write_ahead_log(store: FeatureStore) -> None:
    """Switch the store's file to write-ahead logging, once (the mode persists in the file).

    Readers then never wait for a writer's commit, and Feast's own connections (5 s busy timeout)
    follow. In the default rollback-journal mode, with the job's pushes, the pricers' reads and the
    price history on one file, Feast failed with "database is locked" under load. Switching needs
    the file to itself: ``open_store`` calls this before a job starts its workers; on a file
    already in WAL mode it is a no-op that takes no lock, and on a busy file it leaves the mode as
    it is (the next open tries again).
    """
    path = database_path(store)
    if not path.exists():
        return
    with closing(sqlite3.connect(path, timeout=5)) as connection, suppress(sqlite3.OperationalError):
        connection.execute("PRAGMA journal_mode=WAL")


def create_missing_tables(store: FeatureStore) -> list[str]:
    """Create the online tables of registered feature views that the file lacks; returns their names.

    A deleted or replaced database file (say, to start over with no prices) leaves the registry
    as it was, so ``feast apply`` sees no change and creates nothing: every write then failed with
    "no such table". Feast's own ``update`` creates them (``CREATE TABLE IF NOT EXISTS``).
    """
    from feast.infra.online_stores.sqlite import SqliteOnlineStore

    views = {_table(store, view): view for view in store.list_feature_views()}
    path = database_path(store)
    existing: set[str] = set()
    if path.exists():
        with closing(sqlite3.connect(path, timeout=5)) as connection:
            existing = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    missing = sorted(set(views) - existing)
    if missing:
        online_store = SqliteOnlineStore()
        try:
            online_store.update(store.config, [], [views[name] for name in missing], [], [], partial=True)
        finally:
            if online_store._conn is not None:  # Feast keeps the connection for its next call
                online_store._conn.close()
    return missing


def _connect(store: FeatureStore) -> sqlite3.Connection:
    connection = sqlite3.connect(database_path(store), timeout=30)
    connection.execute(_CREATE)
    connection.execute(_CREATE_HISTORY)
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

    def latest_prices_before(self, store: FeatureStore, keys: Sequence[tuple[str, int]]) -> list[float | None]:
        """One indexed lookup per key (the primary key orders a sku's entries by event time)."""
        if not keys:
            return []
        project = store.config.project
        query = (
            f"SELECT price FROM {HISTORY_TABLE} WHERE project = ? AND sku = ? AND event_ms < ? "
            "ORDER BY event_ms DESC LIMIT 1"
        )
        with closing(_connect(store)) as connection:
            found = [connection.execute(query, (project, sku, int(ms))).fetchone() for sku, ms in keys]
        return [float(row[0]) if row else None for row in found]

    def record_prices(self, store: FeatureStore, rows: Sequence[tuple[str, int, float]], retention_ms: int) -> None:
        """Upsert the rows, then drop entries older than the retention, in one transaction."""
        if not rows:
            return
        project = store.config.project
        newest: dict[str, int] = {}
        for sku, ms, _ in rows:
            newest[sku] = max(newest.get(sku, ms), int(ms))
        with closing(_connect(store)) as connection, connection:
            connection.executemany(
                f"INSERT INTO {HISTORY_TABLE} (project, sku, event_ms, price) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(project, sku, event_ms) DO UPDATE SET price = excluded.price",
                [(project, sku, int(ms), float(price)) for sku, ms, price in rows],
            )
            connection.executemany(
                f"DELETE FROM {HISTORY_TABLE} WHERE project = ? AND sku = ? AND event_ms < ?",
                [(project, sku, ms - retention_ms) for sku, ms in newest.items()],
            )

    @contextmanager
    def translate_errors(self, store: FeatureStore) -> Iterator[None]:
        """Turn SQLite failures into :class:`StackError`.

        Locked past the busy timeout: :class:`StoreBusyError`. A file that is not a database or is
        damaged: :class:`StoreUnavailableError`, whose message says how to start over.
        """
        try:
            yield
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreBusyError(f"SQLite online store {database_path(store)}: {exc}") from None
            hint = " (run 'pricewave features apply' first)" if "no such table" in str(exc) else ""
            raise StackError(f"SQLite online store {database_path(store)}: {exc}{hint}") from None
        except sqlite3.DatabaseError as exc:  # "file is not a database", "database disk image is malformed"
            raise StoreUnavailableError(corrupt_message(database_path(store), exc)) from None


def corrupt_message(path: Path, exc: BaseException) -> str:
    """What to do about an unreadable SQLite online store file."""
    return (
        f"SQLite online store {path} is corrupt ({exc}): stop the job, move the file aside, run "
        "'pricewave features apply' (recreates the tables) and 'pricewave catalog load <file>', then start "
        "the job again (prices are rewritten as it runs)"
    )


OPS = SqliteOps()
