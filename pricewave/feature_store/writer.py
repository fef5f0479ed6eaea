"""THE one online-store writer: batched, ordered by event time, safe to repeat.

Every online write (streaming job, ``pricewave features push``, tests) goes through
:class:`FeatureWriter`. A batch of rows for one feature view becomes:

1. one normalization pass (epoch-millis -> UTC timestamps, only the view's columns, user keys
   checked to be pseudonymous),
2. a collapse of rows sharing an entity key to the newest one,
3. ONE online read of the stored event time (and values) of the batch's keys,
4. a drop of every row that is not newer than what is stored,
5. ONE ``FeatureStore.write_to_online_store`` call with what is left.

"Newer" is a total order, identical for every store: the event time first, then, for equal
event times, the tie-break columns the view has (``decision_time``, then ``decision_id``), then
a digest of the stored representation of all feature values. Consequences:

* an older event time never overwrites a newer one (Feast's SQLite store would; its Redis store
  refuses older or EQUAL times, so a tie-break winner is let through by
  :mod:`pricewave.feature_store.stores.redis`), and SQLite and Redis reach the SAME final state;
* shuffled, reversed or replayed batches leave the same state: the final value of a key is the
  maximum of all rows ever written for it, whatever their order.

The read-then-write is not atomic: one writer per key at a time (the streaming job partitions by
key) is assumed.

Example:
    >>> from pricewave.feature_store import open_store, FeatureWriter   # doctest: +SKIP
    >>> writer = FeatureWriter(open_store())                             # doctest: +SKIP
    >>> writer.write("sku_catalog", catalog_df)                          # doctest: +SKIP
    WriteResult(view='sku_catalog', received=1000, written=1000, stale=0, collapsed=0)
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa

from pricewave.errors import ConfigError, DataError, StoreBusyError
from pricewave.feature_store.stores import StoreOps, iter_chunks, online_read, ops_for
from pricewave.privacy import USER_KEY_PATTERN

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto
    from feast.value_type import ValueType

TIE_BREAK_COLUMNS = ("decision_time", "decision_id")
"""Columns that order two rows with the same key and event time, when the view has them."""
USER_KEY_COLUMN = "user_key"
PRICE_DECISION_VIEWS = {"sku": "sku_price", "offer": "user_offer"}
"""Price-decision ``kind`` -> the feature view it is written to."""
READ_CHUNK = 5_000
"""Keys per online read (SQLite binds one parameter per key)."""
BUSY_RETRY_PAUSES_S = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
"""Pauses between tries of a write the store refused as busy (SQLite's lock): about 30 s in all."""

Rows: TypeAlias = pd.DataFrame | pa.Table | Sequence[Mapping[str, Any]]
_Rank = tuple[Any, ...]


@dataclass(frozen=True)
class WriteResult:
    """What one :meth:`FeatureWriter.write` did.

    Attributes:
        view: The feature view written.
        received: Rows passed in.
        written: Rows written to the online store (at most one per entity key).
        stale: Rows dropped because the store already held a row as new or newer (replays land here).
        collapsed: Rows dropped because a newer row of the same key was in the same batch.
    """

    view: str
    received: int
    written: int
    stale: int
    collapsed: int


@dataclass(frozen=True)
class _View:
    view: FeatureView
    join_keys: list[str]
    key_types: list[ValueType]
    features: list[str]
    feature_types: dict[str, ValueType]
    timestamp_columns: list[str]
    event_time: str
    tie_break: list[str]


def _to_frame(rows: Rows) -> pd.DataFrame:
    if isinstance(rows, pd.DataFrame):
        return rows
    if isinstance(rows, pa.Table | pa.RecordBatch):
        return rows.to_pandas()
    return pd.DataFrame(list(rows))


def to_utc(column: pd.Series, name: str, view: str) -> pd.Series:
    """Epoch milliseconds (ints), datetimes or ISO strings -> ``datetime64[ns, UTC]``."""
    try:
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            converted = pd.to_datetime(column, unit="ms", utc=True)
        else:
            converted = pd.to_datetime(column, utc=True)
    except (ValueError, TypeError, OverflowError) as exc:
        raise DataError(f"{view}: column {name!r} is not epoch milliseconds or a timestamp ({exc})") from None
    return converted.dt.as_unit("ns")


def _millis(column: pd.Series) -> np.ndarray:
    """Epoch milliseconds (event times are ms; finer parts are ignored for ordering)."""
    nanos = column.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[ns]").astype(np.int64)
    return nanos // 1_000_000


def _present(value: Any) -> tuple[int, Any]:
    # None sorts below every value, so tie-break tuples always compare.
    return (0, 0) if value is None else (1, value)


def _digest(values: Mapping[str, ValueProto], features: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for name in features:
        proto = values.get(name)
        digest.update(name.encode())
        digest.update(b"\x00")
        digest.update(proto.SerializeToString(deterministic=True) if proto is not None else b"")
        digest.update(b"\x01")
    return digest.hexdigest()


class FeatureWriter:
    """Writes batches of feature rows to the online store, newest event time wins.

    Args:
        store: An open FeatureStore (see :func:`pricewave.feature_store.open_store`).
        busy_retry_pauses_s: Pauses between tries of a write SQLite refused as locked (the last
            failure raises :class:`StoreBusyError`); the streaming job, which keeps what it could
            not write for later (:mod:`pricewave.feature_store.degraded`), waits less.
    """

    def __init__(self, store: FeatureStore, busy_retry_pauses_s: Sequence[float] = BUSY_RETRY_PAUSES_S) -> None:
        self.store = store
        self._ops: StoreOps = ops_for(store)
        self._views: dict[str, _View] = {}
        self.busy_retry_pauses_s = tuple(busy_retry_pauses_s) or (0.0,)

    # ----------------------------------------------------------------------------------------
    # view metadata

    def _view(self, name: str) -> _View:
        cached = self._views.get(name)
        if cached is not None:
            return cached
        from feast.errors import FeatureViewNotFoundException
        from feast.types import UnixTimestamp

        try:
            view = self.store.get_feature_view(name)
        except FeatureViewNotFoundException:
            known = sorted(v.name for v in self.store.list_feature_views())
            raise ConfigError(f"unknown feature view {name!r}: known views are {known}") from None
        if view.batch_source is None:
            raise ConfigError(f"feature view {name!r} has no source with an event timestamp field")
        features = [field.name for field in view.features]
        info = _View(
            view=view,
            join_keys=[column.name for column in view.entity_columns],
            key_types=[column.dtype.to_value_type() for column in view.entity_columns],
            features=features,
            feature_types={field.name: field.dtype.to_value_type() for field in view.features},
            timestamp_columns=[field.name for field in view.features if field.dtype == UnixTimestamp],
            event_time=view.batch_source.timestamp_field,
            tie_break=[column for column in TIE_BREAK_COLUMNS if column in features],
        )
        self._views[name] = info
        return info

    # ----------------------------------------------------------------------------------------
    # normalization

    def _normalize(self, info: _View, frame: pd.DataFrame, name: str) -> pd.DataFrame:
        missing = [column for column in (*info.join_keys, info.event_time) if column not in frame.columns]
        if missing:
            raise DataError(f"{name}: rows lack required column(s) {missing}; columns are {list(frame.columns)}")
        if "kind" in frame.columns and name in PRICE_DECISION_VIEWS.values():
            wrong = frame["kind"].map(PRICE_DECISION_VIEWS).ne(name)
            if wrong.any():
                raise DataError(
                    f"{name}: {int(wrong.sum())} price decision(s) of another kind; split them with "
                    "split_price_decisions() first"
                )
        out = pd.DataFrame(index=frame.index)
        for column in info.join_keys:
            keys = frame[column]
            if keys.isna().any():
                raise DataError(f"{name}: {int(keys.isna().sum())} row(s) have no {column!r}")
            out[column] = keys.astype(str)
        for feature in info.features:
            if feature in frame.columns:
                out[feature] = _as_declared(frame[feature], info.feature_types[feature])
            else:
                out[feature] = None
        for column in info.timestamp_columns:
            if column in frame.columns:
                out[column] = to_utc(frame[column], column, name)
        out[info.event_time] = to_utc(frame[info.event_time], info.event_time, name)
        if out[info.event_time].isna().any():
            raise DataError(f"{name}: {int(out[info.event_time].isna().sum())} row(s) have no {info.event_time!r}")
        if USER_KEY_COLUMN in info.join_keys:
            raw = ~out[USER_KEY_COLUMN].str.fullmatch(USER_KEY_PATTERN.pattern.strip("^$"))
            if raw.any():
                raise DataError(
                    f"{name}: {int(raw.sum())} {USER_KEY_COLUMN!r} value(s) are not pseudonymous keys: pass "
                    "pricewave.privacy.pseudonymize_user(raw_id, settings.user_key_secret), never raw user ids"
                )
        return out.reset_index(drop=True)

    def _protos(self, info: _View, frame: pd.DataFrame) -> list[dict[str, ValueProto]]:
        """The stored representation of each row's features (only computed for tied rows)."""
        from feast.type_map import python_values_to_proto_values

        columns = {
            feature: python_values_to_proto_values(
                [None if _is_null(v) else v for v in frame[feature].tolist()], info.feature_types[feature]
            )
            for feature in info.features
        }
        return [{feature: columns[feature][i] for feature in info.features} for i in range(len(frame))]

    def _tie_rank(self, info: _View, values: Mapping[str, ValueProto]) -> _Rank:
        from feast.type_map import feast_value_type_to_python_type

        parts: list[Any] = []
        for column in info.tie_break:
            proto = values.get(column)
            value = feast_value_type_to_python_type(proto) if proto is not None else None
            parts.append(_present(value))
        parts.append(_digest(values, info.features))
        return tuple(parts)

    # ----------------------------------------------------------------------------------------
    # the write

    def _collapse(self, info: _View, frame: pd.DataFrame, millis: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
        """Keep one row per entity key: the newest by (event time, tie-break)."""
        frame = frame.assign(_ms=millis)
        newest = frame.groupby(info.join_keys, sort=False)["_ms"].transform("max")
        top = frame[frame["_ms"] == newest]
        tied = top.duplicated(info.join_keys, keep=False)
        if tied.any():
            ties = top[tied]
            protos = self._protos(info, ties)
            ranks = pd.Series([self._tie_rank(info, p) for p in protos], index=ties.index, dtype=object)
            best = [max(group.index, key=lambda i: ranks[i]) for _, group in ties.groupby(info.join_keys, sort=False)]
            top = pd.concat([top[~tied], ties.loc[best]]).sort_index()
        return top.drop(columns="_ms"), top["_ms"].to_numpy()

    def _entity_key(self, info: _View, values: Sequence[Any]) -> EntityKeyProto:
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
        from feast.type_map import python_values_to_proto_values

        return EntityKeyProto(
            join_keys=info.join_keys,
            entity_values=[
                python_values_to_proto_values([value], value_type)[0]
                for value, value_type in zip(values, info.key_types, strict=True)
            ],
        )

    def write(self, view: str, rows: Rows) -> WriteResult:
        """Write one batch of rows to a feature view; older event times never overwrite newer ones.

        Args:
            view: The feature view, e.g. ``"sku_price"``.
            rows: A DataFrame, Arrow table or sequence of dicts with the view's entity columns,
                its event time (epoch milliseconds or timestamps) and its features; other
                columns are ignored, missing features are written as null.

        Returns:
            Counts of rows received, written, stale and collapsed.

        Raises:
            ConfigError: Unknown view. DataError: Missing columns, raw user ids, bad times.
            StackError: The online store cannot be reached or rejects the credentials.
        """
        info = self._view(view)
        frame = _to_frame(rows)
        received = len(frame)
        if received == 0:
            return WriteResult(view, 0, 0, 0, 0)
        frame = self._normalize(info, frame, view)
        frame, millis = self._collapse(info, frame, _millis(frame[info.event_time]))
        collapsed = received - len(frame)

        key_tuples = list(zip(*(frame[column].tolist() for column in info.join_keys), strict=True))
        entity_keys = [self._entity_key(info, key) for key in key_tuples]
        # Another writer (a second worker of the job) can hold SQLite's lock past its busy timeout on
        # a loaded machine: the guarded write reads again and retries, as it is idempotent.
        for attempt, pause_s in enumerate(self.busy_retry_pauses_s):
            try:
                keep = self._guarded_write(info, view, frame, millis, entity_keys)
                break
            except StoreBusyError:
                if attempt == len(self.busy_retry_pauses_s) - 1:
                    raise
                time.sleep(pause_s)
        written = int(keep.sum())
        return WriteResult(view, received, written, len(frame) - written, collapsed)

    def newest_per_key(self, view: str, rows: Rows) -> pd.DataFrame:
        """The rows normalized as :meth:`write` does, one per entity key: the one :meth:`write` would keep.

        Writing the result gives the same store state as writing ``rows`` (what a writer that
        keeps rows for later stores, :class:`pricewave.feature_store.degraded.BufferedWriter`).

        Raises:
            ConfigError: Unknown view. DataError: Missing columns, raw user ids, bad times.
        """
        info = self._view(view)
        frame = _to_frame(rows)
        if frame.empty:
            return frame
        frame = self._normalize(info, frame, view)
        newest, _ = self._collapse(info, frame, _millis(frame[info.event_time]))
        return newest.reset_index(drop=True)

    def entity_key(self, view: str, values: Sequence[Any]) -> EntityKeyProto:
        """The entity key of a view's row, from its join key values in :meth:`join_keys` order."""
        return self._entity_key(self._view(view), values)

    def join_keys(self, view: str) -> list[str]:
        """The entity columns of a view."""
        return list(self._view(view).join_keys)

    def event_time_column(self, view: str) -> str:
        """The event-time column of a view."""
        return self._view(view).event_time

    def _guarded_write(
        self, info: _View, view: str, frame: pd.DataFrame, millis: np.ndarray, entity_keys: list[EntityKeyProto]
    ) -> np.ndarray:
        """Write the rows that are newer than the stored ones; returns which rows were written."""
        keep = np.zeros(len(frame), dtype=bool)
        overwrite: list[EntityKeyProto] = []
        incoming_protos: list[dict[str, ValueProto]] | None = None
        with self._ops.translate_errors(self.store):
            stored: list[tuple[Any, Any]] = []
            for chunk in iter_chunks(entity_keys, READ_CHUNK):
                stored.extend(online_read(self.store, info.view, chunk, info.features))
            stored_millis = self._ops.stored_event_millis(
                self.store, info.view, entity_keys, [stored_ts for stored_ts, _ in stored]
            )
            for i, ((_, stored_values), stored_ms) in enumerate(zip(stored, stored_millis, strict=True)):
                if stored_ms is None or not stored_values:
                    keep[i] = True
                elif millis[i] != stored_ms:
                    keep[i] = bool(millis[i] > stored_ms)
                else:
                    if incoming_protos is None:
                        incoming_protos = self._protos(info, frame)
                    if self._tie_rank(info, incoming_protos[i]) > self._tie_rank(info, stored_values):
                        keep[i] = True
                        overwrite.append(entity_keys[i])
            if keep.any():
                self._ops.prepare_overwrite(self.store, info.view, overwrite)
                self.store.write_to_online_store(view, df=frame[keep].reset_index(drop=True))
                written_keys = [key for key, kept in zip(entity_keys, keep, strict=True) if kept]
                self._ops.after_write(self.store, info.view, written_keys, millis[keep].tolist())
        return keep

    def write_many(self, view: str, batches: Iterable[Rows]) -> WriteResult:
        """Write several batches (one store round trip pair each); returns the summed counts."""
        totals = [0, 0, 0, 0]
        for batch in batches:
            result = self.write(view, batch)
            for i, count in enumerate((result.received, result.written, result.stale, result.collapsed)):
                totals[i] += count
        return WriteResult(view, *totals)


def _as_declared(column: pd.Series, value_type: ValueType) -> pd.Series:
    """Widen a column to the width Feast expects (e.g. Flink's INT arrives as int32, Feast wants int64)."""
    from feast.value_type import ValueType

    if value_type == ValueType.INT64 and pd.api.types.is_integer_dtype(column.dtype):
        return column.astype("int64")
    if value_type == ValueType.INT64 and pd.api.types.is_float_dtype(column.dtype):
        # Whole numbers that went through a nullable path; missing ones stay missing.
        return column.astype("Int64").astype(object).where(column.notna(), None)
    if value_type == ValueType.DOUBLE and pd.api.types.is_numeric_dtype(column.dtype):
        return column.astype("float64")
    return column


def _is_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float | np.floating):
        return bool(np.isnan(value))
    return value is pd.NaT


def split_price_decisions(decisions: Rows) -> dict[str, pd.DataFrame]:
    """Split price decisions by ``kind`` into the rows for ``sku_price`` and ``user_offer``.

    Example:
        >>> parts = split_price_decisions([{"kind": "sku", "sku": "A"}, {"kind": "offer", "sku": "A"}])
        >>> {view: len(rows) for view, rows in parts.items()}
        {'sku_price': 1, 'user_offer': 1}
    """
    frame = _to_frame(decisions)
    if "kind" not in frame.columns:
        raise DataError("price decisions need a 'kind' column ('sku' or 'offer')")
    unknown = set(frame["kind"].dropna().unique()) - set(PRICE_DECISION_VIEWS)
    if unknown or frame["kind"].isna().any():
        raise DataError(f"unknown price decision kind(s) {sorted(map(str, unknown)) or ['null']}: use 'sku' or 'offer'")
    return {view: frame[frame["kind"] == kind].reset_index(drop=True) for kind, view in PRICE_DECISION_VIEWS.items()}


def write_features(store: FeatureStore, view: str, rows: Rows) -> WriteResult:
    """One-shot :meth:`FeatureWriter.write` (build a :class:`FeatureWriter` to write many batches)."""
    return FeatureWriter(store).write(view, rows)
