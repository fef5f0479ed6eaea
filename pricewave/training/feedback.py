"""The feedback loop: train from the job's decision log joined to what shoppers did, then gate.

``pricewave train --from-log`` (:func:`train_from_log`):

1. **Decisions**: the sku decisions of the decision log (:func:`decision_log_frame`) with the
   features they were priced on (``features_json``) and their logged propensity.
2. **Outcomes** (:func:`decisions_with_outcomes`): each view or purchase is attributed to the
   newest sku decision at or before it whose price is the one the shopper saw (``price_seen``, to
   the cent): a purchase that follows a price change belongs to the decision its shopper was shown.
   Views, purchases and the margin Σ (price paid − cost) · quantity are summed per decision. The
   catalog gives cost and limits, the previous decision of the sku the ``last_published`` price
   the guardrails saw.
3. **Split by time**: the first part trains, the last ``gate_share`` judges (the gate never sees a
   decision the candidate learned from).
4. **Fit** (:func:`~pricewave.training.fit.fit_demand_model`) on one row per logged view, labelled by
   whether it was bought: the same demand model as ``pricewave train``, learned from the prices
   the shop really showed, explored ones included.
5. **Gate** (:mod:`~pricewave.training.promotion`) against the serving model on the held-out
   decisions; ``LATEST`` moves only if it passes, and the running jobs reload it.

Only sku decisions are used: an offer's log row does not carry the shopper's session features
it was priced on, so it cannot be replayed.

Example:
    >>> decisions = pd.DataFrame({"sku": ["A", "A"], "event_time": [0, 60_000], "price": [10.0, 11.0],
    ...     "base_price": [10.0, 10.0], "propensity": [1.0, 0.9]})
    >>> clicks = pd.DataFrame({"sku": ["A", "A", "A"], "event_type": ["view", "view", "purchase"],
    ...     "price_seen": [10.0, 11.0, 10.0], "quantity": [None, None, 2], "event_time": [5, 70_000, 70_009]})
    >>> catalog = pd.DataFrame({"sku": ["A"], "cost": [6.0], "map_price": [None], "ceiling_price": [15.0]})
    >>> out = decisions_with_outcomes(decisions, clicks, catalog)
    >>> out[["views", "purchases", "margin", "last_published"]].to_dict("list")
    {'views': [1, 1], 'purchases': [1, 0], 'margin': [8.0, 0.0], 'last_published': [nan, 10.0]}
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from pricewave.config import HolidayPeriod, Settings
from pricewave.errors import DataError
from pricewave.evaluation.off_policy import logged_decisions, view_labels
from pricewave.pricing.artifact import ModelArtifact, load_artifact, save_artifact
from pricewave.pricing.exploration import DEFAULT_EPSILON
from pricewave.pricing.features import is_holiday
from pricewave.pricing.guardrails import GuardrailPolicy
from pricewave.training.fit import fit_demand_model
from pricewave.training.promotion import GateLimits, GateResult, promote, promotion_gate

T = TypeVar("T")


def decision_log_frame(directory: str | Path) -> pd.DataFrame:
    """The published sku decisions of a decision log, one row each, with their features as columns.

    Raises:
        DataError: No committed part file, or no published sku decision in them.
    """
    from pricewave.audit import read_decision_log

    log = read_decision_log(Path(directory))
    if not log.files:
        raise DataError(
            f"no decision log at {directory}: run the pricing job (its decision log goes to "
            "<state>/decision_log) or pass --from-log DIR"
        )
    rows = []
    for row in log.rows:
        if row.get("kind") != "sku" or row.get("price") is None or row.get("propensity") is None:
            continue
        features = json.loads(row.get("features_json") or "{}")
        rows.append({**features, **{k: v for k, v in row.items() if k != "features_json"}})
    if not rows:
        raise DataError(f"the decision log at {directory} holds no published sku decision yet")
    frame = pd.DataFrame(rows).drop_duplicates("decision_id")  # a replayed part file repeats ids
    return frame.sort_values(["event_time", "sku"], kind="stable").reset_index(drop=True)


def decisions_with_outcomes(
    decisions: pd.DataFrame,
    clicks: pd.DataFrame,
    catalog: pd.DataFrame,
    holidays: Sequence[HolidayPeriod] = (),
) -> pd.DataFrame:
    """Each sku decision with the views, purchases and margin of the clicks that saw its price.

    Args:
        decisions: Sku decisions (``sku``, ``event_time``, ``price``, ``base_price``, ``propensity``
            and the features they were priced on), e.g. :func:`decision_log_frame`.
        clicks: Click events (``sku``, ``event_type``, ``price_seen``, ``event_time``; ``quantity``
            of purchases, 1 when absent).
        catalog: ``sku``, ``cost``, ``map_price``, ``ceiling_price``.
        holidays: The job's holiday calendar (the model's ``is_holiday``).

    Returns:
        The decisions in event-time order with ``cost``, ``map_price``, ``ceiling``,
        ``last_published``, ``is_holiday``, ``views``, ``purchases`` and ``margin``.
    """
    absent = sorted({"sku", "cost", "map_price", "ceiling_price"} - set(catalog.columns))
    if absent:
        raise DataError(f"the catalog lacks columns {absent}")
    frame = decisions.sort_values(["sku", "event_time"], kind="stable").reset_index(drop=True)
    frame["event_time"] = frame["event_time"].astype("int64")
    frame["last_published"] = frame.groupby("sku")["price"].shift(1)
    limits = catalog[["sku", "cost", "map_price", "ceiling_price"]].drop_duplicates("sku", keep="last")
    frame = frame.drop(columns=[c for c in ("cost", "map_price", "ceiling") if c in frame.columns])
    frame = frame.merge(limits.rename(columns={"ceiling_price": "ceiling"}), on="sku", how="left")
    frame["_decision"] = np.arange(len(frame))
    frame["is_holiday"] = is_holiday(holidays, frame["event_time"].to_numpy())
    seen = clicks[clicks["event_type"].isin(["view", "purchase"]) & clicks["sku"].isin(frame["sku"])].copy()
    counts = pd.DataFrame({"views": 0, "purchases": 0, "margin": 0.0}, index=frame.index)
    if not seen.empty:
        seen["event_time"] = seen["event_time"].astype("int64")
        seen["_cents"] = np.round(seen["price_seen"].to_numpy(dtype=np.float64) * 100).astype("int64")
        decided = frame[["sku", "event_time", "price", "cost", "_decision"]].assign(
            _cents=np.round(frame["price"].to_numpy(dtype=np.float64) * 100).astype("int64")
        )
        # The newest decision of the sku at or before the click that showed the price it saw: a
        # purchase after a price change still belongs to the decision its shopper was shown.
        matched = pd.merge_asof(
            seen.sort_values("event_time", kind="stable"),
            decided.sort_values("event_time", kind="stable"),
            on="event_time",
            by=["sku", "_cents"],
            direction="backward",
        ).dropna(subset=["_decision"])
        quantity = matched["quantity"].fillna(1) if "quantity" in matched.columns else 1
        bought = matched["event_type"] == "purchase"
        per = (
            pd.DataFrame(
                {
                    "_decision": matched["_decision"].astype("int64"),
                    "views": (matched["event_type"] == "view").astype("int64"),
                    "purchases": bought.astype("int64"),
                    "margin": np.where(bought, (matched["price_seen"] - matched["cost"]) * quantity, 0.0),
                }
            )
            .groupby("_decision")[["views", "purchases", "margin"]]
            .sum()
        )
        counts.loc[per.index, ["views", "purchases", "margin"]] = per.to_numpy()
    frame[["views", "purchases", "margin"]] = counts
    frame["views"] = frame["views"].astype("int64")
    frame["purchases"] = frame["purchases"].astype("int64")
    frame = frame.drop(columns="_decision")
    return frame.sort_values(["event_time", "sku"], kind="stable").reset_index(drop=True)


def training_rows(logged: pd.DataFrame) -> pd.DataFrame:
    """One row per logged view, labelled ``purchased`` (a decision's purchases label as many of its views).

    The sku-level training frame :func:`~pricewave.training.fit.fit_demand_model` takes: no user, so
    the session features are unknown, as when a sku price is decided.
    """
    rows = logged.loc[logged.index.repeat(logged["views"].to_numpy(dtype=np.int64))].reset_index(drop=True)
    rows["purchased"] = view_labels(logged)
    rows["user_key"] = None
    rows["log_price_ratio"] = np.log(
        rows["price"].to_numpy(dtype=np.float64) / rows["base_price"].to_numpy(dtype=np.float64)
    )
    return rows


def split_by_time(logged: pd.DataFrame, gate_share: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The first ``1 − gate_share`` of the log's time range trains, the rest judges."""
    if not 0 < gate_share < 1:
        raise DataError(f"the gate's share of the log must lie in (0, 1), not {gate_share}")
    times = logged["event_time"].to_numpy(dtype=np.int64)
    if times.size == 0:
        return logged, logged
    split = times.min() + (1 - gate_share) * (times.max() - times.min())
    return logged[times < split].reset_index(drop=True), logged[times >= split].reset_index(drop=True)


@dataclass(frozen=True)
class FeedbackRound:
    """One ``train --from-log`` round: the candidate, the verdict and whether ``LATEST`` moved."""

    version: str
    path: Path
    metrics: dict[str, Any]
    gate: GateResult
    promoted: bool
    train_decisions: int
    gate_decisions: int


def serving_artifact(model_dir: Path) -> ModelArtifact | None:
    """The model ``LATEST`` names in ``model_dir`` (None when none is published)."""
    if not (model_dir / "LATEST").is_file():
        return None
    return load_artifact(model_dir, device="cpu")


def train_from_log(
    logged: pd.DataFrame,
    model_dir: str | Path,
    *,
    guardrails: GuardrailPolicy,
    epsilon: float = DEFAULT_EPSILON,
    gate_share: float = 0.3,
    limits: GateLimits | None = None,
    epochs: int = 40,
    patience: int = 5,
    seed: int = 0,
    progress: bool = True,
) -> FeedbackRound:
    """Fit a candidate on the log's earlier decisions, gate it on the later ones, promote if it passes.

    Args:
        logged: :func:`decisions_with_outcomes` rows.
        model_dir: The model directory the job serves (``LATEST``).
        guardrails, epsilon: What the job prices with (the gate judges the candidate as it would serve).
        gate_share: The share of the log's time range held out for the gate.
        limits: The gate's thresholds.
        epochs, patience, seed, progress: The fit's.

    Raises:
        DataError: Too little logged data to train on, or fewer held-out decisions than the gate's
            ``min_decisions``: then nothing is trained or written.
    """
    limits = limits or GateLimits()
    # None shown yet (a job just started) is "too little", said below like any short log.
    shown = logged_decisions(logged, allow_empty=True)
    train_part, gate_part = split_by_time(shown, gate_share)
    if train_part.empty or len(gate_part) < limits.min_decisions:
        # Said before fitting: nothing is trained or written that the gate could not judge.
        raise DataError(
            f"the decision log holds {len(shown):,} shown sku decisions, {len(gate_part):,} of them in the "
            f"held-out last {gate_share:.0%} of its time range; the gate needs {limits.min_decisions:,}: "
            "let the job run longer, or lower --min-decisions"
        )
    fit = fit_demand_model(training_rows(train_part), epochs=epochs, patience=patience, seed=seed, progress=progress)
    data_range = {
        "source": "decision log",
        "start_ms": int(shown["event_time"].min()),
        "end_ms": int(shown["event_time"].max()),
        "decisions": len(train_part),
        "views": int(train_part["views"].sum()),
    }
    root = Path(model_dir)
    serving = serving_artifact(root)
    version = save_artifact(fit.model, None, fit.metrics, data_range, root, publish=False)
    candidate = load_artifact(root / version, device="cpu")
    result = promotion_gate(candidate, serving, gate_part, guardrails, epsilon=epsilon, limits=limits)
    promoted = promote(result, root, version)
    return FeedbackRound(version, root / version, fit.metrics, result, promoted, len(train_part), len(gate_part))


def run_continuously(
    one_round: Callable[[], T],
    *,
    every_s: float,
    rounds: int | None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[T]:
    """Call ``one_round`` every ``every_s`` seconds, ``rounds`` times (None: until interrupted).

    Example:
        >>> run_continuously(lambda: "round", every_s=0.0, rounds=3)
        ['round', 'round', 'round']
    """
    done: list[T] = []
    while rounds is None or len(done) < rounds:
        started = time.monotonic()
        done.append(one_round())
        if rounds is not None and len(done) >= rounds:
            break
        sleep(max(0.0, every_s - (time.monotonic() - started)))
    return done


def clicks_from_history(directory: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(clicks, catalog)`` of a history directory (``pricewave simulate --history-out DIR``)."""
    root = Path(directory).expanduser()
    missing = [name for name in ("click_event", "catalog") if not (root / f"{name}.parquet").is_file()]
    if missing:
        raise DataError(f"{root} lacks {', '.join(f'{m}.parquet' for m in missing)}: not a simulator history")
    return pd.read_parquet(root / "click_event.parquet"), pd.read_parquet(root / "catalog.parquet")


def clicks_from_topic(settings: Settings, *, timeout_s: float = 300.0) -> pd.DataFrame:
    """Every committed, valid click event on the clickstream topic (malformed ones are skipped)."""
    from pricewave.kafka_io import read_topic_values
    from pricewave.schemas import check_event

    records = []
    for value in read_topic_values(settings, settings.topics.clicks, timeout_s=timeout_s):
        record, reason = check_event("click_event", value or b"")
        if reason is None and record is not None:
            records.append(record)
    columns = ["sku", "event_type", "price_seen", "quantity", "event_time"]
    return pd.DataFrame.from_records(records, columns=columns) if records else pd.DataFrame(columns=columns)


def catalog_from_store(settings: Settings, skus: Sequence[str], store: Any = None) -> pd.DataFrame:
    """The online store's ``sku_catalog`` rows (cost and limits) of ``skus``, as the pricers read them.

    Args:
        settings: pricewave settings (the store to open when ``store`` is None).
        skus: The skus to read.
        store: An open Feast store (default: ``open_store(settings)``).
    """
    from pricewave.feature_store import open_store
    from udfs.pricing import STORE_CONTEXT, read_online

    ordered = sorted(set(skus))
    rows = read_online(store or open_store(settings), [{"sku": sku} for sku in ordered], STORE_CONTEXT)
    return rows.assign(sku=ordered)
