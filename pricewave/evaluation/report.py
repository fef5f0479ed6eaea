"""``evaluate``: every policy on the same seed, the figures, plots and the markdown report."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from pricewave.config import Settings
from pricewave.errors import ConfigError
from pricewave.evaluation.closed_loop import RunTrace, run_policy
from pricewave.evaluation.policies import POLICIES, LinearDemand, Pricer
from pricewave.pricing.artifact import ModelArtifact, load_artifact
from pricewave.pricing.features import build_feature_matrix
from pricewave.pricing.guardrails import GuardrailPolicy
from pricewave.simulator.scenario import Scenario, load_scenario
from pricewave.training import generate_history, load_history, train

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
    if "offers_priced" in t:
        figures["offers_priced"] = int(t["offers_priced"])
        figures["offers_discounted"] = int(t["offers_discounted"])
        figures["views_at_offer_share"] = round(t["views_at_offer"] / t["views"], 5) if t["views"] else 0.0
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
        parameter = next(model.parameters())
        base, elasticity = model.decompose(torch.as_tensor(x[rows]).to(device=parameter.device, dtype=parameter.dtype))
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
{_offers_markdown(report)}{_shopper_markdown(report)}
![margin over time](margin_over_time.png)

![price trajectories](price_trajectories.png)

Definitions:
{definitions}
"""


@dataclass(frozen=True)
class _Plan:
    """What every run of :func:`evaluate` shares: the market, the policies and the shape of the runs."""

    scenario: Scenario
    settings: Settings
    policies: list[str]  # static first: its run sets the horizon of the others
    seed: int
    events: int
    warmup_events: int
    interval_s: int
    progress: bool


@dataclass(frozen=True)
class _ModelSource:
    """Where the network comes from: ``model`` if given, else trained here on the warm-up."""

    model: str | Path | None
    epochs: int
    patience: int
    model_out: str | Path | None

    @property
    def trained_here(self) -> bool:
        return self.model is None


@dataclass(frozen=True)
class _Models:
    """What the model-based policies price with (None where the policy does not run)."""

    linear: LinearDemand | None
    artifact: ModelArtifact | None


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

    1. **Models**: in a temporary work directory, simulate the warm-up history and fit on it what the
       chosen policies price with: the least-squares baseline, the network (trained unless ``model``
       is given).
    2. **Runs**: every policy closed loop on the same seed, ``static`` first.
    3. **Figures**: each policy's figures and the network's elasticities.
    4. **Plots**: margin over time and the price trajectories of the three most viewed skus.
    5. **Report**: the design checks, ``report.json`` and ``report.md``.

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
    plan = _Plan(scenario, settings, chosen, seed, events, warmup_events, interval_s, progress)
    source = _ModelSource(model, epochs, patience, model_out)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    guardrails = GuardrailPolicy(
        min_margin=scenario.pricing.min_margin,
        ceiling_multiple=scenario.pricing.ceiling_ratio,
        price_point_ending=0.99 if price_points else 0.0,
        max_model_age_s=365 * 86_400.0,
    )
    started = time.monotonic()
    # The trained model lives in the work directory: it goes only once every run has ended.
    with tempfile.TemporaryDirectory(prefix="pricewave-eval-", ignore_cleanup_errors=True) as work:
        models = _fit_models(plan, source, Path(work))
        traces = _run_policies(plan, guardrails, models)
        response = _shopper_response(plan, models)
    report = _report(plan, source, guardrails, models, traces)
    if response is not None:
        report["shopper_response"] = response
    report["plots"] = _plots(traces, out, _most_viewed_skus(traces["static"], 3))
    checks = _checks(report["policies"])
    if checks is not None:
        report["checks"] = checks
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    (out / "report.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    (out / "report.md").write_text(_markdown(report))
    return report


def _shopper_response(plan: _Plan, models: _Models) -> dict[str, Any] | None:
    """Has the network learned who is price-sensitive: its offers per hidden segment on a held-out market."""
    if models.artifact is None:
        return None
    from pricewave.evaluation.shopper_response import shopper_response

    return shopper_response(
        models.artifact, plan.scenario, plan.settings, seed=plan.seed + 1, events=plan.warmup_events,
        progress=plan.progress,
    ).to_dict()  # fmt: skip


def _offers_markdown(report: Mapping[str, Any]) -> str:
    network = report["policies"].get("network", {})
    if "offers_priced" not in network:
        return ""
    return f"""
The network's personalized offers (as the job's: one per view or add-to-cart, served on the shopper's next
view of the sku within the offer TTL): {network["offers_priced"]:,} priced, {network["offers_discounted"]:,} below
the price for everyone; {network["views_at_offer_share"]:.1%} of the network run's views saw an offer.
"""


def _shopper_markdown(report: Mapping[str, Any]) -> str:
    response = report.get("shopper_response")
    if not response:
        return ""
    rows = "\n".join(
        f"| {r['segment']} | {r['shoppers']} | {r['median_views']:g} | {r['with_profile']:+.3f} | "
        f"{r['without_profile']:+.3f} | {r['oracle']:+.3f} |"
        for r in response["segments"]
    )
    return f"""
Who is price-sensitive (held-out market, seed {report["seed"] + 1}): the network's personalized price for each
shopper and top sku with the shopper's profile, without it, and the hidden segment's oracle price, as mean
log ratios to the list price (no discount-only cap; `pricewave.evaluation.shopper_response`).

| segment | shoppers | median views | with profile | without profile | oracle |
| --- | ---: | ---: | ---: | ---: | ---: |
{rows}

Between-segment spread reproduced: {response["spread_captured"]:.2f} with the profile,
{response["spread_captured_without_profile"]:.2f} without (1 = as much as the oracle); correlation with the
oracle's prices {response["correlation"]:.2f} over {response["rows"]:,} (shopper, sku) pairs.
"""


def _fit_models(plan: _Plan, source: _ModelSource, work: Path) -> _Models:
    """Simulate the warm-up history in ``work`` and fit (or load) what the chosen policies price with."""
    history_dir = generate_history(
        plan.scenario, plan.settings, work / "history", events=plan.warmup_events, seed=plan.seed,
        progress=plan.progress, review_texts=["(review)"],
    )  # fmt: skip
    history = load_history(history_dir)
    network, linear = "network" in plan.policies, "linear" in plan.policies
    model_dir = Path(source.model) if source.model else work / "models"
    frames: list[pd.DataFrame] = []
    if source.trained_here and network:
        train(
            history, model_dir, plan.settings, epochs=source.epochs, patience=source.patience, seed=plan.seed,
            work_dir=work / "train", progress=plan.progress, on_frame=frames.append,
        )  # fmt: skip
    if not frames and linear:  # the network's training frame serves the baseline too, when there is one
        from pricewave.training import build_training_frame

        frames.append(build_training_frame(history, plan.settings, work / "train", seed=plan.seed))
    models = _Models(
        linear=LinearDemand.fit(frames[0]) if linear else None,
        artifact=load_artifact(model_dir, device="cpu") if network else None,
    )
    if source.model_out is not None and source.trained_here and network:
        shutil.copytree(model_dir, Path(source.model_out), dirs_exist_ok=True)
    return models


def _run_policies(plan: _Plan, guardrails: GuardrailPolicy, models: _Models) -> dict[str, RunTrace]:
    """Each policy closed loop in order; after the first, over as many intervals as the last run had."""
    traces: dict[str, RunTrace] = {}
    oracle_cache: dict[tuple[int, str], float] = {}
    steps = None
    for name in plan.policies:
        pricer = Pricer(name, guardrails, linear=models.linear, artifact=models.artifact)
        trace = run_policy(
            pricer, plan.scenario, plan.settings, seed=plan.seed, warmup_events=plan.warmup_events,
            interval_s=plan.interval_s, events=plan.events, steps=steps, oracle_cache=oracle_cache,
            progress=plan.progress,
        )  # fmt: skip
        steps = len(trace.steps)
        traces[name] = trace
    return traces


def _policies_report(traces: Mapping[str, RunTrace]) -> dict[str, dict[str, Any]]:
    """Each policy's figures, with its realized and expected margin relative to the static run's."""
    static = traces["static"].totals
    report = {name: _policy_figures(trace, static["margin"]) for name, trace in traces.items()}
    for name, figures in report.items():
        figures["expected_margin_vs_static"] = (
            round(traces[name].totals["expected_margin"] / static["expected_margin"] - 1, 5)
            if static["expected_margin"]
            else None
        )
    return report


def _policy_phase(static: RunTrace, interval_s: int) -> dict[str, Any]:
    """The simulated time of the policy phase: the static run's intervals."""
    start_ms, end_ms = static.steps[0]["time_ms"], static.steps[-1]["time_ms"] + interval_s * 1000
    return {
        "start_ms": start_ms,
        "end_ms": end_ms,
        "start_iso": pd.Timestamp(start_ms, unit="ms", tz="UTC").isoformat(),
        "end_iso": pd.Timestamp(end_ms, unit="ms", tz="UTC").isoformat(),
        "intervals": len(static.steps),
    }


def _report(
    plan: _Plan, source: _ModelSource, guardrails: GuardrailPolicy, models: _Models, traces: Mapping[str, RunTrace]
) -> dict[str, Any]:
    """The report's figures, in ``report.json``'s order (the plots, checks and elapsed time follow)."""
    linear, artifact = models.linear, models.artifact
    report: dict[str, Any] = {
        "scenario": plan.scenario.name,
        "seed": plan.seed,
        "events": plan.events,
        "warmup_events": plan.warmup_events,
        "interval_s": plan.interval_s,
        "policy_phase": _policy_phase(traces["static"], plan.interval_s),
        "guardrails": {
            "min_margin": guardrails.min_margin,
            "ceiling_multiple": guardrails.ceiling_multiple,
            "max_change_pct": guardrails.max_change_pct,
            "price_point_ending": guardrails.price_point_ending,
        },
        "definitions": DEFINITIONS,
        "policies": _policies_report(traces),
        "network": {
            "model_version": artifact.version if artifact else None,
            "trained_here": source.trained_here,
            "metrics": artifact.metrics if artifact else None,
        },
        "linear_model": {"price_coefficient": linear.price_coefficient, "coefficients": linear.coefficients()}
        if linear
        else None,
    }
    if artifact is not None and "network" in traces:
        report["elasticity"] = _elasticity_report(traces["network"], artifact)
    return report


def _most_viewed_skus(trace: RunTrace, count: int) -> list[str]:
    views = pd.concat(trace.decisions).groupby("sku")["views"].sum().sort_values(ascending=False)
    return list(views.index[:count])


def _checks(policies: Mapping[str, Mapping[str, Any]]) -> dict[str, bool] | None:
    """The design checks of the network against the static and linear runs (None without both)."""
    if "network" not in policies or "linear" not in policies:
        return None
    net, lin, static = policies["network"], policies["linear"], policies["static"]
    return {
        "network_margin_above_static": net["paired_margin_vs_static"] > 0,
        "network_realized_margin_above_static": net["margin"] > static["margin"],
        "network_regret_below_linear": net["regret"] < lin["regret"],
        "design_target_margin_uplift_10pct": net["paired_margin_vs_static"] >= 0.10,
        "design_target_regret_5pct": net["regret"] <= 0.05,
    }
