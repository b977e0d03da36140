"""Columnar fast path: Arrow's JSON reader plus per-column checks and casts.

It resolves only rows whose outcome provably equals fastavro's writer→reader resolution and
defers every other row (bad, ambiguous or of a shape it does not handle) to the per-record path.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from cxone_pipeline.registry import CONTROL_FIELDS, SchemaVersion, SubjectSchemas, find_version
from cxone_pipeline.registry.detection import writer_checks
from cxone_pipeline.registry.extensions import ISO_TIMESTAMPS, ITEM_KEY, uses_extensions
from cxone_pipeline.registry.validation import INT_RANGE, is_unicode
from cxone_pipeline.resolve.arrow_schema import avro_to_arrow
from cxone_pipeline.resolve.records import LOGICAL_RANGES, PROMOTIONS, resolution

_ROW_IN_ERROR = re.compile(r"in row (\d+)")
_TIMESTAMPS = ("timestamp-millis", "timestamp-micros")


@dataclass(frozen=True)
class Kind:
    """An Avro type of a shape the fast path handles: primitive, enum or array of those."""

    base: str  # string, int, long, float, double, boolean, enum or array
    nullable: bool
    arrow: pa.DataType
    logical: str | None = None
    symbols: frozenset[str] | None = None
    enum_default: str | None = None
    item: Kind | None = None


_FAST_BASES = {"string", "int", "long", "float", "double", "boolean"}


@dataclass(frozen=True)
class Extension:
    """What the fast path does with a writer field that uses an extension (registry.extensions):
    ISO-8601 text in one exact form becomes its timestamp and `item_key` arrays their items'
    key; any other value (blank text of a lenient time included) is left to the per-record
    path, which converts it or names why not."""

    iso_unit: str | None  # "ms" or "us" for iso-timestamp-millis/-micros
    item_key: str | None

    @classmethod
    def of(cls, field: dict[str, Any]) -> Extension | None:
        avro_type = field.get("type")
        branches = avro_type if isinstance(avro_type, list) else [avro_type]
        inner = [b for b in branches if b != "null"]
        logical = (
            inner[0].get("logicalType") if len(inner) == 1 and isinstance(inner[0], dict) else None
        )
        unit = {"timestamp-millis": "ms", "timestamp-micros": "us"}.get(
            ISO_TIMESTAMPS.get(logical, "")
        )
        key = field.get(ITEM_KEY)
        if unit is None and key is None:
            return None
        return cls(unit, key if isinstance(key, str) else None)

    def read(self, column: pa.Array) -> tuple[pa.Array, np.ndarray]:
        """The column in the field's effective type where the fast path can convert it, and
        the rows it leaves to the per-record path."""
        undecided = np.zeros(len(column), dtype=bool)
        if self.item_key is not None and pa.types.is_list(column.type):
            if column.offset:  # `values` ignores a slice's offset: work on a compact copy
                column = column.take(pa.array(np.arange(len(column))))
            items = column.values
            if pa.types.is_struct(items.type) and items.type.get_field_index(self.item_key) >= 0:
                plucked = items.field(self.item_key)
                undecided[
                    pc.list_parent_indices(column).to_numpy()[~as_mask(plucked.is_valid())]
                ] = True
                column = pa.ListArray.from_arrays(column.offsets, plucked, mask=column.is_null())
            return column, undecided
        if self.iso_unit is None or not pa.types.is_string(column.type):
            return column, undecided
        exact = as_mask(pc.match_substring_regex(column, _FAST_ISO[self.iso_unit]))
        exact[exact] = _real_moments(column.filter(pa.array(exact)))
        undecided = as_mask(column.is_valid()) & ~exact
        texts = pc.if_else(pa.array(exact), column, pa.scalar(None, pa.string()))
        try:
            moments = texts.cast(pa.timestamp(self.iso_unit, tz="UTC"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # a day that does not exist
            return pa.nulls(len(column), pa.int64()), as_mask(column.is_valid())
        return moments.cast(pa.int64()), undecided


_DAYS_IN_MONTH = np.array([0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _real_moments(texts: pa.Array) -> np.ndarray:
    """Which texts of the exact ISO form name a real day, time and zone offset, checked on
    the digits (a cast would fail for the whole column on one 30 February)."""

    utc = pa.array(as_mask(pc.ends_with(texts, "Z")))

    def number(start: int, stop: int | None) -> np.ndarray:
        digits = pc.utf8_slice_codeunits(texts, start, stop)
        if start < 0:  # a zone offset's digits; "Z" has none
            digits = pc.if_else(utc, pa.scalar("0"), digits)
        return digits.cast(pa.int64()).to_numpy(zero_copy_only=False)

    year, month, day = number(0, 4), number(5, 7), number(8, 10)
    hour, minute, second = number(11, 13), number(14, 16), number(17, 19)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    in_month = np.where(month == 2, 28 + leap, _DAYS_IN_MONTH[np.clip(month, 0, 12)])
    zone_ok = (number(-5, -3) <= 23) & (number(-2, None) <= 59)
    return (
        (year >= 1)
        & (month >= 1)
        & (month <= 12)
        & (day >= 1)
        & (day <= in_month)
        & (hour <= 23)
        & (minute <= 59)
        & (second <= 59)
        & zone_ok
    )


# The one ISO-8601 form Arrow's cast reads exactly as `extensions.parse_iso8601` does (no
# digits to truncate): the per-record path takes every other form the extension accepts.
_FAST_ISO = {
    unit: r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}"
    + rf"(\.\d{{1,{digits}}})?(Z|[+-]\d{{2}}:\d{{2}})$"
    for unit, digits in (("ms", 3), ("us", 6))
}


def kind_of(avro_type: Any, named: dict[str, Any]) -> Kind | None:
    """The fast-path shape of a parsed Avro type, or None when only fastavro may handle it."""
    if isinstance(avro_type, list):
        branches = [b for b in avro_type if b != "null"]
        if len(branches) != 1 or len(avro_type) != 2:
            return None
        inner = kind_of(branches[0], named)
        if inner is None or inner.nullable:
            return None
        return Kind(**{**inner.__dict__, "nullable": True})
    if isinstance(avro_type, str) and avro_type not in _FAST_BASES:
        return kind_of(named[avro_type], named) if avro_type in named else None
    base = avro_type if isinstance(avro_type, str) else avro_type["type"]
    logical = None if isinstance(avro_type, str) else avro_type.get("logicalType")
    if logical is not None and not (base == "long" and logical in _TIMESTAMPS):
        return None
    if base in _FAST_BASES:
        return Kind(base, False, avro_to_arrow(avro_type, named)[0], logical=logical)
    if base == "enum":
        symbols = frozenset(avro_type["symbols"])
        return Kind(
            "enum", False, pa.string(), symbols=symbols, enum_default=avro_type.get("default")
        )
    if base == "array":
        item = kind_of(avro_type["items"], named)
        if item is None or item.nullable or item.base not in _FAST_BASES:
            return None
        return Kind("array", False, avro_to_arrow(avro_type, named)[0], item=item)
    return None


def _readable(writer: Kind, reader: Kind) -> bool:
    """Whether the fast path resolves `writer` values to `reader` as Avro does."""
    if writer.logical != reader.logical:
        return False
    if writer.base == "array":
        return (
            reader.base == "array"
            and writer.item is not None
            and reader.item is not None
            and _readable(writer.item, reader.item)
        )
    return writer.base == reader.base or (writer.base, reader.base) in PROMOTIONS


@dataclass(frozen=True)
class WriterField:
    name: str
    kind: Kind | None  # None: a shape only the per-record path validates
    has_default: bool  # with a default valid for its type
    extended: bool = False  # a writer extension (registry.extensions) converts its values
    extension: Extension | None = None  # how the fast path converts some of them


@dataclass(frozen=True)
class FieldSource:
    """One canonical column: where it comes from in a writer version, and how it converts."""

    name: str
    reader: Kind
    writer_field: str | None  # None: the canonical default fills the column
    writer: Kind | None
    writer_default: Any
    reader_default: Any
    extension: Extension | None = None


@dataclass(frozen=True)
class VersionPlan:
    version: SchemaVersion
    fields: tuple[WriterField, ...]
    declared: frozenset[str]  # payload keys that are not unmapped
    columns: tuple[FieldSource, ...] | None  # None: resolve this version per record


def plan_versions(subject: SubjectSchemas) -> dict[str, VersionPlan]:
    """How each writer version validates and resolves column by column."""
    plans = {}
    for version in subject.versions:
        named = version.schema.get("__named_schemas", {})
        checks = writer_checks(version)
        documented = {f["name"]: f for f in version.document.get("fields", ())}
        extensions = {
            name: Extension.of(field)
            for name, field in documented.items()
            if uses_extensions(field)
        }
        fields = tuple(
            WriterField(
                f["name"],
                kind_of(f["type"], named),
                "default" in f and checks.check(f["type"])(f["default"]),
                f["name"] in extensions,
                extensions.get(f["name"]),
            )
            for f in version.fields
        )
        resolved = resolution(version, subject.canonical)
        # A version whose resolution fails somewhere goes per record, which names the place; so
        # does one with a default Arrow cannot hold (text that is not Unicode).
        sources = (
            [
                _field_source(
                    field, version, subject.canonical, resolved.sources[field["name"]], extensions
                )
                for field in subject.canonical.fields
            ]
            if not resolved.problems
            and is_unicode(
                json.dumps([f.get("default") for f in version.fields], ensure_ascii=False)
            )
            else [None]
        )
        columns = None if None in sources else tuple(s for s in sources if s is not None)
        declared = frozenset(f.name for f in fields) | CONTROL_FIELDS
        plans[version.version] = VersionPlan(version, fields, declared, columns)
    return plans


def _field_source(
    field: dict[str, Any],
    writer: SchemaVersion,
    canonical: SchemaVersion,
    source_name: str | None,
    extensions: dict[str, Extension | None],
) -> FieldSource | None:
    """How canonical `field` comes from `writer`'s field `source_name` (None: its default), or
    None when the fast path cannot resolve it exactly."""
    reader = kind_of(field["type"], canonical.schema.get("__named_schemas", {}))
    if reader is None:
        return None
    source = next((f for f in writer.fields if f["name"] == source_name), None)
    if source is None:
        if "default" not in field:
            return None
        return FieldSource(field["name"], reader, None, None, None, field["default"])
    kind = kind_of(source["type"], writer.schema.get("__named_schemas", {}))
    if kind is None or not _readable(kind, reader):
        return None
    return FieldSource(
        field["name"],
        reader,
        source["name"],
        kind,
        source.get("default"),
        field.get("default"),
        extensions.get(source["name"]),
    )


def explicit_payload_types(subject: SubjectSchemas) -> pa.StructType:
    """Payload fields every version types as text: read as strings, so Arrow's JSON reader
    does not turn timestamp-looking text into timestamps."""
    seen: dict[str, set[str]] = {}
    for version in subject.versions:
        named = version.schema.get("__named_schemas", {})
        for field in version.fields:
            kind = kind_of(field["type"], named)
            documented = next(
                (f for f in version.document.get("fields", ()) if f.get("name") == field["name"]),
                {},
            )
            extension = Extension.of(documented)
            if extension is not None and extension.iso_unit is not None:
                shape = "text"  # ISO-8601 text: Arrow must not read it as a timestamp itself
            elif kind is None or ITEM_KEY in field:  # items sent as objects: not text on the wire
                shape = "other"
            elif kind.base == "array":
                shape = "text list" if kind.item and kind.item.base == "string" else "other"
            else:
                shape = "text" if kind.base in ("string", "enum") else "other"
            seen.setdefault(field["name"], set()).add(shape)
    types = {"text": pa.string(), "text list": pa.list_(pa.string())}
    return pa.struct(
        [
            pa.field(name, types[shape])
            for name, shapes in seen.items()
            if len(shapes) == 1 and (shape := next(iter(shapes))) in types
        ]
    )


@dataclass
class ArrowRun:
    """Lines of one staged object that Arrow's JSON reader parsed together."""

    rows: np.ndarray  # indices of the lines, in order
    table: pa.Table


_CONFLICT = re.compile(r"Column\((?P<path>[^)]*)\) changed from (?P<old>\w+) to (?P<new>\w+)")
_VALUE_START = {
    "string": rb'"',
    "number": rb"-?\d",
    "object": rb"\{",
    "array": rb"\[",
    "boolean": rb"(?:true|false)",
}


# JSON's insignificant whitespace plus \v and \f: what `bytes.strip` removes from a line.
_SPACE = np.zeros(256, dtype=bool)
_SPACE[[9, 10, 11, 12, 13, 32]] = True


@dataclass
class ObjectLines:
    """The non-blank lines of one staged object as one text (the lines joined by newlines)
    with each line's offset and length: per-line facts are computed over the text at C speed,
    and a line is sliced out as `bytes` only when something needs it alone."""

    text: bytes
    starts: np.ndarray
    lengths: np.ndarray

    @classmethod
    def of(cls, lines: list[bytes]) -> ObjectLines:
        lengths = np.fromiter(map(len, lines), dtype=np.int64, count=len(lines))
        starts = np.zeros(len(lines), dtype=np.int64)
        np.cumsum(lengths[:-1] + 1, out=starts[1:])
        return cls(b"\n".join(lines), starts, lengths)

    @classmethod
    def read(cls, data: bytes) -> ObjectLines:
        """The lines of an object's NDJSON bytes, stripped, blank ones dropped (a CRLF file
        dropped by hand reads like the landing's own objects). When no line needs either,
        as in every object the pipeline writes, the bytes are used as they are."""
        chars = np.frombuffer(data, dtype=np.uint8)
        ends = np.flatnonzero(chars == ord("\n"))
        if not len(ends) or ends[-1] != len(data) - 1:
            ends = np.append(ends, len(data))
        starts = np.zeros(len(ends), dtype=np.int64)
        starts[1:] = ends[:-1] + 1
        lengths = ends - starts
        filled = lengths > 0
        odd = ~filled
        odd[filled] = _SPACE[chars[starts[filled]]] | _SPACE[chars[ends[filled] - 1]]
        if odd.any():
            lines = (data[a:b].strip() for a, b in zip(starts.tolist(), ends.tolist(), strict=True))
            return cls.of([line for line in lines if line])
        return cls(data[: ends[-1]] if ends[-1] < len(data) else data, starts, lengths)

    def __len__(self) -> int:
        return len(self.lengths)

    def line(self, index: int) -> bytes:
        start = int(self.starts[index])
        return self.text[start : start + int(self.lengths[index])]

    def subset(self, rows: np.ndarray) -> ObjectLines:
        """The given lines only (in order): the text is cut in runs of consecutive lines,
        few when a minority of lines is set aside."""
        if len(rows) == len(self):
            return self
        if not len(rows):
            return ObjectLines.of([])
        lengths = self.lengths[rows]
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        firsts, lasts = rows[np.r_[0, breaks]], rows[np.r_[breaks, len(rows)] - 1]
        ends = self.starts[lasts] + self.lengths[lasts]
        pieces = zip(self.starts[firsts].tolist(), ends.tolist(), strict=True)
        text = b"\n".join(self.text[start:end] for start, end in pieces)
        starts = np.zeros(len(rows), dtype=np.int64)
        np.cumsum(lengths[:-1] + 1, out=starts[1:])
        return ObjectLines(text, starts, lengths)

    def braced(self) -> np.ndarray:
        """Lines that start with "{" and end with "}": the only ones that can be envelopes."""
        if not len(self):
            return np.zeros(0, dtype=bool)
        chars = np.frombuffer(self.text, dtype=np.uint8)
        ends = self.starts + self.lengths
        return (chars[self.starts] == ord("{")) & (chars[ends - 1] == ord("}"))

    def utf8(self) -> np.ndarray:
        """Lines that are valid UTF-8 (checked line by line only when the object is not)."""
        try:
            self.text.decode("utf-8")
        except UnicodeDecodeError:
            return np.array([_is_utf8(self.line(i)) for i in range(len(self))], dtype=bool)
        return np.ones(len(self), dtype=bool)

    def rows_matching(self, pattern: re.Pattern[bytes]) -> np.ndarray:
        """Per line, how many times `pattern` occurs in it (one pass over the text)."""
        found = np.fromiter((m.start() for m in pattern.finditer(self.text)), dtype=np.int64)
        rows = np.searchsorted(self.starts, found, side="right") - 1
        return np.bincount(rows, minlength=len(self))

    def null_counts(self, payloads_name_it: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Per line, occurrences of "null" and of the envelope's `"schema_version": null`.
        When no payload has a `schema_version` key of its own, an object whose every "null"
        is an envelope's (the usual case) is answered from two counts over its text."""
        envelope = sum(self.text.count(form) for form in _ENVELOPE_NULL_FORMS)
        if not payloads_name_it and self.text.count(b"null") == envelope:
            nothing = np.zeros(len(self), dtype=np.int64)
            return nothing, nothing
        return self.rows_matching(_NULL), self.rows_matching(_ENVELOPE_NULL)


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


_NULL = re.compile(rb"null")
_ENVELOPE_NULL = re.compile(rb'"schema_version": ?null')
_ENVELOPE_NULL_FORMS = (b'"schema_version":null', b'"schema_version": null')


@dataclass
class ParsedObject:
    staged: ObjectLines
    runs: list[ArrowRun]
    leftovers: list[int]  # lines for the per-record reader
    nulls: np.ndarray  # ObjectLines.null_counts, stacked: [occurrences of null, envelope's]


def parse_object(
    staged: ObjectLines, payload_types: pa.StructType, conflicts: set[bytes]
) -> ParsedObject:
    """Everything Arrow does for one staged object; Arrow releases the GIL, so objects can be
    parsed on several threads. `conflicts` is shared by the objects of one call."""
    runs, leftovers = parse_runs(staged, payload_types, conflicts)
    if not runs:
        return ParsedObject(staged, runs, leftovers, np.zeros((2, 0), dtype=np.int64))
    named = any(
        run.table.schema.field("payload").type.get_field_index("schema_version") >= 0
        for run in runs
    )
    return ParsedObject(staged, runs, leftovers, np.stack(staged.null_counts(named)))


def parse_runs(
    staged: ObjectLines, payload_types: pa.StructType, conflicts: set[bytes]
) -> tuple[list[ArrowRun], list[int]]:
    """Parse lines with Arrow where it can; lines it cannot (not JSON, a value whose type
    conflicts with the other lines', ...) are returned by index for the per-record reader.

    `conflicts` holds the patterns of values that conflicted in earlier objects (a number
    field sent as text, say); lines matching one are set aside before the first parse, which
    then does not fail on them. New conflicts are added to it.
    """
    schema = pa.schema(
        [("event_id", pa.string()), ("received_at", pa.string()), ("payload", payload_types)]
    )
    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer")
    runs: list[ArrowRun] = []
    # A line that is not braced cannot be an envelope (a truncated line, a JSON array): sifting
    # them out here saves Arrow a failed parse each. Arrow does not check UTF-8 (Python's
    # json does): lines that are not UTF-8 go to the per-record path, which rejects them.
    braced = staged.braced() & staged.utf8()
    for pattern in tuple(conflicts):
        suspects = staged.rows_matching(re.compile(pattern)) > 0
        if suspects.sum() * 2 <= len(staged):  # only ever set a minority aside
            braced &= ~suspects
    leftovers: list[int] = np.flatnonzero(~braced).tolist()
    pending = [np.flatnonzero(braced)]
    while pending:
        rows = pending.pop()
        if not len(rows):
            continue
        subset = staged.subset(rows)
        try:
            table = pj.read_json(
                io.BytesIO(subset.text),
                read_options=pj.ReadOptions(use_threads=False, block_size=len(subset.text) + 1),
                parse_options=options,
            )
        except pa.ArrowInvalid as exc:
            match = _ROW_IN_ERROR.search(str(exc))
            bad = int(match[1]) if match else -1
            if not 0 <= bad < len(rows):
                leftovers.extend(rows.tolist())
                continue
            leftovers.append(int(rows[bad]))
            conflict = _conflicting(str(exc), subset)
            if conflict is None:
                pending += [rows[:bad], rows[bad + 1 :]]
            else:
                pattern, suspects = conflict
                conflicts.add(pattern.pattern)
                suspects[bad] = False
                leftovers.extend(rows[suspects].tolist())
                suspects[bad] = True
                pending.append(rows[~suspects])
            continue
        if table.num_rows != len(rows) or not pa.types.is_struct(
            table.schema.field("payload").type
        ):
            leftovers.extend(rows.tolist())
            continue
        runs.append(ArrowRun(rows, table))
    runs.sort(key=lambda run: int(run.rows[0]))
    return runs, sorted(leftovers)


def _conflicting(error: str, lines: ObjectLines) -> tuple[re.Pattern[bytes], np.ndarray] | None:
    """For a type conflict, the pattern of the minority type's values and the rows of `lines`
    matching it, found in one pass; None for any other error. Sending a few good rows to the
    per-record path as well is harmless."""
    match = _CONFLICT.search(error)
    if match is None or match["new"] not in _VALUE_START or match["old"] not in _VALUE_START:
        return None
    key = re.escape(match["path"].rsplit("/", 1)[-1].encode())
    found = []
    for kind in (match["new"], match["old"]):
        pattern = re.compile(rb'"' + key + rb'"\s*:\s*' + _VALUE_START[kind])
        rows = lines.rows_matching(pattern) > 0
        if rows.sum() * 2 <= len(lines):
            return (pattern, rows) if rows.any() else None
        found.append((pattern, rows))
    return min(found, key=lambda item: int(item[1].sum()))


def null_free(nulls: np.ndarray, envelope_nulls: np.ndarray, payload: pa.StructArray) -> np.ndarray:
    """Rows whose payload has no literal JSON null, so a null in Arrow means "absent".

    Conservative: "null" inside a string also sends the row to the per-record path.
    """
    free = nulls == envelope_nulls
    if payload.type.get_field_index("schema_version") >= 0:  # whose null would that be?
        free &= envelope_nulls == 0
    return free


def declared_versions(table: pa.Table, subject: SubjectSchemas) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the index in subject.versions of its declared version, -1 when it declares none,
    and a mask of rows to defer (unknown or oddly typed declarations)."""
    payload = table.column("payload").combine_chunks()
    texts = (
        [_as_text(table.column("schema_version").combine_chunks())]
        if ("schema_version" in table.column_names)
        else []
    )
    if payload.type.get_field_index("_schema_version") >= 0:
        texts.insert(0, _as_text(payload.field("_schema_version")))
    n = table.num_rows
    defer = np.zeros(n, dtype=bool)
    declared = pa.nulls(n, pa.string())
    for text, odd in reversed(texts):
        defer |= odd
        declared = pc.if_else(pc.is_valid(text), text, declared)
    index = np.full(n, -1, dtype=np.int64)
    names = [v.version for v in subject.versions]
    for value in pc.unique(declared.drop_null()).to_pylist():
        found = find_version(subject, value)
        rows = pc.equal(declared, value).fill_null(False).to_numpy(zero_copy_only=False)
        if found is None:
            defer |= rows
        else:
            index[rows] = names.index(found.version)
    return index, defer


def _as_text(column: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """A declared-version column as text ("" counts as undeclared) and the rows of other types."""
    n = len(column)
    if pa.types.is_null(column.type):
        return pa.nulls(n, pa.string()), np.zeros(n, dtype=bool)
    if pa.types.is_string(column.type) or pa.types.is_int64(column.type):
        text = column.cast(pa.string())
        return pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text), np.zeros(
            n, dtype=bool
        )
    return pa.nulls(n, pa.string()), column.is_valid().to_numpy(zero_copy_only=False)


def as_mask(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean Arrow array as a numpy mask, null counting as False."""
    if array.null_count:
        array = array.fill_null(False)
    return array.to_numpy(zero_copy_only=False)


def _check_values(column: pa.Array, kind: Kind) -> tuple[np.ndarray, np.ndarray]:
    """Per row of a present column: (value valid for `kind`, undecidable from Arrow's types)."""
    n = len(column)
    valid, undecided = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    arrow = column.type
    if pa.types.is_null(arrow):
        return np.ones(n, dtype=bool), undecided
    if pa.types.is_timestamp(arrow):  # Arrow read timestamp-looking text: the text is lost
        return valid, np.ones(n, dtype=bool)
    base = kind.base
    if base == "string":
        return np.full(n, pa.types.is_string(arrow)), undecided
    if base == "enum":
        if not pa.types.is_string(arrow):
            return valid, undecided
        return as_mask(
            pc.is_in(column, pa.array(sorted(kind.symbols or ()), pa.string()))
        ), undecided
    if base in INT_RANGE:
        if pa.types.is_int64(arrow):
            low, high = INT_RANGE[base]
            valid = as_mask(pc.and_(pc.greater_equal(column, low), pc.less_equal(column, high)))
            if kind.logical:  # valid Avro, but fastavro fails to read it: its call
                low, high = LOGICAL_RANGES[("long", kind.logical)]
                inside = pc.and_(pc.greater_equal(column, low), pc.less_equal(column, high))
                undecided = ~as_mask(inside) & as_mask(column.is_valid())
            return valid, undecided
        # A double column may hold integers Arrow widened because another row had a fraction.
        return valid, np.full(n, pa.types.is_floating(arrow))
    if base in ("float", "double"):
        return np.full(n, pa.types.is_int64(arrow) or pa.types.is_floating(arrow)), undecided
    if base == "boolean":
        return np.full(n, pa.types.is_boolean(arrow)), undecided
    if base == "array" and kind.item is not None:
        if not pa.types.is_list(arrow):
            return valid, undecided
        items = column.flatten()
        item_valid, item_undecided = _check_values(items, kind.item)
        parents = pc.list_parent_indices(column).to_numpy(zero_copy_only=False)
        valid = np.ones(n, dtype=bool)
        valid[parents[~item_valid]] = False
        undecided[parents[item_undecided]] = True
        return valid, undecided
    return valid, np.ones(n, dtype=bool)


def present_masks(payload: pa.StructArray) -> dict[str, np.ndarray]:
    """Per payload key, the rows that have it (in null-free rows, null means absent)."""
    return {f.name: as_mask(payload.field(f.name).is_valid()) for f in payload.type}


def assign_versions(
    table: pa.Table,
    subject: SubjectSchemas,
    plans: dict[str, VersionPlan],
    present: dict[str, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the index of its writer version (-1: none) and whether to defer it.

    Declared rows must validate against their version; the others take the newest version
    they validate against. Invalid, unmatched and undecidable rows are deferred, so the
    per-record path names their reason.
    """
    payload = table.column("payload").combine_chunks()
    declared, deferred = declared_versions(table, subject)
    assigned = np.full(len(payload), -1, dtype=np.int64)
    undeclared = declared == -1
    for number in reversed(range(len(subject.versions))):
        own = declared == number
        candidates = (own | (undeclared & (assigned == -1))) & ~deferred
        if not candidates.any():
            continue
        valid, undecided = validate_rows(payload, plans[subject.versions[number].version], present)
        deferred |= candidates & undecided
        deferred |= own & ~valid
        assigned[candidates & valid & ~deferred] = number
    deferred |= undeclared & (assigned == -1)
    assigned[deferred] = -1
    return assigned, deferred


def validate_rows(
    payload: pa.StructArray, plan: VersionPlan, present: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Rows valid for the plan's writer version, and rows the columns cannot decide."""
    n = len(payload)
    valid, undecided = np.ones(n, dtype=bool), np.zeros(n, dtype=bool)
    for field in plan.fields:
        here = present.get(field.name)
        if here is None:
            if not field.has_default:
                return np.zeros(n, dtype=bool), undecided
            continue
        if not field.has_default:
            valid &= here
        if field.kind is None:
            undecided |= here
            continue
        column, converted_elsewhere = payload.field(field.name), np.zeros(n, dtype=bool)
        if field.extension is not None:
            column, converted_elsewhere = field.extension.read(column)
        ok, unsure = _check_values(column, field.kind)
        unsure |= converted_elsewhere
        if field.extended:  # a value the extension converts: the per-record path decides
            unsure = unsure | ~ok
        valid &= ~here | ok
        undecided |= here & unsure
    return valid, undecided


def resolve_columns(
    payload: pa.StructArray, rows: np.ndarray, plan: VersionPlan
) -> tuple[list[pa.Array], np.ndarray]:
    """Canonical columns for `rows`, valid for the plan's version, and which of them to defer
    because resolution would fail (a null into a non-null field, an enum symbol the reader
    lacks, a timestamp fastavro cannot represent)."""
    assert plan.columns is not None
    n = len(rows)
    indices = pa.array(rows)
    defer = np.zeros(n, dtype=bool)
    columns = []
    for source in plan.columns:
        if source.writer_field is None or source.writer is None:
            columns.append(_constant(source.reader_default, source.reader.arrow, n))
            continue
        if payload.type.get_field_index(source.writer_field) < 0:
            values = _constant(source.writer_default, source.writer.arrow, n)
        else:
            values = payload.field(source.writer_field).take(indices)
            if source.extension is not None:  # rows validated: every value converts
                values, _ = source.extension.read(values)
            values = _as_writer(values, source.writer)
            if source.writer_default is not None:
                default = _constant(source.writer_default, source.writer.arrow, 1)[0]
                values = values.fill_null(default)
        values, unresolvable = _as_reader(values, source.reader)
        defer |= unresolvable
        if not source.reader.nullable:
            defer |= ~as_mask(values.is_valid())
        columns.append(values)
    return columns, defer


def _constant(value: Any, arrow: pa.DataType, n: int) -> pa.Array:
    if value is None:
        return pa.nulls(n, arrow)
    return pa.repeat(pa.scalar(value, arrow), n)


def _as_writer(column: pa.Array, kind: Kind) -> pa.Array:
    """Values as the writer's Avro type holds them (an Avro float keeps 32 bits)."""
    if pa.types.is_null(column.type):
        return pa.nulls(len(column), kind.arrow)
    return _cast(column, kind)  # values were validated


def _cast(values: pa.Array, kind: Kind) -> pa.Array:
    """Integers become floats through a double, as Python does before packing a float."""
    if kind.base == "float" and pa.types.is_integer(values.type):
        values = values.cast(pa.float64())
    return values.cast(kind.arrow, safe=False)  # an Avro float rounds to 32 bits


def _as_reader(values: pa.Array, kind: Kind) -> tuple[pa.Array, np.ndarray]:
    undecided = np.zeros(len(values), dtype=bool)
    if kind.base == "enum":
        known = pc.is_in(values, pa.array(sorted(kind.symbols or ()), pa.string()))
        unknown = pc.and_(pc.invert(known), pc.is_valid(values))
        if kind.enum_default is None:
            undecided = as_mask(unknown)
        else:
            values = pc.if_else(unknown, pa.scalar(kind.enum_default, pa.string()), values)
    return _cast(values, kind), undecided
