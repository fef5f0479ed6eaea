"""The demand model: P(buy | x, price), monotonically decreasing in price by construction.

    logit P(buy | x, p) = base(x) − elasticity(x) · log(p / ref_price)
    elasticity(x)       = softplus(head(x)) + min_elasticity  > 0

``x`` is the feature row of :mod:`pricewave.pricing.features` and, when given, the 384-float
review embedding projected to 8 dims by a Linear layer inside the model. Because the elasticity
is strictly positive whatever the weights, demand strictly decreases in price for every input:
no training run can learn "dearer sells more".

Example:
    >>> import torch
    >>> model = DemandModel()
    >>> x = torch.zeros(2, model.n_features)
    >>> log_ratio = torch.tensor([[-0.1, 0.0, 0.1], [-0.1, 0.0, 0.1]])
    >>> probs = model(x, None, log_ratio)
    >>> probs.shape, bool((probs[:, 1:] < probs[:, :-1]).all())
    (torch.Size([2, 3]), True)
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pricewave.pricing.features import EMBEDDING_DIM, EMBEDDING_PROJECTION_DIM, N_FEATURES


class DemandModel(nn.Module):
    """Purchase probability with a learned, strictly positive price elasticity.

    Args:
        n_features: Width of the feature row (defaults to the feature spec).
        embedding_dim: Width of the review embedding (0 = the model takes none).
        embedding_projection_dim: The embedding's projected width.
        hidden: Width of the shared trunk.
        min_elasticity: Lower bound of the elasticity (> 0), so demand strictly decreases.
    """

    def __init__(
        self,
        n_features: int = N_FEATURES,
        embedding_dim: int = EMBEDDING_DIM,
        embedding_projection_dim: int = EMBEDDING_PROJECTION_DIM,
        hidden: int = 64,
        min_elasticity: float = 0.05,
    ) -> None:
        super().__init__()
        if min_elasticity <= 0:
            raise ValueError("min_elasticity must be > 0 so demand strictly decreases in price")
        self.config: dict[str, Any] = {
            "n_features": n_features,
            "embedding_dim": embedding_dim,
            "embedding_projection_dim": embedding_projection_dim,
            "hidden": hidden,
            "min_elasticity": min_elasticity,
        }
        self.n_features = n_features
        self.min_elasticity = min_elasticity
        self.embedding_projection = nn.Linear(embedding_dim, embedding_projection_dim) if embedding_dim else None
        width = n_features + (embedding_projection_dim if embedding_dim else 0)
        self.trunk = nn.Sequential(nn.Linear(width, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.base_head = nn.Linear(hidden, 1)
        self.elasticity_head = nn.Linear(hidden, 1)

    def _hidden(self, x: torch.Tensor, emb: torch.Tensor | None) -> torch.Tensor:
        if self.embedding_projection is None:
            return self.trunk(x)
        if emb is None:  # no embedding ≡ the zero embedding: the projection's bias alone
            projected = self.embedding_projection.bias.expand(x.shape[0], -1)
        else:
            projected = self.embedding_projection(emb)
        return self.trunk(torch.cat([x, projected], dim=1))

    def decompose(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(base_logit (B,), elasticity (B,))`` from one pass through the trunk."""
        hidden = self._hidden(x, emb)
        base = self.base_head(hidden).squeeze(-1)
        elasticity = F.softplus(self.elasticity_head(hidden).squeeze(-1)) + self.min_elasticity
        return base, elasticity

    def base_logit(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        """The purchase logit at the reference price, (B,)."""
        return self.decompose(x, emb)[0]

    def elasticity(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        """The price elasticity of the logit, (B,), always >= ``min_elasticity``."""
        return self.decompose(x, emb)[1]

    def logits(self, x: torch.Tensor, emb: torch.Tensor | None, log_price_ratio: torch.Tensor) -> torch.Tensor:
        """Purchase logits (B, K) at ``log(p / ref_price)`` (B, K); use with BCE-with-logits to train."""
        base, elasticity = self.decompose(x, emb)
        return price_response_logits(base, elasticity, log_price_ratio)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None, log_price_ratio: torch.Tensor) -> torch.Tensor:
        """Purchase probabilities (B, K) for K candidate prices per row, from one trunk pass."""
        return torch.sigmoid(self.logits(x, emb, log_price_ratio))


def price_response_logits(base: torch.Tensor, elasticity: torch.Tensor, log_price_ratio: torch.Tensor) -> torch.Tensor:
    """THE price response: ``base − elasticity · log(p / ref)`` for (B,) terms and (B, K) log ratios."""
    return base.unsqueeze(-1) - elasticity.unsqueeze(-1) * log_price_ratio


def model_device(model: nn.Module) -> torch.device:
    """The device a model's parameters live on."""
    return next(model.parameters()).device


def default_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
