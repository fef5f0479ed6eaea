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
from pricewave.pricing.policy import PricingPolicy
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
    """``artifact`` pricing ``scenario`` in the closed loop with exploration: its decisions as a log."""
    pricer = Pricer("network", scenario_guardrails(scenario), artifact=artifact, exploration_epsilon=epsilon)
    trace = run_policy(
        pricer, scenario, settings, seed=seed, warmup_events=20_000, interval_s=300, steps=steps, progress=False
    )
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
    """One row per seed: the candidate's realized margin per view, and each estimate with its interval."""
    created = candidate.created_at
    policy = PricingPolicy(
        candidate, scenario_guardrails(scenario), exploration_epsilon=epsilon, device="cpu", clock=lambda: created
    )
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
            "logged decisions": len(log),
            "serving (on-policy)": round(float(log["reward"].mean()), 3),
            "candidate (simulated)": f"{truth:.3f} ± {truth_half:.3f}",
        }
        for name in ESTIMATORS:
            e = estimates[name]
            row[name] = f"{e.value:.3f} [{e.low:.3f}, {e.high:.3f}]"
            row[f"{name} covers"] = e.contains(truth)
            # Estimate − simulated margin, with both sampling errors: is 0 inside its 95 % interval?
            row[f"{name} agrees"] = abs(e.value - truth) <= math.hypot((e.high - e.low) / 2, truth_half)
        row["effective sample size"] = round(estimates["ips"].effective_sample_size)
        rows.append(row)
    return pd.DataFrame(rows)


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
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False))
    covered = table[[f"{name} covers" for name in ESTIMATORS]].to_numpy()
    agreed = table[[f"{name} agrees" for name in ESTIMATORS]].to_numpy()
    print(
        f"\nthe interval covers the simulated margin: {int(covered.sum())} of {covered.size} ({np.mean(covered):.0%})"
    )
    print(f"estimate and simulated margin agree (both errors): {int(agreed.sum())} of {agreed.size}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
