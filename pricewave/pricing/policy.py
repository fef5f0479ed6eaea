"""THE pricing policy: features → optimize → explore → guardrails → explain, for a batch of rows.

The streaming job's pandas UDF and the offline evaluation both call
:meth:`PricingPolicy.decide` on a DataFrame, one row per decision.

Input columns (NaN / None = not known; only the first four are required):

* ``sku`` (str), ``base_price``, ``cost``, ``event_time`` (epoch ms of the triggering input);
* ``user_key``: the pseudonymous user of a personalized offer; None for the sku decision;
* guardrail inputs: ``map_price``, ``ceiling``, ``last_published`` (the last price published for
  this key), ``non_personalized_price`` (offers: the current sku price for everyone);
* feature columns of :mod:`pricewave.pricing.features` (demand windows, competition, reviews,
  session, ``is_holiday``) and ``review_embedding`` (384 floats or None);
* optional ``stock_pressure`` (>= 0, sell-through pressure of over-stocked skus; NaN = none).

Output, indexed like the input: ``price`` (NaN = publish nothing), ``base_price``, ``guardrail``
(last guardrail that changed the price, or None), ``guardrails`` (all of them, in order),
``model_version`` (``none`` when the model did not price the row), ``propensity`` (probability of
the shown price under the policy, 1 when it could not explore), ``personalized`` (disclosure: the
model priced an offer for this user), ``expected_conversion`` (model's P(buy) at the shown price;
NaN when the model did not price the row), ``explanation`` (JSON string, ≤ 32 keys).

The model prices a row only when it is feasible, the model is fresh, the required features
are known and the model's output for the row is finite; otherwise the kill switch publishes the
base price clamped into the guardrails. A non-finite output (NaN/inf purchase logit, elasticity,
demand or objective, e.g. from NaN weights) is a model fault: that row takes the kill switch
instead of whatever candidate ``argmax`` over NaN would pick (the lowest), and is counted in
:attr:`PricingPolicy.model_fault_rows`. Candidate prices span the guardrail-feasible interval,
so exploration stays inside it.

Example:
    >>> import pandas as pd
    >>> policy = PricingPolicy(None)  # no model yet: every decision falls back to the base price
    >>> out = policy.decide(pd.DataFrame({"sku": ["A"], "base_price": [19.99], "cost": [10.0],
    ...     "event_time": [1735689600000]}))
    >>> row = out.iloc[0]
    >>> float(row.price), row.guardrail, row.model_version, float(row.propensity)
    (19.99, 'kill_switch', 'none', 1.0)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch

from pricewave.errors import DataError
from pricewave.pricing.artifact import ArtifactWatcher, ModelArtifact
from pricewave.pricing.demand_model import default_device, model_device
from pricewave.pricing.explain import explanations_json, top_feature_contributions
from pricewave.pricing.exploration import (
    DEFAULT_EPSILON,
    candidate_probabilities,
    check_epsilon,
    explore,
    shown_price_propensity,
)
from pricewave.pricing.features import build_embedding_matrix, build_feature_matrix, numeric_column, personalized_rows
from pricewave.pricing.guardrails import (
    FeasibleInterval,
    GuardrailBatch,
    GuardrailPolicy,
    PriceLimits,
    apply_guardrails_vectorized,
    feasible_interval,
)
from pricewave.pricing.optimizer import OBJECTIVES, Objective, conversion_at, optimize

REQUIRED_COLUMNS = ("sku", "base_price", "cost", "event_time")
OUTPUT_COLUMNS = (
    "price",
    "base_price",
    "guardrail",
    "guardrails",
    "model_version",
    "propensity",
    "personalized",
    "expected_conversion",
    "explanation",
)
NO_MODEL = "none"

log = logging.getLogger(__name__)


def decision_keys(frame: pd.DataFrame) -> pd.Series:
    """``sku|user_key|event_time`` per row: stable across replays (the exploration draw's key)."""
    users = frame["user_key"].fillna("").astype(str) if "user_key" in frame.columns else ""
    return frame["sku"].astype(str) + "|" + users + "|" + frame["event_time"].astype("int64").astype(str)


class PricingPolicy:
    """Prices a batch of decisions with a model artifact, guardrails and bounded exploration.

    Args:
        artifact: The model: a loaded :class:`ModelArtifact`, an :class:`ArtifactWatcher`
            (hot-swaps new versions), or None (no model: the kill switch prices everything).
        guardrail_policy: Guardrail settings (default: :class:`GuardrailPolicy`()).
        exploration_epsilon: Share of explored decisions, in [0, 0.2].
        device: Where the model runs (default: CUDA when present, else CPU).
        k: Candidate prices per row.
        objective: ``margin``, ``revenue`` or ``blend`` (see :mod:`pricewave.pricing.optimizer`).
        blend_weight: Weight of conversion in the ``blend`` objective.
        seed: Seed of the exploration draws.
        clock: Epoch seconds now (for the model's age); injectable for simulated time.
    """

    def __init__(
        self,
        artifact: ModelArtifact | ArtifactWatcher | None,
        guardrail_policy: GuardrailPolicy | None = None,
        exploration_epsilon: float = DEFAULT_EPSILON,
        device: torch.device | str | None = None,
        *,
        k: int = 32,
        objective: Objective = "margin",
        blend_weight: float = 0.5,
        seed: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if objective not in OBJECTIVES:
            raise DataError(f"objective must be one of {', '.join(OBJECTIVES)}, not {objective!r}")
        self.source = artifact
        self.guardrails = guardrail_policy or GuardrailPolicy()
        self.epsilon = check_epsilon(exploration_epsilon)
        self.device = torch.device(device) if device is not None else default_device()
        self.k = k
        self.objective: Objective = objective
        self.blend_weight = blend_weight
        self.seed = seed
        self.clock = clock
        self.model_fault_rows = 0  # rows the kill switch priced because the model's output was NaN/inf
        self._faulty_versions: set[str] = set()

    def artifact(self) -> ModelArtifact | None:
        """The artifact serving now (a watcher may have swapped in a newer one)."""
        if isinstance(self.source, ArtifactWatcher):
            return self.source.current()
        return self.source

    def _model_fault(self, version: str, faulty: int, total: int) -> None:
        self.model_fault_rows += faulty
        if version not in self._faulty_versions:  # once per model version: no log line per batch
            self._faulty_versions.add(version)
            log.warning(
                "model %s gave NaN/inf for %d of %d rows: the kill switch prices them at base",
                version,
                faulty,
                total,
            )

    def decide(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Price every row of ``frame`` (columns in the module docstring); see the output columns there.

        The steps: read the inputs once (:class:`DecisionInputs`), let the model choose a candidate
        where it may (:meth:`_choose`), guard every row's candidate, and write the output.

        Raises:
            DataError: A required column is absent.
        """
        absent = [name for name in REQUIRED_COLUMNS if name not in frame.columns]
        if absent:
            raise DataError(f"pricing input lacks columns {', '.join(absent)}")
        if len(frame) == 0:
            return pd.DataFrame({name: pd.Series(dtype=object) for name in OUTPUT_COLUMNS}, index=frame.index)
        inputs, choice, guarded, version = self._decide(frame, all_candidates=False)
        return self._output(inputs, choice, guarded, version)

    def action_distribution(self, frame: pd.DataFrame) -> ActionDistribution:
        """The probability of every price this policy may show for each row of ``frame``.

        What off-policy evaluation needs of a candidate policy (:mod:`pricewave.evaluation.off_policy`):
        rows the model prices with room to explore get their K guarded candidates, the best with
        probability ``1 − ε + ε/K`` and each other ``ε/K``; every other row (kill switch, a single
        feasible price) shows its one decided price with probability 1.

        Raises:
            DataError: A required column is absent, or ``frame`` is empty.
        """
        absent = [name for name in REQUIRED_COLUMNS if name not in frame.columns]
        if absent or len(frame) == 0:
            raise DataError(f"pricing input lacks columns {', '.join(absent)}" if absent else "no rows to price")
        _, choice, guarded, _ = self._decide(frame, all_candidates=True)
        n = len(frame)
        prices = np.repeat(np.asarray(guarded.price, dtype=np.float64)[:, None], self.k, axis=1)
        probabilities = np.zeros((n, self.k))
        probabilities[:, 0] = 1.0
        rows = np.flatnonzero(choice.eligible)
        if rows.size:
            prices[rows] = choice.shown_candidates[rows]
            probabilities[rows] = candidate_probabilities(choice.best_index[rows], self.k, self.epsilon)
        return ActionDistribution(prices, probabilities)

    def _decide(
        self, frame: pd.DataFrame, *, all_candidates: bool
    ) -> tuple[DecisionInputs, ModelChoice, GuardrailBatch, str]:
        """Read, choose and guard (:meth:`decide` without the output frame)."""
        inputs = DecisionInputs.read(frame, self.guardrails)
        artifact = self.artifact()
        age = artifact.age_s(self.clock()) if artifact is not None else np.nan
        fresh = artifact is not None and not self.guardrails.kill_switch and age <= self.guardrails.max_model_age_s
        choice = ModelChoice.none(len(frame), inputs.interval.feasible & ~inputs.features_missing & fresh, self.k)
        if artifact is not None and choice.active.any():
            self._choose(inputs, artifact, age, choice, all_candidates=all_candidates)
        guarded = apply_guardrails_vectorized(
            self.guardrails,
            candidate=choice.candidate,
            model_age_s=age,
            features_missing=inputs.features_missing,
            interval=inputs.interval,
            **inputs.limits,
        )
        return inputs, choice, guarded, artifact.version if artifact is not None else NO_MODEL

    def _choose(
        self,
        inputs: DecisionInputs,
        artifact: ModelArtifact,
        age: float,
        choice: ModelChoice,
        *,
        all_candidates: bool = False,
    ) -> None:
        """The model's candidate, exploration and explanation for the rows it may price (``choice.active``).

        A model fault (NaN/inf out of the network, e.g. NaN weights) must not price: argmax over NaN
        picks candidate 0, the floor. Such a row leaves ``choice.active`` and takes the kill switch.
        """
        rows = np.flatnonzero(choice.active)
        frame, limits, interval = inputs.frame, inputs.limits, inputs.interval
        model = artifact.model
        if model_device(model) != self.device:
            model.to(self.device)
        emb_all, has_emb = build_embedding_matrix(frame.iloc[rows])
        emb = emb_all if has_emb.any() else None
        result = optimize(
            model,
            inputs.features[rows],
            emb,
            ref_price=limits["base_price"][rows],
            cost=limits["cost"][rows],
            lo=interval.lo[rows],
            hi=interval.hi[rows],
            k=self.k,
            objective=self.objective,
            blend_weight=self.blend_weight,
            stock_pressure=(
                np.nan_to_num(numeric_column(frame, "stock_pressure")[rows])
                if "stock_pressure" in frame.columns
                else None
            ),
        )
        model_ok = (
            np.isfinite(result.base_logit)
            & np.isfinite(result.elasticity)
            & np.isfinite(result.conversions).all(axis=1)
            & np.isfinite(result.expected_value)
        )
        if not model_ok.all():
            self._model_fault(artifact.version, int((~model_ok).sum()), rows.size)
            choice.active[rows[~model_ok]] = False
        eligible = (interval.hi[rows] > interval.lo[rows]) & model_ok
        explored = explore(
            result.best_index, self.k, self.epsilon, decision_keys(frame.iloc[rows]), seed=self.seed, eligible=eligible
        )
        choice.candidate[rows] = np.where(model_ok, result.candidates[np.arange(rows.size), explored.index], np.nan)
        choice.elasticity[rows] = np.where(model_ok, result.elasticity, np.nan)
        choice.base_logit[rows] = np.where(model_ok, result.base_logit, np.nan)
        choice.explored[rows] = explored.explored
        choice.eligible[rows] = eligible
        choice.best_index[rows] = result.best_index
        if (self.epsilon > 0 or all_candidates) and eligible.any():
            # The propensity of the shown price: every candidate guarded, as the shown one will be.
            shown_all = apply_guardrails_vectorized(
                self.guardrails,
                candidate=result.candidates,
                model_age_s=age,
                interval=interval.take(rows).repeat(self.k),
                cost=limits["cost"][rows, None],
                base_price=limits["base_price"][rows, None],
                is_offer=limits["is_offer"][rows, None],
            ).price
            choice.shown_candidates[rows] = shown_all
            choice.propensity[rows] = shown_price_propensity(
                shown_all, explored.index, result.best_index, self.epsilon, eligible=eligible
            )
        names, values = top_feature_contributions(model, inputs.features[rows], emb)
        choice.top_names[rows] = np.where(model_ok[:, None], names, "")
        choice.top_values[rows] = np.where(model_ok[:, None], values, np.nan)

    def _output(
        self, inputs: DecisionInputs, choice: ModelChoice, guarded: GuardrailBatch, version: str
    ) -> pd.DataFrame:
        """The decisions: guarded prices with what the model said of them (the output columns)."""
        n = len(inputs.frame)
        base, active = inputs.limits["base_price"], choice.active
        priced = active & guarded.published
        conversion = np.where(priced, conversion_at(choice.base_logit, choice.elasticity, guarded.price, base), np.nan)
        guardrail_names = guarded.guardrails()
        applied = guarded.applied()
        explanations = explanations_json(
            elasticity=choice.elasticity,
            conversion=conversion,
            top_names=choice.top_names,
            top_values=choice.top_values,
            guardrail=guardrail_names,
            applied=applied,
            extra={
                "candidate_price": choice.candidate,
                "explored": choice.explored,
                "kill_switch": guarded.kill_switch & inputs.interval.feasible,
                "objective": [self.objective] * n,
            },
        )
        return pd.DataFrame(
            {
                "price": guarded.price,
                "base_price": base,
                "guardrail": guardrail_names,
                "guardrails": applied,
                "model_version": np.where(active, version, NO_MODEL),
                "propensity": choice.propensity,
                "personalized": inputs.limits["is_offer"] & active,
                "expected_conversion": conversion,
                "explanation": explanations,
            },
            index=inputs.frame.index,
        )


@dataclass(frozen=True)
class DecisionInputs:
    """One batch's inputs, read once from the frame: the price limits, the features and the interval.

    Attributes:
        frame: The batch as given.
        limits: The guardrails' :class:`PriceLimits` per row, as arrays (NaN = not known).
        features: The model's feature matrix (:func:`build_feature_matrix`).
        features_missing: Rows lacking a required feature (the kill switch prices them).
        interval: Where a guarded price may land, per row (:func:`feasible_interval`).
    """

    frame: pd.DataFrame
    limits: PriceLimits
    features: npt.NDArray[np.float32]
    features_missing: npt.NDArray[np.bool_]
    interval: FeasibleInterval

    @classmethod
    def read(cls, frame: pd.DataFrame, guardrails: GuardrailPolicy) -> DecisionInputs:
        """Read the inputs of ``frame`` (columns in the module docstring)."""
        limits: PriceLimits = {
            "cost": numeric_column(frame, "cost"),
            "base_price": numeric_column(frame, "base_price"),
            "map_price": numeric_column(frame, "map_price"),
            "ceiling": numeric_column(frame, "ceiling"),
            "last_published": numeric_column(frame, "last_published"),
            "non_personalized_price": numeric_column(frame, "non_personalized_price"),
            "is_offer": personalized_rows(frame),
        }
        features, missing = build_feature_matrix(frame)
        return cls(frame, limits, features, missing, feasible_interval(guardrails, **limits))


@dataclass
class ModelChoice:
    """What the model chose per row; rows it does not price keep NaN (the kill switch prices them).

    Attributes:
        active: Rows the model prices (feasible, features known, model fresh, output finite).
        candidate: The chosen (possibly explored) candidate price, before the guardrails.
        elasticity, base_logit: The model's price response, for the expected conversion.
        explored: The candidate is not the model's best.
        propensity: Probability of the shown price under the policy (1 where it could not explore).
        top_names, top_values: The three features that moved the price most, for the explanation.
        eligible: Rows that could explore (the model priced them and more than one price was feasible).
        best_index: The model's best candidate per row (-1 where it did not choose).
        shown_candidates: Every candidate's price after the guardrails, (B, K); NaN unless computed
            (exploring policies, and :meth:`PricingPolicy.action_distribution`).
    """

    active: npt.NDArray[np.bool_]
    candidate: npt.NDArray[np.float64]
    elasticity: npt.NDArray[np.float64]
    base_logit: npt.NDArray[np.float64]
    explored: npt.NDArray[np.bool_]
    propensity: npt.NDArray[np.float64]
    top_names: npt.NDArray[np.object_]
    top_values: npt.NDArray[np.float64]
    eligible: npt.NDArray[np.bool_]
    best_index: npt.NDArray[np.int64]
    shown_candidates: npt.NDArray[np.float64]

    @classmethod
    def none(cls, n: int, active: npt.NDArray[np.bool_], k: int = 1) -> ModelChoice:
        """No choice made yet for ``n`` rows, of which ``active`` may be priced by the model."""
        return cls(
            active=np.array(active, dtype=bool),
            candidate=np.full(n, np.nan),
            elasticity=np.full(n, np.nan),
            base_logit=np.full(n, np.nan),
            explored=np.zeros(n, dtype=bool),
            propensity=np.ones(n),
            top_names=np.full((n, 3), "", dtype=object),
            top_values=np.full((n, 3), np.nan),
            eligible=np.zeros(n, dtype=bool),
            best_index=np.full(n, -1, dtype=np.int64),
            shown_candidates=np.full((n, k), np.nan),
        )


@dataclass(frozen=True)
class ActionDistribution:
    """The prices a policy may show per row and their probabilities, (B, K) each; rows sum to 1.

    Several candidates can show the same price (the guardrails round and clamp): a price's
    probability is the sum over the candidates that show it.

    Example:
        >>> dist = ActionDistribution(np.array([[9.99, 9.99, 10.49]]), np.array([[0.5, 0.25, 0.25]]))
        >>> dist.probability(np.array([9.99])).tolist(), dist.probability(np.array([11.0])).tolist()
        ([0.75], [0.0])
        >>> dist.expectation(np.array([[1.0, 1.0, 3.0]])).tolist()
        [1.5]
    """

    prices: npt.NDArray[np.float64]
    probabilities: npt.NDArray[np.float64]

    def probability(self, shown: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """P(the policy shows ``shown[i]``) per row (prices equal to the cent count as the same)."""
        price = np.asarray(shown, dtype=np.float64).reshape(-1, 1)
        same = np.abs(self.prices - price) < 0.005
        return np.minimum((self.probabilities * same).sum(axis=1), 1.0)

    def expectation(self, values: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The policy's mean of a per-price quantity ``values`` (B, K), e.g. a reward model's margin."""
        return np.asarray((self.probabilities * np.asarray(values, dtype=np.float64)).sum(axis=1))


def offline_policy(artifact: ModelArtifact, guardrails: GuardrailPolicy, epsilon: float) -> PricingPolicy:
    """``artifact`` pricing on the CPU as of its training time: for replays and simulations, where the
    wall clock must not trip the staleness kill switch."""
    created = artifact.created_at
    return PricingPolicy(artifact, guardrails, exploration_epsilon=epsilon, device="cpu", clock=lambda: created)
