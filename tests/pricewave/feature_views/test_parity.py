"""One feature definition, two engines: the job's streaming SQL and the offline frames give the same rows.

Every feature view has its Flink SQL (the job) beside its pandas computation (training, evaluation)
in :mod:`pricewave.feature_views`. Here both run on the same simulated history: the job's own
feature stage (:func:`pricewave.job.features.declare_features`) over bounded, event-time-ordered
inputs on a MiniCluster (one pipeline for every view), and the ``*_frame`` functions in pandas.
Every schema column the job computes is compared row by row:

* integers exactly; floats to 1e-6 relative (1e-9 absolute); the review embedding (float32) to
  1e-6 relative per element; NULL and NaN are the same missing value;
* the rows themselves: none may exist on one side only;
* keys: entity and event time. A windowed view's job row carries Flink's window time, the window
  end less 1 ms, the offline row the window end: the job's time + 1 ms is compared.

Review text is scored by a stand-in for MiniLM (:func:`review_scores`, the same on both sides):
the test is about the views' definitions, not the embedder.

:data:`MODEL_INPUTS` says, for each model input, which column supplies it at serving (what the job
hands its pricers) and offline (what training joins point-in-time); a model input without a
source on both sides fails :func:`test_every_model_input_is_supplied_at_serving_and_offline`.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pricewave.config import Settings, load_settings
from pricewave.feature_views import (
    shopper_profile,
    shopper_profile_frame,
    sku_competition,
    sku_competition_frame,
    sku_demand,
    sku_demand_frame,
    sku_review_frame,
    sku_review_summary,
    user_session,
    user_session_frame,
)
from pricewave.job.options import JobOptions
from pricewave.job.sources import INPUT_SCHEMAS
from pricewave.pricing.features import EMBEDDING_DIM, FEATURE_NAMES
from pricewave.schemas import flink_row_type
from pricewave.simulator.runner import Simulator
from pricewave.simulator.scenario import FaultsSpec, load_scenario
from pricewave.sql import interval
from pricewave.training import EMBEDDING_REF, FEATURE_REFS
from udfs.pricing import OfferPricer, SkuPricer

HISTORY_S = 1200
"""Simulated seconds of the ``small`` market: about 10,000 clicks, 400 competitor quotes, 150 reviews."""

HISTORY_START_MS = load_scenario("small").clock.start_ms + 45 * 60_000
"""45 minutes past an hour: the history spans two clock hours (an hourly summary differs from a running one)."""

RELATIVE_TOLERANCE = 1e-6
ABSOLUTE_TOLERANCE = 1e-9

OPTIONS = JobOptions()
"""The job's default windows: 1-minute slide, 5-minute and 1-hour horizons, 30-minute sessions."""

MODEL_INPUTS: dict[str, tuple[str, str]] = {
    # model input: (view, column) that supplies its raw value, or ("decision", column) of the
    # decision itself. competitor_gap and price_exposure divide by the catalog's base price;
    # is_holiday is the decision time's in the holiday calendar (udfs.pricing.with_holidays at
    # serving, pricewave.training.holiday_calendar offline; tests/udfs/test_pricing.py).
    "views_5m": ("sku_demand", "views_5m"),
    "carts_5m": ("sku_demand", "carts_5m"),
    "purchases_5m": ("sku_demand", "purchases_5m"),
    "conversion_5m": ("sku_demand", "conversion_5m"),
    "views_1h": ("sku_demand", "views_1h"),
    "purchases_1h": ("sku_demand", "purchases_1h"),
    "conversion_1h": ("sku_demand", "conversion_1h"),
    "competitor_gap": ("sku_competition", "competitor_min_price"),
    "competitor_offers": ("sku_competition", "competitor_offers"),
    "competitor_staleness_s": ("sku_competition", "competitor_staleness_s"),
    "sentiment": ("sku_review_summary", "sentiment"),
    "mean_rating": ("sku_review_summary", "mean_rating"),
    "review_count": ("sku_review_summary", "review_count"),
    "review_embedding": ("sku_review_summary", "review_embedding"),
    "recent_views": ("user_session", "recent_views"),
    "recent_carts": ("user_session", "recent_carts"),
    "price_exposure": ("user_session", "mean_price_seen"),
    "recency_s": ("user_session", "recency_s"),
    "shopper_history": ("shopper_profile", "shopper_views"),
    "shopper_conversion": ("shopper_profile", "shopper_purchases"),  # each rate over shopper_views
    "shopper_cart_rate": ("shopper_profile", "shopper_carts"),
    "shopper_click_rate": ("shopper_profile", "shopper_clicks"),
    "shopper_paid_ratio": ("shopper_profile", "shopper_paid_ratio"),
    "is_personalized": ("decision", "user_key"),
    "hour_sin": ("decision", "event_time"),
    "hour_cos": ("decision", "event_time"),
    "dow_sin": ("decision", "event_time"),
    "dow_cos": ("decision", "event_time"),
    "is_holiday": ("decision", "event_time"),
}

OFFER_PROFILE_COLUMNS = (
    "user_key",
    "shopper_views",
    "shopper_clicks",
    "shopper_carts",
    "shopper_purchases",
    "event_time",
)
"""What the offer pricer receives of the profile: the session rows carry it as of just before their click."""

VIEW_MODULES: dict[str, ModuleType | SimpleNamespace] = {
    "sku_demand": sku_demand,
    "sku_competition": sku_competition,
    "sku_review_summary": sku_review_summary,
    "user_session": user_session,
    "shopper_profile": shopper_profile,
    "offer_profile": SimpleNamespace(COLUMNS=OFFER_PROFILE_COLUMNS),
}

JOB_VIEWS: dict[str, tuple[str, str, str, str]] = {
    # view: (the job's SQL view, the rows the job uses, the entity key, the job's time column)
    "sku_demand": ("sku_demand", "TRUE", "sku", "window_time"),
    "sku_competition": ("sku_competition", "TRUE", "sku", "window_time"),
    "sku_review_summary": ("sku_review_summary", "TRUE", "sku", "event_time"),
    "user_session": ("user_sessions", user_session.session_event_filter(), "user_key", "event_time"),
    "shopper_profile": ("shopper_profiles", "TRUE", "user_key", "event_time"),
    "offer_profile": ("user_sessions", user_session.session_event_filter(), "user_key", "event_time"),
}
WINDOWED = frozenset({"sku_demand", "sku_competition"})

OFFLINE_ONLY = frozenset({("sku_competition", "competitor_gap")})
"""Schema columns only training computes: the gap to our own price (the model derives its own from base_price)."""


def test_every_model_input_is_supplied_at_serving_and_offline() -> None:
    inputs = {*FEATURE_NAMES, "review_embedding"}
    assert set(MODEL_INPUTS) == inputs, f"say what supplies {sorted(inputs ^ set(MODEL_INPUTS))}"
    handed_to_pricers = {*SkuPricer.COLUMNS, *OfferPricer.COLUMNS}
    joined_by_training = {*FEATURE_REFS, EMBEDDING_REF}
    for name, (view, column) in MODEL_INPUTS.items():
        assert column in handed_to_pricers, f"{name}: the job hands its pricers no {column}"
        if view != "decision":
            assert column in VIEW_MODULES[view].COLUMNS and (view, column) not in OFFLINE_ONLY, (name, view, column)
            assert f"{view}:{column}" in joined_by_training, f"{name}: training does not join {view}:{column}"


def review_scores(text: str) -> tuple[float, list[float]]:
    """A stand-in for the MiniLM scorer: a sentiment and a unit-length embedding drawn from the text's hash."""
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big"))
    vector = rng.normal(size=EMBEDDING_DIM)
    return float(rng.uniform(-1, 1)), (vector / np.linalg.norm(vector)).astype(np.float32).tolist()


@pytest.fixture(scope="module")
def history() -> dict[str, pd.DataFrame]:
    """A clean simulated history of the ``small`` market, each review scored by :func:`review_scores`."""
    no_faults = FaultsSpec(out_of_order_share=0, late_share=0, duplicate_share=0, malformed_share=0)
    texts = [f"review text {n}" for n in range(40)]
    sim = Simulator(
        load_scenario("small"),
        load_settings(env={}),
        seed=11,
        faults=no_faults,
        review_texts=texts,
        clock_start_ms=HISTORY_START_MS,
    )
    rows: dict[str, list[dict[str, Any]]] = {"click_event": [], "competitor_price": [], "review": []}
    for emission in sim.iter_events(duration_s=HISTORY_S):
        assert emission.record is not None
        rows[emission.name].append(emission.record)
    frames = {name: pd.DataFrame(records) for name, records in rows.items()}
    scores = [review_scores(text) for text in frames["review"]["text"]]
    frames["review"]["sentiment"] = [sentiment for sentiment, _ in scores]
    frames["review"]["review_embedding"] = [vector for _, vector in scores]
    return frames


def offline_views(history: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Every view's rows as training computes them (:func:`pricewave.training.feature_frames`), at the job's windows."""
    clicks = history["click_event"]
    profiles = shopper_profile_frame(clicks, horizon_s=OPTIONS.shopper_horizon_s)
    windows = {"slide_s": OPTIONS.window_slide_s, "short_s": OPTIONS.short_horizon_s}
    return {
        "sku_demand": sku_demand_frame(clicks, **windows, long_s=OPTIONS.long_horizon_s),
        "sku_competition": sku_competition_frame(history["competitor_price"], **windows, our_prices=clicks),
        "sku_review_summary": sku_review_frame(history["review"]),
        "user_session": user_session_frame(clicks, horizon_s=OPTIONS.session_gap_s),
        "shopper_profile": profiles,
        "offer_profile": offer_profiles(clicks, profiles),
    }


def offer_profiles(clicks: pd.DataFrame, profiles: pd.DataFrame) -> pd.DataFrame:
    """Per view or add-to-cart, the profile without the click itself: what training's point-in-time join
    1 ms before the click sees (no other click of the user shares the millisecond in this history)."""
    sessions = clicks.drop_duplicates("event_id")
    sessions = sessions[sessions["event_type"].isin(user_session.SESSION_EVENT_TYPES)]
    at_click = profiles.drop_duplicates(["user_key", "event_time"])
    rows = sessions[["user_key", "event_time", "event_type"]].merge(at_click, on=["user_key", "event_time"])
    return shopper_profile.before_event_frame(rows)[list(OFFER_PROFILE_COLUMNS)]


def write_inputs(history: dict[str, pd.DataFrame], directory: Path) -> None:
    """Each input as JSON lines in event-time order (so the watermark drops none), event time as ``event_time_ms``."""
    for role, schema in INPUT_SCHEMAS.items():
        frame = history[schema].sort_values("event_time", kind="stable").rename(columns={"event_time": "event_time_ms"})
        (directory / role).mkdir(parents=True)
        frame.drop(columns=["sentiment", "review_embedding"], errors="ignore").to_json(
            directory / role / "part-0.json", orient="records", lines=True
        )


def input_table_ddl(role: str, directory: Path) -> list[str]:
    """A bounded, event-time input in place of the job's ``valid_<role>`` view: its columns and watermark."""
    columns = [(name, sql_type) for name, sql_type in flink_row_type(INPUT_SCHEMAS[role]) if name != "event_time"]
    declared = ",\n  ".join(f"`{name}` {sql_type}" for name, sql_type in columns)
    return [
        f"""
CREATE TEMPORARY TABLE `bounded_{role}` (
  {declared},
  `event_time_ms` BIGINT,
  `event_time` AS TO_TIMESTAMP_LTZ(`event_time_ms`, 3),
  WATERMARK FOR `event_time` AS `event_time` - {interval(OPTIONS.out_of_orderness_s)}
) WITH ('connector' = 'filesystem', 'path' = '{directory / role}', 'format' = 'json')""",
        f"CREATE TEMPORARY VIEW `valid_{role}` AS "
        f"SELECT {', '.join(f'`{name}`' for name, _ in columns)}, `event_time` FROM `bounded_{role}`",
    ]


def scored_reviews_udf() -> Any:
    """``review_sentiment`` with the job's result type, scoring by :func:`review_scores` instead of MiniLM."""
    from pyflink.table.udf import udf

    from udfs.review_embedding import RESULT_TYPE

    def score(texts: pd.Series) -> pd.DataFrame:
        scores = [review_scores(text) for text in texts]
        return pd.DataFrame(
            {"sentiment": [s for s, _ in scores], "embedding": pd.Series([v for _, v in scores], dtype=object)}
        )

    return udf(score, result_type=RESULT_TYPE, func_type="pandas")


def table_environment() -> Any:
    """A streaming MiniCluster environment in the job's time zone (UTC: windows aligned to the epoch)."""
    from pyflink.common import Configuration
    from pyflink.table import EnvironmentSettings, TableEnvironment

    config = Configuration()
    config.set_string("table.local-time-zone", "UTC")
    config.set_string("parallelism.default", "1")
    config.set_string("python.executable", sys.executable)
    config.set_string("python.client.executable", sys.executable)
    environment = EnvironmentSettings.new_instance().in_streaming_mode().with_configuration(config).build()
    return TableEnvironment.create(environment)


def job_row_query(t_env: Any, view: str) -> tuple[str, list[str]]:
    """A SELECT of the job's rows of ``view`` as JSON objects, and the schema columns the job lacks."""
    sql_view, rows, _, time_column = JOB_VIEWS[view]
    present = set(t_env.from_path(sql_view).get_schema().get_field_names())
    wanted = [c for c in VIEW_MODULES[view].COLUMNS if c != "event_time" and (view, c) not in OFFLINE_ONLY]
    pairs = ", ".join(f"KEY '{c}' VALUE `{c}`" for c in wanted if c in present)
    select = f"SELECT '{view}', JSON_OBJECT({pairs}, KEY 'event_time' VALUE `{time_column}`) FROM `{sql_view}`"
    return f"{select} WHERE {rows}", [f"{view}.{c}" for c in wanted if c not in present]


def job_views(
    history: dict[str, pd.DataFrame], directory: Path, settings: Settings
) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Every view's rows from the job's feature stage, in one pipeline, and the columns it does not compute."""
    from pricewave.job.environment import register_java_functions
    from pricewave.job.features import declare_features

    write_inputs(history, directory)
    t_env = table_environment()
    for role in INPUT_SCHEMAS:
        for statement in input_table_ddl(role, directory):
            t_env.execute_sql(statement)
    t_env.create_temporary_function("review_sentiment", scored_reviews_udf())
    register_java_functions(t_env, settings)
    declare_features(t_env, OPTIONS)
    queries = [job_row_query(t_env, view) for view in JOB_VIEWS]
    # A filesystem sink, not collect(): collect() hands each row to Python in its own gateway call (slow).
    output = directory / "job_rows"
    t_env.execute_sql(
        "CREATE TEMPORARY TABLE `job_rows` (`view` STRING, `row_json` STRING) "
        f"WITH ('connector' = 'filesystem', 'path' = '{output}', 'format' = 'json')"
    )
    t_env.execute_sql("INSERT INTO `job_rows` " + " UNION ALL ".join(query for query, _ in queries)).wait()
    records: dict[str, list[dict[str, Any]]] = {view: [] for view in JOB_VIEWS}
    for path in sorted(output.rglob("part-*")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            records[record["view"]].append(json.loads(record["row_json"]))
    frames = {view: job_frame(rows, window=view in WINDOWED) for view, rows in records.items()}
    return frames, [name for _, missing in queries for name in missing]


def job_frame(rows: list[dict[str, Any]], *, window: bool) -> pd.DataFrame:
    """The job's rows with epoch-ms ``event_time`` (a window's end: its window time + 1 ms)."""
    frame = pd.DataFrame(rows)
    stamps = pd.to_datetime(frame["event_time"], utc=True, format="ISO8601")
    frame["event_time"] = (stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1) + int(window)
    return frame


def same_value(a: Any, b: Any) -> bool:
    """Equal within the tolerances; None and NaN are the same missing value."""
    a_missing = a is None or (isinstance(a, float) and math.isnan(a))
    b_missing = b is None or (isinstance(b, float) and math.isnan(b))
    if a_missing or b_missing:
        return a_missing and b_missing
    if isinstance(a, list | np.ndarray) or isinstance(b, list | np.ndarray):
        return len(a) == len(b) and bool(np.allclose(a, b, rtol=RELATIVE_TOLERANCE, atol=ABSOLUTE_TOLERANCE))
    return math.isclose(float(a), float(b), rel_tol=RELATIVE_TOLERANCE, abs_tol=ABSOLUTE_TOLERANCE)


def differences(view: str, job: pd.DataFrame, offline: pd.DataFrame) -> list[str]:
    """What differs between the engines' rows of one view: duplicate keys, rows on one side only, each column."""
    key = [JOB_VIEWS[view][2], "event_time"]
    duplicated = [side for side, frame in (("job", job), ("offline", offline)) if frame.duplicated(key).any()]
    problems = [f"{view}: duplicate keys in the {side}" for side in duplicated]
    merged = job.merge(offline[list(job.columns)], on=key, how="outer", suffixes=("_job", "_offline"), indicator=True)
    for side, label in (("left_only", "job"), ("right_only", "offline")):
        only = merged[merged["_merge"] == side]
        if len(only):
            example = only[key].iloc[0].tolist()
            problems.append(f"{view}: {len(only)} of {len(merged)} rows only in the {label}, e.g. {example}")
    both = merged[merged["_merge"] == "both"]
    for column in [c for c in job.columns if c not in key]:
        pairs = list(zip(both[f"{column}_job"], both[f"{column}_offline"], strict=True))
        wrong = [i for i, (a, b) in enumerate(pairs) if not same_value(a, b)]
        if wrong:
            first = both.iloc[wrong[0]]
            problems.append(
                f"{view}.{column}: {len(wrong)} of {len(pairs)} rows differ, e.g. {first[key].tolist()}: "
                f"job {shown(first[f'{column}_job'])} vs offline {shown(first[f'{column}_offline'])}"
                f"{largest_gap(pairs, wrong)}"
            )
    return problems


def shown(value: Any) -> str:
    """A value for the failure message (a vector by its first elements and its norm)."""
    if isinstance(value, list | np.ndarray):
        return f"[{', '.join(f'{v:.4g}' for v in list(value)[:3])}, ...] (norm {float(np.linalg.norm(value)):.4g})"
    return repr(value)


def largest_gap(pairs: list[tuple[Any, Any]], wrong: list[int]) -> str:
    """The largest absolute difference among the differing scalar rows with both values present."""
    gaps = [
        abs(float(a) - float(b))
        for a, b in (pairs[i] for i in wrong)
        if isinstance(a, int | float) and isinstance(b, int | float) and not (math.isnan(a) or math.isnan(b))
    ]
    return f"; largest difference {max(gaps):.6g}" if gaps else ""


@pytest.mark.integration
@pytest.mark.isolated  # a MiniCluster over files: no shared service
@pytest.mark.timeout(300)
def test_the_job_and_the_offline_frames_compute_the_same_feature_rows(
    history: dict[str, pd.DataFrame], tmp_path: Path, settings: Settings
) -> None:
    job, missing = job_views(history, tmp_path, settings)
    offline = offline_views(history)
    problems = [f"the job does not compute {name}" for name in missing]
    for view in JOB_VIEWS:
        assert len(offline[view]) > 100, f"{view}: too few rows to compare ({len(offline[view])})"
        problems += differences(view, job[view], offline[view])
    assert not problems, "\n".join(problems)
