"""Feast field types of a schema (the feature repo's views)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pricewave.errors import SchemaError
from pricewave.schemas.registry import load_schema

if TYPE_CHECKING:  # feast is heavy: imported only where Feast fields are built
    from feast import Field


def feast_fields(name: str, *, exclude: Iterable[str] = (), version: int | None = None) -> list[Field]:
    """Feast fields for a schema's fields, in declaration order.

    Strings map to ``String``, integers to ``Int64``, timestamps (epoch millis) to
    ``UnixTimestamp``, numbers to ``Float64``, booleans to ``Bool``, arrays of numbers to
    ``Array(Float32)``, arrays of strings to ``Array(String)``, free-form objects to ``String``
    (their JSON text). Each field carries the schema's description.

    Args:
        name: The schema name.
        exclude: Fields to leave out (entity keys, the event timestamp, ...).
        version: The schema version (default: the latest).

    Raises:
        SchemaError: ``exclude`` names a field the schema does not have.

    Example:
        >>> [f.name for f in feast_fields("competitor_price", exclude=["event_id", "sku", "event_time"])]
        ['competitor', 'price', 'in_stock']
    """
    from feast import Field
    from feast.types import Array, Bool, Float32, Float64, Int64, String, UnixTimestamp

    schema = load_schema(name, version)
    excluded = set(exclude)
    unknown = sorted(excluded - set(schema.field_names))
    if unknown:
        raise SchemaError(f"feast_fields({name}): cannot exclude {unknown}: fields are {schema.field_names}")
    scalar = {"string": String, "integer": Int64, "number": Float64, "boolean": Bool, "object": String}
    items = {"string": String, "integer": Int64, "number": Float32, "boolean": Bool}
    fields = []
    for spec in schema.fields:
        if spec.name in excluded:
            continue
        if spec.is_array:
            dtype: Any = Array(items[spec.json_type])
        elif spec.is_timestamp:
            dtype = UnixTimestamp
        else:
            dtype = scalar[spec.json_type]
        description = schema.json["properties"][spec.name]["description"]
        fields.append(Field(name=spec.name, dtype=dtype, description=description))
    return fields
