"""THE one online-store writer: batched, ordered by event time, safe to repeat.

Every online write (streaming job, ``pricewave features push``, tests) goes through
:class:`FeatureWriter`. A batch of rows for one feature view becomes:

1. one normalization pass (epoch-millis -> UTC timestamps, only the view's columns, user keys
   checked to be pseudonymous),
2. one encoding pass: per row the entity key and feature values as Feast stores them, and the
   row's **rank** (:func:`row_rank`), a string whose byte order is the order "newer",
3. a collapse of rows sharing an entity key to the highest-ranked one,
4. ONE guarded upsert per row, all of a batch in one round trip (the lean path): the store itself
   compares the row's rank with the stored one and writes only a higher one, in Feast's own layout
   so Feast's reads (SDK, ``feast serve``) see ordinary rows. On Redis that is a Lua
   compare-and-set script per row, pipelined; on SQLite one transaction per batch on the writer's
   own connection (:mod:`pricewave.feature_store.stores`). Each comparison and its write are
   atomic, so two writers of one key cannot interleave.

"Newer" is a total order, identical for every store: the event time first, then, for equal
event times, the tie-break columns the view has (``decision_time``, then ``decision_id``), then
a digest of the stored representation of all feature values. Consequences:

* an older event time never overwrites a newer one, and SQLite and Redis reach the SAME final state;
* shuffled, reversed or replayed batches leave the same state: the final value of a key is the
  maximum of all rows ever written for it, whatever their order.

A stored row without a rank (written by ``feast materialize``, Feast's own writer or a pricewave
before the lean path) is ranked from its stored values first, then compared the same way. A store
configuration the lean path does not know (Redis cluster or sentinel, SQLite with vector columns)
goes through Feast's ``write_to_online_store`` after one read of the stored rows (the Feast path,
``FeatureWriter(store, direct=False)``, which ``bench/online_store.py`` compares with the lean one);
that path's read-then-write is not atomic, so it assumes one writer per key at a time.

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
from pricewave.feature_store.stores import DirectWriter, EncodedRow, StoreOps, iter_chunks, online_read, ops_for
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


_MS_OFFSET = 10**15  # event times from before 1970 still rank in order (17 digits either way)
_INT_OFFSET = 10**19  # tie-break integers (int64) as 20 non-negative digits


def _rank_part(proto: ValueProto | None) -> str:
    """A tie-break value as a string whose byte order is the value's order; absent sorts first."""
    kind = proto.WhichOneof("val") if proto is not None else None
    if kind is None:
        return "0"
    value = getattr(proto, kind)
    if isinstance(value, bool):
        return f"1{int(value)}"
    if isinstance(value, int):
        return f"1{value + _INT_OFFSET:020d}"
    if isinstance(value, str):
        # UTF-8's byte order is the code point order; "!" ends it below every hex digit, so a
        # prefix sorts before its extensions.
        return f"1{value.encode().hex()}!"
    raise ConfigError(f"tie-break value of type {kind} cannot be ranked: use integers, timestamps or strings")


def row_rank(event_ms: int, tie_break: Sequence[ValueProto | None], serialized: Sequence[bytes]) -> str:
    """A row's place in the writer's total order, as an ASCII string compared byte by byte.

    The event time, then each tie-break column (absent below present), then a digest of every
    feature's stored bytes: two rows rank equal only when they store the same thing.

    Example:
        >>> from feast.protos.feast.types.Value_pb2 import Value
        >>> early = row_rank(1_000, [Value(int64_val=5)], [b"a"])
        >>> late = row_rank(2_000, [None], [b"a"])
        >>> tied = row_rank(1_000, [Value(int64_val=6)], [b"a"])
        >>> early < tied < late
        True
    """
    digest = hashlib.sha256()
    for value in serialized:
        digest.update(len(value).to_bytes(8, "big"))
        digest.update(value)
    parts = "".join(_rank_part(proto) for proto in tie_break)
    return f"{int(event_ms) + _MS_OFFSET:017d}|{parts}|{digest.hexdigest()}"


@dataclass(frozen=True)
class _Encoded:
    """A normalized batch as the store keeps it: one :class:`EncodedRow` and entity key per row."""

    rows: list[EncodedRow]
    entity_keys: list[EntityKeyProto]


class FeatureWriter:
    """Writes batches of feature rows to the online store, newest event time wins.

    Args:
        store: An open FeatureStore (see :func:`pricewave.feature_store.open_store`).
        busy_retry_pauses_s: Pauses between tries of a write SQLite refused as locked (the last
            failure raises :class:`StoreBusyError`); the streaming job, which keeps what it could
            not write for later (:mod:`pricewave.feature_store.degraded`), waits less.
        direct: Write through the lean path where the store supports it (the default); False
            writes through Feast's ``write_to_online_store`` (what the benchmark compares).
    """

    def __init__(
        self, store: FeatureStore, busy_retry_pauses_s: Sequence[float] = BUSY_RETRY_PAUSES_S, direct: bool = True
    ) -> None:
        self.store = store
        self._ops: StoreOps = ops_for(store)
        self._views: dict[str, _View] = {}
        self.busy_retry_pauses_s = tuple(busy_retry_pauses_s) or (0.0,)
        self._direct: DirectWriter | None = self._ops.direct_writer(store) if direct else None

    @property
    def direct(self) -> bool:
        """Whether writes take the lean path (False: through Feast's ``write_to_online_store``)."""
        return self._direct is not None

    def close(self) -> None:
        """Release the lean path's connection (a later write opens it again)."""
        if self._direct is not None:
            self._direct.close()

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
        frame = frame.reset_index(drop=True)
        # One DataFrame built from a dict of columns: inserting them one by one cost ~5 ms a batch.
        columns: dict[str, Any] = {}
        for column in info.join_keys:
            keys = frame[column]
            if keys.isna().any():
                raise DataError(f"{name}: {int(keys.isna().sum())} row(s) have no {column!r}")
            columns[column] = keys.astype(str)
        for feature in info.features:
            if feature in info.timestamp_columns and feature in frame.columns:
                columns[feature] = to_utc(frame[feature], feature, name)
            elif feature in frame.columns:
                columns[feature] = _as_declared(frame[feature], info.feature_types[feature])
            else:
                columns[feature] = pd.Series([None] * len(frame), dtype=object)
        columns[info.event_time] = to_utc(frame[info.event_time], info.event_time, name)
        out = pd.DataFrame(columns)
        if out[info.event_time].isna().any():
            raise DataError(f"{name}: {int(out[info.event_time].isna().sum())} row(s) have no {info.event_time!r}")
        if USER_KEY_COLUMN in info.join_keys:
            raw = ~out[USER_KEY_COLUMN].str.fullmatch(USER_KEY_PATTERN.pattern.strip("^$"))
            if raw.any():
                raise DataError(
                    f"{name}: {int(raw.sum())} {USER_KEY_COLUMN!r} value(s) are not pseudonymous keys: pass "
                    "pricewave.privacy.pseudonymize_user(raw_id, settings.user_key_secret), never raw user ids"
                )
        return out

    def _encode(self, info: _View, frame: pd.DataFrame) -> _Encoded:
        """Each row's entity key, stored values and rank (one conversion per column, not per cell)."""
        from feast.infra.key_encoding_utils import serialize_entity_key
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
        from feast.type_map import python_values_to_proto_values

        protos = {feature: _value_protos(frame[feature], info.feature_types[feature]) for feature in info.features}
        serialized = {feature: [proto.SerializeToString() for proto in column] for feature, column in protos.items()}
        key_columns = [
            python_values_to_proto_values(frame[column].tolist(), value_type)
            for column, value_type in zip(info.join_keys, info.key_types, strict=True)
        ]
        version = self.store.config.entity_key_serialization_version
        event_times = frame[info.event_time]
        millis = _millis(event_times)
        naive = pd.DatetimeIndex(event_times).tz_convert("UTC").tz_localize(None).to_pydatetime()
        rows: list[EncodedRow] = []
        entity_keys: list[EntityKeyProto] = []
        for i in range(len(frame)):
            entity_key = EntityKeyProto(join_keys=info.join_keys, entity_values=[column[i] for column in key_columns])
            entity_keys.append(entity_key)
            values = {feature: serialized[feature][i] for feature in info.features}
            rows.append(
                EncodedRow(
                    key=serialize_entity_key(entity_key, entity_key_serialization_version=version),
                    values=values,
                    protos={feature: protos[feature][i] for feature in info.features},
                    event_time=naive[i],
                    event_ms=int(millis[i]),
                    rank=row_rank(
                        int(millis[i]), [protos[column][i] for column in info.tie_break], list(values.values())
                    ),
                )
            )
        return _Encoded(rows, entity_keys)

    @staticmethod
    def _newest(encoded: _Encoded) -> list[int]:
        """Per entity key, the position of its highest-ranked row, in batch order."""
        best: dict[bytes, int] = {}
        for i, row in enumerate(encoded.rows):
            held = best.get(row.key)
            if held is None or row.rank > encoded.rows[held].rank:
                best[row.key] = i
        return sorted(best.values())

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
        encoded = self._encode(info, frame)
        newest = self._newest(encoded)
        collapsed = received - len(newest)
        if collapsed:
            frame = frame.iloc[newest].reset_index(drop=True)
            encoded = _Encoded([encoded.rows[i] for i in newest], [encoded.entity_keys[i] for i in newest])
        # Another writer (a second worker of the job) can hold SQLite's lock past its busy timeout on
        # a loaded machine: the guarded write is idempotent, so it simply runs again.
        for attempt, pause_s in enumerate(self.busy_retry_pauses_s):
            try:
                keep = self._guarded_write(info, view, frame, encoded)
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
        return frame.iloc[self._newest(self._encode(info, frame))].reset_index(drop=True)

    def entity_key(self, view: str, values: Sequence[Any]) -> EntityKeyProto:
        """The entity key of a view's row, from its join key values in :meth:`join_keys` order."""
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
        from feast.type_map import python_values_to_proto_values

        info = self._view(view)
        return EntityKeyProto(
            join_keys=info.join_keys,
            entity_values=[
                python_values_to_proto_values([value], value_type)[0]
                for value, value_type in zip(values, info.key_types, strict=True)
            ],
        )

    def delete(self, view: str, entities: Sequence[Sequence[Any]]) -> int:
        """Remove entities' rows of a view from the online store (a deletion on request).

        Args:
            view: The feature view.
            entities: Each entity's join key values, in :meth:`join_keys` order.

        Returns:
            How many of the entities had a row.
        """
        info = self._view(view)
        keys = [self.entity_key(view, values) for values in entities]
        with self._ops.translate_errors(self.store):
            return self._ops.delete_rows(self.store, info.view, keys)

    def join_keys(self, view: str) -> list[str]:
        """The entity columns of a view."""
        return list(self._view(view).join_keys)

    def event_time_column(self, view: str) -> str:
        """The event-time column of a view."""
        return self._view(view).event_time

    def _stored_ranks(self, info: _View, entity_keys: Sequence[EntityKeyProto]) -> list[tuple[int, str] | None]:
        """The stored rows' (event ms, rank), from ONE online read; None where nothing is stored."""
        stored: list[tuple[Any, Any]] = []
        for chunk in iter_chunks(entity_keys, READ_CHUNK):
            stored.extend(online_read(self.store, info.view, chunk, info.features))
        stored_millis = self._ops.stored_event_millis(
            self.store, info.view, entity_keys, [stored_ts for stored_ts, _ in stored]
        )
        out: list[tuple[int, str] | None] = []
        for (_, values), stored_ms in zip(stored, stored_millis, strict=True):
            if stored_ms is None or not values:
                out.append(None)
                continue
            serialized = [values[name].SerializeToString() if name in values else b"" for name in info.features]
            out.append((stored_ms, row_rank(stored_ms, [values.get(name) for name in info.tie_break], serialized)))
        return out

    def _guarded_write(self, info: _View, view: str, frame: pd.DataFrame, encoded: _Encoded) -> np.ndarray:
        """Write the rows that rank above the stored ones; returns which rows were written."""
        keep = np.zeros(len(frame), dtype=bool)
        with self._ops.translate_errors(self.store):
            if self._direct is None:
                return self._write_through_feast(info, view, frame, encoded, np.ones(len(frame), dtype=bool))
            outcome = self._direct.upsert_if_newer(info.view, encoded.rows)
            unranked = [i for i, won in enumerate(outcome) if won is None]
            if unranked:
                # Rows something else stored: rank them from their stored values, then try again.
                stored = self._stored_ranks(info, [encoded.entity_keys[i] for i in unranked])
                self._direct.adopt_ranks(
                    info.view,
                    [(encoded.rows[i].key, *ranked) for i, ranked in zip(unranked, stored, strict=True) if ranked],
                )
                again = self._direct.upsert_if_newer(info.view, [encoded.rows[i] for i in unranked])
                for i, won in zip(unranked, again, strict=True):
                    outcome[i] = won
            keep[:] = [bool(won) for won in outcome]
            left = np.array([won is None for won in outcome], dtype=bool)
            if left.any():  # still unranked (rewritten meanwhile by something else): Feast's path decides
                keep |= self._write_through_feast(info, view, frame, encoded, left)
        return keep

    def _write_through_feast(
        self, info: _View, view: str, frame: pd.DataFrame, encoded: _Encoded, rows: np.ndarray
    ) -> np.ndarray:
        """The Feast path for ``rows`` (a mask): one online read, then ONE ``write_to_online_store``."""
        keep = np.zeros(len(frame), dtype=bool)
        positions = np.flatnonzero(rows)
        stored = self._stored_ranks(info, [encoded.entity_keys[i] for i in positions])
        overwrite: list[EntityKeyProto] = []
        for i, ranked in zip(positions, stored, strict=True):
            row = encoded.rows[i]
            if ranked is None or row.rank > ranked[1]:
                keep[i] = True
                if ranked is not None and ranked[0] == row.event_ms:
                    overwrite.append(encoded.entity_keys[i])  # Feast's Redis store refuses an equal time
        if keep.any():
            self._ops.prepare_overwrite(self.store, info.view, overwrite)
            self.store.write_to_online_store(view, df=frame[keep].reset_index(drop=True))
            kept = np.flatnonzero(keep)
            self._ops.after_write(
                self.store, info.view, [encoded.entity_keys[i] for i in kept], [encoded.rows[i].event_ms for i in kept]
            )
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


def _value_protos(column: pd.Series, value_type: ValueType) -> list[ValueProto]:
    """A column as Feast's ``ValueProto`` values, exactly as Feast's own conversion makes them.

    The common column shapes (float, integer, bool and string columns) are built directly, one
    constructor per cell; Feast's ``python_values_to_proto_values`` checks every cell with
    ``pd.isnull`` first and cost ~10 µs a row. Every other shape goes through Feast's function.
    """
    from feast.protos.feast.types.Value_pb2 import Value
    from feast.type_map import python_values_to_proto_values
    from feast.value_type import ValueType

    kind = column.dtype.kind
    if value_type == ValueType.DOUBLE and kind == "f":
        return [Value(double_val=v) if v == v else Value() for v in column.to_numpy().tolist()]
    if value_type == ValueType.INT64 and kind in "iu":
        return [Value(int64_val=v) for v in column.to_numpy().tolist()]
    if value_type == ValueType.BOOL and kind == "b":
        return [Value(bool_val=v) for v in column.to_numpy().tolist()]
    if value_type == ValueType.STRING and kind == "O":
        cells = _cells(column)
        if all(type(v) is str or v is None for v in cells):
            return [Value() if v is None else Value(string_val=v) for v in cells]
        return python_values_to_proto_values(cells, value_type)
    return python_values_to_proto_values(_cells(column), value_type)


def _cells(column: pd.Series) -> list[Any]:
    """A column's values with every missing one (None, NaN, NaT) as None, as Feast expects."""
    present = column.notna().to_numpy()
    values = column.tolist()
    if present.all():
        return values
    return [value if known else None for value, known in zip(values, present, strict=True)]


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
