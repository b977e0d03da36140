"""The Arrow (and so Parquet) schema of a subject's curated table, derived from canonical.avsc."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from cxone_pipeline.registry import SchemaError, SubjectSchemas
from cxone_pipeline.registry.validation import NAMED_KINDS, short_name

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
    """A canonical type with no Parquet type (a recursive record, an empty one)."""


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


def union_members(union: list[Any], named: dict[str, Any]) -> list[str | None]:
    """The struct member of each branch of a union with several non-null branches: the name
    Avro's JSON encoding gives the branch (`long`, `string`, `array`, `map`, a named type's
    unqualified name); None for null."""
    members: list[str | None] = []
    for branch in union:
        resolved = named.get(branch, branch) if isinstance(branch, str) else branch
        kind = resolved if isinstance(resolved, str) else resolved["type"]
        if kind == "null":
            members.append(None)
        elif kind in NAMED_KINDS:
            members.append(short_name(resolved["name"]))
        else:
            members.append(kind)
    return members


def avro_to_arrow(
    avro_type: Any, named: dict[str, Any], enclosing: tuple[str, ...] = ()
) -> tuple[pa.DataType, bool]:
    """The Arrow type of a parsed Avro type and whether it admits null. `enclosing`: the
    records being mapped, to refuse one that contains itself."""
    if isinstance(avro_type, list):
        return _union(avro_type, named, enclosing)
    if isinstance(avro_type, str):
        if avro_type in _PRIMITIVES:
            return _PRIMITIVES[avro_type], avro_type == "null"
        return avro_to_arrow(named[avro_type], named, enclosing)
    kind = avro_type["type"]
    logical = _LOGICAL.get((kind, avro_type.get("logicalType", "")))
    if logical is not None:
        return logical, False
    if avro_type.get("logicalType") == "decimal" and kind in ("bytes", "fixed"):
        return _decimal(avro_type), False
    if kind in _PRIMITIVES:
        return _PRIMITIVES[kind], kind == "null"
    if kind == "enum":
        return pa.string(), False
    if kind == "fixed":
        if avro_type["size"] < 1:
            raise UnsupportedType(
                f"fixed {short_name(avro_type['name'])} of size 0: Parquet "
                "has no empty fixed-length type"
            )
        return pa.binary(avro_type["size"]), False
    if kind == "array":
        item, item_nullable = avro_to_arrow(avro_type["items"], named, enclosing)
        return pa.list_(pa.field("element", item, nullable=item_nullable)), False
    if kind == "map":
        value, value_nullable = avro_to_arrow(avro_type["values"], named, enclosing)
        return pa.map_(pa.string(), pa.field("value", value, nullable=value_nullable)), False
    if kind in ("record", "error"):
        name = short_name(avro_type["name"])
        if avro_type["name"] in enclosing:
            raise UnsupportedType(
                f"record {name} contains itself: Parquet has no recursive types (a writer "
                "may be recursive; the canonical schema must end)"
            )
        if not avro_type["fields"]:
            raise UnsupportedType(
                f"record {name} has no fields: Parquet cannot store an empty struct"
            )
        inside = (*enclosing, avro_type["name"])
        children = [
            pa.field(f["name"], *avro_to_arrow(f["type"], named, inside))
            for f in avro_type["fields"]
        ]
        return pa.struct(children), False
    raise UnsupportedType(f"Avro type {kind!r} has no Parquet mapping")


def _union(
    union: list[Any], named: dict[str, Any], enclosing: tuple[str, ...]
) -> tuple[pa.DataType, bool]:
    """`["null", T]` is a nullable T; a union of several types a struct with one member per
    branch (docs/schemas.md), of which a row sets the one its value took."""
    branches = [b for b in union if b != "null"]
    nullable = len(branches) < len(union)
    if len(branches) == 1:
        return avro_to_arrow(branches[0], named, enclosing)[0], nullable
    if not branches:
        return pa.null(), True
    members = [m for m in union_members(union, named) if m is not None]
    repeated = sorted({m for m in members if members.count(m) > 1})
    if repeated:
        raise UnsupportedType(
            f"union {union} has two branches named {', '.join(repeated)}: their struct members "
            "would clash; rename one of the named types"
        )
    children = [
        pa.field(member, avro_to_arrow(branch, named, enclosing)[0], nullable=True)
        for member, branch in zip(members, branches, strict=True)
    ]
    return pa.struct(children), nullable


def _decimal(avro_type: dict[str, Any]) -> pa.DataType:
    precision, scale = avro_type.get("precision"), avro_type.get("scale", 0)
    valid = isinstance(precision, int) and isinstance(scale, int) and 0 <= scale <= precision
    if not valid or not 1 <= precision <= 76:
        raise UnsupportedType(
            f"decimal(precision={precision}, scale={scale}): Parquet decimals need "
            "1 <= precision <= 76 and 0 <= scale <= precision"
        )
    return (pa.decimal128 if precision <= 38 else pa.decimal256)(precision, scale)
