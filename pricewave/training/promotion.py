"""The promotion gate: a trained model serves only if it is sound and not worse than the serving one.

A candidate model is written beside the serving one without moving ``LATEST``
(``save_artifact(..., publish=False)``); :func:`promotion_gate` then judges it on the decision log,
the prices the serving policy actually showed with their logged propensities and outcomes:

1. **Finite.** Weights and metrics hold no NaN/inf (:func:`~pricewave.pricing.artifact.check_publishable`).
2. **Enough evidence.** At least ``min_decisions`` logged decisions that were shown.
3. **Calibrated.** Its P(buy) at the shown prices matches the logged purchase rate of those views:
   expected calibration error (equal-count bins of views) at most ``max_calibration_error``.
4. **Not worse.** Off-policy, as it would serve (same guardrails, same exploration share): the paired
   doubly robust estimate of candidate − serving margin per view is not below 0. IPS, self-normalized
   IPS and doubly robust estimates of both, with intervals, are reported
   (:mod:`pricewave.evaluation.off_policy`).

Only then does :func:`promote` move ``LATEST``; the serving jobs' :class:`ArtifactWatcher` reloads
it within its check interval. Every verdict is written as ``gate.json`` in the candidate's version
directory, so a refused model stays on disk with its reasons.

Example:
    >>> limits = GateLimits(max_calibration_error=0.05, min_decisions=200)
    >>> limits.confidence
    0.95
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pricewave.errors import DataError
from pricewave.evaluation.off_policy import (
    OffPolicyEstimate,
    PolicyComparison,
    RewardModel,
    compare_policies,
    purchase_probability,
    view_labels,
)
from pricewave.pricing.artifact import ModelArtifact, check_publishable, publish_version
from pricewave.pricing.guardrails import GuardrailPolicy
from pricewave.pricing.policy import offline_policy
from pricewave.training.calibration import calibration_error

GATE_FILE = "gate.json"


@dataclass(frozen=True)
class GateLimits:
    """What a candidate must meet to be promoted.

    Attributes:
        max_calibration_error: Highest expected calibration error on the logged views.
        min_decisions: Fewest shown decisions in the log to judge from.
        confidence: Coverage of the reported intervals.
    """

    max_calibration_error: float = 0.05
    min_decisions: int = 200
    confidence: float = 0.95


@dataclass(frozen=True)
class GateResult:
    """The verdict on one candidate.

    Attributes:
        promote: Whether the candidate may serve.
        reasons: Why not (empty when promoted).
        decisions: Shown decisions in the log the verdict rests on.
        calibration_error: The candidate's expected calibration error on the logged views (None when
            not reached).
        comparison: The off-policy comparison with the serving model (None without one, or when an
            earlier check refused).
    """

    promote: bool
    reasons: tuple[str, ...]
    decisions: int
    calibration_error: float | None = None
    comparison: PolicyComparison | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        """The verdict as JSON-ready values (``gate.json``)."""

        def estimate(value: OffPolicyEstimate) -> dict[str, Any]:
            return {
                "value": value.value,
                "low": value.low,
                "high": value.high,
                "n": value.n,
                "effective_sample_size": value.effective_sample_size,
            }

        out: dict[str, Any] = {
            "promote": self.promote,
            "reasons": list(self.reasons),
            "notes": list(self.notes),
            "decisions": self.decisions,
            "calibration_error": self.calibration_error,
        }
        if self.comparison is not None:
            out["candidate"] = {name: estimate(e) for name, e in self.comparison.candidate.items()}
            out["serving"] = {name: estimate(e) for name, e in self.comparison.serving.items()}
            out["difference"] = estimate(self.comparison.difference)
        return out

    def summary(self) -> str:
        """A few readable lines: the verdict, the estimates and the reasons."""
        lines = [f"gate          {'PROMOTE' if self.promote else 'REFUSE'} ({self.decisions:,} logged decisions)"]
        if self.calibration_error is not None:
            lines.append(f"calibration   expected calibration error {self.calibration_error:.4f} on the logged views")
        if self.comparison is not None:
            for name in ("candidate", "serving"):
                estimates = getattr(self.comparison, name)
                lines.append(
                    f"{name:<13} margin/view "
                    + ", ".join(f"{m} {e.value:.4f} [{e.low:.4f}, {e.high:.4f}]" for m, e in estimates.items())
                )
            d = self.comparison.difference
            lines.append(f"difference    {d.value:+.4f} [{d.low:+.4f}, {d.high:+.4f}] (doubly robust, paired)")
        lines += [f"refused       {reason}" for reason in self.reasons]
        lines += [f"note          {note}" for note in self.notes]
        return "\n".join(lines)


def logged_calibration_error(artifact: ModelArtifact, logged: pd.DataFrame) -> float:
    """Expected calibration error of ``artifact``'s P(buy) at the shown prices over the logged views.

    Each decision counts once per view it was shown to, with its purchases as the positive labels.
    """
    probability = purchase_probability(artifact, logged, logged["price"].to_numpy(dtype=np.float64))[:, 0]
    usable = np.isfinite(probability) & (logged["views"].to_numpy(dtype=np.int64) > 0)
    if not usable.any():
        return float("nan")
    kept = logged[usable]
    predicted = np.repeat(probability[usable], kept["views"].to_numpy(dtype=np.int64))
    return calibration_error(view_labels(kept), predicted)


def promotion_gate(
    candidate: ModelArtifact,
    serving: ModelArtifact | None,
    logged: pd.DataFrame,
    guardrails: GuardrailPolicy,
    *,
    epsilon: float,
    limits: GateLimits | None = None,
) -> GateResult:
    """Judge ``candidate`` against ``serving`` on the logged decisions (the checks in the module docstring).

    Args:
        candidate: The newly trained model.
        serving: The model ``LATEST`` names now (None: none serves, so any sound model beats the
            kill switch's base prices and only checks 1-3 apply).
        logged: Rows of :func:`~pricewave.evaluation.off_policy.logged_decisions`.
        guardrails: The guardrails the job prices with.
        epsilon: The exploration share the job serves with.
        limits: The thresholds (default :class:`GateLimits`()).
    """
    limits = limits or GateLimits()
    try:
        check_publishable(candidate.model, candidate.metrics)
    except DataError as exc:
        return GateResult(False, (str(exc),), len(logged))
    if len(logged) < limits.min_decisions:
        return GateResult(
            False,
            (f"only {len(logged)} shown decisions in the log, fewer than {limits.min_decisions}: log longer",),
            len(logged),
        )
    reasons: list[str] = []
    error = logged_calibration_error(candidate, logged)
    if not np.isfinite(error) or error > limits.max_calibration_error:
        reasons.append(f"calibration error {error:.4f} on the logged views exceeds {limits.max_calibration_error:.4f}")
    if serving is None:
        note = "no model serves now: nothing to compare with off-policy"
        return GateResult(not reasons, tuple(reasons), len(logged), error, None, (note,))
    reward_model = RewardModel.fit(serving, logged)
    comparison = compare_policies(
        offline_policy(candidate, guardrails, epsilon),
        offline_policy(serving, guardrails, epsilon),
        logged,
        reward_model,
        confidence=limits.confidence,
    )
    difference = comparison.difference
    if not np.isfinite(difference.value) or difference.value < 0:
        reasons.append(
            f"its doubly robust margin per view is {difference.value:+.4f} "
            f"[{difference.low:+.4f}, {difference.high:+.4f}] against the serving model's: worse"
        )
    return GateResult(not reasons, tuple(reasons), len(logged), error, comparison)


def promote(result: GateResult, model_dir: str | Path, version: str) -> bool:
    """Write ``gate.json`` into the candidate's directory and, if the gate passed, point ``LATEST`` at it.

    Returns:
        Whether ``LATEST`` now names ``version``.
    """
    root = Path(model_dir)
    (root / version / GATE_FILE).write_text(json.dumps(result.to_json(), indent=2, sort_keys=True, default=float))
    if result.promote:
        publish_version(root, version)
    return result.promote
