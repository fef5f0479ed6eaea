"""The optimizer finds known optima within grid resolution; objectives differ as they should."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pricewave.pricing.demand_model import DemandModel
from pricewave.pricing.features import N_FEATURES
from pricewave.pricing.optimizer import candidate_grid, conversion_at, optimize

torch.set_num_threads(1)


def constant_model(intercept: float, elasticity: float) -> DemandModel:
    """logit P = intercept − elasticity · log(p / ref) for every input."""
    model = DemandModel(embedding_dim=0, hidden=4, min_elasticity=0.05).double()
    with torch.no_grad():
        model.base_head.weight.zero_()
        model.base_head.bias.fill_(intercept)
        model.elasticity_head.weight.zero_()
        model.elasticity_head.bias.fill_(math.log(math.expm1(elasticity - 0.05)))  # softplus⁻¹
    return model


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def margin_optimum(a: float, e: float, ref: float, cost: float) -> float:
    """Root of d/dp (p − c) σ(a − e log(p/r)) = 0, i.e. e (1 − σ) (p − c) / p = 1 (increasing in p)."""
    lo, hi = cost * (1 + 1e-12), cost * 1e3
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        f = e * (1 - sigmoid(a - e * math.log(mid / ref))) * (mid - cost) / mid - 1
        lo, hi = (mid, hi) if f < 0 else (lo, mid)
    return lo


def revenue_optimum(a: float, e: float, ref: float) -> float:
    """Closed form: σ = 1 − 1/e at the optimum, so p* = r exp((a − logit(1 − 1/e)) / e)."""
    q = 1 - 1 / e
    return ref * math.exp((a - math.log(q / (1 - q))) / e)


CASES = [(-1.0, 2.5, 20.0, 8.0), (0.5, 4.0, 100.0, 60.0), (-3.0, 1.6, 5.0, 1.0), (1.0, 8.0, 50.0, 45.0)]


@pytest.mark.parametrize(("a", "e", "ref", "cost"), CASES)
@pytest.mark.parametrize("objective", ["margin", "revenue"])
def test_finds_the_analytic_optimum_within_grid_resolution(
    a: float, e: float, ref: float, cost: float, objective: str
) -> None:
    best = margin_optimum(a, e, ref, cost) if objective == "margin" else revenue_optimum(a, e, ref)
    lo, hi, k = best * 0.55, best * 1.7, 32
    result = optimize(
        constant_model(a, e),
        np.zeros((1, N_FEATURES)),
        None,
        ref_price=[ref],
        cost=[cost],
        lo=[lo],
        hi=[hi],
        k=k,
        objective=objective,  # type: ignore[arg-type]
    )
    step = math.log(hi / lo) / (k - 1)
    assert abs(math.log(result.price[0] / best)) <= step + 1e-12
    assert result.elasticity[0] == pytest.approx(e)
    assert result.conversion[0] == pytest.approx(sigmoid(a - e * math.log(result.price[0] / ref)), rel=1e-6)
    per_sale = result.price[0] - (cost if objective == "margin" else 0.0)
    assert result.expected_value[0] == pytest.approx(per_sale * result.conversion[0], rel=1e-6)


def test_matches_a_dense_search_row_by_row_for_a_random_model() -> None:
    torch.manual_seed(3)
    model = DemandModel()
    rng = np.random.default_rng(0)
    b, k = 64, 24
    x = rng.normal(size=(b, N_FEATURES)).astype(np.float32)
    emb = rng.normal(size=(b, 384)).astype(np.float32)
    ref = rng.uniform(5, 100, b)
    cost = ref * rng.uniform(0.3, 0.7, b)
    lo, hi = cost * 1.05, ref * 2
    result = optimize(model, x, emb, ref, cost, lo, hi, k=k)
    dense = optimize(model, x, emb, ref, cost, lo, hi, k=4001)
    step = np.log(hi / lo) / (k - 1)
    assert (np.abs(np.log(result.price / dense.price)) <= step + 1e-9).all()
    assert (result.expected_value <= dense.expected_value + 1e-6).all()
    # one row at a time gives the same answer as the batch
    for i in (0, 17, 63):
        single = optimize(model, x[i : i + 1], emb[i : i + 1], ref[i : i + 1], cost[i : i + 1], lo[i], hi[i], k=k)
        assert single.price[0] == pytest.approx(result.price[i])


def test_objectives_differ_as_expected() -> None:
    model = constant_model(-1.0, 2.5)
    args = (np.zeros((1, N_FEATURES)), None, [20.0], [8.0], [5.0], [60.0])
    margin = optimize(model, *args, k=64, objective="margin")
    revenue = optimize(model, *args, k=64, objective="revenue")
    conversion = optimize(model, *args, k=64, objective="blend", blend_weight=1.0)
    blend0 = optimize(model, *args, k=64, objective="blend", blend_weight=0.0)
    blend = optimize(model, *args, k=64, objective="blend", blend_weight=0.5)
    pressured = optimize(model, *args, k=64, objective="margin", stock_pressure=[1.0])
    assert revenue.price[0] < margin.price[0]  # a positive cost pushes the margin optimum up
    assert conversion.price[0] == 5.0  # all weight on conversion: the lowest price
    assert blend0.price[0] == margin.price[0]
    assert conversion.price[0] < blend.price[0] < margin.price[0]
    assert pressured.price[0] < margin.price[0]  # over-stock: sell through
    assert revenue.conversion[0] > margin.conversion[0]


def test_unusable_intervals_give_nan_and_other_rows_are_unaffected() -> None:
    model = constant_model(-1.0, 2.5)
    result = optimize(
        model,
        np.zeros((4, N_FEATURES)),
        None,
        ref_price=[20.0, 20.0, 20.0, 20.0],
        cost=8.0,
        lo=[10.0, np.nan, 0.0, 30.0],
        hi=[40.0, 40.0, 40.0, 25.0],
        k=16,
    )
    assert np.isfinite(result.price[0])
    assert np.isnan(result.price[1:]).all()
    assert result.candidates.shape == (4, 16)


def test_candidate_grid_is_geometric_with_exact_ends() -> None:
    grid = candidate_grid([10.0, 7.0], [40.0, 7.0], 5)
    assert grid[0].tolist() == pytest.approx([10, 10 * 2**0.5, 20, 20 * 2**0.5, 40])
    assert grid[0, 0] == 10.0 and grid[0, -1] == 40.0
    assert (grid[1] == 7.0).all()


def test_conversion_at_matches_the_model() -> None:
    model = constant_model(-1.0, 2.5)
    result = optimize(model, np.zeros((1, N_FEATURES)), None, [20.0], [8.0], [5.0], [60.0], k=8)
    again = conversion_at(result.base_logit, result.elasticity, result.price, [20.0])
    assert again[0] == pytest.approx(result.conversion[0], rel=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_the_models_device() -> None:
    torch.manual_seed(0)
    model = DemandModel()
    x = np.random.default_rng(0).normal(size=(128, N_FEATURES)).astype(np.float32)
    args = (x, None, np.full(128, 20.0), np.full(128, 8.0), np.full(128, 9.0), np.full(128, 40.0))
    cpu = optimize(model, *args)
    gpu = optimize(model.cuda(), *args)
    assert np.allclose(cpu.price, gpu.price)
