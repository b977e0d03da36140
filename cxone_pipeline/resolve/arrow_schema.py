"""The Arrow (and so Parquet) schema of a subject's curated table, derived from canonical.avsc."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from cxone_pipeline.registry import SchemaError, SubjectSchemas

EVENT_ID = "_event_id"
SCHEMA_VERSION = "_schema_version"
RECEIVED_AT = "_received_at"
UNMAPPED_FIELDS = "_unmapped_fields"

METADATA_FIELDS = (
    pa.field(EVENT_ID, pa.string(), nullable=False),
    pa.field(SCHEMA_VERSION, pa.string(), nullable=False),
    pa.field(RECEIVED_AT, pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field(UNMAPPED_FIELDS, pa.string(), nullable=True),
)

METADATA_DOCS = {
    EVENT_ID: "The event id the subject's rules give the event (see its subject.json).",
    SCHEMA_VERSION: "The writer schema version the event was resolved from.",
    RECEIVED_AT: "When the pipeline received this copy of the event (landing, import or pull).",
    UNMAPPED_FIELDS: "Payload fields the writer schema does not declare, as JSON text; or null.",
}

_PRIMITIVES = {
    "null": pa.null(),
    "boolean": pa.bool_(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "bytes": pa.binary(),
    "string": pa.string(),
}
_LOGICAL = {
    ("long", "timestamp-millis"): pa.timestamp("ms", tz="UTC"),
    ("long", "timestamp-micros"): pa.timestamp("us", tz="UTC"),
    ("long", "local-timestamp-millis"): pa.timestamp("ms"),
    ("long", "local-timestamp-micros"): pa.timestamp("us"),
    ("int", "date"): pa.date32(),
    ("int", "time-millis"): pa.time32("ms"),
    ("long", "time-micros"): pa.time64("us"),
    ("string", "uuid"): pa.string(),
}


class UnsupportedType(SchemaError):
    """A canonical type with no single Parquet type (for instance a union of two non-null types)."""


def canonical_arrow_schema(subject: SubjectSchemas) -> pa.Schema:
    """Canonical columns in canonical.avsc order, then the `_` metadata columns of DESIGN.md."""
    canonical = subject.canonical
    named = canonical.schema.get("__named_schemas", {})
    fields = []
    for field in canonical.fields:
        try:
            arrow_type, nullable = avro_to_arrow(field["type"], named)
        except UnsupportedType as exc:
            raise UnsupportedType(f"{canonical.path}: field {field['name']!r}: {exc}") from None
        fields.append(pa.field(field["name"], arrow_type, nullable=nullable))
    return pa.schema([*fields, *METADATA_FIELDS])


def avro_to_arrow(avro_type: Any, named: dict[str, Any]) -> tuple[pa.DataType, bool]:
    """The Arrow type of a parsed Avro type and whether it admits null."""
    if isinstance(avro_type, list):
        branches = [b for b in avro_type if b != "null"]
        if len(branches) != 1:
            raise UnsupportedType(f"union {avro_type} has no single Parquet type")
        arrow_type, _ = avro_to_arrow(branches[0], named)
        return arrow_type, len(branches) < len(avro_type)
    if isinstance(avro_type, str):
        if avro_type in _PRIMITIVES:
            return _PRIMITIVES[avro_type], avro_type == "null"
        return avro_to_arrow(named[avro_type], named)
    kind = avro_type["type"]
    logical = _LOGICAL.get((kind, avro_type.get("logicalType", "")))
    if logical is not None:
        return logical, False
    if kind == "decimal" or avro_type.get("logicalType") == "decimal":
        return pa.decimal128(avro_type["precision"], avro_type.get("scale", 0)), False
    if kind in _PRIMITIVES:
        return _PRIMITIVES[kind], kind == "null"
    if kind == "enum":
        return pa.string(), False
    if kind == "fixed":
        return pa.binary(avro_type["size"]), False
    if kind == "array":
        item, item_nullable = avro_to_arrow(avro_type["items"], named)
        return pa.list_(pa.field("element", item, nullable=item_nullable)), False
    if kind == "map":
        value, value_nullable = avro_to_arrow(avro_type["values"], named)
        return pa.map_(pa.string(), pa.field("value", value, nullable=value_nullable)), False
    if kind == "record":
        children = [
            pa.field(f["name"], *avro_to_arrow(f["type"], named)) for f in avro_type["fields"]
        ]
        return pa.struct(children), False
    raise UnsupportedType(f"Avro type {kind!r} has no Parquet mapping")
