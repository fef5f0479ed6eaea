"""A short, machine-readable explanation per price decision (≤ 32 keys, JSON-serializable).

Each explanation holds the model's estimated elasticity, the expected conversion at the shown
price, the top features that moved the purchase logit (gradient × input on the base logit, one
backward pass for the whole batch), and which guardrails changed the price.

Example:
    >>> import numpy as np, torch
    >>> from pricewave.pricing.demand_model import DemandModel
    >>> _ = torch.manual_seed(0)
    >>> model = DemandModel()
    >>> x = np.ones((2, model.n_features), dtype=np.float32)
    >>> names, values = top_feature_contributions(model, x, None)
    >>> names.shape, values.shape
    ((2, 3), (2, 3))
    >>> e = build_explanations(elasticity=[1.5, 2.0], conversion=[0.03, 0.05], top_names=names,
    ...     top_values=values, guardrail=[None, "floor"], applied=[[], ["floor"]])
    >>> sorted(e[1])[:3], e[1]["guardrail"]
    (['applied', 'elasticity', 'expected_conversion'], 'floor')
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from pricewave.pricing.demand_model import DemandModel, model_device
from pricewave.pricing.features import FEATURE_NAMES

MAX_KEYS = 32
TOP_FEATURES = 3


def top_feature_contributions(
    model: DemandModel,
    x: Any,
    emb: Any,
    *,
    top: int = TOP_FEATURES,
    feature_names: Sequence[str] = FEATURE_NAMES,
) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.float64]]:
    """The ``top`` features by |gradient × input| on the base purchase logit, per row.

    Returns:
        ``(names (B, top) object array, contributions (B, top) float64)``, largest first; the sign
        says whether the feature raised (+) or lowered (−) the purchase logit.
    """
    device = model_device(model)
    dtype = next(model.parameters()).dtype
    with torch.enable_grad():
        inputs = torch.as_tensor(np.asarray(x), device=device).to(dtype).clone().requires_grad_(True)
        emb_t = None if emb is None else torch.as_tensor(np.asarray(emb), device=device).to(dtype)
        base = model.base_logit(inputs, emb_t)
        (grad,) = torch.autograd.grad(base.sum(), inputs)
    contributions = (grad * inputs.detach()).double().cpu().numpy()
    top = min(top, contributions.shape[1])
    order = np.argsort(-np.abs(contributions), axis=1, kind="stable")[:, :top]
    names = np.asarray(feature_names, dtype=object)[order]
    return names, np.take_along_axis(contributions, order, axis=1)


def explanations_json(
    *,
    elasticity: Any,
    conversion: Any,
    top_names: Any,
    top_values: Any,
    guardrail: Sequence[str | None],
    applied: Sequence[Sequence[str]],
    extra: dict[str, Any] | None = None,
) -> list[str]:
    """One compact JSON explanation per row (what Flink and Feast carry).

    Built as strings column by column: a batch of thousands of rows allocates no per-row dicts.

    Args:
        elasticity: Estimated elasticity per row (NaN → null).
        conversion: Expected conversion at the shown price per row (NaN → null).
        top_names, top_values: From :func:`top_feature_contributions` (rows of NaN → ``[]``).
        guardrail: The last guardrail that changed each price.
        applied: Every guardrail that changed each price.
        extra: More per-row values to include (name → floats, bools, ints or strings); the total
            stays ≤ :data:`MAX_KEYS` keys.

    Returns:
        JSON object strings with keys elasticity, expected_conversion, top_features (list of
        ``[name, contribution]``), guardrail, applied, then the ``extra`` keys.
    """
    extra = extra or {}
    if 5 + len(extra) > MAX_KEYS:
        raise ValueError(f"an explanation holds at most {MAX_KEYS} keys")
    elasticity_s = _json_values(elasticity, 4)
    conversion_s = _json_values(conversion, 5)
    top_s = _json_top_features(top_names, top_values)
    guardrail_s = _json_cached(guardrail)
    applied_s = _json_cached([tuple(a) for a in applied])
    head = [
        f'{{"elasticity":{e},"expected_conversion":{c},"top_features":{t},"guardrail":{g},"applied":{a}'
        for e, c, t, g, a in zip(elasticity_s, conversion_s, top_s, guardrail_s, applied_s, strict=True)
    ]
    for key, values in extra.items():
        prefix = "," + json.dumps(str(key)) + ":"
        head = [h + prefix + v for h, v in zip(head, _json_values(values, 4), strict=True)]
    return [h + "}" for h in head]


def build_explanations(**columns: Any) -> list[dict[str, Any]]:
    """The explanations of :func:`explanations_json` (same arguments) as dicts."""
    return [json.loads(text) for text in explanations_json(**columns)]


def _json_values(values: Any, digits: int) -> list[str]:
    """JSON literals per value: floats rounded to ``digits`` (non-finite → null), bools, ints, strings."""
    array = np.asarray(values)
    if array.dtype.kind == "f":
        rounded = np.round(array.astype(np.float64), digits)
        text = rounded.astype(str)
        text[~np.isfinite(rounded)] = "null"
        return list(text.tolist())
    if array.dtype.kind == "b":
        return ["true" if v else "false" for v in array.tolist()]
    if array.dtype.kind in "iu":
        return list(array.astype(str).tolist())
    return _json_cached(list(array.tolist()))


def _json_cached(values: Sequence[Any]) -> list[str]:
    """``json.dumps`` per value, once per distinct value (guardrail names repeat a lot)."""
    cache: dict[Any, str] = {}
    out = []
    for value in values:
        text = cache.get(value)
        if text is None:
            plain = list(value) if isinstance(value, tuple) else value
            text = cache[value] = json.dumps(plain, separators=(",", ":"), allow_nan=False)
        out.append(text)
    return out


def _json_top_features(top_names: Any, top_values: Any) -> list[str]:
    names = np.asarray(top_names, dtype=object)
    values = np.asarray(top_values, dtype=np.float64)
    if names.size == 0 or names.shape[1] == 0:
        return ["[]"] * names.shape[0]
    finite = np.isfinite(values)
    text = np.round(values, 4).astype(str)
    pairs = np.where(finite, '["' + names.astype(str) + '",' + text.astype(object) + "]", "")
    joined = [",".join(p for p in row if p) for row in pairs.tolist()]
    return ["[" + j + "]" for j in joined]
