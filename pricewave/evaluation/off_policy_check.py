"""Do the off-policy estimates cover what a candidate really earns? A check over closed-loop seeds.

For each seed: the serving model prices a scenario in the closed loop with exploration (its decision
log); the candidate's value is estimated from that log alone (IPS, self-normalized IPS, doubly
robust); then the candidate prices the same market itself, same seed and exploration, and its
realized margin per view is the truth the estimates should cover.

Run it (trains the two models first unless given)::

    .venv/bin/python -m pricewave.evaluation.off_policy_check --scenario small --seeds 1 2 3 4 5 6

Example:
    >>> parser = build_parser()
    >>> parser.parse_args(["--seeds", "1", "2"]).seeds
    [1, 2]
"""

from __future__ import annotations

import argparse
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from pricewave.config import Settings, load_settings
from pricewave.evaluation.closed_loop import run_policy
from pricewave.evaluation.off_policy import ESTIMATORS, RewardModel, estimate_policy_value, logged_decisions
from pricewave.evaluation.policies import Pricer
from pricewave.pricing.artifact import ModelArtifact, load_artifact
from pricewave.pricing.guardrails import GuardrailPolicy
from pricewave.pricing.policy import offline_policy
from pricewave.simulator.scenario import Scenario, load_scenario

Z95 = 1.959964


def scenario_guardrails(scenario: Scenario) -> GuardrailPolicy:
    """The job's guardrails with the scenario's margin floor and ceiling; no staleness limit offline."""
    return GuardrailPolicy(
        min_margin=scenario.pricing.min_margin,
        ceiling_multiple=scenario.pricing.ceiling_ratio,
        max_model_age_s=365 * 86_400.0,
    )


def logged_run(
    artifact: ModelArtifact, scenario: Scenario, settings: Settings, seed: int, steps: int, epsilon: float
) -> pd.DataFrame:
    """``artifact`` pricing ``scenario`` in the closed loop with exploration: its decisions as a log.

    Sku prices only: the estimators value the sku pricer's logged decisions, and a view shown an offer
    would earn its reward at a price no sku decision logged.
    """
    pricer = Pricer("network", scenario_guardrails(scenario), artifact=artifact, exploration_epsilon=epsilon)
    trace = run_policy(
        pricer, scenario, settings, seed=seed, warmup_events=20_000, interval_s=300, steps=steps, progress=False,
        offers=False,
    )  # fmt: skip
    return logged_decisions(pd.concat(trace.decisions, ignore_index=True))


def coverage(
    serving: ModelArtifact,
    candidate: ModelArtifact,
    scenario: Scenario,
    settings: Settings,
    seeds: Sequence[int],
    *,
    steps: int = 200,
    epsilon: float = 0.2,
    progress: bool = True,
) -> pd.DataFrame:
    """One row per seed: the candidate's simulated margin per view (and its 95 % half-width), the serving
    model's on-policy margin, and each estimator's value with its interval (``<name>_low``/``_high``)."""
    policy = offline_policy(candidate, scenario_guardrails(scenario), epsilon)
    rows: list[dict[str, Any]] = []
    for seed in tqdm(seeds, desc="seeds", disable=not progress):
        log = logged_run(serving, scenario, settings, seed, steps, epsilon)
        truth_run = logged_run(candidate, scenario, settings, seed, steps, epsilon)
        truth = float(truth_run["reward"].mean())
        # The simulated margin is a sample mean too: its own 95 % half-width.
        truth_half = Z95 * float(truth_run["reward"].std(ddof=1)) / math.sqrt(len(truth_run))
        estimates = estimate_policy_value(policy, log, RewardModel.fit(serving, log))
        row: dict[str, Any] = {
            "seed": seed,
            "logged": len(log),
            "serving": float(log["reward"].mean()),
            "simulated": truth,
            "simulated_half": truth_half,
            "effective_sample_size": estimates["ips"].effective_sample_size,
        }
        for name in ESTIMATORS:
            e = estimates[name]
            row.update({name: e.value, f"{name}_low": e.low, f"{name}_high": e.high})
        rows.append(row)
    return pd.DataFrame(rows)


def readable(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`coverage`'s figures as printed: each estimate with its interval, whether it covers the
    simulated margin, and whether the two agree counting both sampling errors."""
    out = pd.DataFrame(
        {
            "seed": table["seed"],
            "logged decisions": table["logged"],
            "serving (on-policy)": table["serving"].round(3),
            "candidate (simulated)": [
                f"{v:.3f} ± {h:.3f}" for v, h in zip(table["simulated"], table["simulated_half"], strict=True)
            ],
        }
    )
    for name in ESTIMATORS:
        value, low, high = table[name], table[f"{name}_low"], table[f"{name}_high"]
        out[name] = [f"{v:.3f} [{lo:.3f}, {hi:.3f}]" for v, lo, hi in zip(value, low, high, strict=True)]
        out[f"{name} covers"] = (low <= table["simulated"]) & (table["simulated"] <= high)
        # Estimate − simulated margin, with both sampling errors: is 0 inside its 95 % interval?
        both = np.hypot((high - low) / 2, table["simulated_half"])
        out[f"{name} agrees"] = (value - table["simulated"]).abs() <= both
    out["effective sample size"] = table["effective_sample_size"].round().astype(int)
    return out


def plot_coverage(table: pd.DataFrame, path: str | Path) -> Path:
    """Each seed's estimates with their intervals beside the candidate's simulated margin (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    seeds = np.arange(len(table))
    offsets = {"ips": -0.2, "snips": 0.0, "doubly_robust": 0.2}
    labels = {"ips": "IPS", "snips": "self-normalized IPS", "doubly_robust": "doubly robust"}
    for name, offset in offsets.items():
        value = table[name].to_numpy()
        err = np.vstack([value - table[f"{name}_low"].to_numpy(), table[f"{name}_high"].to_numpy() - value])
        ax.errorbar(seeds + offset, value, yerr=err, fmt="o", capsize=3, label=f"{labels[name]} (95 %)")
    ax.errorbar(
        seeds, table["simulated"], yerr=table["simulated_half"], fmt="_", color="black", markersize=22,
        capsize=0, elinewidth=3, alpha=0.6, label="candidate, simulated (± 95 %)",
    )  # fmt: skip
    ax.set_xticks(seeds, [str(s) for s in table["seed"]])
    ax.set_xlabel("seed of the closed-loop market")
    ax.set_ylabel("margin per view")
    ax.set_title("The candidate's margin, estimated from the serving model's log vs simulated")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def build_parser() -> argparse.ArgumentParser:
    """The check's command line."""
    parser = argparse.ArgumentParser(
        prog="python -m pricewave.evaluation.off_policy_check",
        description="Check that off-policy estimates from the serving model's closed-loop log cover what a "
        "candidate model earns when it prices the same market itself (margin per view, per seed).",
    )
    parser.add_argument("--scenario", default="small", metavar="NAME|FILE.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], metavar="K")
    parser.add_argument("--steps", type=int, default=200, metavar="N", help="re-pricing intervals per run (200)")
    parser.add_argument("--epsilon", type=float, default=0.2, help="exploration share of both policies (0.2)")
    parser.add_argument("--serving", metavar="DIR", help="serving model (default: trained on 20,000 events, seed 5)")
    parser.add_argument(
        "--candidate", metavar="DIR", help="candidate model (default: trained on 60,000 events, seed 9)"
    )
    parser.add_argument("--plot", metavar="FILE.png", help="also draw the estimates against the simulated margin")
    return parser


def _model(given: str | None, scenario: Scenario, settings: Settings, work: Path, events: int, seed: int) -> Any:
    if given:
        return load_artifact(given, device="cpu")
    from pricewave.training import generate_history, train

    history = generate_history(scenario, settings, work / f"history-{seed}", events=events, seed=seed)
    train(history, work / f"models-{seed}", settings, epochs=15, patience=3)
    return load_artifact(work / f"models-{seed}", device="cpu")


def main(argv: Sequence[str] | None = None) -> int:
    """Train (or load) the two models, run the seeds, print the table."""
    args = build_parser().parse_args(argv)
    settings = load_settings()
    scenario = load_scenario(args.scenario)
    with tempfile.TemporaryDirectory(prefix="pricewave-ope-") as scratch:
        serving = _model(args.serving, scenario, settings, Path(scratch), 20_000, 5)
        candidate = _model(args.candidate, scenario, settings, Path(scratch), 60_000, 9)
        table = coverage(serving, candidate, scenario, settings, args.seeds, steps=args.steps, epsilon=args.epsilon)
    shown = readable(table)
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(shown.to_string(index=False))
    covered = shown[[f"{name} covers" for name in ESTIMATORS]].to_numpy()
    agreed = shown[[f"{name} agrees" for name in ESTIMATORS]].to_numpy()
    print(f"\nthe interval covers the simulated margin: {int(covered.sum())} of {covered.size}")
    print(f"estimate and simulated margin agree (both errors): {int(agreed.sum())} of {agreed.size}")
    if args.plot:
        print(f"plot: {plot_coverage(table, args.plot)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
