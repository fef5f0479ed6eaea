"""Explanations: the right top feature, compact JSON, at most 32 keys."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pricewave.pricing.demand_model import DemandModel
from pricewave.pricing.explain import MAX_KEYS, build_explanations, explanations_json, top_feature_contributions
from pricewave.pricing.features import FEATURE_NAMES, N_FEATURES

torch.set_num_threads(1)


def single_feature_model(index: int, sign: float = 1.0) -> DemandModel:
    """base logit = sign · silu(silu(x[index])): only one feature can matter."""
    model = DemandModel(embedding_dim=0, hidden=4)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        first, second = model.trunk[0], model.trunk[2]
        assert isinstance(first, torch.nn.Linear) and isinstance(second, torch.nn.Linear)
        first.weight[0, index] = 1.0
        second.weight[0, 0] = 1.0
        model.base_head.weight[0, 0] = sign
    return model


@pytest.mark.parametrize("name", ["competitor_gap", "views_1h", "sentiment"])
def test_top_feature_is_the_one_that_moves_the_logit(name: str) -> None:
    index = FEATURE_NAMES.index(name)
    model = single_feature_model(index, sign=-1.0)
    x = np.full((2, N_FEATURES), 0.5, dtype=np.float32)
    names, values = top_feature_contributions(model, x, None)
    assert names.shape == values.shape == (2, 3)
    assert names[:, 0].tolist() == [name, name]
    assert (values[:, 0] < 0).all()  # the feature lowers the purchase logit
    assert np.allclose(values[:, 1:], 0.0)


def test_contributions_leave_no_parameter_gradients() -> None:
    model = DemandModel()
    top_feature_contributions(model, np.ones((3, N_FEATURES)), np.ones((3, 384)))
    assert all(p.grad is None for p in model.parameters())


def test_explanations_are_compact_json_with_at_most_32_keys() -> None:
    texts = explanations_json(
        elasticity=[1.23456789, np.nan],
        conversion=[0.0312345678, np.nan],
        top_names=np.array([["views_5m", "sentiment", "hour_sin"], ["", "", ""]], dtype=object),
        top_values=np.array([[0.5, -0.25, 0.125], [np.nan] * 3]),
        guardrail=["price_point", "no_floor"],
        applied=[["floor", "price_point"], ["no_floor"]],
        extra={"explored": np.array([True, False]), "candidate_price": [18.734, np.nan], "objective": ["margin"] * 2},
    )
    first, second = (json.loads(t) for t in texts)
    assert first == {
        "elasticity": 1.2346,
        "expected_conversion": 0.03123,
        "top_features": [["views_5m", 0.5], ["sentiment", -0.25], ["hour_sin", 0.125]],
        "guardrail": "price_point",
        "applied": ["floor", "price_point"],
        "explored": True,
        "candidate_price": 18.734,
        "objective": "margin",
    }
    assert second["elasticity"] is None and second["top_features"] == [] and second["candidate_price"] is None
    assert all(len(json.loads(t)) <= MAX_KEYS for t in texts)
    assert " " not in texts[0]  # compact separators


def test_build_explanations_returns_dicts_and_refuses_too_many_keys() -> None:
    columns = {
        "elasticity": [1.0],
        "conversion": [0.1],
        "top_names": np.array([["a", "b", "c"]], dtype=object),
        "top_values": np.array([[1.0, 0.5, 0.25]]),
        "guardrail": [None],
        "applied": [[]],
    }
    assert build_explanations(**columns)[0]["guardrail"] is None
    with pytest.raises(ValueError, match="32"):
        build_explanations(**columns, extra={f"k{i}": [0] for i in range(28)})
