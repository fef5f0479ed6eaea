"""Steps 2-4: features offline, entities at decision time, and Feast's point-in-time join into a training frame."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pricewave.config import HolidayPeriod, Settings
from pricewave.errors import DataError
from pricewave.feature_views import (
    shopper_profile_frame,
    sku_competition_frame,
    sku_demand_frame,
    sku_review_frame,
    user_session_frame,
)
from pricewave.pricing.features import is_holiday
from pricewave.simulator.scenario import Scenario
from pricewave.training.history import History

DECISION_LEAD_MS = 1
"""A price is decided before the view it is shown in: entity rows are stamped 1 ms earlier."""


# The feature view fields the model reads, as Feast feature references.
FEATURE_REFS: tuple[str, ...] = (
    "sku_demand:views_5m",
    "sku_demand:carts_5m",
    "sku_demand:purchases_5m",
    "sku_demand:conversion_5m",
    "sku_demand:views_1h",
    "sku_demand:purchases_1h",
    "sku_demand:conversion_1h",
    "sku_competition:competitor_min_price",
    "sku_competition:competitor_offers",
    "sku_competition:competitor_staleness_s",
    "sku_review_summary:review_count",
    "sku_review_summary:mean_rating",
    "sku_review_summary:sentiment",
    "user_session:recent_views",
    "user_session:recent_carts",
    "user_session:mean_price_seen",
    "user_session:recency_s",
    "shopper_profile:shopper_views",
    "shopper_profile:shopper_clicks",
    "shopper_profile:shopper_carts",
    "shopper_profile:shopper_purchases",
    "shopper_profile:shopper_paid_ratio",
    "sku_catalog:base_price",
    "sku_catalog:cost",
)


EMBEDDING_REF = "sku_review_summary:review_embedding"


FEATURE_VIEWS = (
    "sku_demand",
    "sku_competition",
    "sku_review_summary",
    "user_session",
    "shopper_profile",
    "sku_catalog",
)


def catalog_rows(catalog: pd.DataFrame) -> pd.DataFrame:
    """``sku_catalog`` rows from a history's ``catalog.parquet``."""
    columns = ["sku", "base_price", "cost", "map_price", "ceiling_price", "category", "event_time"]
    absent = sorted(set(columns) - set(catalog.columns))
    if absent:
        raise DataError(f"catalog lacks columns {absent}")
    return catalog[columns].copy()


def feature_frames(history: History) -> dict[str, pd.DataFrame]:
    """Every feature view's rows computed offline from the history's events."""
    return {
        "sku_demand": sku_demand_frame(history.clicks),
        "sku_competition": sku_competition_frame(history.competitor_prices, our_prices=history.clicks),
        "sku_review_summary": sku_review_frame(history.reviews),
        "user_session": user_session_frame(history.clicks),
        "shopper_profile": shopper_profile_frame(history.clicks),
        "sku_catalog": catalog_rows(history.catalog),
    }


def _repo_module(repo: Path, name: str) -> Any:
    """Import ``<repo>/<name>.py`` under a private name (the copy's own data directory)."""
    spec = importlib.util.spec_from_file_location(f"_pricewave_repo_{name}_{abs(hash(str(repo)))}", repo / f"{name}.py")
    if spec is None or spec.loader is None:
        raise DataError(f"cannot load {repo / name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def prepare_feature_repo(frames: Mapping[str, pd.DataFrame], work_dir: str | Path, settings: Settings) -> Path:
    """Copy ``feature_repo/`` into ``work_dir``, write ``frames`` as its parquet batch sources, apply it.

    Args:
        frames: Feature view name → rows (epoch-ms ``event_time``), e.g. :func:`feature_frames`.
        work_dir: Where the copy goes (``<work_dir>/feature_repo``; replaced if present).
        settings: pricewave settings.

    Returns:
        The applied copy's path.
    """
    from pricewave.feature_store.store import default_repo_path

    repo = Path(work_dir) / "feature_repo"
    if repo.exists():
        shutil.rmtree(repo)
    shutil.copytree(default_repo_path(settings), repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    sources = _repo_module(repo, "sources")  # creates the copy's empty parquet files
    for view, frame in frames.items():
        table = sources.TABLES[view]
        schema = sources._arrow_schema(table)
        data = frame.copy()
        data["event_time"] = pd.to_datetime(data["event_time"].astype("int64"), unit="ms", utc=True)
        missing = [name for name in schema.names if name not in data.columns]
        if missing:
            raise DataError(f"rows for {view} lack columns {missing}")
        table_data = pa.Table.from_pandas(data[schema.names], schema=schema, preserve_index=False)
        pq.write_table(table_data, sources.DATA_DIR / f"{view}.parquet")
    from pricewave.feature_store.store import apply_repo

    apply_repo(repo, settings, "sqlite")
    return repo


def entity_frame(exposures: pd.DataFrame) -> pd.DataFrame:
    """One entity row per in-stock view: keys, decision time, the shown price and the outcome."""
    views = exposures[exposures["in_stock"].astype(bool)] if "in_stock" in exposures.columns else exposures
    event_ms = views["event_time"].astype("int64").to_numpy()
    decision_ms = event_ms - DECISION_LEAD_MS
    return pd.DataFrame(
        {
            "sku": views["sku"].astype(str).to_numpy(),
            "user_key": views["user_key"].astype(str).to_numpy(),
            "event_timestamp": pd.to_datetime(decision_ms, unit="ms", utc=True),
            # not `event_time`: that is the feature views' timestamp column inside the join
            "decision_ms": decision_ms,
            "price_shown": views["price_shown"].astype(float).to_numpy(),
            "purchased": views["purchased"].astype(bool).to_numpy(),
        }
    )


def point_in_time_join(
    repo: str | Path,
    entities: pd.DataFrame,
    settings: Settings,
    features: Sequence[str] = FEATURE_REFS,
) -> pd.DataFrame:
    """``get_historical_features`` on an applied repo: each row gets the features as of its timestamp.

    One retrieval per feature view: Feast's file offline store drops an entity row altogether
    when a view has rows for its key but none valid at its timestamp (e.g. a user's first view),
    so each view is joined alone and such rows get NaN for that view only.

    Returns:
        The entity rows (original order) with one column per feature (NaN when none was valid).
    """
    from pricewave.feature_store.store import open_store

    store = open_store(settings, repo_path=repo, profile="sqlite")
    frame = entities.reset_index(drop=True).assign(_row=lambda f: np.arange(len(f)))
    by_view: dict[str, list[str]] = {}
    for ref in features:
        by_view.setdefault(ref.split(":", 1)[0], []).append(ref)
    out = frame
    for view, refs in by_view.items():
        keys = store.get_feature_view(view).join_keys
        columns = [*keys, "event_timestamp", "_row"]
        joined = store.get_historical_features(entity_df=frame[columns], features=refs).to_df()
        names = [ref.split(":", 1)[1] for ref in refs]
        out = out.merge(joined[["_row", *names]], on="_row", how="left")
    return out.sort_values("_row").drop(columns="_row").reset_index(drop=True)


def holiday_flags(scenario: Scenario | None, event_ms: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Whether each time falls in one of the scenario's holidays (False without a scenario)."""
    return is_holiday(scenario.holiday_calendar() if scenario is not None else [], event_ms)


def holiday_calendar(history: History, settings: Settings) -> list[HolidayPeriod]:
    """The calendar a history's ``is_holiday`` comes from: its scenario's, else the configured one (the job's)."""
    return history.scenario.holiday_calendar() if history.scenario is not None else list(settings.holidays)


def build_training_frame(
    history: History,
    settings: Settings,
    work_dir: str | Path,
    *,
    personalized_share: float | None = None,
    seed: int = 0,
    with_embeddings: bool = False,
) -> pd.DataFrame:
    """Features as of each decision (point-in-time join through Feast) plus price and label.

    By default every view is a row twice: once as the sku pricer sees it (no ``user_key``: the price
    for everyone, learned from every view of the population) and once as the offer pricer does
    (``user_key``, session and shopper profile on). A random split instead left the population's
    price response half the views while the profile explained much of the other half: the sku
    prices' fit got noisier and less calibrated. With ``personalized_share`` a random share of
    the views keeps its ``user_key`` and the rest are sku-level, each view once.
    """
    repo = prepare_feature_repo(feature_frames(history), work_dir, settings)
    refs = [*FEATURE_REFS, EMBEDDING_REF] if with_embeddings else list(FEATURE_REFS)
    frame = point_in_time_join(repo, entity_frame(history.exposures), settings, refs)
    frame["event_time"] = frame["decision_ms"]
    if personalized_share is None:
        sku_level = frame.assign(user_key=None)
        frame = pd.concat([sku_level, frame], ignore_index=True).sort_values("decision_ms", kind="stable")
        frame = frame.reset_index(drop=True)
    else:
        rng = np.random.default_rng(seed)
        frame["user_key"] = frame["user_key"].where(rng.random(len(frame)) < personalized_share, None)
    frame["is_holiday"] = is_holiday(holiday_calendar(history, settings), frame["event_time"].to_numpy())
    frame["log_price_ratio"] = np.log(frame["price_shown"] / frame["base_price"])
    return frame
