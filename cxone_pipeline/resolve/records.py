"""Avro schema resolution of one JSON payload: a writer version's datum as a canonical row.

Compiled once per (writer, canonical) pair into plain functions. The result is what fastavro's
`schemaless_writer` then `schemaless_reader` give, except where fastavro deviates from the Avro
specification, where the specification wins:
- a canonical field reads the writer field of its own name, and an alias only when no writer
  field has that name (fastavro lets an alias take a writer field another field is named after);
- a `"-type"` key is an ordinary key (`registry.validation`);
- defaults are read as their type says: `bytes`/`fixed` as code points 0-255, `decimal` from
  those bytes, records with their own fields' defaults (fastavro returns the JSON as written);
- logical types are annotations: a `timestamp-millis` read as a plain `long` is the number;
- a temporal canonical column holds only what fastavro can read as a date or time (years
  1-9999, times within one day), whatever the writer declared (fastavro wraps negative times).

Values come out as the canonical Arrow columns hold them (`arrow_schema`): temporal values as
integers in their unit, `uuid` as canonical text, a multi-branch union as a struct with the
value in its branch's member. Where resolution fails whatever the value (a field without source
or default, types that cannot match), it fails when a value reaches that place, as fastavro
would, and the place is listed in `Resolution.problems` for `schemas check`.
"""

from __future__ import annotations

import math
import struct
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from cxone_pipeline.registry import InvalidRecord, SchemaVersion
from cxone_pipeline.registry.detection import prepare, writer_checks
from cxone_pipeline.registry.validation import (
    INT_RANGE,
    NAMED_KINDS,
    IdentityCache,
    date_days,
    describe,
    is_integer,
    is_number,
    is_unicode,
    short_name,
    type_name,
)
from cxone_pipeline.resolve.arrow_schema import union_members

Read = Callable[[Any], Any]

PROMOTIONS = frozenset(
    {
        ("int", "long"),
        ("int", "float"),
        ("int", "double"),
        ("long", "float"),
        ("long", "double"),
        ("float", "double"),
        ("string", "bytes"),
        ("bytes", "string"),
    }
)
# Where fastavro's logical readers (Python datetime, date, time) can hold a writer's value.
_DATETIME_MS = (-62_135_596_800_000, 253_402_300_799_999)
_DATETIME_US = (-62_135_596_800_000_000, 253_402_300_799_999_999)
LOGICAL_RANGES = {
    ("long", "timestamp-millis"): _DATETIME_MS,
    ("long", "timestamp-micros"): _DATETIME_US,
    ("long", "local-timestamp-millis"): _DATETIME_MS,
    ("long", "local-timestamp-micros"): _DATETIME_US,
    ("int", "date"): (-719_162, 2_932_896),
    ("int", "time-millis"): (0, 86_400_000 - 1),
    ("long", "time-micros"): (0, 86_400_000_000 - 1),
}
_UUID = ("string", "uuid")
_FLOAT32 = struct.Struct("<f")


class Unresolvable(ValueError):
    """A value that cannot be resolved; the message names the field and why."""


class _BadDefault(ValueError):
    pass


def logical_type(avro_type: Any) -> str | None:
    """The logical type this project gives a meaning to, None for others (Avro ignores
    unknown logical types and so do we)."""
    if not isinstance(avro_type, dict):
        return None
    key = (avro_type["type"], avro_type.get("logicalType"))
    return key[1] if key in LOGICAL_RANGES or key == _UUID else None


def writer_field_for(
    field: Mapping[str, Any], writer_fields: Mapping[str, Any]
) -> Mapping[str, Any] | None:
    """The writer field a reader field reads: its own name first, then its aliases in order."""
    for name in (field["name"], *field.get("aliases", ())):
        if name in writer_fields:
            return writer_fields[name]
    return None


def float32(value: float) -> float:
    """A number as an Avro float holds it: beyond float32's range, an infinity (as fastavro's
    writer casts); OverflowError only for an integer beyond even a double's range."""
    number = float(value)
    try:
        return _FLOAT32.unpack(_FLOAT32.pack(number))[0]
    except OverflowError:
        return math.copysign(math.inf, number)


def _utf8(value: str, where: str) -> str:
    if not is_unicode(value):
        raise Unresolvable(f"{where}: {describe(value)} is not valid Unicode text")
    return value


@dataclass(frozen=True)
class Resolution:
    """How one writer version resolves to the canonical schema."""

    read: Read  # a prepared, valid payload to a canonical row; Unresolvable when it cannot be
    problems: tuple[str, ...]  # places where resolution fails whatever the value
    sources: dict[str, str | None]  # canonical field → the writer field it reads, None: default


def resolution(writer: SchemaVersion, canonical: SchemaVersion) -> Resolution:
    """The compiled resolution of `writer` to `canonical`, cached for the pair."""
    return _CACHE.get((writer, canonical), lambda: _Compiler(writer, canonical).compile())


_CACHE: IdentityCache[Resolution] = IdentityCache()


def resolve_record(
    payload: Mapping[str, Any], writer: SchemaVersion, canonical: SchemaVersion
) -> dict[str, Any]:
    """The canonical row of a payload valid for `writer`; InvalidRecord if it cannot be."""
    try:
        return resolution(writer, canonical).read(prepare(payload, writer))
    except Unresolvable as exc:
        raise InvalidRecord(
            f"{writer.subject} {writer.version}: cannot resolve to {canonical.path.name}: {exc}"
        ) from None


@dataclass(frozen=True)
class _Where:
    reader: str  # canonical field path
    writer: str  # writer field path

    def field(self, reader: str, writer: str) -> _Where:
        return _Where(_join(self.reader, reader), _join(self.writer, writer))

    def item(self, suffix: str) -> _Where:
        return _Where(self.reader + suffix, self.writer + suffix)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


class _Compiler:
    def __init__(self, writer: SchemaVersion, canonical: SchemaVersion) -> None:
        self.version = writer.version
        self.writer = writer_checks(writer)
        self.reader_named: dict[str, Any] = canonical.schema.get("__named_schemas", {})
        self.writer_schema = writer.schema
        self.reader_schema = canonical.schema
        self.problems: list[str] = []
        self.records: dict[tuple[str, str], Read | None] = {}
        self.written: dict[str, Read | None] = {}

    def compile(self) -> Resolution:
        read = self.resolve(self.writer_schema, self.reader_schema, _Where("", ""))
        writer_fields = {f["name"]: f for f in self.writer_schema["fields"]}
        sources = {}
        for field in self.reader_schema["fields"]:
            source = writer_field_for(field, writer_fields)
            sources[field["name"]] = None if source is None else source["name"]
        return Resolution(read, tuple(dict.fromkeys(self.problems)), sources)

    # -- types ---------------------------------------------------------------------------

    def reader(self, avro_type: Any) -> Any:
        if isinstance(avro_type, str) and avro_type in self.reader_named:
            return self.reader_named[avro_type]
        return avro_type

    def fail(self, where: _Where, reason: str, *, read: bool = True) -> Read:
        """A place where resolution fails for every value that reaches it. `read`: whether a
        writer field is read there (else the canonical field has no source)."""
        if not where.reader:
            message = reason
        elif read:
            message = (
                f"canonical field {where.reader!r} cannot read {self.version} field "
                f"{where.writer!r}: {reason}"
            )
        else:
            message = f"canonical field {where.reader!r}: {reason}"
        self.problems.append(message)

        def read(value: Any) -> Any:
            raise Unresolvable(message)

        return read

    def matches(self, writer: Any, reader: Any) -> bool:
        """fastavro's `match_types`: whether a writer type may be read as a reader type
        (names, sizes, item types and promotions; records' fields are not looked at)."""
        writer, reader = self.writer.resolve(writer), self.reader(reader)
        if isinstance(writer, list) or isinstance(reader, list):
            return True
        w_kind, r_kind = _kind(writer), _kind(reader)
        if w_kind == r_kind == "map":
            return self.matches(writer["values"], reader["values"])
        if w_kind == r_kind == "array":
            return self.matches(writer["items"], reader["items"])
        if w_kind in NAMED_KINDS and r_kind in NAMED_KINDS:
            if w_kind == r_kind == "fixed" and writer["size"] != reader["size"]:
                return False
            aliases = reader.get("aliases", ())
            name = short_name(writer["name"])
            return (
                name == short_name(reader["name"]) or writer["name"] in aliases or name in aliases
            )
        return w_kind == r_kind or (w_kind, r_kind) in PROMOTIONS

    def resolve(self, writer: Any, reader: Any, where: _Where) -> Read:
        writer, reader = self.writer.resolve(writer), self.reader(reader)
        if isinstance(writer, list):
            select = self.writer.selector(writer)
            branches = [self.resolve(branch, reader, where) for branch in writer]

            def read_union(value: Any) -> Any:
                index = select(value)
                if index is None:  # only a value that failed validation
                    raise Unresolvable(f"{where.writer}: {describe(value)} fits no branch")
                return branches[index](value)

            return read_union
        if isinstance(reader, list):
            for index, branch in enumerate(reader):
                if self.matches(writer, branch):
                    return self.member(reader, index, self.resolve(writer, branch, where))
            return self.fail(where, f"{type_name(writer)} is none of the canonical union's types")
        w_kind, r_kind = _kind(writer), _kind(reader)
        # fastavro matches named types by name only: a record named like an enum matches it.
        same_kind = w_kind not in NAMED_KINDS or _named_kind(w_kind) == _named_kind(r_kind)
        if not self.matches(writer, reader) or not same_kind:
            if same_kind and w_kind in NAMED_KINDS:
                reason = f"is neither named {short_name(reader['name'])} nor among its aliases"
            else:
                reason = f"cannot be read as {type_name(reader)}"
            return self.fail(where, f"{type_name(writer)} {reason}")
        if w_kind in ("record", "error"):
            return self.record(writer, reader, where)
        if w_kind == "enum":
            return _enum(reader, where)
        if w_kind == "array":
            items = self.resolve(writer["items"], reader["items"], where.item("[]"))
            return lambda value: [items(item) for item in value]
        if w_kind == "map":
            values = self.resolve(writer["values"], reader["values"], where.item("{}"))
            return lambda value: {_utf8(k, where.writer): values(v) for k, v in value.items()}
        if w_kind in ("bytes", "fixed"):
            return self.fail(where, f"{type_name(writer)} cannot come from JSON (it has no bytes)")
        return self.primitive(writer, reader, where)

    def member(self, union: list[Any], index: int, read: Read) -> Read:
        """The value of a reader union's branch as its Arrow column holds it."""
        name = union_members(union, self.reader_named)[index]
        if name is None or sum(branch != "null" for branch in union) == 1:
            return read
        return lambda value: {name: read(value)}

    def record(self, writer: dict[str, Any], reader: dict[str, Any], where: _Where) -> Read:
        key = (writer["name"], reader["name"])
        if key in self.records:
            known = self.records[key]
            return known if known is not None else lambda value: self.records[key](value)  # type: ignore[misc]
        self.records[key] = None  # recursive references see it while it is compiled
        writer_fields = {f["name"]: f for f in writer["fields"]}
        plan: list[tuple[str, str, Any, Read]] = []
        constants: dict[str, Any] = {}
        failures: list[Read] = []
        for field in reader["fields"]:
            source = writer_field_for(field, writer_fields)
            if source is not None:
                inner = where.field(field["name"], source["name"])
                read = self.resolve(source["type"], field["type"], inner)
                plan.append((field["name"], source["name"], source.get("default"), read))
                continue
            inner = where.field(field["name"], field["name"])
            if "default" in field:
                try:
                    constants[field["name"]] = self.default(field["type"], field["default"])
                except _BadDefault as exc:
                    failures.append(self.fail(inner, f"its default is invalid: {exc}", read=False))
                continue
            names = ", ".join([field["name"], *field.get("aliases", ())])
            failures.append(
                self.fail(
                    inner,
                    f"{self.version} has no field named {names} and the canonical field has no "
                    "default: add an alias naming the writer's field, or a default",
                    read=False,
                )
            )
        read_names = {source for _, source, _, _ in plan}
        unread = [
            (f["name"], f.get("default"), check)
            for f in writer["fields"]
            if f["name"] not in read_names
            and (check := self.writable(f["type"], _join(where.writer, f["name"]))) is not None
        ]

        def read_record(value: Any) -> dict[str, Any]:
            for fail in failures:
                fail(None)
            # fastavro writes every declared field: one it cannot write fails the record.
            for name, default, check in unread:
                check(value.get(name, default))
            row = {name: read(value.get(source, default)) for name, source, default, read in plan}
            row.update(constants)
            return row

        self.records[key] = read_record
        return read_record

    def writable(self, writer: Any, where: str) -> Read | None:
        """For a writer field no canonical field reads: a check failing where fastavro's
        writer would (text that is not Unicode, a number beyond its type's range); None when
        nothing of this type can fail."""
        writer = self.writer.resolve(writer)
        if isinstance(writer, list):
            select = self.writer.selector(writer)
            checks = [self.writable(branch, where) for branch in writer]
            if not any(checks):
                return None
            return lambda value: _apply(checks[select(value) or 0], value)
        kind = _kind(writer)
        if kind == "string":
            return lambda value: _utf8(value, where)
        if kind in ("float", "double"):
            narrow = float32 if kind == "float" else float
            return lambda value: _number(narrow, value, where)
        if kind == "array":
            items = self.writable(writer["items"], where + "[]")
            return None if items is None else lambda value: [items(v) for v in value]
        if kind == "map":
            values = self.writable(writer["values"], where + "{}")
            return lambda value: [(_utf8(k, where), _apply(values, v)) for k, v in value.items()]
        if kind in ("record", "error"):
            return self.record_writable(writer, where)
        return None

    def record_writable(self, writer: dict[str, Any], where: str) -> Read | None:
        name = writer["name"]
        if name in self.written:
            known = self.written[name]
            return known if known is not None else lambda value: _apply(self.written[name], value)
        self.written[name] = None
        checks = [
            (f["name"], f.get("default"), check)
            for f in writer["fields"]
            if (check := self.writable(f["type"], _join(where, f["name"]))) is not None
        ]

        def check_record(value: Any) -> None:
            for field, default, check in checks:
                check(value.get(field, default))

        self.written[name] = check_record if checks else None
        return self.written[name]

    def primitive(self, writer: Any, reader: Any, where: _Where) -> Read:
        w_kind, r_kind = _kind(writer), _kind(reader)
        w_logical, r_logical = logical_type(writer), logical_type(reader)
        if w_logical and r_logical and w_logical != r_logical:
            return self.fail(
                where,
                f"{type_name(writer)} cannot be read as {type_name(reader)}: declare the same "
                "logical type (Avro resolves the underlying number, so its meaning would change)",
            )
        label = where.writer
        if w_kind == "null":
            return lambda value: None
        if w_kind == "string":
            if w_logical == "uuid":
                return lambda value: _uuid(value, label)
            if r_kind == "bytes":
                return lambda value: _utf8(value, label).encode()
            return lambda value: _utf8(value, label)
        narrow = float32 if "float" in (w_kind, r_kind) else float
        if w_kind in ("float", "double"):
            return lambda value: _number(narrow, value, label)
        if w_kind not in INT_RANGE:  # boolean
            return lambda value: value
        to_float = r_kind in ("float", "double")
        # fastavro reads a writer's logical value as a Python date or time, which fails out of
        # its range; a canonical temporal column holds only what reads as one too.
        key = (w_kind, w_logical) if w_logical else (r_kind, r_logical)
        if key in LOGICAL_RANGES:
            low, high = LOGICAL_RANGES[key]
            as_days, logical = w_logical == "date", key[1]

            def read_logical(value: Any) -> Any:
                number = _in_range(
                    date_days(value) if as_days else value, low, high, label, logical
                )
                return _number(narrow, number, label) if to_float else number

            return read_logical
        if to_float:
            return lambda value: _number(narrow, value, label)
        return lambda value: value

    # -- defaults --------------------------------------------------------------------------

    def default(self, reader: Any, value: Any) -> Any:
        """A reader default (JSON, as written in the schema) as the column holds it."""
        reader = self.reader(reader)
        if isinstance(reader, list):
            for index, branch in enumerate(reader):
                try:
                    converted = self.default(branch, value)
                except _BadDefault:
                    continue
                return self.member(reader, index, lambda v: v)(converted)
            raise _BadDefault(f"{describe(value)} is none of the union's types")
        kind = _kind(reader)
        logical = reader.get("logicalType") if isinstance(reader, dict) else None
        if kind == "null" and value is None:
            return None
        if kind == "boolean" and isinstance(value, bool):
            return value
        if kind in INT_RANGE and is_integer(value):
            low, high = LOGICAL_RANGES.get((kind, logical), INT_RANGE[kind])
            if low <= value <= high:
                return value
        if kind in ("float", "double") and is_number(value):
            try:
                return float32(value) if kind == "float" else float(value)
            except OverflowError:
                pass
        if kind == "string" and isinstance(value, str) and is_unicode(value):
            return value
        if kind in ("bytes", "fixed") and isinstance(value, str):
            data = _code_points(value)
            if data is not None and (kind == "bytes" or len(data) == reader["size"]):
                return _decimal(data, reader) if logical == "decimal" else data
        if kind == "enum" and value in reader["symbols"]:
            return value
        if kind == "array" and isinstance(value, list):
            return [self.default(reader["items"], item) for item in value]
        if kind == "map" and isinstance(value, dict):
            return {k: self.default(reader["values"], v) for k, v in value.items()}
        if kind in ("record", "error") and isinstance(value, dict):
            row = {}
            for field in reader["fields"]:
                if field["name"] in value:
                    row[field["name"]] = self.default(field["type"], value[field["name"]])
                elif "default" in field:
                    row[field["name"]] = self.default(field["type"], field["default"])
                else:
                    raise _BadDefault(f"{describe(value)} lacks field {field['name']!r}")
            return row
        raise _BadDefault(f"{describe(value)} is not {type_name(reader)}")


def _kind(avro_type: Any) -> str:
    return avro_type if isinstance(avro_type, str) else avro_type["type"]


def _named_kind(kind: str) -> str:
    return "record" if kind == "error" else kind


def _apply(check: Read | None, value: Any) -> None:
    if check is not None:
        check(value)


def _enum(reader: dict[str, Any], where: _Where) -> Read:
    symbols = frozenset(reader["symbols"])
    default = reader.get("default")
    name = short_name(reader["name"])

    def read_enum(value: str) -> str:
        if value in symbols:
            return value
        if default:
            return default
        raise Unresolvable(
            f"{where.writer}: {value!r} is not a symbol of canonical enum {name}, which has no "
            "default"
        )

    return read_enum


def _number(narrow: Callable[[float], float], value: Any, where: str) -> float:
    try:
        return narrow(value)
    except OverflowError:
        raise Unresolvable(f"{where}: {describe(value)} is too large for its type") from None


def _in_range(value: int, low: int, high: int, where: str, logical: str) -> int:
    if not low <= value <= high:
        raise Unresolvable(f"{where}: {value} is outside the range of {logical}")
    return value


def _uuid(value: str, where: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise Unresolvable(f"{where}: {describe(value)} is not a UUID") from None


def _code_points(text: str) -> bytes | None:
    """A JSON default of a bytes type: each code point 0-255 is one byte (Avro's rule)."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return None


def _decimal(data: bytes, reader: dict[str, Any]) -> Decimal:
    unscaled = int.from_bytes(data, "big", signed=True)
    value = Decimal(unscaled).scaleb(-reader.get("scale", 0))
    if len(str(abs(unscaled))) > reader["precision"]:
        raise _BadDefault(f"{value} has more than {reader['precision']} digits")
    return value
