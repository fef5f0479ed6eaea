"""Pricing and online-store UDFs of the streaming job, all vectorized (pandas on Arrow batches).

* :class:`SkuPricer`: one dynamic price per sku and window from the window features and the
  sku's review summary as of the window (both from the job), the catalog (online store) and the
  price published for the sku's previous window (:mod:`pricewave.feature_store.price_history`),
  through :class:`pricewave.pricing.policy.PricingPolicy` — the same call the offline evaluation
  makes.
* :class:`OfferPricer`: a personalized offer per view / add-to-cart event, capped by the sku's
  price for everyone as of the event's time (discount-only), with the disclosure flag; the job
  hands it that price, the sku's window features and review summary through an event-time
  temporal join, and the user's session features with the click.
* Both add the decision's context: ``is_holiday`` of its event time in the settings' holiday
  calendar (:func:`with_holidays`; the calendar travels with the job like the other settings).
* Each pricer writes the decisions it published into the Feast online store itself (``sku_price``
  / ``user_offer``), batched and event-time guarded through
  :class:`pricewave.feature_store.FeatureWriter`, in the same Python call that priced them: a
  separate push UDF cost every decision another crossing to a Python worker and another bundle on
  the price's way to the store. :class:`FeaturePush` writes the feature views the same way.

A store failure (Redis down or hung, SQLite locked or corrupt) never raises out of a UDF: the
store degrades, not the job (:mod:`pricewave.feature_store.degraded`). The writers keep what
the store refused, newest row per entity key, and write it when the store answers again; the
pricers price from their per-worker copy of the catalog (re-read every ``catalog_refresh_s``) and
the sku pricer reads the price history from what it recorded itself until the store is back.
A catalog change reaches the pricers within ``catalog_refresh_s``; during an outage a sku price can
differ from an outage-free run only where the worker's own records lack the previous price (a
worker started during the outage prices such a window without the rate limit's reference).

Nothing a pricer reads depends on when the job's other branches ran (from the store it reads only
the catalog, which the job never writes), so a price is a function of the input: a replay after a
failure prices exactly as the first attempt.

Each pricer returns the decision as its wire JSON (``schemas/price_decision``), which the job
sends to the ``prices`` topic unchanged, and as typed columns for the decision log. Models and
stores are opened once per worker in ``open()``; a new model version is picked up without a
restart (:class:`pricewave.pricing.artifact.ArtifactWatcher`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from pyflink.table import DataTypes
from pyflink.table.udf import ScalarFunction, UserDefinedFunctionWrapper, udf

from pricewave.config import REDIS_PASSWORD_ENV, HolidayPeriod, Settings, secret_environment
from pricewave.pricing.features import DEMAND_FEATURES, is_holiday
from pricewave.schemas import check_event, flink_row_type, load_schema
from udfs.metrics import DecisionMetrics, register_store_metrics

# Flink's types for the schema's scalar column types (``flink_row_type``).
_FLINK_DATA_TYPES = {
    "STRING": DataTypes.STRING(),
    "DOUBLE": DataTypes.DOUBLE(),
    "BOOLEAN": DataTypes.BOOLEAN(),
    "INT": DataTypes.INT(),
    "BIGINT": DataTypes.BIGINT(),
}
# The columns a decision travels in (the decision log's and the store writer's), from the
# ``price_decision`` schema: each scalar field typed, in the schema's order. The list and object
# fields (``guardrails``, ``explanation``) travel only inside the wire JSON, ``decision_json``;
# ``features_json`` logs what the decision was priced on.
DECISION_RECORD_COLUMNS: tuple[str, ...] = tuple(
    spec.name for spec in load_schema("price_decision").fields if not spec.is_array and spec.json_type != "object"
)
DECISION_COLUMN_TYPES: tuple[tuple[str, str], ...] = (
    ("decision_json", "STRING"),
    *((name, sql_type) for name, sql_type in flink_row_type("price_decision") if name in DECISION_RECORD_COLUMNS),
    ("features_json", "STRING"),
)
DECISION_FIELDS = [(name, _FLINK_DATA_TYPES[sql_type]) for name, sql_type in DECISION_COLUMN_TYPES]
DECISION_ROW = DataTypes.ROW([DataTypes.FIELD(name, kind) for name, kind in DECISION_FIELDS])

# What the pricers read from the online store, per view: the catalog only, which the job never
# writes (anything the job itself writes would make a price depend on timing).
STORE_CONTEXT: dict[str, tuple[str, ...]] = {"sku_catalog": ("base_price", "cost", "map_price", "ceiling_price")}
SKU_DEMAND_FEATURES = DEMAND_FEATURES  # what the model reads of the sku_demand view
SKU_COMPETITION_FEATURES = ("competitor_min_price", "competitor_offers", "competitor_staleness_s")
# The sku's review summary as of the window (an event-time temporal join in the job).
SKU_REVIEW_FEATURES = ("review_count", "mean_rating", "sentiment", "review_embedding")
# What a sku decision was priced on, which offers receive with the sku's price.
SKU_WINDOW_FEATURES = (*SKU_DEMAND_FEATURES, *SKU_COMPETITION_FEATURES, *SKU_REVIEW_FEATURES)
# What a decision logs of its inputs (``features_json``): all but the 384-float review embedding.
LOGGED_FEATURES = tuple(name for name in SKU_WINDOW_FEATURES if name != "review_embedding")


def to_millis(values: pd.Series) -> np.ndarray:
    """Epoch milliseconds of a timestamp (or already-millis integer) column."""
    if pd.api.types.is_datetime64_any_dtype(values):
        # Flink hands timestamps over at ms or µs resolution: normalize the unit before converting.
        stamps = pd.to_datetime(values, utc=True).astype("datetime64[ns, UTC]")
        return (stamps.astype("int64") // 1_000_000).to_numpy()
    return values.astype("int64").to_numpy()


def with_holidays(frame: pd.DataFrame, holidays: Sequence[HolidayPeriod]) -> pd.DataFrame:
    """``frame`` with the model's ``is_holiday`` of each row's epoch-ms ``event_time`` in the job's calendar.

    The calendar is the settings' (``holidays``), which travel with the job; training reads the
    same definition (:func:`pricewave.pricing.features.is_holiday`).

    Example:
        >>> from pricewave.config import HolidayPeriod
        >>> sale = HolidayPeriod(name="sale", start="2026-11-27", end="2026-11-28")
        >>> with_holidays(pd.DataFrame({"event_time": [1795737600000, 1795824000000]}), [sale])["is_holiday"].tolist()
        [True, False]
    """
    return frame.assign(is_holiday=is_holiday(holidays, frame["event_time"].to_numpy()))


def decision_id(kind: str, sku: str, user_key: str | None, event_time_ms: int) -> str:
    """A decision's id: the same decision replayed after a restart gets the same id."""
    text = f"{kind}|{sku}|{user_key or ''}|{event_time_ms}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def read_online(store: Any, entity_rows: list[dict[str, Any]], views: dict[str, tuple[str, ...]]) -> pd.DataFrame:
    """One online read for a batch: ``<feature>`` columns plus ``<view>__event_ms`` per view."""
    from feast.type_map import feast_value_type_to_python_type

    refs = [f"{view}:{name}" for view, names in views.items() for name in names]
    response = store.get_online_features(features=refs, entity_rows=entity_rows, full_feature_names=True)
    columns: dict[str, list[Any]] = {}
    names = list(response.proto.metadata.feature_names.val)
    for name, vector in zip(names, response.proto.results, strict=True):
        if name in ("sku", "user_key"):
            continue
        view, feature = name.split("__", 1)
        columns[feature] = [feast_value_type_to_python_type(value) for value in vector.values]
        event_column = f"{view}__event_ms"
        if event_column not in columns:
            columns[event_column] = [
                (stamp.seconds * 1000 + stamp.nanos // 1_000_000) if (stamp.seconds or stamp.nanos) else None
                for stamp in vector.event_timestamps
            ]
    return pd.DataFrame(columns)


def _json_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def decisions_frame(
    kind: str,
    inputs: pd.DataFrame,
    decided: pd.DataFrame,
    now_ms: int,
    published: list[dict[str, Any]] | None = None,
) -> pd.DataFrame:
    """Assemble the UDF's output rows (wire JSON + typed columns) from the policy's decisions.

    With ``published``, each record that is published (has its wire JSON) is appended to it too,
    as a dict: what the pricer writes into the online store.
    """
    rows = []
    # Plain dicts, not iloc[i]: a Series per row costs more than the model does.
    for row, out in zip(inputs.to_dict("records"), decided.to_dict("records"), strict=True):
        user_key = row.get("user_key") if kind == "offer" else None
        event_ms = int(row["event_time"])
        price = _json_value(out["price"])
        record = {
            "decision_id": decision_id(kind, str(row["sku"]), user_key, event_ms),
            "kind": kind,
            "sku": str(row["sku"]),
            "user_key": user_key,
            "price": price,
            "base_price": _json_value(out["base_price"]),
            "guardrail": out["guardrail"],
            "guardrails": list(out["guardrails"]),
            "model_version": str(out["model_version"]),
            "propensity": float(out["propensity"]),
            "personalized": bool(out["personalized"]) if kind == "offer" else False,
            "decision_time": now_ms,
            "event_time": event_ms,
        }
        conversion = _json_value(out["expected_conversion"])
        if conversion is not None:
            record["expected_conversion"] = float(min(max(conversion, 0.0), 1.0))
        explanation = json.loads(out["explanation"]) if out["explanation"] else None
        if explanation:
            record["explanation"] = explanation
        decision_json = None
        if price is not None:
            decision_json = json.dumps(record, separators=(",", ":"), allow_nan=False)
            _, reason = check_event("price_decision", decision_json.encode(), now_ms=now_ms)
            if reason is not None:  # a contract bug, never a bad input: publish nothing, say why
                record["guardrail"] = f"invalid_decision: {reason}"
                decision_json = None
            elif published is not None:
                published.append(record)
        features = {name: _json_value(row.get(name)) for name in LOGGED_FEATURES}
        rows.append(
            {
                "decision_json": decision_json,
                **{name: record.get(name) for name in DECISION_RECORD_COLUMNS},
                "features_json": json.dumps(features, separators=(",", ":")),
            }
        )
    return pd.DataFrame(rows, columns=[name for name, _ in DECISION_FIELDS])


class _SettingsCarrier(ScalarFunction):
    """Carries the job's settings to the Python workers (they travel pickled with the UDF, so a
    worker sees what the submitting process saw, whatever its own environment).

    The feature repo, store profile and model directory travel as absolute paths
    (:func:`pricewave.feature_store.store.pinned_settings`), and the Redis password with them: a
    TaskManager's environment is not the submitting shell's, and the worker must open the same store.
    """

    def __init__(self, settings: Settings) -> None:
        from pricewave.feature_store.store import pinned_settings

        self.settings_data = pinned_settings(settings).model_dump(mode="json")
        self.store_secrets = {k: v for k, v in secret_environment().items() if k == REDIS_PASSWORD_ENV}

    @property
    def settings(self) -> Settings:
        for name, value in self.store_secrets.items():
            os.environ.setdefault(name, value)  # the worker's own environment wins where it has one
        return Settings.model_validate(self.settings_data)


class _PricerBase(_SettingsCarrier):
    """Opens the online store and the policy once per worker; keeps a copy of the catalog."""

    def open(self, function_context: object) -> None:
        from pricewave.feature_store import open_store
        from pricewave.feature_store.degraded import CatalogCache, Outage
        from pricewave.feature_store.stores import ops_for
        from pricewave.pricing.artifact import ArtifactWatcher
        from pricewave.pricing.guardrails import job_guardrails
        from pricewave.pricing.policy import PricingPolicy

        _one_torch_thread_per_worker_process()
        settings = self.settings
        self.holidays = settings.holidays
        self.store = open_store(settings, tolerate_outage=True)
        self.outage = Outage(type(self).__name__)
        ops = ops_for(self.store)

        def read_catalog(skus: list[str]) -> pd.DataFrame:
            with ops.translate_errors(self.store):
                return read_online(self.store, [{"sku": sku} for sku in skus], STORE_CONTEXT)

        columns = [column for view, names in STORE_CONTEXT.items() for column in (*names, f"{view}__event_ms")]
        self.catalog = CatalogCache(read_catalog, columns, refresh_s=settings.catalog_refresh_s, outage=self.outage)
        model_dir = settings.model_dir
        model_dir.mkdir(parents=True, exist_ok=True)
        guardrails = job_guardrails(settings)
        watcher = ArtifactWatcher(model_dir)
        self.policy = PricingPolicy(watcher, guardrails)
        self.decision_writer = _buffered_writer(self.store, type(self).__name__, self.outage)
        register_store_metrics(function_context, type(self).__name__, self.outage, self.decision_writer)
        self.metrics = DecisionMetrics(
            function_context, type(self).__name__, self.policy.artifact, lambda: watcher.load_failures
        )

    def close(self) -> None:
        writer = getattr(self, "decision_writer", None)
        if writer is not None:
            writer.close()

    def _write_decisions(self, published: list[dict[str, Any]]) -> None:
        """The published decisions into ``sku_price`` / ``user_offer``; never raises for the store
        (what it refuses waits in the writer's backlog, newest per key)."""
        writer = getattr(self, "decision_writer", None)
        if writer is None or not published:  # a pricer used without open() (a unit test) writes nothing
            return
        from pricewave.feature_store import split_price_decisions

        for view, rows in split_price_decisions(published).items():
            if len(rows):
                writer.write(view, rows)

    def _decide(self, frame: pd.DataFrame, now_ms: int) -> pd.DataFrame:
        """The policy's decisions for ``frame``, counted in the pricer's Flink metrics."""
        decided = self.policy.decide(frame)
        if hasattr(self, "metrics"):  # a pricer used without open() (a unit test) counts nothing
            self.metrics.record(decided, frame["event_time"].to_numpy(), now_ms)
        return decided

    def _with_context(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` (epoch-ms ``event_time``) with its catalog rows and ``is_holiday`` (:func:`with_holidays`)."""
        context = self.catalog.lookup(frame["sku"].tolist())
        context["ceiling"] = context.pop("ceiling_price")
        return with_holidays(pd.concat([frame.reset_index(drop=True), context], axis=1), self.holidays)


class SkuPricer(_PricerBase):
    """``price_sku(sku, window_time, <demand...>, <competition...>, <reviews...>) -> ROW`` per sku window.

    The rate limit compares with the price published for the sku's previous window, read from the
    price history as of the window's event time; each published price is recorded there before
    the next window of the sku is priced. A batch holding several windows of one sku (a backlog)
    prices them in event-time order, one step per window; the job hands each sku's windows over in
    event-time order, so every run sees the same previous prices.
    """

    COLUMNS = ("sku", "window_time", *SKU_WINDOW_FEATURES)

    def open(self, function_context: object) -> None:
        from pricewave.feature_store.degraded import BufferedPriceHistory
        from pricewave.feature_store.price_history import PriceHistory

        super().open(function_context)
        self.history = BufferedPriceHistory(PriceHistory(self.store), self.outage)

    def close(self) -> None:
        try:
            history = getattr(self, "history", None)
            if history is not None:
                history.close()
        finally:
            super().close()

    def eval(self, *columns: pd.Series) -> pd.DataFrame:
        frame = pd.DataFrame(dict(zip(self.COLUMNS, columns, strict=True)))
        frame["event_time"] = to_millis(frame.pop("window_time"))
        frame = self._with_context(frame)
        frame["user_key"] = None
        now_ms = int(time.time() * 1000)
        if frame.empty:
            return decisions_frame("sku", frame, self._decide(frame, now_ms), now_ms)
        # Step k prices the k-th window (in event time) of every sku in the batch.
        steps = frame.groupby("sku", sort=False)["event_time"].rank(method="first").to_numpy()
        parts = []
        records: list[dict[str, Any]] = []
        for step in np.unique(steps):
            rows = frame[steps == step].copy()
            rows["last_published"] = self.history.latest_before(rows["sku"].tolist(), rows["event_time"].tolist())
            decided = decisions_frame("sku", rows, self._decide(rows, now_ms), now_ms, records).set_axis(rows.index)
            published = decided[decided["decision_json"].notna()]
            self.history.record(
                published["sku"].tolist(), published["event_time"].tolist(), published["price"].tolist()
            )
            parts.append(decided)
        self._write_decisions(records)
        return pd.concat(parts).loc[frame.index].reset_index(drop=True)


def sku_pricer_udf(settings: Settings) -> UserDefinedFunctionWrapper:
    """The vectorized sku pricer for the TableEnvironment."""
    return udf(SkuPricer(settings), result_type=DECISION_ROW, func_type="pandas")


class OfferPricer(_PricerBase):
    """``price_offer(user_key, sku, event_time, <session...>, sku_price, <sku window...>) -> ROW``.

    A personalized offer, triggered by a view or add-to-cart, from the user's session and shopper
    profile as of the click (:mod:`pricewave.feature_views.shopper_profile`). The job joins each click with its
    sku's published price, window features and review summary as of the click's event time (an
    event-time temporal join on the sku decisions), so the offer does not depend on when another
    branch wrote the online store. The cap for the discount-only policy is that price for everyone
    (``sku_price``), else the base price; NULL window features mean "not priced yet" and the kill
    switch prices the offer. The catalog comes from the store.
    """

    COLUMNS = (
        "user_key",
        "sku",
        "event_time",
        "recent_views",
        "recent_carts",
        "mean_price_seen",
        "dwell_s",
        "recency_s",
        "shopper_views",
        "shopper_clicks",
        "shopper_carts",
        "shopper_purchases",
        "shopper_paid_ratio",
        "sku_price",
        *SKU_WINDOW_FEATURES,
    )

    def eval(self, *columns: pd.Series) -> pd.DataFrame:
        frame = pd.DataFrame(dict(zip(self.COLUMNS, columns, strict=True)))
        frame["event_time"] = to_millis(frame["event_time"])
        frame = self._with_context(frame)
        frame["non_personalized_price"] = frame.pop("sku_price")
        frame["last_published"] = np.nan  # offers are per event: no rate limit between them
        now_ms = int(time.time() * 1000)
        records: list[dict[str, Any]] = []
        decided = decisions_frame("offer", frame, self._decide(frame, now_ms), now_ms, records)
        self._write_decisions(records)
        return decided


def offer_pricer_udf(settings: Settings) -> UserDefinedFunctionWrapper:
    """The vectorized offer pricer for the TableEnvironment."""
    return udf(OfferPricer(settings), result_type=DECISION_ROW, func_type="pandas")


class FeaturePush(_SettingsCarrier):
    """``push_<view>(<view's columns...>) -> BIGINT``: write a batch of feature rows to the store.

    Returns 1 for rows written and 0 for rows the store already had newer (event-time guard) or
    kept for later because the store did not answer.
    """

    def __init__(self, settings: Settings, view: str, columns: tuple[str, ...]) -> None:
        super().__init__(settings)
        self.view = view
        self.columns = columns

    def open(self, function_context: object) -> None:
        from pricewave.feature_store import open_store

        self.writer = _buffered_writer(open_store(self.settings, tolerate_outage=True), f"push_{self.view}")
        register_store_metrics(function_context, f"push_{self.view}", self.writer.outage, self.writer)

    def eval(self, *columns: pd.Series) -> pd.Series:
        frame = pd.DataFrame(dict(zip(self.columns, columns, strict=True)))
        if "event_time" in frame and pd.api.types.is_datetime64_any_dtype(frame["event_time"]):
            frame["event_time"] = to_millis(frame["event_time"])
        count = self.writer.write(self.view, frame)
        written = np.zeros(len(frame), dtype=np.int64)
        written[:count] = 1  # a count per batch; rows carry no individual outcome
        return pd.Series(written)

    def close(self) -> None:
        writer = getattr(self, "writer", None)
        if writer is not None:
            writer.close()


def _one_torch_thread_per_worker_process() -> None:
    """One torch thread in a Python worker process of its own (process mode, every cluster).

    A job runs several Python workers per core; torch's default of one intra-op thread per core in
    each makes them contend, and the network's batches (a bundle, ~100 rows) are too small to gain
    from threads. A loopback worker is a thread of the client's process (an embedded run, a test),
    whose torch setting is the client's to keep.
    """
    import sys

    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name == "pyflink.fn_execution.beam.beam_boot":
        import torch

        torch.set_num_threads(1)


def _buffered_writer(store: Any, what: str, outage: Any = None) -> Any:
    """A :class:`pricewave.feature_store.degraded.BufferedWriter` on an open (maybe degraded) store."""
    from pricewave.feature_store import FeatureWriter
    from pricewave.feature_store.degraded import JOB_BUSY_RETRY_PAUSES_S, BufferedWriter

    return BufferedWriter(FeatureWriter(store, busy_retry_pauses_s=JOB_BUSY_RETRY_PAUSES_S), what, outage=outage)


def feature_push_udf(settings: Settings, view: str, columns: tuple[str, ...]) -> UserDefinedFunctionWrapper:
    """The vectorized online-store writer of one feature view."""
    return udf(FeaturePush(settings, view, columns), result_type=DataTypes.BIGINT(), func_type="pandas")
