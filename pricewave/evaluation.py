"""Closed-loop evaluation of pricing policies in the market simulator, and a real-data check (Ta Feng).

:func:`evaluate` runs the simulator IN PROCESS once per policy, with the same seed:

1. **Warm-up** (identical for every policy): ``warmup_events`` clean events at explored prices
   (:class:`~pricewave.training.ExplorationPriceBook`). They are also the training history of the
   pricing network (unless ``model`` is given) and of the least-squares baseline.
2. **Policy phase**: every ``interval_s`` simulated seconds each sku is re-priced from features
   computed by :mod:`pricewave.feature_views` over the recent events (the streaming job's
   windows at "now"), through the same guardrails for every policy, and the prices go into the
   simulator's price book. The static run lasts ``events`` events; the others the same number of
   intervals. Same seed ⇒ the same catalog, hidden segments, competitor price paths and purchase
   draws (common random numbers: the simulator's streams are separate, though shoppers' think
   times share a stream with arrivals, so sessions drift apart once outcomes differ).

Policies: ``static`` (list price), ``competitor_match`` (the cheapest in-stock competitor,
clamped by the guardrails), ``linear`` (least squares ``y = Xβ`` on the network's features plus
``log(p / base_price)``; the price maximizing margin on its predicted demand) and ``network``
(:meth:`~pricewave.pricing.policy.PricingPolicy.decide`, the streaming UDF's call, no exploration).

Figures per policy, over the views of the policy phase (definitions also in the report):

* ``revenue``, ``margin``: realized, from purchases; ``expected_margin``: Σ (p − cost) × P(buy)
  under the hidden model at the shown prices (no purchase noise);
* ``conversion``: purchases / views;
* ``regret``: 1 − expected margin / expected margin at the oracle's best single price per sku
  and moment (the right oracle for sku-level prices); ``regret_personalized`` uses the per-segment
  oracle price instead;
* ``price_error``: view-weighted mean of |p − p*| × κ with κ = 1 / unit cost (the deviation from
  the sku-level oracle price p* in units of the sku's cost); ``price_error_abs`` the same in currency.

Example:
    >>> from pricewave.config import load_settings                      # doctest: +SKIP
    >>> report = evaluate("small", "/tmp/eval", load_settings())         # doctest: +SKIP
    >>> report["policies"]["network"]["regret"] < report["policies"]["linear"]["regret"]  # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from tqdm import tqdm

from pricewave.config import Settings
from pricewave.errors import ConfigError, DataError
from pricewave.feature_views import sku_competition_frame, sku_demand_frame, sku_review_frame
from pricewave.pricing.artifact import ModelArtifact, load_artifact
from pricewave.pricing.features import FEATURE_NAMES, assert_no_protected_inputs, build_feature_matrix
from pricewave.pricing.guardrails import GuardrailPolicy, apply_guardrails_vectorized, feasible_interval
from pricewave.pricing.optimizer import candidate_grid
from pricewave.simulator.runner import RunSummary, Simulator
from pricewave.simulator.scenario import Scenario, load_scenario
from pricewave.training import (
    ExplorationPriceBook,
    exploring_simulator,
    generate_history,
    holiday_flags,
    load_history,
    train,
)

POLICIES: tuple[str, ...] = ("static", "competitor_match", "linear", "network")
DEFINITIONS = {
    "margin": "realized margin Σ (price − cost) × units over the purchases of the policy phase",
    "expected_margin": "Σ over in-stock views of (shown price − cost) × P(buy) under the hidden demand model",
    "conversion": "purchases / views in the policy phase",
    "regret": "1 − expected_margin / expected margin at the best single price per sku and moment "
    "(population-mix oracle, the oracle of sku-level prices)",
    "regret_personalized": "1 − expected_margin / expected margin at each view's per-segment oracle price",
    "price_error": "view-weighted mean over (interval, sku) of |p − p*| × κ, κ = 1 / unit cost "
    "(p* = the population-mix oracle price at the decision time)",
    "price_error_abs": "view-weighted mean of |p − p*| in currency",
    "margin_vs_static": "realized margin / the static run's realized margin − 1 (different views and purchase "
    "draws: noisy)",
    "paired_margin_vs_static": "Σ (p − cost) × P(buy | p) / Σ (list price − cost) × P(buy | list price) − 1 over the "
    "SAME views of this run (common random numbers: no purchase noise, no view drift)",
    "elasticity": "demand elasticity d log P / d log p at the shown price: the network's −e(1 − P) vs the "
    "simulator's, numerically, for the population mix; Pearson over (interval, sku) pairs",
}
_RECENT_MS = 3_600_000


# -- the linear (least squares) baseline ---------------------------------------------------------


@dataclass(frozen=True)
class LinearDemand:
    """The least-squares demand baseline: ``P(buy) ≈ [1, x, log(p / base)] · β``."""

    beta: npt.NDArray[np.float64]

    @classmethod
    def fit(cls, frame: pd.DataFrame) -> LinearDemand:
        """β = (XᵀX)⁻¹Xᵀy (least squares, minimum-norm when X is rank deficient) on a training frame."""
        x, missing = build_feature_matrix(frame)
        ratio = frame["log_price_ratio"].to_numpy(dtype=np.float64)
        rows = ~missing & np.isfinite(ratio)
        if rows.sum() < 50:
            raise DataError("too few rows with features to fit the linear baseline")
        design = np.column_stack([np.ones(rows.sum()), x[rows].astype(np.float64), ratio[rows]])
        labels = frame["purchased"].to_numpy(dtype=np.float64)[rows]
        beta, *_ = np.linalg.lstsq(design, labels, rcond=None)
        return cls(beta)

    @property
    def price_coefficient(self) -> float:
        """The coefficient of log(price / base price)."""
        return float(self.beta[-1])

    def demand(self, x: npt.NDArray[np.float32], log_ratio: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Predicted P(buy) for rows ``x`` (n, F) at log price ratios (n, K), clipped to [0, 1]."""
        base = self.beta[0] + x.astype(np.float64) @ self.beta[1:-1]
        return np.asarray(np.clip(base[:, None] + self.beta[-1] * log_ratio, 0.0, 1.0), dtype=np.float64)

    def coefficients(self) -> dict[str, float]:
        """β by input name."""
        names = ["intercept", *FEATURE_NAMES, "log_price_ratio"]
        return {name: round(float(value), 6) for name, value in zip(names, self.beta, strict=True)}


# -- one closed-loop run -------------------------------------------------------------------------


@dataclass
class RunTrace:
    """What one policy's run recorded, per interval and in total."""

    policy: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[pd.DataFrame] = field(default_factory=list)
    totals: dict[str, float] = field(default_factory=dict)
    events: int = 0


class _Recent:
    """The events of the last hour (clicks, competitor prices) and every review, as frames."""

    def __init__(self) -> None:
        self.clicks: list[pd.DataFrame] = []
        self.prices: list[pd.DataFrame] = []
        self.reviews: list[pd.DataFrame] = []

    def add(self, records: Mapping[str, list[dict[str, Any]]]) -> None:
        for name, target in (("click_event", self.clicks), ("competitor_price", self.prices), ("review", self.reviews)):
            if records.get(name):
                target.append(pd.DataFrame.from_records(records[name]))

    @staticmethod
    def _window(parts: list[pd.DataFrame], since_ms: int) -> pd.DataFrame:
        frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        if frame.empty:
            return frame
        frame = frame[frame["event_time"] >= since_ms]
        parts[:] = [frame]
        return frame

    def frames(self, now_ms: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        clicks = self._window(self.clicks, now_ms - _RECENT_MS)
        prices = self._window(self.prices, now_ms - _RECENT_MS)
        reviews = self._window(self.reviews, 0)
        return clicks, prices, reviews


class _PairedMargin:
    """Expected margin of each view at the shown price AND at the list price, under the hidden model.

    Read right after the simulator yields a view, when the market is exactly as at the view, so
    the counterfactual "what the static list price would have earned on these very views" has
    neither purchase noise nor the drift of the view stream between runs.
    """

    def __init__(self, sim: Simulator) -> None:
        market = sim.market
        self.sim = sim
        self.segment_of = {market.user(i).user_key: market.segment_of(i) for i in range(sim.scenario.users.n_users)}
        self.shown = 0.0
        self.at_list = 0.0

    def add(self, record: Mapping[str, Any]) -> None:
        market, sku = self.sim.market, record["sku"]
        item = market.skus[sku]
        segment = self.segment_of[record["user_key"]]
        context = market.context(sku, int(record["event_time"]))
        price = float(record["price_seen"])
        self.shown += (price - item.cost) * market.purchase_probability(segment, sku, price, context)
        self.at_list += (item.list_price - item.cost) * market.purchase_probability(
            segment, sku, item.list_price, context
        )


def _advance(sim: Simulator, until_ms: int, recent: _Recent, paired: _PairedMargin | None = None) -> int:
    """Run the simulator up to ``until_ms`` collecting the clean records; returns how many."""
    records: dict[str, list[dict[str, Any]]] = {"click_event": [], "competitor_price": [], "review": []}
    count = 0
    duration_s = max(0.0, (until_ms - sim.now_ms) / 1000)
    for emission in sim.iter_events(duration_s=duration_s):
        record = emission.record
        if record is not None:
            records[emission.name].append(record)
            count += 1
            if paired is not None and emission.name == "click_event" and record["event_type"] == "view":
                paired.add(record)
    recent.add(records)
    return count


def decision_frame(sim: Simulator, recent: _Recent, now_ms: int, last_published: Mapping[str, float]) -> pd.DataFrame:
    """One row per sku: catalog, guardrail inputs and the features at window end ``now_ms``."""
    clicks, prices, reviews = recent.frames(now_ms)
    skus = list(sim.market.skus.values())
    frame = pd.DataFrame(
        {
            "sku": [s.sku for s in skus],
            "base_price": [s.list_price for s in skus],
            "cost": [s.cost for s in skus],
            "map_price": [s.map_price or np.nan for s in skus],
            "ceiling": [s.ceiling for s in skus],
            "event_time": now_ms,
            "last_published": [last_published.get(s.sku, np.nan) for s in skus],
        }
    )
    before = clicks[clicks["event_time"] < now_ms] if not clicks.empty else clicks
    if not before.empty:
        demand = sku_demand_frame(before, window_ends=[now_ms]).drop(columns="event_time")
        frame = frame.merge(demand, on="sku", how="left")
    if not prices.empty:
        competition = sku_competition_frame(
            prices[prices["event_time"] < now_ms], our_prices=before, window_ends=[now_ms]
        ).drop(columns=["event_time", "competitor_gap"])
        frame = frame.merge(competition, on="sku", how="left")
    if not reviews.empty:
        summary = sku_review_frame(reviews[reviews["event_time"] < now_ms])
        latest = summary.groupby("sku").tail(1).drop(columns=["event_time", "review_embedding"])
        frame = frame.merge(latest, on="sku", how="left")
    frame["is_holiday"] = holiday_flags(sim.scenario, np.full(len(frame), now_ms, dtype=np.int64))
    return frame


class _Pricer:
    """Turns a decision frame into prices for one policy (NaN = publish nothing)."""

    def __init__(
        self,
        policy: str,
        guardrails: GuardrailPolicy,
        linear: LinearDemand | None = None,
        artifact: ModelArtifact | None = None,
    ) -> None:
        self.policy = policy
        self.guardrails = guardrails
        self.linear = linear
        self.artifact = artifact
        self._network: Any = None
        if policy == "network":
            from pricewave.pricing.policy import PricingPolicy

            if artifact is None:
                raise ConfigError("the network policy needs a model artifact")
            created = artifact.created_at
            self._network = PricingPolicy(
                artifact, guardrails, exploration_epsilon=0.0, device="cpu", clock=lambda: created
            )

    def prices(self, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
        gp = self.guardrails
        common = {
            "cost": frame["cost"].to_numpy(dtype=np.float64),
            "base_price": frame["base_price"].to_numpy(dtype=np.float64),
            "map_price": frame["map_price"].to_numpy(dtype=np.float64),
            "ceiling": frame["ceiling"].to_numpy(dtype=np.float64),
            "last_published": frame["last_published"].to_numpy(dtype=np.float64),
        }
        if self.policy == "static":
            return np.full(len(frame), np.nan)
        if self.policy == "network":
            return np.asarray(self._network.decide(frame)["price"].to_numpy(dtype=np.float64))
        if self.policy == "competitor_match":
            cheapest = (
                frame["competitor_min_price"].to_numpy(dtype=np.float64)
                if "competitor_min_price" in frame.columns
                else np.full(len(frame), np.nan)
            )
            candidate = np.where(np.isfinite(cheapest), cheapest, common["base_price"])
            return np.asarray(apply_guardrails_vectorized(gp, candidate=candidate, model_age_s=0.0, **common).price)
        assert self.linear is not None
        x, missing = build_feature_matrix(frame)
        interval = feasible_interval(gp, **common)
        usable = interval.feasible
        lo = np.where(usable, interval.lo, 1.0)
        hi = np.where(usable, interval.hi, 1.0)
        grid = candidate_grid(lo, hi, 32)
        log_ratio = np.log(grid / common["base_price"][:, None])
        value = (grid - common["cost"][:, None]) * self.linear.demand(x, log_ratio)
        candidate = grid[np.arange(len(frame)), np.argmax(value, axis=1)]
        batch = apply_guardrails_vectorized(
            gp, candidate=candidate, model_age_s=0.0, features_missing=missing, interval=interval, **common
        )
        return np.asarray(batch.price)


def _summary_figures(summary: RunSummary) -> dict[str, float]:
    return {
        "views": summary.views,
        "stockout_views": summary.stockout_views,
        "purchases": summary.purchases,
        "units": summary.units,
        "revenue": summary.revenue,
        "margin": summary.margin,
        "expected_margin": summary.expected_margin,
        "oracle_margin": summary.oracle_margin,
        "sku_oracle_margin": summary.sku_oracle_margin,
    }


def _population_elasticity(sim: Simulator, sku: str, price: float, now_ms: int) -> float:
    """d log P / d log p of the population mix at ``price`` (central difference)."""
    market = sim.market
    context = market.context(sku, now_ms)
    h = 0.01
    prices = np.array([price * math.exp(-h), price * math.exp(h)])
    weights = market.segment_view_weights()
    demand = np.zeros(2)
    for segment, weight in weights.items():
        demand += weight * market.purchase_probability_curve(segment, sku, prices, context)
    return float((math.log(demand[1]) - math.log(demand[0])) / (2 * h))


def run_policy(
    pricer: _Pricer,
    scenario: Scenario,
    settings: Settings,
    *,
    seed: int,
    warmup_events: int,
    interval_s: int,
    events: int | None = None,
    steps: int | None = None,
    oracle_cache: dict[tuple[int, str], float] | None = None,
    progress: bool = True,
) -> RunTrace:
    """One closed-loop run: the shared warm-up, then re-price every ``interval_s`` until done.

    Stops after ``events`` events of the policy phase (the reference run) or after ``steps``
    intervals (the others, so every policy covers the same simulated time).
    """
    sim = exploring_simulator(scenario, settings, seed, explore_until_ms=None, review_texts=["(review)"])
    book = sim.pricebook
    assert isinstance(book, ExplorationPriceBook)
    recent = _Recent()
    records: dict[str, list[dict[str, Any]]] = {"click_event": [], "competitor_price": [], "review": []}
    for emission in sim.iter_events(max_events=warmup_events):
        if emission.record is not None:
            records[emission.name].append(emission.record)
    recent.add(records)
    interval_ms = interval_s * 1000
    first = (sim.now_ms // interval_ms + 1) * interval_ms
    book.until_ms = first
    _advance(sim, first, recent)
    # Every policy starts with full shelves: the per-view margin objective (and the oracle) ignore
    # inventory, so a stock-out inherited from the warm-up would decide the comparison instead.
    sim.market.replenish()
    trace = RunTrace(pricer.policy)
    paired = _PairedMargin(sim)
    start = _summary_figures(sim.summary)
    last = dict(start)
    shown: dict[str, float] = {}
    oracle_cache = {} if oracle_cache is None else oracle_cache
    bar = tqdm(total=steps or events, desc=f"evaluate {pricer.policy}", disable=not progress, leave=False)
    step = 0
    now = first
    while True:
        frame = decision_frame(sim, recent, now, shown)
        prices = pricer.prices(frame)
        for sku, price in zip(frame["sku"], prices, strict=True):
            if np.isfinite(price):
                book.set_sku_price(sku, float(price), event_time=now)
                shown[sku] = float(price)
        frame["price"] = [shown.get(s.sku, s.list_price) for s in sim.market.skus.values()]
        frame["oracle_price"] = [
            oracle_cache.setdefault((step, sku), sim.market.oracle_price(None, sku, sim.market.context(sku, now)))
            for sku in frame["sku"]
        ]
        if pricer.policy == "network":
            weights = sim.market.segment_view_weights()
            frame["true_demand_elasticity"] = [
                _population_elasticity(sim, sku, price, now)
                for sku, price in zip(frame["sku"], frame["price"], strict=True)
            ]
            frame["true_logit_coefficient"] = [
                sum(w * sim.market.true_elasticity(s, sku) for s, w in weights.items()) for sku in frame["sku"]
            ]
        paired_before = (paired.shown, paired.at_list)
        added = _advance(sim, now + interval_ms, recent, paired)
        trace.events += added
        clicks, _, _ = recent.frames(now + interval_ms)
        period = (
            clicks[(clicks["event_time"] >= now) & (clicks["event_type"] == "view")] if not clicks.empty else clicks
        )
        views = period["sku"].value_counts() if not period.empty else pd.Series(dtype="int64")
        frame["views"] = frame["sku"].map(views).fillna(0).astype(int)
        frame["step"] = step
        trace.decisions.append(frame)
        figures = _summary_figures(sim.summary)
        trace.steps.append(
            {
                "step": step,
                "time_ms": now,
                **{k: figures[k] - last[k] for k in figures},
                "paired_shown": paired.shown - paired_before[0],
                "paired_list": paired.at_list - paired_before[1],
            }
        )
        last = figures
        step += 1
        now += interval_ms
        bar.update(1 if steps else added)
        if (steps is not None and step >= steps) or (steps is None and events is not None and trace.events >= events):
            break
    bar.close()
    trace.totals = {k: last[k] - start[k] for k in last}
    trace.totals["paired_shown"], trace.totals["paired_list"] = paired.shown, paired.at_list
    return trace


# -- the report ----------------------------------------------------------------------------------


def _policy_figures(trace: RunTrace, static_margin: float | None) -> dict[str, Any]:
    t = trace.totals
    decisions = pd.concat(trace.decisions, ignore_index=True)
    weights = decisions["views"].to_numpy(dtype=np.float64)
    deviation = (decisions["price"] - decisions["oracle_price"]).abs().to_numpy()
    total_weight = weights.sum() or 1.0
    figures = {
        "revenue": round(t["revenue"], 2),
        "margin": round(t["margin"], 2),
        "expected_margin": round(t["expected_margin"], 2),
        "conversion": round(t["purchases"] / t["views"], 5) if t["views"] else 0.0,
        "views": int(t["views"]),
        "purchases": int(t["purchases"]),
        "units": int(t["units"]),
        "stockout_views": int(t["stockout_views"]),
        "regret": round(1 - t["expected_margin"] / t["sku_oracle_margin"], 5) if t["sku_oracle_margin"] else None,
        "regret_personalized": round(1 - t["expected_margin"] / t["oracle_margin"], 5) if t["oracle_margin"] else None,
        "price_error": round(float((weights * deviation / decisions["cost"].to_numpy()).sum() / total_weight), 5),
        "price_error_abs": round(float((weights * deviation).sum() / total_weight), 4),
        "events": trace.events,
    }
    if static_margin:
        figures["margin_vs_static"] = round(t["margin"] / static_margin - 1, 5)
    if t["paired_list"] > 0:
        figures["paired_margin_vs_static"] = round(t["paired_shown"] / t["paired_list"] - 1, 5)
    return figures


def _elasticity_report(trace: RunTrace, artifact: ModelArtifact) -> dict[str, Any]:
    """The network's elasticities vs the simulator's over the network run's decisions."""
    import torch

    decisions = pd.concat(trace.decisions, ignore_index=True)
    x, missing = build_feature_matrix(decisions)
    rows = np.flatnonzero(~missing)
    if rows.size < 3:
        return {"pearson": None, "n": int(rows.size)}
    model = artifact.model
    with torch.no_grad():
        base, elasticity = model.decompose(torch.as_tensor(x[rows]).to(next(model.parameters()).device))
    base_np, coef = base.double().cpu().numpy(), elasticity.double().cpu().numpy()
    ratio = np.log(decisions["price"].to_numpy()[rows] / decisions["base_price"].to_numpy()[rows])
    probability = 1 / (1 + np.exp(-(base_np - coef * ratio)))
    model_demand = -coef * (1 - probability)
    true_demand = decisions["true_demand_elasticity"].to_numpy(dtype=np.float64)[rows]
    true_coef = decisions["true_logit_coefficient"].to_numpy(dtype=np.float64)[rows]

    def pearson(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float | None:
        if a.size < 3 or np.std(a) < 1e-12 or np.std(b) < 1e-12:
            return None  # undefined: one side is constant
        return round(float(np.corrcoef(a, b)[0, 1]), 4)

    per_sku = pd.DataFrame({"sku": decisions["sku"].to_numpy()[rows], "model": model_demand, "true": true_demand})
    means = per_sku.groupby("sku").mean()
    return {
        "pearson": pearson(model_demand, true_demand),
        "pearson_sku_means": pearson(means["model"].to_numpy(), means["true"].to_numpy()),
        "pearson_logit_coefficient": pearson(coef, true_coef),
        "model_mean_demand_elasticity": round(float(model_demand.mean()), 4),
        "true_mean_demand_elasticity": round(float(true_demand.mean()), 4),
        "model_mean_logit_coefficient": round(float(coef.mean()), 4),
        "true_mean_logit_coefficient": round(float(true_coef.mean()), 4),
        "n": int(rows.size),
    }


def _plots(traces: Mapping[str, RunTrace], out: Path, skus: Sequence[str]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, trace in traces.items():
        steps = pd.DataFrame(trace.steps)
        hours = (steps["time_ms"] - steps["time_ms"].iloc[0]) / 3_600_000
        ax.plot(hours, steps["margin"].cumsum(), label=name)
    ax.set_xlabel("simulated hours into the policy phase")
    ax.set_ylabel("cumulative realized margin")
    ax.set_title("Margin over time per policy (same seed)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "margin_over_time.png", dpi=110)
    plt.close(fig)
    files.append("margin_over_time.png")

    fig, axes = plt.subplots(len(skus), 1, figsize=(7, 2.6 * len(skus)), sharex=True, squeeze=False)
    for ax, sku in zip(axes[:, 0], skus, strict=True):
        reference = None
        for name, trace in traces.items():
            d = pd.concat(trace.decisions, ignore_index=True)
            d = d[d["sku"] == sku]
            hours = (d["event_time"] - d["event_time"].min()) / 3_600_000
            ax.step(hours, d["price"], where="post", label=name)
            reference = (hours, d)
        if reference is not None:
            hours, d = reference
            if "competitor_min_price" in d.columns:
                ax.plot(hours, d["competitor_min_price"], color="black", linestyle=":", label="cheapest competitor")
            ax.plot(hours, d["oracle_price"], color="grey", linestyle="--", label="oracle p*")
        ax.set_ylabel(sku)
    axes[0, 0].legend(fontsize=7, ncol=3)
    axes[-1, 0].set_xlabel("simulated hours into the policy phase")
    fig.suptitle("Price trajectories vs competitors")
    fig.tight_layout()
    fig.savefig(out / "price_trajectories.png", dpi=110)
    plt.close(fig)
    files.append("price_trajectories.png")
    return files


_TABLE_HEADER = (
    "| policy | revenue | margin | vs static | vs static (paired) | conversion | regret | regret (pers. oracle) "
    "| price error |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


def _markdown(report: Mapping[str, Any]) -> str:
    rows = []
    for name, p in report["policies"].items():
        realized, paired = p.get("margin_vs_static"), p.get("paired_margin_vs_static")
        rows.append(
            f"| {name} | {p['revenue']:,.2f} | {p['margin']:,.2f} | "
            f"{'' if realized is None else f'{realized:+.1%}'} | {'' if paired is None else f'{paired:+.1%}'} | "
            f"{p['conversion']:.2%} | {p['regret']:.2%} | {p['regret_personalized']:.2%} | {p['price_error']:.4f} |"
        )
    e = report.get("elasticity", {})
    definitions = "\n".join(f"- **{k}**: {v}" for k, v in report["definitions"].items())
    return f"""# Closed-loop evaluation: scenario `{report["scenario"]}`, seed {report["seed"]}

Policy phase: {report["policy_phase"]["start_iso"]} to {report["policy_phase"]["end_iso"]}
({report["policy_phase"]["intervals"]} re-pricing intervals of {report["interval_s"]} s) after a warm-up of
{report["warmup_events"]:,} events at explored prices (the training history), starting with full stock.
Network model `{report["network"]["model_version"]}`.

{_TABLE_HEADER}
{chr(10).join(rows)}

Network elasticity vs the simulator's (demand elasticity at the shown price): Pearson
{e.get("pearson")} over {e.get("n")} (interval, sku) pairs; per-sku means {e.get("pearson_sku_means")};
mean {e.get("model_mean_demand_elasticity")} (model) vs {e.get("true_mean_demand_elasticity")} (true).

![margin over time](margin_over_time.png)

![price trajectories](price_trajectories.png)

Definitions:
{definitions}
"""


def evaluate(
    scenario: Scenario | str | Path,
    out_dir: str | Path,
    settings: Settings,
    *,
    seed: int = 0,
    events: int = 30_000,
    warmup_events: int = 60_000,
    model: str | Path | None = None,
    interval_s: int = 300,
    epochs: int = 40,
    patience: int = 5,
    price_points: bool = False,
    policies: Iterable[str] = POLICIES,
    progress: bool = True,
    model_out: str | Path | None = None,
) -> dict[str, Any]:
    """Run every policy closed loop and write ``report.json``, ``report.md`` and the plots to ``out_dir``.

    Args:
        scenario: A scenario, a shipped name or a YAML path.
        out_dir: Where the report goes (created).
        settings: pricewave settings.
        seed: The seed every run shares.
        events: Length of the policy phase, in events of the static run.
        warmup_events: Events at explored prices before the policy phase (the training history).
        model: A model directory or version directory; default: train one on the warm-up.
        interval_s: Simulated seconds between re-pricings.
        epochs, patience: Training budget when a model is trained here.
        price_points: Snap prices to x.99 (default: whole cents, as the oracle is continuous).
        policies: Which policies to run (``static`` always runs: it sets the horizon).
        progress: Show progress bars.
        model_out: Keep the model trained here in this directory (the pipeline check serves it).

    Returns:
        The report (also in ``report.json``).
    """
    chosen = ["static", *[p for p in POLICIES if p in set(policies) and p != "static"]]
    unknown = sorted(set(policies) - set(POLICIES))
    if unknown:
        raise ConfigError(f"unknown policies {unknown}: choose from {', '.join(POLICIES)}")
    if interval_s < 60 or interval_s % 60:
        raise ConfigError("--interval must be a whole number of minutes (the feature windows slide every minute)")
    scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    guardrails = GuardrailPolicy(
        min_margin=scenario.pricing.min_margin,
        ceiling_multiple=scenario.pricing.ceiling_ratio,
        price_point_ending=0.99 if price_points else 0.0,
        max_model_age_s=365 * 86_400.0,
    )
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="pricewave-eval-"))
    frames: list[pd.DataFrame] = []
    try:
        history_dir = generate_history(
            scenario, settings, work / "history", events=warmup_events, seed=seed, progress=progress,
            review_texts=["(review)"],
        )  # fmt: skip
        history = load_history(history_dir)
        model_dir = Path(model) if model else work / "models"
        if model is None and "network" in chosen:
            train(
                history, model_dir, settings, epochs=epochs, patience=patience, seed=seed,
                work_dir=work / "train", progress=progress, on_frame=frames.append,
            )  # fmt: skip
        if not frames and "linear" in chosen:
            from pricewave.training import build_training_frame

            frames.append(build_training_frame(history, settings, work / "train", seed=seed))
        linear = LinearDemand.fit(frames[0]) if "linear" in chosen else None
        artifact = load_artifact(model_dir, device="cpu") if "network" in chosen else None
        if model_out is not None and model is None and "network" in chosen:
            shutil.copytree(model_dir, Path(model_out), dirs_exist_ok=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    traces: dict[str, RunTrace] = {}
    oracle_cache: dict[tuple[int, str], float] = {}
    steps = None
    for name in chosen:
        pricer = _Pricer(name, guardrails, linear=linear, artifact=artifact)
        trace = run_policy(
            pricer, scenario, settings, seed=seed, warmup_events=warmup_events, interval_s=interval_s,
            events=events, steps=steps, oracle_cache=oracle_cache, progress=progress,
        )  # fmt: skip
        steps = len(trace.steps)
        traces[name] = trace
    shutil.rmtree(work, ignore_errors=True)

    static_margin = traces["static"].totals["margin"]
    policies_report = {name: _policy_figures(trace, static_margin) for name, trace in traces.items()}
    for name, figures in policies_report.items():
        static_expected = traces["static"].totals["expected_margin"]
        figures["expected_margin_vs_static"] = (
            round(traces[name].totals["expected_margin"] / static_expected - 1, 5) if static_expected else None
        )
    first_step, last_step = traces["static"].steps[0], traces["static"].steps[-1]
    report: dict[str, Any] = {
        "scenario": scenario.name,
        "seed": seed,
        "events": events,
        "warmup_events": warmup_events,
        "interval_s": interval_s,
        "policy_phase": {
            "start_ms": first_step["time_ms"],
            "end_ms": last_step["time_ms"] + interval_s * 1000,
            "start_iso": pd.Timestamp(first_step["time_ms"], unit="ms", tz="UTC").isoformat(),
            "end_iso": pd.Timestamp(last_step["time_ms"] + interval_s * 1000, unit="ms", tz="UTC").isoformat(),
            "intervals": len(traces["static"].steps),
        },
        "guardrails": {
            "min_margin": guardrails.min_margin,
            "ceiling_multiple": guardrails.ceiling_multiple,
            "max_change_pct": guardrails.max_change_pct,
            "price_point_ending": guardrails.price_point_ending,
        },
        "definitions": DEFINITIONS,
        "policies": policies_report,
        "network": {
            "model_version": artifact.version if artifact else None,
            "trained_here": model is None,
            "metrics": artifact.metrics if artifact else None,
        },
        "linear_model": {"price_coefficient": linear.price_coefficient, "coefficients": linear.coefficients()}
        if linear
        else None,
    }
    if artifact is not None and "network" in traces:
        report["elasticity"] = _elasticity_report(traces["network"], artifact)
    views = pd.concat(traces["static"].decisions).groupby("sku")["views"].sum().sort_values(ascending=False)
    report["plots"] = _plots(traces, out, list(views.index[:3]))
    if "network" in policies_report and "linear" in policies_report:
        net, lin, static = policies_report["network"], policies_report["linear"], policies_report["static"]
        report["checks"] = {
            "network_margin_above_static": net["paired_margin_vs_static"] > 0,
            "network_realized_margin_above_static": net["margin"] > static["margin"],
            "network_regret_below_linear": net["regret"] < lin["regret"],
            "design_target_margin_uplift_10pct": net["paired_margin_vs_static"] >= 0.10,
            "design_target_regret_5pct": net["regret"] <= 0.05,
        }
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    (out / "report.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    (out / "report.md").write_text(_markdown(report))
    return report


# -- real data: Ta Feng price response ---------------------------------------------------------------

TA_FENG_DESIGN_COLUMNS: tuple[str, ...] = ("product_id", "transaction_date", "log_unit_price")
"""The only inputs of the Ta Feng price-response model (never AGE_GROUP or PIN_CODE)."""


def ta_feng_daily(frame: pd.DataFrame) -> pd.DataFrame:
    """Daily quantity and mean unit price per product (``sales_price`` is the line total)."""
    lines = frame[(frame["amount"] > 0) & (frame["sales_price"] > 0)]
    daily = (
        lines.groupby(["product_id", "transaction_date"], sort=True)
        .agg(quantity=("amount", "sum"), revenue=("sales_price", "sum"))
        .reset_index()
    )
    daily["unit_price"] = daily["revenue"] / daily["quantity"]
    daily["log_unit_price"] = np.log(daily["unit_price"])
    return daily


def fit_price_response(train: pd.DataFrame, prior_strength: float = 5.0) -> pd.DataFrame:
    """Per-product log-log regression ``log q = a + b log p`` with b shrunk toward the pooled slope.

    The pooled slope comes from the within-product regression of all products together; each
    product's slope is ``(Σ x̃ỹ + λ b_pool) / (Σ x̃² + λ)`` (x̃, ỹ: the product's demeaned log price
    and log quantity; λ = ``prior_strength``), so a product with little price variation stays near
    the pool. Residual smearing (Duan) turns log predictions back into quantities.

    Returns:
        One row per product: ``intercept``, ``elasticity``, ``smearing``, ``train_days``, ``mean_quantity``.
    """
    data = train.assign(log_q=np.log(train["quantity"]))
    grouped = data.groupby("product_id")
    x_mean = grouped["log_unit_price"].transform("mean")
    y_mean = grouped["log_q"].transform("mean")
    x_dev, y_dev = data["log_unit_price"] - x_mean, data["log_q"] - y_mean
    sxx = (x_dev * x_dev).groupby(data["product_id"]).sum()
    sxy = (x_dev * y_dev).groupby(data["product_id"]).sum()
    pooled = float(sxy.sum() / sxx.sum()) if sxx.sum() > 0 else 0.0
    slope = (sxy + prior_strength * pooled) / (sxx + prior_strength)
    products = pd.DataFrame(
        {
            "elasticity": slope,
            "x_mean": grouped["log_unit_price"].mean(),
            "y_mean": grouped["log_q"].mean(),
            "train_days": grouped.size(),
            "mean_quantity": grouped["quantity"].mean(),
        }
    )
    products["intercept"] = products["y_mean"] - products["elasticity"] * products["x_mean"]
    fitted = (
        products["intercept"].reindex(data["product_id"]).to_numpy()
        + products["elasticity"].reindex(data["product_id"]).to_numpy() * data["log_unit_price"].to_numpy()
    )
    residual = np.exp(data["log_q"].to_numpy() - fitted)
    products["smearing"] = pd.Series(residual, index=data.index).groupby(data["product_id"]).mean()
    products["elasticity_unpooled"] = (sxy / sxx).where(sxx > 0)
    products.attrs["pooled_elasticity"] = pooled
    return products


def evaluate_ta_feng(
    settings: Settings,
    out_dir: str | Path,
    *,
    limit: int | None = None,
    min_train_days: int = 5,
    prior_strength: float = 5.0,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit per-product price response on Nov 2000 – Jan 2001, predict February's daily quantities.

    Args:
        settings: pricewave settings (where the data set is cached).
        out_dir: Where ``report.json`` goes.
        limit: Only the ``limit`` products with the most training days (all by default).
        min_train_days: Products need at least this many training days with sales.
        prior_strength: λ of the pooled prior on the slope.
        progress: Show the loading progress bar.

    Returns:
        The report: MAE / RMSE of the model and of the per-product-mean baseline on the held-out
        month, and the share of products with a negative estimated elasticity.
    """
    from pricewave.data.datasets import TA_FENG_MODEL_COLUMNS, load_ta_feng

    assert_no_protected_inputs(TA_FENG_DESIGN_COLUMNS)
    raw = load_ta_feng(settings, progress=progress)
    frame = raw[[c for c in TA_FENG_MODEL_COLUMNS if c in raw.columns]]  # no age group, no pin code
    daily = ta_feng_daily(frame)
    months = daily["transaction_date"].dt.to_period("M")
    ordered = sorted(months.unique())
    if len(ordered) < 2:
        raise DataError("the Ta Feng data need at least two months (train and held-out)")
    held_out = ordered[-1]
    train_rows = daily[(months < held_out) & (months >= ordered[max(0, len(ordered) - 4)])]
    test_rows = daily[months == held_out]
    counts = train_rows.groupby("product_id").size()
    eligible = counts[counts >= min_train_days].sort_values(ascending=False, kind="stable")
    if limit is not None:
        eligible = eligible.iloc[:limit]
    train_rows = train_rows[train_rows["product_id"].isin(eligible.index)]
    test_rows = test_rows[test_rows["product_id"].isin(eligible.index)]
    if test_rows.empty:
        raise DataError("no held-out days for the selected products: raise --limit")
    products = fit_price_response(train_rows, prior_strength)
    p = products.reindex(test_rows["product_id"])
    predicted = (
        np.exp(p["intercept"].to_numpy() + p["elasticity"].to_numpy() * test_rows["log_unit_price"].to_numpy())
        * p["smearing"].to_numpy()
    )
    baseline = p["mean_quantity"].to_numpy()
    actual = test_rows["quantity"].to_numpy(dtype=np.float64)

    def errors(prediction: npt.NDArray[np.float64]) -> dict[str, float]:
        return {
            "mae": round(float(np.mean(np.abs(prediction - actual))), 4),
            "rmse": round(float(np.sqrt(np.mean((prediction - actual) ** 2))), 4),
        }

    model_errors, baseline_errors = errors(predicted), errors(baseline)
    report: dict[str, Any] = {
        "dataset": "ta-feng",
        "train_months": [str(m) for m in ordered if m < held_out][-3:],
        "held_out_month": str(held_out),
        "products": len(products),
        "train_days": len(train_rows),
        "held_out_days": len(test_rows),
        "model": {**model_errors, "description": "per-product log-log regression with a pooled prior"},
        "baseline": {**baseline_errors, "description": "per-product mean daily quantity (training months)"},
        "negative_elasticity_share": round(float((products["elasticity"] < 0).mean()), 4),
        # Without the prior: products whose own prices varied, slope from their days alone.
        "negative_elasticity_share_unpooled": round(float((products["elasticity_unpooled"].dropna() < 0).mean()), 4),
        "caveat": "unit price = line total / quantity, so bulk discounts on big days bias slopes downward",
        "pooled_elasticity": round(float(products.attrs["pooled_elasticity"]), 4),
        "median_elasticity": round(float(products["elasticity"].median()), 4),
        "design_columns": list(TA_FENG_DESIGN_COLUMNS),
        "settings": {"limit": limit, "min_train_days": min_train_days, "prior_strength": prior_strength},
    }
    report["model_beats_baseline"] = {
        "mae": model_errors["mae"] < baseline_errors["mae"],
        "rmse": model_errors["rmse"] < baseline_errors["rmse"],
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
