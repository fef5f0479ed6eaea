"""Feast data sources: one push source per feature view, each backed by a parquet batch source.

The streaming job writes online through the push sources (see ``pricewave.feature_store.writer``);
the parquet files under ``data/`` are the offline side (training, backfills). A missing parquet
file is created empty, with the columns its schema declares, so ``feast apply`` works on a fresh
checkout.

Column types come from ``schemas/`` through :func:`pricewave.schemas.feast_fields`; nothing here
repeats a field list.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from feast import FileSource, PushSource
from feast.types import UnixTimestamp, from_feast_to_pyarrow_type

from pricewave.schemas import feast_fields

DATA_DIR = Path(__file__).resolve().parent / "data"
EVENT_TIME = "event_time"


@dataclass(frozen=True)
class Table:
    """What one feature view stores: its schema, entity columns and the schema fields it leaves out."""

    view: str
    schema: str
    keys: tuple[str, ...]
    dropped: tuple[str, ...] = ()

    def columns(self) -> list:
        """Every stored column (entity keys, features, event time) as Feast fields."""
        return feast_fields(self.schema, exclude=self.dropped)

    def features(self) -> list:
        """The feature fields: the stored columns less the entity keys and the event time."""
        return feast_fields(self.schema, exclude=(*self.dropped, *self.keys, EVENT_TIME))


# `kind` is implied by the view, `explanation` stays in the decision log; a sku price has no user.
_DECISION_ONLY = ("kind", "explanation")

TABLES = {
    table.view: table
    for table in (
        Table("sku_demand", "sku_demand", ("sku",)),
        Table("sku_competition", "sku_competition", ("sku",)),
        Table("sku_review_summary", "sku_review_summary", ("sku",)),
        Table("user_session", "user_session", ("user_key",)),
        Table("shopper_profile", "shopper_profile", ("user_key",)),
        Table("sku_catalog", "sku_catalog", ("sku",)),
        Table("sku_price", "price_decision", ("sku",), (*_DECISION_ONLY, "user_key")),
        Table("user_offer", "price_decision", ("user_key", "sku"), _DECISION_ONLY),
    )
}


def _arrow_schema(table: Table) -> pa.Schema:
    # Epoch-millis columns are stored as UTC timestamps: Feast reads event times as datetimes.
    return pa.schema(
        pa.field(
            field.name,
            pa.timestamp("ms", tz="UTC") if field.dtype == UnixTimestamp else from_feast_to_pyarrow_type(field.dtype),
        )
        for field in table.columns()
    )


def _batch_source(table: Table) -> FileSource:
    path = DATA_DIR / f"{table.view}.parquet"
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        pq.write_table(_arrow_schema(table).empty_table(), path)
    return FileSource(
        name=f"{table.view}_batch",
        path=str(path),
        timestamp_field=EVENT_TIME,
        description=f"Offline history of {table.view} (parquet).",
    )


def _push_source(table: Table) -> PushSource:
    return PushSource(
        name=f"{table.view}_push",
        batch_source=_batch_source(table),
        description=f"Online writes to {table.view} from the streaming job.",
    )


sku_demand_push = _push_source(TABLES["sku_demand"])
sku_competition_push = _push_source(TABLES["sku_competition"])
sku_review_summary_push = _push_source(TABLES["sku_review_summary"])
user_session_push = _push_source(TABLES["user_session"])
shopper_profile_push = _push_source(TABLES["shopper_profile"])
sku_catalog_push = _push_source(TABLES["sku_catalog"])
sku_price_push = _push_source(TABLES["sku_price"])
user_offer_push = _push_source(TABLES["user_offer"])
