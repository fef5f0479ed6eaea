"""What a new schema version breaks for the readers and writers of the old one (its compatibility policy)."""

from __future__ import annotations

from pricewave.schemas.model import EventSchema


def compatibility_problems(old: EventSchema, new: EventSchema) -> list[str]:
    """Why ``new`` is not a backward-compatible successor of ``old`` (empty when it is).

    The evolution rule: a new version may only add optional fields. Every field of ``old`` keeps
    its definition (descriptions and examples may change) and the required fields stay the same.

    Example:
        >>> from pricewave.schemas import load_schema
        >>> compatibility_problems(load_schema("review", 1), load_schema("review", 1))
        []
    """
    problems = []
    old_properties, new_properties = old.json["properties"], new.json["properties"]
    annotations = {"description", "examples"}
    for field, definition in old_properties.items():
        if field not in new_properties:
            problems.append(f"field {field!r} was removed")
            continue
        strip = {k: v for k, v in definition.items() if k not in annotations}
        new_strip = {k: v for k, v in new_properties[field].items() if k not in annotations}
        if strip != new_strip:
            problems.append(f"field {field!r} changed its definition")
    old_required, new_required = set(old.json.get("required", [])), set(new.json.get("required", []))
    for field in sorted(new_required - old_required):
        problems.append(
            f"field {field!r} became required" if field in old_properties else f"new field {field!r} is required"
        )
    for field in sorted(old_required - new_required):
        problems.append(f"field {field!r} became optional")
    if old.compatibility != new.compatibility:
        problems.append(f"the compatibility policy changed from {old.compatibility!r} to {new.compatibility!r}")
    return problems
