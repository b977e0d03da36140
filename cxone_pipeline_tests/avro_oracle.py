"""The differential tests' oracle: fastavro's writer→reader resolution of one staged envelope.

Written from DESIGN.md, the Avro specification and fastavro alone, not from the engine. fastavro
does the validation, the writing and the reading; where it deviates from the specification the
oracle steers it to the specification's answer:
- alias precedence: at the top level, the writer schema is rewritten so that each canonical
  field finds, under its own name, the writer field the specification gives it (its name first,
  then its aliases); generated schemas keep nested records free of the ambiguity;
- `"-type"` keys: hidden from fastavro (renamed) and restored in map keys afterwards;
- values fastavro returns that a column cannot hold are read as the specification says: a
  reader default as its type (bytes as code points), a logical value read by a plain reader as
  its number, a multi-branch union value as the struct member of the first branch it fits;
- `date` text: fastavro parses it with `date.fromisoformat`, which raises on other text (even
  in a union, where the value should simply not be of that branch) and accepts more forms from
  Python 3.11 on; here `YYYY-MM-DD` text is a date and other text is not one (docs/schemas.md).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import fastavro.logical_writers
import pyarrow as pa
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.validation import validate

from cxone_pipeline.registry import SchemaVersion, SubjectSchemas
from cxone_pipeline.registry.extensions import effective_document
from cxone_pipeline.resolve import canonical_arrow_schema

CONTROL = {"_schema_version", "eventId", "event_id"}
HIDDEN = "\x00type"  # what "-type" keys are called while fastavro sees the datum
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# What fastavro can read as a Python datetime or date: all a temporal column holds.
RANGES = {
    ("long", "timestamp-millis"): (-62_135_596_800_000, 253_402_300_799_999),
    ("int", "date"): (-719_162, 2_932_896),
}


class OutOfRange(ValueError):
    pass


@contextmanager
def dates_as_specified() -> Iterator[None]:
    writers = fastavro.logical_writers.LOGICAL_WRITERS
    prepare_date = writers["int-date"]

    def prepare(data: Any, schema: Any) -> Any:
        if isinstance(data, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", data):
            return data  # not a date: fails the int check like any other text
        try:
            return prepare_date(data, schema)
        except ValueError:
            return data

    writers["int-date"] = prepare
    try:
        yield
    finally:
        writers["int-date"] = prepare_date


def hide_type_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {(HIDDEN if k == "-type" else k): hide_type_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [hide_type_keys(v) for v in value]
    return value


def find_version(subject: SubjectSchemas, declared: object) -> SchemaVersion | None:
    if isinstance(declared, bool) or not isinstance(declared, (str, int)):
        return None
    text = str(declared).strip()
    for name in (text, text.lower(), f"v{text}"):
        for version in subject.versions:
            if version.version == name:
                return version
    return None


def valid(datum: dict[str, Any], version: SchemaVersion) -> bool:
    """Every field without a default present (DESIGN.md), and fastavro's validate."""
    if not all(f["name"] in datum for f in version.fields if "default" not in f):
        return False
    return validate(datum, version.schema, raise_errors=False)


def spec_writer(version: SchemaVersion, canonical: SchemaVersion, datum: dict[str, Any]):
    """The writer schema and datum rewritten so that fastavro's field matching gives each
    canonical top-level field the writer field the specification gives it."""
    document = effective_document(version.document)
    by_name = {f["name"]: f for f in document["fields"]}
    fields, rewritten, used = [], {}, set()
    for field in canonical.document["fields"]:
        source = next(
            (by_name[n] for n in (field["name"], *field.get("aliases", ())) if n in by_name), None
        )
        if source is None:
            continue
        used.add(source["name"])
        fields.append({**source, "name": field["name"]})
        if source["name"] in datum:
            rewritten[field["name"]] = datum[source["name"]]
    for field in document["fields"]:
        if field["name"] not in used:  # still written: a value fastavro cannot write fails
            fields.append({**field, "name": f"zz_unread_{field['name']}"})
            if field["name"] in datum:
                rewritten[f"zz_unread_{field['name']}"] = datum[field["name"]]
    writer = parse_schema({**document, "fields": fields})
    reader = parse_schema(
        {
            **canonical.document,
            "fields": [
                {k: v for k, v in f.items() if k != "aliases"} for f in canonical.document["fields"]
            ],
        }
    )
    return writer, reader, rewritten


def oracle(subject: SubjectSchemas, envelope: dict[str, Any]) -> tuple[str, Any]:
    """("row", canonical row as the Arrow table holds it) or ("reject", code)."""
    with dates_as_specified():
        return _oracle(subject, envelope)


def _oracle(subject: SubjectSchemas, envelope: dict[str, Any]) -> tuple[str, Any]:
    payload = envelope.get("payload")
    if not isinstance(payload, dict):
        return "reject", "not_an_object"
    datum = hide_type_keys(payload)
    declared = payload.get("_schema_version")
    if declared is None or declared == "":
        declared = envelope.get("schema_version")
    if declared is not None and declared != "":
        writer = find_version(subject, declared)
        if writer is None:
            return "reject", "unknown_schema_version"
        if not valid(datum, writer):
            return "reject", "invalid_record"
    else:
        candidates = [v for v in reversed(subject.versions) if valid(datum, v)]
        if not candidates:
            return "reject", "no_matching_schema"
        writer = candidates[0]
    writer_schema, reader_schema, rewritten = spec_writer(writer, subject.canonical, datum)
    buffer = io.BytesIO()
    try:
        schemaless_writer(buffer, writer_schema, rewritten)
        buffer.seek(0)
        read = schemaless_reader(buffer, writer_schema, reader_schema)
    except Exception:  # fastavro raises many types; all mean "unresolvable"
        return "reject", "invalid_record"
    named = reader_schema.get("__named_schemas", {})
    try:
        row = {
            f["name"]: as_column(read[f["name"]], f["type"], named)
            for f in subject.canonical.document["fields"]
        }
    except (UnicodeEncodeError, OutOfRange):  # text or a time a column cannot hold
        return "reject", "invalid_record"
    declared_names = {f["name"] for f in writer.fields} | CONTROL
    extra = sorted(k for k in payload if k not in declared_names)
    row["_event_id"] = envelope["event_id"]
    row["_schema_version"] = writer.version
    row["_received_at"] = datetime.fromisoformat(envelope["received_at"].replace("Z", "+00:00"))
    row["_unmapped_fields"] = None
    if extra:
        unmapped = {k: payload[k] for k in extra}
        text = json.dumps(unmapped, ensure_ascii=False, separators=(",", ":"))
        try:
            text.encode()
        except UnicodeEncodeError:  # lone surrogates stay escaped
            text = json.dumps(unmapped, separators=(",", ":"))
        row["_unmapped_fields"] = text
    return "row", row


def _resolve(avro_type: Any, named: dict[str, Any]) -> Any:
    return named.get(avro_type, avro_type) if isinstance(avro_type, str) else avro_type


def _numbers(value: Any) -> Any:
    """Logical values fastavro returns as the numbers Avro wrote (only timestamp-millis and
    date writers are generated)."""
    if isinstance(value, datetime):
        delta = value - EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    if isinstance(value, date):
        return (value - date(1970, 1, 1)).days
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    return value


def _fits(value: Any, avro_type: Any, named: dict[str, Any]) -> bool:
    """Whether a value fastavro read, or a default as written, is one of `avro_type`."""
    avro_type = _resolve(avro_type, named)
    if isinstance(avro_type, list):
        return any(_fits(value, branch, named) for branch in avro_type)
    kind = avro_type if isinstance(avro_type, str) else avro_type["type"]
    if kind in ("bytes", "fixed"):
        return isinstance(value, bytes) or (
            isinstance(value, str) and all(ord(c) < 256 for c in value)
        )
    if kind == "array":
        return isinstance(value, list) and all(_fits(v, avro_type["items"], named) for v in value)
    if kind == "map":
        return isinstance(value, dict) and all(
            _fits(v, avro_type["values"], named) for v in value.values()
        )
    if kind == "record":
        return isinstance(value, dict) and all(
            _fits(value[f["name"]] if f["name"] in value else f["default"], f["type"], named)
            if f["name"] in value or "default" in f
            else False
            for f in avro_type["fields"]
        )
    return validate(value, avro_type, raise_errors=False)


def as_column(value: Any, avro_type: Any, named: dict[str, Any]) -> Any:
    """A value fastavro read (or a reader default, as written) as its Arrow column holds it;
    UnicodeEncodeError for text a column cannot hold."""
    avro_type = _resolve(avro_type, named)
    value = _numbers(value)
    if isinstance(avro_type, list):
        if value is None and "null" in avro_type:
            return None
        branches = [b for b in avro_type if b != "null"]
        for branch in branches:
            if _fits(value, branch, named):
                inner = as_column(value, branch, named)
                if len(branches) == 1:
                    return inner
                resolved = _resolve(branch, named)
                kind = resolved if isinstance(resolved, str) else resolved["type"]
                member = resolved["name"].rsplit(".", 1)[-1] if kind in ("record", "enum") else kind
                return {member: inner}
        raise AssertionError(f"{value!r} fits no branch of {avro_type}")
    kind = avro_type if isinstance(avro_type, str) else avro_type["type"]
    logical = None if isinstance(avro_type, str) else avro_type.get("logicalType")
    if kind == "string":
        value.encode()
    if (kind, logical) in RANGES and not RANGES[(kind, logical)][0] <= value <= RANGES[
        (kind, logical)
    ][1]:
        raise OutOfRange(value)
    if kind in ("bytes", "fixed"):
        data = value.encode("latin-1") if isinstance(value, str) else value
        if logical == "decimal":
            unscaled = int.from_bytes(data, "big", signed=True)
            return Decimal(unscaled).scaleb(-avro_type.get("scale", 0))
        return data
    if kind in ("float", "double"):
        return float(value)
    if kind == "array":
        return [as_column(v, avro_type["items"], named) for v in value]
    if kind == "map":
        return {
            ("-type" if k == HIDDEN else k): as_column(v, avro_type["values"], named)
            for k, v in value.items()
        }
    if kind == "record":
        row = {}
        for field in avro_type["fields"]:
            if field["name"] in value:
                row[field["name"]] = as_column(value[field["name"]], field["type"], named)
            else:  # a record default as written: its fields' own defaults fill it
                row[field["name"]] = as_column(field["default"], field["type"], named)
        return row
    return value


def expected_table(
    subject: SubjectSchemas, batch: list[dict[str, Any]]
) -> tuple[pa.Table, dict[str, str]]:
    """The oracle's table (sorted as the engine sorts) and reject codes by event id."""
    rows, rejects = [], {}
    for envelope in batch:
        outcome, value = oracle(subject, envelope)
        if outcome == "row":
            rows.append(value)
        else:
            rejects[envelope["event_id"]] = value
    table = pa.Table.from_pylist(rows, schema=canonical_arrow_schema(subject))
    return table.sort_by([("_received_at", "ascending"), ("_event_id", "ascending")]), rejects
