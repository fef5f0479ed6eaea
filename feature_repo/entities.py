"""Feast entities: what features are keyed by.

``user`` is keyed by the pseudonymous user key (the keyed hash from :mod:`pricewave.privacy`);
raw user ids never reach the feature store.
"""

from feast import Entity, ValueType

sku = Entity(
    name="sku",
    join_keys=["sku"],
    value_type=ValueType.STRING,
    description="A stock-keeping unit.",
)

user = Entity(
    name="user",
    join_keys=["user_key"],
    value_type=ValueType.STRING,
    description="A shopper, by pseudonymous user key (32-hex keyed hash of the raw id; never the raw id).",
)
