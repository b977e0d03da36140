"""Avro types inferred from the JSON values senders sent: what a writer schema must declare
for them, and the canonical type that reads it.

Only shapes the resolution engine handles are inferred: primitives, the ISO-8601 and lenient
extensions, arrays, records, maps and `["null", T]`; never a union of two non-null types.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from cxone_pipeline.registry.extensions import ISO_8601, LENIENT, parse_iso8601

AVRO_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
VALUE_SAMPLE = 1000  # distinct values kept per place, for enums and rename evidence
_INT32 = (-(2**31), 2**31 - 1)
_NUMBER_TEXT = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_BOOLEAN_TEXT = frozenset({"true", "false"})


def snake_case(name: str) -> str:
    """`contactStartDate` → `contact_start_date`, `SkillID` → `skill_id`."""
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text)
    return re.sub(r"_+", "_", text).lower()


def pascal_case(parts: tuple[str, ...]) -> str:
    words = (w for part in parts for w in snake_case(part).split("_") if w)
    return "".join(w[:1].upper() + w[1:] for w in words) or "Record"


def value_text(value: Any) -> str | None:
    """A scalar as comparable text (7 and "7" compare equal); None for anything else."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return value
    return None


@dataclass
class Observed:
    """Everything seen at one place of the payloads: a field, array items or map values."""

    nulls: int = 0
    booleans: int = 0
    integers: int = 0
    low: int = 0
    high: int = 0
    floats: int = 0
    strings: int = 0
    iso: int = 0
    iso_micros: bool = False
    numeric_text: int = 0
    fraction_text: bool = False
    boolean_text: int = 0
    arrays: int = 0
    items: Observed | None = None
    objects: int = 0
    most_keys: int = 0
    fields: dict[str, Observed] = field(default_factory=dict)
    values: set[str] = field(default_factory=set)

    @property
    def seen(self) -> int:
        """How many values (null included) were seen here; for a field, how often present."""
        return (
            self.nulls
            + self.booleans
            + self.integers
            + self.floats
            + self.strings
            + self.arrays
            + self.objects
        )

    def add(self, value: Any) -> None:
        if value is None:
            self.nulls += 1
        elif isinstance(value, bool):
            self.booleans += 1
        elif isinstance(value, int):
            self.low = value if not self.integers else min(self.low, value)
            self.high = value if not self.integers else max(self.high, value)
            self.integers += 1
        elif isinstance(value, float):
            self.floats += 1
        elif isinstance(value, str):
            self._add_text(value)
        elif isinstance(value, list):
            self.arrays += 1
            self.items = self.items or Observed()
            for item in value:
                self.items.add(item)
        elif isinstance(value, dict):
            self.objects += 1
            self.most_keys = max(self.most_keys, len(value))
            for key, child in value.items():
                self.fields.setdefault(key, Observed()).add(child)
        text = value_text(value)
        if text is not None and len(self.values) < VALUE_SAMPLE:
            self.values.add(text)

    def _add_text(self, value: str) -> None:
        self.strings += 1
        stripped = value.strip()
        match = ISO_8601.fullmatch(stripped)
        if match and parse_iso8601(stripped) is not None:
            self.iso += 1
            self.iso_micros |= len(match[7] or "") > 3
        if _NUMBER_TEXT.fullmatch(stripped):
            self.numeric_text += 1
            self.fraction_text |= not stripped.replace(",", "").lstrip("+-").isdigit()
        if stripped.lower() in _BOOLEAN_TEXT:
            self.boolean_text += 1

    def merge(self, other: Observed) -> None:
        """Add what `other` saw (another group's, or a sibling map value's)."""
        if other.integers:
            self.low = other.low if not self.integers else min(self.low, other.low)
            self.high = other.high if not self.integers else max(self.high, other.high)
        for name in (
            "nulls",
            "booleans",
            "integers",
            "floats",
            "strings",
            "iso",
            "numeric_text",
            "boolean_text",
            "arrays",
            "objects",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.iso_micros |= other.iso_micros
        self.fraction_text |= other.fraction_text
        self.most_keys = max(self.most_keys, other.most_keys)
        if other.items is not None:
            self.items = self.items or Observed()
            self.items.merge(other.items)
        for key, child in other.fields.items():
            self.fields.setdefault(key, Observed()).merge(child)
        self.values |= set(list(other.values)[: max(0, VALUE_SAMPLE - len(self.values))])

    def nullable_in(self, containers: int) -> bool:
        """Whether a field seen here must be nullable: absent from some of `containers`, or null."""
        return self.seen < containers or self.nulls > 0


@dataclass(frozen=True)
class Typed:
    """The writer type for what was observed, the canonical type reading it, and what will not
    fit (values of another kind than the one chosen)."""

    writer: Any
    canonical: Any
    lenient: bool = False
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


class Naming:
    """Names of inferred records and enums: one per payload path, the same in every schema of
    a proposal (Avro resolves named types by name), never one the registry already uses."""

    def __init__(self, taken: set[str]) -> None:
        self._taken = set(taken)
        self._by_path: dict[tuple[str, ...], str] = {}

    def name(self, path: tuple[str, ...]) -> str:
        if path not in self._by_path:
            base = pascal_case(path)
            candidate, number = base, 1
            while candidate in self._taken:
                number += 1
                candidate = f"{base}{number}"
            self._taken.add(candidate)
            self._by_path[path] = candidate
        return self._by_path[path]


@dataclass
class Inference:
    """How to type observations: record names, the fields to type as enums, and the choices
    (map or record, millisecond or microsecond times) made once on everything seen, so every
    writer of a proposal agrees with the canonical schema reading it."""

    naming: Naming
    enums: frozenset[str] = frozenset()
    maps: set[tuple[str, ...]] = field(default_factory=set)
    micros: set[tuple[str, ...]] = field(default_factory=set)
    learning: bool = True

    def learn(self, observed: dict[str, Observed]) -> dict[str, Typed]:
        """Type every field on all observations at once and keep the choices made."""
        self.learning = True
        try:
            return {key: self.typed(seen, (key,)) for key, seen in observed.items()}
        finally:
            self.learning = False

    def typed(self, seen: Observed, path: tuple[str, ...], is_field: bool = True) -> Typed:
        kinds = Counter(
            {
                "boolean": seen.booleans,
                "number": seen.integers + seen.floats,
                "string": seen.strings,
                "array": seen.arrays,
                "object": seen.objects,
            }
        )
        present = {kind for kind, n in kinds.items() if n}
        where = ".".join(path)
        if not present:
            return Typed("string", "string", notes=(f"{where}: only null seen, typed string",))
        if is_field and present == {"number", "string"} and seen.numeric_text == seen.strings:
            return self._lenient_number(seen)
        if is_field and present == {"boolean", "string"} and seen.boolean_text == seen.strings:
            return Typed("boolean", "boolean", lenient=True)
        kind = kinds.most_common(1)[0][0] if len(present) > 1 else next(iter(present))
        problems = tuple(
            f"{where}: {n} {other} value(s) where {kinds[kind]} are {kind}s"
            for other, n in sorted(kinds.items())
            if n and other != kind
        )
        typed = getattr(self, f"_{kind}")(seen, path)
        return Typed(
            typed.writer,
            typed.canonical,
            typed.lenient,
            problems + typed.problems,
            typed.notes,
        )

    @staticmethod
    def _boolean(seen: Observed, path: tuple[str, ...]) -> Typed:
        return Typed("boolean", "boolean")

    @staticmethod
    def _number(seen: Observed, path: tuple[str, ...]) -> Typed:
        if seen.floats:
            return Typed("double", "double")
        if _INT32[0] <= seen.low and seen.high <= _INT32[1]:
            return Typed("int", "long")  # canonical columns are wide: later senders may be
        return Typed("long", "long")

    @staticmethod
    def _lenient_number(seen: Observed) -> Typed:
        kind = "double" if seen.floats or seen.fraction_text else "long"
        return Typed(kind, kind, lenient=True)

    def _string(self, seen: Observed, path: tuple[str, ...]) -> Typed:
        if seen.iso == seen.strings:
            if self.learning and seen.iso_micros:
                self.micros.add(path)
            unit = "micros" if path in self.micros else "millis"
            return Typed(
                {"type": "string", "logicalType": f"iso-timestamp-{unit}"},
                {"type": "long", "logicalType": f"timestamp-{unit}"},
            )
        if ".".join(path) in self.enums:
            symbols = sorted(seen.values)
            bad = [s for s in symbols if not AVRO_NAME.fullmatch(s)]
            if bad or len(seen.values) >= VALUE_SAMPLE:
                why = f"{bad[0]!r} is not an Avro symbol" if bad else "too many distinct values"
                return Typed("string", "string", notes=(f"{'.'.join(path)}: not an enum: {why}",))
            enum = {"type": "enum", "name": self.naming.name(path), "symbols": symbols}
            return Typed(enum, dict(enum))
        return Typed("string", "string")

    def _array(self, seen: Observed, path: tuple[str, ...]) -> Typed:
        items = seen.items
        if items is not None and items.seen:
            return self._container("array", "items", items, (*path, "item"))
        empty = Observed()
        empty.add("")
        typed = self._container("array", "items", empty, (*path, "item"))
        note = f"{'.'.join(path)}: only empty arrays seen, items typed string"
        return Typed(typed.writer, typed.canonical, notes=(note,))

    def _container(self, kind: str, member: str, inner: Observed, path: tuple[str, ...]) -> Typed:
        """An array or map of what `inner` observed (nullable members where nulls were seen)."""
        typed = self.typed(inner, path, is_field=False)
        writer, canonical = typed.writer, typed.canonical
        if inner.nulls:
            writer, canonical = ["null", writer], ["null", canonical]
        return Typed(
            {"type": kind, member: writer},
            {"type": kind, member: canonical},
            problems=typed.problems,
            notes=typed.notes,
        )

    def _object(self, seen: Observed, path: tuple[str, ...]) -> Typed:
        keys = seen.fields
        common = [k for k, child in keys.items() if child.seen == seen.objects]
        varying = seen.objects > 1 and not common and len(keys) > seen.most_keys
        if self.learning and (varying or not all(AVRO_NAME.fullmatch(k) for k in keys)):
            self.maps.add(path)
        if path in self.maps:
            return self._map(seen, path)
        name = self.naming.name(path)
        writer_fields, canonical_fields = [], []
        problems: list[str] = []
        notes: list[str] = []
        for key, child in keys.items():
            inner = self.typed(child, (*path, key))
            problems += inner.problems
            notes += inner.notes
            writer_fields.append(writer_field(key, inner, nullable=child.nullable_in(seen.objects)))
            canonical_fields.append(canonical_field(key, inner))
        return Typed(
            {"type": "record", "name": name, "fields": writer_fields},
            {"type": "record", "name": name, "fields": canonical_fields},
            problems=tuple(problems),
            notes=tuple(notes),
        )

    def _map(self, seen: Observed, path: tuple[str, ...]) -> Typed:
        values = Observed()
        for child in seen.fields.values():
            values.merge(child)
        if not values.seen:
            values.add("")  # only empty objects seen
        return self._container("map", "values", values, (*path, "value"))


def writer_field(name: str, typed: Typed, nullable: bool) -> dict[str, Any]:
    """A writer schema field as the sender spells it; nullable ones default to null."""
    result: dict[str, Any] = {"name": name}
    if nullable:
        result.update(type=["null", typed.writer], default=None)
    else:
        result["type"] = typed.writer
    if typed.lenient:
        result[LENIENT] = True
    return result


def canonical_field(sender_name: str, typed: Typed) -> dict[str, Any]:
    """A canonical addition: snake_case, nullable with a null default, aliased to the sender's
    spelling so Avro matches it."""
    name = snake_case(sender_name)
    result: dict[str, Any] = {"name": name, "type": ["null", typed.canonical], "default": None}
    if name != sender_name:
        result["aliases"] = [sender_name]
    return result
