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

import numpy as np
import pandas as pd
import torch

from pricewave.errors import DataError
from pricewave.pricing.artifact import ArtifactWatcher, ModelArtifact
from pricewave.pricing.demand_model import default_device, model_device
from pricewave.pricing.explain import explanations_json, top_feature_contributions
from pricewave.pricing.exploration import DEFAULT_EPSILON, check_epsilon, explore, shown_price_propensity
from pricewave.pricing.features import build_embedding_matrix, build_feature_matrix, numeric_column, personalized_rows
from pricewave.pricing.guardrails import GuardrailPolicy, apply_guardrails_vectorized, feasible_interval
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

        Raises:
            DataError: A required column is absent.
        """
        absent = [name for name in REQUIRED_COLUMNS if name not in frame.columns]
        if absent:
            raise DataError(f"pricing input lacks columns {', '.join(absent)}")
        n = len(frame)
        if n == 0:
            return pd.DataFrame({name: pd.Series(dtype=object) for name in OUTPUT_COLUMNS}, index=frame.index)
        gp = self.guardrails
        base, cost = numeric_column(frame, "base_price"), numeric_column(frame, "cost")
        map_price, ceiling = numeric_column(frame, "map_price"), numeric_column(frame, "ceiling")
        last, npp = numeric_column(frame, "last_published"), numeric_column(frame, "non_personalized_price")
        is_offer = personalized_rows(frame)
        x, missing = build_feature_matrix(frame)
        interval = feasible_interval(
            gp,
            cost=cost,
            base_price=base,
            map_price=map_price,
            ceiling=ceiling,
            last_published=last,
            non_personalized_price=npp,
            is_offer=is_offer,
        )
        artifact = self.artifact()
        age = artifact.age_s(self.clock()) if artifact is not None else np.nan
        fresh = artifact is not None and not gp.kill_switch and age <= gp.max_model_age_s
        active = interval.feasible & ~missing & fresh
        rows = np.flatnonzero(active)

        candidate = np.full(n, np.nan)
        elasticity = np.full(n, np.nan)
        base_logit = np.full(n, np.nan)
        explored = np.zeros(n, dtype=bool)
        propensity = np.ones(n)
        top_names = np.full((n, 3), "", dtype=object)
        top_values = np.full((n, 3), np.nan)
        if rows.size and artifact is not None:
            model = artifact.model
            if model_device(model) != self.device:
                model.to(self.device)
            emb_all, has_emb = build_embedding_matrix(frame.iloc[rows])
            emb = emb_all if has_emb.any() else None
            result = optimize(
                model,
                x[rows],
                emb,
                ref_price=base[rows],
                cost=cost[rows],
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
            # A model fault (NaN/inf out of the network, e.g. NaN weights) must not price: argmax over
            # NaN picks candidate 0, the floor. Such a row takes the kill switch (a NaN candidate).
            model_ok = (
                np.isfinite(result.base_logit)
                & np.isfinite(result.elasticity)
                & np.isfinite(result.conversions).all(axis=1)
                & np.isfinite(result.expected_value)
            )
            if not model_ok.all():
                self._model_fault(artifact.version, int((~model_ok).sum()), rows.size)
                active[rows[~model_ok]] = False
            eligible = (interval.hi[rows] > interval.lo[rows]) & model_ok
            choice = explore(
                result.best_index,
                self.k,
                self.epsilon,
                decision_keys(frame.iloc[rows]),
                seed=self.seed,
                eligible=eligible,
            )
            candidate[rows] = np.where(model_ok, result.candidates[np.arange(rows.size), choice.index], np.nan)
            elasticity[rows] = np.where(model_ok, result.elasticity, np.nan)
            base_logit[rows] = np.where(model_ok, result.base_logit, np.nan)
            explored[rows] = choice.explored
            if self.epsilon > 0 and eligible.any():
                shown_all = apply_guardrails_vectorized(
                    gp,
                    candidate=result.candidates,
                    cost=cost[rows, None],
                    base_price=base[rows, None],
                    is_offer=is_offer[rows, None],
                    model_age_s=age,
                    interval=interval.take(rows).repeat(self.k),
                ).price
                propensity[rows] = shown_price_propensity(
                    shown_all, choice.index, result.best_index, self.epsilon, eligible=eligible
                )
            names, values = top_feature_contributions(model, x[rows], emb)
            top_names[rows] = np.where(model_ok[:, None], names, "")
            top_values[rows] = np.where(model_ok[:, None], values, np.nan)

        guarded = apply_guardrails_vectorized(
            gp,
            candidate=candidate,
            cost=cost,
            base_price=base,
            map_price=map_price,
            ceiling=ceiling,
            last_published=last,
            non_personalized_price=npp,
            is_offer=is_offer,
            model_age_s=age,
            features_missing=missing,
            interval=interval,
        )
        priced = active & guarded.published
        conversion = np.where(priced, conversion_at(base_logit, elasticity, guarded.price, base), np.nan)
        guardrail_names = guarded.guardrails()
        applied = guarded.applied()
        explanations = explanations_json(
            elasticity=elasticity,
            conversion=conversion,
            top_names=top_names,
            top_values=top_values,
            guardrail=guardrail_names,
            applied=applied,
            extra={
                "candidate_price": candidate,
                "explored": explored,
                "kill_switch": guarded.kill_switch & interval.feasible,
                "objective": [self.objective] * n,
            },
        )
        version = artifact.version if artifact is not None else NO_MODEL
        return pd.DataFrame(
            {
                "price": guarded.price,
                "base_price": base,
                "guardrail": guardrail_names,
                "guardrails": applied,
                "model_version": np.where(active, version, NO_MODEL),
                "propensity": propensity,
                "personalized": is_offer & active,
                "expected_conversion": conversion,
                "explanation": explanations,
            },
            index=frame.index,
        )
