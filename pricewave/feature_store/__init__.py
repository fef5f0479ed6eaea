"""pricewave's feature store: open the Feast repo, write features in order, read prices per channel.

One facade over one module per concept:

* :mod:`~pricewave.feature_store.store`: open the FeatureStore with the configured profile
  (SQLite by default, Redis with ``FEAST_FS_YAML_FILE_PATH=feature_store.redis.yaml``);
* :mod:`~pricewave.feature_store.writer`: THE batched writer (newest event time wins, on every store);
* :mod:`~pricewave.feature_store.reader`: the channel API, :func:`get_price` and :func:`get_prices`;
* :mod:`~pricewave.feature_store.stores`: what differs between the SQLite and Redis stores.

Example:
    >>> from pricewave.feature_store import open_store, FeatureWriter, get_price   # doctest: +SKIP
    >>> store = open_store()                                                     # doctest: +SKIP
    >>> FeatureWriter(store).write("sku_catalog", catalog_rows)                  # doctest: +SKIP
    >>> get_price(store, "SKU-1", user_key=key, channel="checkout_pricing")      # doctest: +SKIP
"""

from pricewave.feature_store.reader import CHANNELS, PriceQuote, get_price, get_prices
from pricewave.feature_store.store import PROFILE_ENV, PROFILES, default_repo_path, load_repo_config, open_store
from pricewave.feature_store.writer import FeatureWriter, WriteResult, split_price_decisions, write_features

__all__ = [
    "CHANNELS",
    "PROFILES",
    "PROFILE_ENV",
    "FeatureWriter",
    "PriceQuote",
    "WriteResult",
    "default_repo_path",
    "get_price",
    "get_prices",
    "load_repo_config",
    "open_store",
    "split_price_decisions",
    "write_features",
]
