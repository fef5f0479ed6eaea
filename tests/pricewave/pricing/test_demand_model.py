"""The demand model: demand never rises with price, whatever the weights and inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pricewave.pricing.demand_model import DemandModel
from pricewave.pricing.features import EMBEDDING_DIM, N_FEATURES

torch.set_num_threads(1)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    batch=st.integers(1, 16),
    k=st.integers(2, 24),
    x_scale=st.sampled_from([0.1, 1.0, 10.0]),
    weight_scale=st.sampled_from([0.1, 1.0, 5.0]),
    with_embedding=st.booleans(),
    min_elasticity=st.sampled_from([1e-3, 0.05, 1.0]),
)
def test_demand_never_rises_with_price(
    seed: int,
    batch: int,
    k: int,
    x_scale: float,
    weight_scale: float,
    with_embedding: bool,
    min_elasticity: float,
) -> None:
    generator = torch.Generator().manual_seed(seed)
    model = DemandModel(hidden=16, min_elasticity=min_elasticity).double()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=torch.float64) * weight_scale)
    x = torch.randn(batch, N_FEATURES, generator=generator, dtype=torch.float64) * x_scale
    emb = torch.randn(batch, EMBEDDING_DIM, generator=generator, dtype=torch.float64) if with_embedding else None
    log_ratio = torch.sort(torch.rand(batch, k, generator=generator, dtype=torch.float64) * 4 - 2, dim=1).values

    probs = model(x, emb, log_ratio)
    elasticity = model.elasticity(x, emb)
    assert probs.shape == (batch, k)
    assert (elasticity >= min_elasticity).all()
    assert (probs[:, 1:] <= probs[:, :-1]).all(), "demand rose with price"
    logits = model.logits(x, emb, log_ratio)
    gaps = log_ratio[:, 1:] - log_ratio[:, :-1]
    assert (logits[:, 1:][gaps > 0] < logits[:, :-1][gaps > 0]).all(), "the logit must strictly fall"


def test_shapes_embedding_and_decompose() -> None:
    torch.manual_seed(0)
    model = DemandModel()
    x = torch.randn(4, N_FEATURES)
    emb = torch.randn(4, EMBEDDING_DIM)
    base, elasticity = model.decompose(x, emb)
    assert base.shape == elasticity.shape == (4,)
    ratio = torch.zeros(4, 1)
    assert torch.allclose(model(x, emb, ratio)[:, 0], torch.sigmoid(base))
    # no embedding is the zero embedding
    assert torch.allclose(model.base_logit(x, None), model.base_logit(x, torch.zeros(4, EMBEDDING_DIM)))
    assert not torch.allclose(model.base_logit(x, emb), model.base_logit(x, None))
    assert model.embedding_projection is not None and model.embedding_projection.out_features == 8


def test_non_positive_min_elasticity_is_refused() -> None:
    with pytest.raises(ValueError, match="min_elasticity"):
        DemandModel(min_elasticity=0.0)


def test_trains_on_a_decreasing_curve() -> None:
    """Plain gradient descent recovers a constant-elasticity curve's slope (sanity, not accuracy)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n = 2000
    log_ratio = torch.as_tensor(rng.uniform(-0.5, 0.5, (n, 1)), dtype=torch.float32)
    true_p = torch.sigmoid(-1.0 - 3.0 * log_ratio)
    y = torch.bernoulli(true_p, generator=torch.Generator().manual_seed(1))
    model = DemandModel(embedding_dim=0, hidden=8)
    x = torch.zeros(n, N_FEATURES)
    parameters = list(model.parameters())
    for _ in range(300):  # (torch.optim's first import costs seconds; a hand-written step does not)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model.logits(x, None, log_ratio), y)
        grads = torch.autograd.grad(loss, parameters)
        with torch.no_grad():
            for parameter, grad in zip(parameters, grads, strict=True):
                parameter.sub_(0.5 * grad)
    assert model.elasticity(x[:1], None).item() == pytest.approx(3.0, rel=0.25)
