"""The channel API: what price a sales channel shows for a sku (and a user).

:func:`get_price` reads, in ONE online lookup, the personalized offer (``user_offer``), the sku's
dynamic price (``sku_price``) and its list price (``sku_catalog.base_price``) and returns the first
one that is present AND fresh: offer, else sku price, else base price, else ``unavailable``.
Missing or expired data falls back; it never raises. :func:`get_prices` does the same for a batch
(one lookup for the anonymous requests, one for those with a user key); ``pricewave serve``
(:mod:`pricewave.serving`) offers both over HTTP.

Feast's feature-view ``ttl`` does not filter online reads, so freshness is checked here: a value is
fresh while ``now - event_time <= ttl`` of its view (a ttl of 0 never expires).

A channel is a Feast feature service (``checkout_pricing``, ``app_pricing``, ``ads_bidding``): a
channel only sees the views its service includes, e.g. ``ads_bidding`` has no ``user_offer`` and so
never shows a personalized price.

Example:
    >>> from pricewave.feature_store import open_store, get_price       # doctest: +SKIP
    >>> get_price(open_store(), "SKU-1001", user_key=key)               # doctest: +SKIP
    PriceQuote(sku='SKU-1001', price=17.5, source='offer', personalized=True, age_s=3.2, ...)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, get_args

from pricewave.errors import ConfigError
from pricewave.feature_store.stores import ops_for
from pricewave.privacy import is_user_key

if TYPE_CHECKING:
    from feast import FeatureStore

Channel = Literal["checkout_pricing", "app_pricing", "ads_bidding"]
"""A sales channel: one Feast feature service each."""
CHANNELS: tuple[Channel, ...] = get_args(Channel)
"""The sales channels, in order."""
PriceSource = Literal["offer", "sku", "base", "unavailable"]
# (source, view, fields read), in fallback order.
_CHAIN: tuple[tuple[PriceSource, str, tuple[str, ...]], ...] = (
    ("offer", "user_offer", ("price", "personalized", "model_version")),
    ("sku", "sku_price", ("price", "personalized", "model_version")),
    ("base", "sku_catalog", ("base_price",)),
)


@dataclass(frozen=True)
class PriceQuote:
    """The price a channel shows.

    Attributes:
        sku: The sku asked for.
        price: The price to show; ``None`` when ``source`` is ``unavailable``.
        source: ``offer`` (personalized offer), ``sku`` (dynamic price for everyone), ``base``
            (catalog list price) or ``unavailable`` (nothing fresh: do not sell at a guessed price).
        personalized: Disclosure flag: True when the price was personalized for this user.
        age_s: Seconds since the price's event time (``None`` when unavailable).
        model_version: The pricing model behind the price (``None`` for a base price).
        user_key: The pseudonymous user key the lookup used, if any.
    """

    sku: str
    price: float | None
    source: PriceSource
    personalized: bool
    age_s: float | None
    model_version: str | None
    user_key: str | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def _views_for(store: FeatureStore, channel: str | None) -> dict[str, set[str]]:
    """The price fields each price view offers on a channel."""
    if channel is None:
        return {view: set(fields) for _, view, fields in _CHAIN}
    from feast.errors import FeatureServiceNotFoundException

    try:
        # The cached registry (refreshed after its TTL): a fresh read on every call costs ~4 ms and
        # also clears Feast's feature-resolution cache for the read that follows.
        service = store.get_feature_service(channel, allow_cache=True)
    except FeatureServiceNotFoundException:
        raise ConfigError(f"unknown channel {channel!r}: channels are {list(CHANNELS)}") from None
    return {
        projection.name: {feature.name for feature in projection.features}
        for projection in service.feature_view_projections
    }


def _ttl(store: FeatureStore, view: str) -> timedelta | None:
    ttl = store.get_feature_view(view, allow_registry_cache=True).ttl
    return ttl if ttl else None


def get_price(
    store: FeatureStore,
    sku: str,
    *,
    user_key: str | None = None,
    channel: str | None = None,
    now: datetime | None = None,
) -> PriceQuote:
    """The price to show for ``sku`` (and ``user_key``) on ``channel``: offer, else sku, else base.

    Args:
        store: An open FeatureStore (:func:`pricewave.feature_store.open_store`).
        sku: The sku.
        user_key: The shopper's pseudonymous key (:func:`pricewave.privacy.pseudonymize_user`),
            never a raw user id; ``None`` for an anonymous shopper (no offer is looked up).
        channel: A feature service in :data:`CHANNELS`; ``None`` reads every price view.
        now: The time freshness is judged at (default: now, UTC).

    Returns:
        The quote; ``source == "unavailable"`` when nothing fresh is stored.

    Raises:
        ConfigError: ``user_key`` is not a pseudonymous key, or the channel is unknown.
        StackError: The online store cannot be reached.
    """
    return get_prices(store, [(sku, user_key)], channel=channel, now=now)[0]


def get_prices(
    store: FeatureStore,
    requests: Sequence[tuple[str, str | None]],
    *,
    channel: str | None = None,
    now: datetime | None = None,
) -> list[PriceQuote]:
    """:func:`get_price` for many (sku, user_key) pairs: at most two online lookups in all.

    Anonymous requests and requests with a user key are read in one lookup each (Feast reads one set
    of entity keys per call, and an anonymous row has no user key to read an offer with).

    Args:
        store: An open FeatureStore.
        requests: (sku, pseudonymous user key or ``None``) pairs.
        channel: A feature service in :data:`CHANNELS`; ``None`` reads every price view.
        now: The time freshness is judged at (default: now, UTC).

    Returns:
        One quote per request, in the order asked.

    Raises:
        ConfigError: A user key is not a pseudonymous key, or the channel is unknown.
        StackError: The online store cannot be reached.

    Example:
        >>> get_prices(store, [("SKU-1", None), ("SKU-2", key)], channel="app_pricing")  # doctest: +SKIP
        [PriceQuote(sku='SKU-1', ...), PriceQuote(sku='SKU-2', ...)]
    """
    if any(user_key is not None and not is_user_key(user_key) for _, user_key in requests):
        raise ConfigError("user_key must be a 32-hex pseudonymous key: pseudonymize the raw user id first")
    now = (now or datetime.now(UTC)).astimezone(UTC)
    offered = _views_for(store, channel)
    quotes: list[PriceQuote | None] = [None] * len(requests)
    for with_user in (False, True):
        positions = [n for n, (_, user_key) in enumerate(requests) if (user_key is not None) == with_user]
        if not positions:
            continue
        chain = [
            (source, view, fields)
            for source, view, fields in _CHAIN
            if view in offered and fields[0] in offered[view] and (view != "user_offer" or with_user)
        ]
        ttls = {view: _ttl(store, view) for _, view, _ in chain}  # once per batch, not per request
        for n, found in zip(positions, _read(store, chain, offered, [requests[n] for n in positions]), strict=True):
            sku, user_key = requests[n]
            quotes[n] = _first_fresh(chain, ttls, found, sku, user_key, now)
    return [quote for quote in quotes if quote is not None]


def _read(
    store: FeatureStore,
    chain: Sequence[tuple[PriceSource, str, tuple[str, ...]]],
    offered: dict[str, set[str]],
    requests: Sequence[tuple[str, str | None]],
) -> list[dict[str, tuple[Any, datetime | None]]]:
    """One online lookup: per request, ``view__field`` -> (value, event time)."""
    refs = [f"{view}:{field}" for _, view, fields in chain for field in fields if field in offered[view]]
    if not refs:
        return [{} for _ in requests]
    rows: list[dict[str, Any]] = [
        {"sku": sku} if user_key is None else {"sku": sku, "user_key": user_key} for sku, user_key in requests
    ]
    with ops_for(store).translate_errors(store):
        response = store.get_online_features(features=refs, entity_rows=rows, full_feature_names=True)
    from feast.type_map import feast_value_type_to_python_type

    found: list[dict[str, tuple[Any, datetime | None]]] = [{} for _ in requests]
    for name, vector in zip(response.proto.metadata.feature_names.val, response.proto.results, strict=True):
        for n in range(len(requests)):
            value = feast_value_type_to_python_type(vector.values[n])
            stamp = vector.event_timestamps[n] if len(vector.event_timestamps) > n else None
            when = stamp.ToDatetime(tzinfo=UTC) if stamp is not None and (stamp.seconds or stamp.nanos) else None
            found[n][name] = (value, when)
    return found


def _first_fresh(
    chain: Sequence[tuple[PriceSource, str, tuple[str, ...]]],
    ttls: dict[str, timedelta | None],
    found: dict[str, tuple[Any, datetime | None]],
    sku: str,
    user_key: str | None,
    now: datetime,
) -> PriceQuote:
    """The first price of the fallback chain that is present and fresh, else ``unavailable``."""
    for source, view, fields in chain:
        price, when = found.get(f"{view}__{fields[0]}", (None, None))
        if price is None or when is None:
            continue
        ttl = ttls[view]
        age = now - when
        if ttl is not None and age > ttl:
            continue
        personalized, _ = found.get(f"{view}__personalized", (False, None))
        model_version, _ = found.get(f"{view}__model_version", (None, None))
        return PriceQuote(
            sku=sku,
            price=float(price),
            source=source,
            personalized=bool(personalized) if source != "base" else False,
            age_s=max(age.total_seconds(), 0.0),
            model_version=model_version if source != "base" else None,
            user_key=user_key,
        )
    return PriceQuote(sku, None, "unavailable", False, None, None, user_key)
