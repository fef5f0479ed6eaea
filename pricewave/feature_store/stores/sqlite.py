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
* The lean write path (:class:`SqliteDirectWriter`) keeps one connection per writer and writes
  Feast's table directly: per batch one ``BEGIN IMMEDIATE`` transaction reads the stored ranks of
  the batch's keys (the side table's ``rank`` column) and upserts the rows that rank higher, side
  table and feature rows together. Holding the write lock makes each comparison and its write
  atomic, so two writers of one key cannot interleave. A rank is trusted only while Feast's
  stored second agrees with the side table's event time; a row that something else wrote since
  (``feast materialize``, Feast's own writer) is ranked from its stored values first.
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

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pricewave.errors import StackError, StoreBusyError
from pricewave.feature_store.stores import EncodedRow, StoreUnavailableError, feast_millis, iter_chunks

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto

SIDE_TABLE = "pricewave_event_time"
_CREATE = (
    f"CREATE TABLE IF NOT EXISTS {SIDE_TABLE} "
    "(feature_view TEXT NOT NULL, entity_key BLOB NOT NULL, event_ms INTEGER NOT NULL, rank TEXT, "
    "PRIMARY KEY (feature_view, entity_key))"
)
_FEAST_COLUMNS = frozenset({"entity_key", "feature_name", "value", "value_text", "event_ts", "created_ts"})
"""The columns of Feast's SQLite feature table that the lean path writes (Feast 0.66+ layout)."""
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
    _create_side_tables(connection)
    return connection


def _create_side_tables(connection: sqlite3.Connection) -> None:
    connection.execute(_CREATE)
    connection.execute(_CREATE_HISTORY)
    columns = {row[1] for row in connection.execute(f"PRAGMA table_info({SIDE_TABLE})")}
    if "rank" not in columns:  # a file written before the lean path
        with suppress(sqlite3.OperationalError):  # another connection added it first
            connection.execute(f"ALTER TABLE {SIDE_TABLE} ADD COLUMN rank TEXT")


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
            # Feast wrote these rows: their rank is no longer the one recorded (the lean path ranks
            # them again from their stored values).
            connection.executemany(
                f"INSERT INTO {SIDE_TABLE} (feature_view, entity_key, event_ms) VALUES (?, ?, ?) "
                "ON CONFLICT(feature_view, entity_key) DO UPDATE SET event_ms = excluded.event_ms, rank = NULL",
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

    def direct_writer(self, store: FeatureStore) -> SqliteDirectWriter | None:
        """The lean path, unless the store is configured for vectors or numeric value columns."""
        config = store.config.online_store
        if getattr(config, "vector_enabled", False) or getattr(config, "enable_openai_compatible_store", False):
            return None
        return SqliteDirectWriter(store)

    def delete_rows(self, store: FeatureStore, view: FeatureView, entity_keys: Sequence[EntityKeyProto]) -> int:
        """Delete the keys' rows from Feast's table of ``view`` and from the side table, in one transaction."""
        from feast.infra.online_stores.helpers import compute_table_id

        keys = _serialized(store, entity_keys)
        if not keys:
            return 0
        feast_table = compute_table_id(
            store.config.project, view, store.config.registry.enable_online_feature_view_versioning
        )
        found = 0
        with closing(_connect(store)) as connection, connection:
            for chunk in iter_chunks(keys, 5_000):
                marks = ",".join("?" * len(chunk))
                found += connection.execute(
                    f"SELECT COUNT(DISTINCT entity_key) FROM {feast_table} WHERE entity_key IN ({marks})", chunk
                ).fetchone()[0]
                connection.execute(f"DELETE FROM {feast_table} WHERE entity_key IN ({marks})", chunk)
                connection.execute(
                    f"DELETE FROM {SIDE_TABLE} WHERE feature_view = ? AND entity_key IN ({marks})",
                    (_table(store, view), *chunk),
                )
        return int(found)

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


def feast_seconds(event_ms: int) -> int:
    """The event time Feast's SQLite store records for an epoch-ms time (its adapter: whole seconds
    of the naive UTC datetime, as ``datetime.timestamp`` reads it)."""
    naive = datetime.fromtimestamp(event_ms / 1000, UTC).replace(tzinfo=None)
    return int(naive.timestamp())


class SqliteDirectWriter:
    """The lean write path on Feast's SQLite layout: one connection, one transaction per batch.

    Args:
        store: The open FeatureStore whose file to write.
    """

    def __init__(self, store: FeatureStore) -> None:
        import feast.infra.online_stores.sqlite  # noqa: F401  (registers the datetime adapter Feast stores with)
        from feast.infra.online_stores.helpers import compute_table_id

        self.store = store
        self.path = database_path(store)
        self._connection: sqlite3.Connection | None = None
        self._seen: tuple[int | None, int | None] = (None, None)
        self._checked: set[str] = set()
        versioning = store.config.registry.enable_online_feature_view_versioning
        self._feast_table = lambda view: compute_table_id(store.config.project, view, versioning)

    def _files(self) -> tuple[int | None, int | None]:
        """The inodes of the database file and its write-ahead log (None: absent)."""

        def inode(path: Path) -> int | None:
            try:
                return os.stat(path).st_ino
            except FileNotFoundError:
                return None

        return inode(self.path), inode(self.path.with_name(self.path.name + "-wal"))

    def _open(self) -> sqlite3.Connection:
        """The writer's connection; a new one when the files changed under it.

        A file moved aside and recreated, or a write-ahead log deleted beside an open connection,
        would leave the connection writing where no reader looks (it keeps its own descriptors):
        the inodes it saw after its last write must still be there.
        """
        database, log = self._files()
        if self._connection is not None and database == self._seen[0] and (self._seen[1] in (None, log)):
            return self._connection
        self.close()
        connection = sqlite3.connect(self.path, timeout=5, isolation_level=None, check_same_thread=False)
        try:
            # In write-ahead-log mode NORMAL syncs at checkpoints, not at every commit: a crash of
            # the process loses nothing, a power cut may lose the last writes (the job writes them
            # again from its replay); a sync per commit cost ~4 ms per batch.
            connection.execute("PRAGMA synchronous=NORMAL")
            _create_side_tables(connection)
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        self._seen = self._files()
        self._checked.clear()
        return connection

    def _check_layout(self, connection: sqlite3.Connection, table: str) -> None:
        if table in self._checked:
            return
        columns = {row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')}
        if not columns:
            raise sqlite3.OperationalError(f"no such table: {table}")
        if not columns >= _FEAST_COLUMNS:
            raise StackError(
                f"SQLite online store {self.path}: table {table} lacks Feast's columns "
                f"{sorted(_FEAST_COLUMNS - columns)}: run 'pricewave features apply'"
            )
        self._checked.add(table)

    def upsert_if_newer(self, view: FeatureView, rows: Sequence[EncodedRow]) -> list[bool | None]:
        """One transaction: the stored ranks of the batch's keys, then the rows that rank higher."""
        if not rows:
            return []
        connection = self._open()
        table, side_view = self._feast_table(view), _table(self.store, view)
        self._check_layout(connection, table)
        try:
            with _transaction(connection):  # the write lock: nobody writes between the read and the write
                outcome = self._upsert(connection, table, side_view, rows)
            self._seen = self._files()  # the log exists once the connection wrote
            return outcome
        except sqlite3.Error:
            self.close()  # a locked, replaced or damaged file: start from a fresh connection
            raise

    def _upsert(
        self, connection: sqlite3.Connection, table: str, side_view: str, rows: Sequence[EncodedRow]
    ) -> list[bool | None]:
        from feast.infra.online_stores.helpers import extract_text_and_num

        keys = list(dict.fromkeys(row.key for row in rows))
        ranked: dict[bytes, tuple[int, str | None]] = {}
        feast_second: dict[bytes, int] = {}
        for chunk in iter_chunks(keys, 5_000):
            marks = ",".join("?" * len(chunk))
            for key, event_ms, rank in connection.execute(
                f"SELECT entity_key, event_ms, rank FROM {SIDE_TABLE} "
                f"WHERE feature_view = ? AND entity_key IN ({marks})",
                (side_view, *chunk),
            ):
                ranked[bytes(key)] = (int(event_ms), rank)
            for key, second in connection.execute(
                f'SELECT entity_key, MAX(event_ts) FROM "{table}" WHERE entity_key IN ({marks}) GROUP BY entity_key',
                chunk,
            ):
                feast_second[bytes(key)] = int(second) if second is not None else -1
        outcome: list[bool | None] = []
        winners: list[EncodedRow] = []
        for row in rows:
            if row.key not in feast_second:
                won: bool | None = True  # nothing stored
            else:
                event_ms, rank = ranked.get(row.key, (None, None))
                if rank is None or event_ms is None or feast_seconds(event_ms) != feast_second[row.key]:
                    won = None  # stored by something else: rank it from its values first
                else:
                    won = row.rank > rank
            outcome.append(won)
            if won:
                winners.append(row)
        if winners:
            connection.executemany(
                f"INSERT INTO {SIDE_TABLE} (feature_view, entity_key, event_ms, rank) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(feature_view, entity_key) DO UPDATE SET event_ms = excluded.event_ms, "
                "rank = excluded.rank",
                [(side_view, row.key, row.event_ms, row.rank) for row in winners],
            )
            connection.executemany(
                f'INSERT INTO "{table}" (entity_key, feature_name, value, value_text, event_ts, created_ts) '
                "VALUES (?, ?, ?, ?, ?, NULL) ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
                "value = excluded.value, value_text = excluded.value_text, event_ts = excluded.event_ts, "
                "created_ts = excluded.created_ts",
                [
                    (row.key, name, value, extract_text_and_num(row.protos[name], False)[0], row.event_time)
                    for row in winners
                    for name, value in row.values.items()
                ],
            )
        return outcome

    def adopt_ranks(self, view: FeatureView, ranks: Sequence[tuple[bytes, int, str]]) -> None:
        """Record the ranks of rows something else stored (their event ms as the writer read them)."""
        if not ranks:
            return
        connection = self._open()
        side_view = _table(self.store, view)
        try:
            with _transaction(connection):
                connection.executemany(
                    f"INSERT INTO {SIDE_TABLE} (feature_view, entity_key, event_ms, rank) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(feature_view, entity_key) DO UPDATE SET event_ms = excluded.event_ms, "
                    "rank = excluded.rank",
                    [(side_view, key, event_ms, rank) for key, event_ms, rank in ranks],
                )
        except sqlite3.Error:
            self.close()
            raise

    def close(self) -> None:
        """Close the connection (a later write opens a new one)."""
        if self._connection is not None:
            with suppress(sqlite3.Error):
                self._connection.close()
        self._connection = None
        self._seen = (None, None)


@contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        with suppress(sqlite3.Error):
            connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def corrupt_message(path: Path, exc: BaseException) -> str:
    """What to do about an unreadable SQLite online store file."""
    return (
        f"SQLite online store {path} is corrupt ({exc}): stop the job, move the file aside, run "
        "'pricewave features apply' (recreates the tables) and 'pricewave catalog load <file>', then start "
        "the job again (prices are rewritten as it runs)"
    )


OPS = SqliteOps()
