"""The streaming job's side of the online store: when the store fails, the store degrades, not the job.

The job writes the online store from its push UDFs and reads the catalog and the price history
from its pricers. Before, a store failure raised out of the UDF: the job restarted in a loop and
published nothing (prices, dead letters, decision log) until the store was back. Here, per
Python worker:

* :class:`BufferedWriter` (push UDFs): rows the store refused wait in a backlog, collapsed to the
  newest row per (view, entity key) with the writer's own order (:meth:`FeatureWriter.newest_per_key`),
  so the backlog holds at most one row per entity. Later batches retry it, with backoff; while a
  retry is not due, a batch joins the backlog without calling the store (no timeout per batch).
  A retry writes the backlog and the new batch together, newest per key; the writer's event-time
  guard never lets a row overwrite a newer stored one, so what lands is what an outage-free run
  leaves. ``close()`` tries once more.
* :class:`CatalogCache` (pricers): each sku's catalog row is read at most every ``refresh_s``
  and kept; while the store is down the pricer prices from the kept rows (a sku never read gets
  the empty row an unknown sku gets from the store).
* :class:`BufferedPriceHistory` (sku pricer): the price history is read from the store when it
  answers, else from what this worker recorded itself; records it could not write are kept
  (newest per sku and event time) and written first when the store answers again.

Store failures are :class:`pricewave.errors.StackError` (what ``translate_errors`` makes of
driver errors: Redis down or hung past its socket timeout, SQLite locked or corrupt) and the raw
driver errors in case one escapes. Bad data (:class:`DataError`) and bad configuration still raise.
:class:`Outage` logs one line when a component loses the store and one when it is back, never
one per batch, and counts what is pending and what was dropped. The CLI does not use this module:
its commands fail on one line.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd

from pricewave.errors import StackError

if TYPE_CHECKING:
    from pricewave.feature_store.price_history import PriceHistory
    from pricewave.feature_store.stores import StoreOps
    from pricewave.feature_store.writer import FeatureWriter, Rows

LOG = logging.getLogger(__name__)
_T = TypeVar("_T")
RETRY_BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
"""Pauses before the 1st, 2nd, ... retry of a store that failed (the last one repeats)."""
MAX_PENDING_ROWS = 500_000
"""Rows a worker keeps for the store at most (all views); beyond, the oldest are dropped and counted."""
JOB_BUSY_RETRY_PAUSES_S = (0.5, 1.0)
"""The job's writers wait less for a locked SQLite file than the CLI: the backlog retries later."""


def is_store_failure(exc: BaseException) -> bool:
    """True for an error of the online store itself (not of the data or the configuration)."""
    if isinstance(exc, StackError | sqlite3.Error | OSError):
        return True
    try:
        import redis.exceptions as rex
    except ImportError:  # pragma: no cover - redis is a dependency
        return False
    return isinstance(exc, rex.RedisError)


def one_line(exc: BaseException) -> str:
    """A store error as one line, secrets masked (what the outage log and the job's metrics show)."""
    from pricewave.config import mask_secrets  # a client error may echo its connection string

    text = mask_secrets(" ".join(str(exc).split()))
    return text or type(exc).__name__


@dataclass
class Outage:
    """Whether one component (a UDF of one worker) can use the online store; logs transitions only.

    Args:
        what: Who uses the store, for the log (e.g. ``"OfferPricer"``).
        backoff_s: Pauses before successive retries after a failure (the last one repeats).
        clock: Monotonic seconds (a test passes its own).
    """

    what: str
    backoff_s: Sequence[float] = RETRY_BACKOFF_S
    clock: Callable[[], float] = time.monotonic
    down: bool = False
    since: float = 0.0
    outages: int = 0
    failed_tries: int = 0
    last_error: str = ""
    next_try: float = 0.0
    _tries_in_outage: int = field(default=0, repr=False)

    def due(self) -> bool:
        """True when the store may be called now: it is up, or the next retry's time has come."""
        return not self.down or self.clock() >= self.next_try

    def failed(self, exc: BaseException, pending: int = 0) -> None:
        """Record a failed call; the first failure of an outage logs one line."""
        now = self.clock()
        self.failed_tries += 1
        self.last_error = one_line(exc)
        if not self.down:
            self.down, self.since, self.outages, self._tries_in_outage = True, now, self.outages + 1, 0
            LOG.warning(
                "%s: online store unavailable, degrading (%d rows kept for it, retrying with backoff up to %g s): %s",
                self.what,
                pending,
                max(self.backoff_s),
                self.last_error,
            )
        pause = self.backoff_s[min(self._tries_in_outage, len(self.backoff_s) - 1)]
        self._tries_in_outage += 1
        self.next_try = now + pause

    def attempt(self, call: Callable[[], _T], pending: Callable[[], int] = lambda: 0) -> tuple[bool, _T | None]:
        """One store call: ``(True, result)`` and the outage (if any) ends, or ``(False, None)`` after a
        store failure (recorded with :meth:`failed`); any other error raises."""
        try:
            result = call()
        except Exception as exc:
            if not is_store_failure(exc):
                raise
            self.failed(exc, pending())
            return False, None
        self.succeeded()
        return True, result

    def succeeded(self, detail: str = "") -> None:
        """Record a successful call; the first one after an outage logs one line."""
        if self.down:
            LOG.warning(
                "%s: online store back after %.1f s (%d failed tries)%s",
                self.what,
                self.clock() - self.since,
                self._tries_in_outage,
                f": {detail}" if detail else "",
            )
        self.down = False
        self.next_try = 0.0


class BufferedWriter:
    """A :class:`FeatureWriter` that keeps what the store refused and writes it later.

    Args:
        writer: The writer (its store opened with ``tolerate_outage=True``).
        what: Who writes, for the log.
        max_pending: Rows kept at most over all views (oldest event times dropped first, counted).
        outage: The component's outage state (one is made when omitted).

    Attributes:
        written: Rows written so far (backlog rows included, when they were written).
        deferred: Rows put in the backlog (before collapsing).
        dropped: Rows dropped for good (backlog over ``max_pending``, or left when closed).
    """

    def __init__(
        self, writer: FeatureWriter, what: str, *, max_pending: int = MAX_PENDING_ROWS, outage: Outage | None = None
    ) -> None:
        self.writer = writer
        self.outage = outage or Outage(what)
        self.max_pending = max_pending
        self._backlog: dict[str, pd.DataFrame] = {}  # view -> newest row per entity key, first view first
        self.written = 0
        self.deferred = 0
        self.dropped = 0

    @property
    def pending(self) -> int:
        """Rows waiting for the store (at most one per view and entity key)."""
        return sum(len(frame) for frame in self._backlog.values())

    def pending_rows(self, view: str) -> pd.DataFrame:
        """A copy of the rows of one view waiting for the store."""
        return self._backlog.get(view, pd.DataFrame()).copy()

    def write(self, view: str, rows: Rows) -> int:
        """Write a batch, or keep it for later; never raises a store failure.

        Returns:
            Rows of this batch the store took now (0 when they were kept for later).

        Raises:
            ConfigError, DataError: An unknown view or bad rows (not a store failure).
        """
        if not self._backlog and self.outage.due():
            try:
                result = self.writer.write(view, rows)
            except Exception as exc:
                if not is_store_failure(exc):
                    raise
                self._defer(view, rows)
                self.outage.failed(exc, self.pending)
                return 0
            self.written += result.written
            self.outage.succeeded()
            return result.written
        received = self._defer(view, rows)
        if self.outage.due():
            flushed = self.flush()
            return min(flushed, received)
        return 0

    def flush(self) -> int:
        """Write the backlog, view by view in the order it filled; returns the rows written.

        A view written stays written when a later view fails; what failed stays in the backlog.
        """
        written = 0
        for view in list(self._backlog):
            try:
                result = self.writer.write(view, self._backlog[view])
            except Exception as exc:
                if not is_store_failure(exc):
                    raise
                self.written += written
                self.outage.failed(exc, self.pending)
                return written
            written += result.written
            del self._backlog[view]
        self.written += written
        self.outage.succeeded(f"wrote {written} kept rows" if written else "")
        return written

    def close(self) -> None:
        """Try the backlog once more; what is left is dropped and logged. Then release the writer."""
        try:
            self._close_backlog()
        finally:
            self.writer.close()

    def _close_backlog(self) -> None:
        if not self._backlog:
            return
        self.flush()
        if self._backlog:
            left = self.pending
            self.dropped += left
            LOG.error(
                "%s: online store still unavailable at close: %d newest rows per key not written (%s)",
                self.outage.what,
                left,
                self.outage.last_error,
            )
            self._backlog.clear()

    def _defer(self, view: str, rows: Rows) -> int:
        newest = self.writer.newest_per_key(view, rows)
        received = len(rows) if hasattr(rows, "__len__") else len(newest)
        self.deferred += received
        if newest.empty:
            return received
        kept = self._backlog.get(view)
        combined = newest if kept is None else pd.concat([kept, newest], ignore_index=True)
        self._backlog[view] = self.writer.newest_per_key(view, combined) if kept is not None else newest
        self._trim(view)
        return received

    def _trim(self, view: str) -> None:
        excess = self.pending - self.max_pending
        if excess <= 0:
            return
        frame = self._backlog[view]
        order = frame[self.writer.event_time_column(view)].sort_values(kind="stable").index
        drop = order[: min(excess, len(frame))]
        self._backlog[view] = frame.drop(index=drop).reset_index(drop=True)
        self.dropped += len(drop)
        LOG.warning(
            "%s: %d rows for the store dropped (backlog over %d rows)", self.outage.what, len(drop), self.max_pending
        )


class CatalogCache:
    """Catalog rows per sku, read from the store at most every ``refresh_s`` and kept per worker.

    Args:
        read: Reads the rows of some skus from the store (one row per sku, in order, as a
            DataFrame with ``columns``); raises on a store failure.
        columns: The columns ``read`` returns (a sku never read gets None in each).
        refresh_s: A sku's row is read again when it is older than this (0: every batch).
        outage: The component's outage state.
        clock: Monotonic seconds.

    Attributes:
        served_stale: Lookups answered from a kept row because the store did not answer.
        never_read: Lookups of a sku the store never answered for (an empty row).
    """

    def __init__(
        self,
        read: Callable[[list[str]], pd.DataFrame],
        columns: Sequence[str],
        *,
        refresh_s: float,
        outage: Outage,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.read = read
        self.columns = list(columns)
        self.refresh_s = refresh_s
        self.outage = outage
        self.clock = clock
        self._rows: dict[str, dict[str, Any]] = {}
        self._read_at: dict[str, float] = {}
        self.served_stale = 0
        self.never_read = 0

    def lookup(self, skus: Sequence[str]) -> pd.DataFrame:
        """One row per sku (in order, repeats included) with ``columns``; never raises a store failure."""
        now = self.clock()
        wanted = list(dict.fromkeys(str(sku) for sku in skus))
        due = [sku for sku in wanted if sku not in self._read_at or now - self._read_at[sku] >= self.refresh_s]
        if due and self.outage.due():
            read, fresh = self.outage.attempt(lambda: self.read(due))
            if read and fresh is not None:
                for sku, row in zip(due, fresh.to_dict("records"), strict=True):
                    self._rows[sku] = {column: row.get(column) for column in self.columns}
                    self._read_at[sku] = now
                due = []
        stale = set(due)
        empty = dict.fromkeys(self.columns)
        rows = []
        for sku in map(str, skus):
            if sku in stale:
                if sku in self._rows:
                    self.served_stale += 1
                else:
                    self.never_read += 1
            rows.append(self._rows.get(sku, empty))
        return pd.DataFrame(rows, columns=self.columns)


class BufferedPriceHistory:
    """A :class:`PriceHistory` that answers from this worker's own records while the store is down.

    Args:
        history: The store's price history.
        outage: The component's outage state.
        keep_per_sku: Recorded entries kept in memory per sku (the newest event times).
        max_pending: Records kept for the store at most (oldest dropped first, counted).

    Attributes:
        served_locally: Lookups answered from memory because the store did not answer.
        dropped: Records never written to the store.
    """

    def __init__(
        self,
        history: PriceHistory,
        outage: Outage,
        *,
        keep_per_sku: int = 256,
        max_pending: int = MAX_PENDING_ROWS,
    ) -> None:
        self.history = history
        self.outage = outage
        self.keep_per_sku = keep_per_sku
        self.max_pending = max_pending
        self._local: dict[str, dict[int, float]] = {}
        self._pending: dict[tuple[str, int], float] = {}
        self.served_locally = 0
        self.dropped = 0

    @property
    def ops(self) -> StoreOps:
        """The store module of the history's store."""
        return self.history.ops

    @property
    def pending(self) -> int:
        """Records waiting for the store."""
        return len(self._pending)

    def latest_before(self, skus: Sequence[str], event_ms: Sequence[int]) -> list[float | None]:
        """:meth:`PriceHistory.latest_before`, from this worker's records while the store is down."""
        if self.outage.due():
            answered, found = self.outage.attempt(lambda: self._flush_then_read(skus, event_ms), lambda: self.pending)
            if answered and found is not None:
                return found
        self.served_locally += len(skus)
        return [self._local_before(str(sku), int(ms)) for sku, ms in zip(skus, event_ms, strict=True)]

    def _flush_then_read(self, skus: Sequence[str], event_ms: Sequence[int]) -> list[float | None]:
        self._flush()
        return self.history.latest_before(skus, event_ms)

    def record(self, skus: Sequence[str], event_ms: Sequence[int], prices: Sequence[float]) -> None:
        """:meth:`PriceHistory.record`; kept for later when the store does not answer.

        Raises:
            DataError: The sequences differ in length or a price is not a finite positive number.
        """
        from pricewave.feature_store.price_history import check_rows

        rows = check_rows(skus, event_ms, prices)
        for sku, ms, price in rows:
            entries = self._local.setdefault(sku, {})
            entries[ms] = price
            if len(entries) > self.keep_per_sku:
                del entries[min(entries)]
        if not rows:
            return
        if not self._pending and self.outage.due():
            try:
                self.history.record(*zip(*rows, strict=True))
            except Exception as exc:
                if not is_store_failure(exc):
                    raise
                self._keep(rows)
                self.outage.failed(exc, self.pending)
            else:
                self.outage.succeeded()
            return
        self._keep(rows)
        if self.outage.due():
            self.outage.attempt(self._flush, lambda: self.pending)

    def close(self) -> None:
        """Try the kept records once more; what is left is dropped and logged."""
        if not self._pending:
            return
        try:
            self._flush()
        except Exception as exc:
            if not is_store_failure(exc):
                raise
            self.dropped += len(self._pending)
            LOG.error(
                "%s: online store still unavailable at close: %d price history records not written (%s)",
                self.outage.what,
                len(self._pending),
                one_line(exc),
            )
            self._pending.clear()

    def _flush(self) -> None:
        if not self._pending:
            return
        rows = [(sku, ms, price) for (sku, ms), price in self._pending.items()]
        self.history.record(*zip(*rows, strict=True))
        self._pending.clear()

    def _keep(self, rows: Sequence[tuple[str, int, float]]) -> None:
        for sku, ms, price in rows:
            self._pending[(sku, ms)] = price
        excess = len(self._pending) - self.max_pending
        if excess > 0:
            for key in sorted(self._pending, key=lambda key: key[1])[:excess]:
                del self._pending[key]
            self.dropped += excess

    def _local_before(self, sku: str, ms: int) -> float | None:
        earlier = [when for when in self._local.get(sku, ()) if when < ms]
        return self._local[sku][max(earlier)] if earlier else None
