"""Extensions to writer schemas, for what CXone really sends (docs/schemas.md).

- `{"type": "string", "logicalType": "iso-timestamp-millis"}` (or `-micros`): ISO-8601 text
  with a zone, read as `timestamp-millis` (`-micros`), so it resolves into timestamp columns.
- `{"type": "string", "logicalType": "iso-duration-seconds"}`: an ISO-8601 duration
  (`PT1M30.5S`, `P1DT2H`) read as a `double` number of seconds; a number is taken as seconds.
- `"lenient": true` on a field of a number or boolean type (or a nullable one): numeric text
  (`"12"`, `"1,234.5"`), `"True"`/`"false"` and `""` (null; only where null is allowed) are
  accepted and converted; anything else is refused with a reason naming the field. On a
  nullable ISO-8601 field it reads `""` as null.
- `"item_key": "tagName"` on an array field: items sent as objects are replaced by their
  value under that key (CXone's `[{"tagId": 1, "tagName": "VIP"}]` read as `["VIP"]`).

Avro tools that do not know them see a plain string and unknown field attributes.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

ISO_TIMESTAMPS = {
    "iso-timestamp-millis": "timestamp-millis",
    "iso-timestamp-micros": "timestamp-micros",
}
ISO_DURATION = "iso-duration-seconds"
ISO_TEXT_TYPES = frozenset({*ISO_TIMESTAMPS, ISO_DURATION})
LENIENT = "lenient"
ITEM_KEY = "item_key"
_NUMBERS = ("int", "long", "float", "double")
_LENIENT_TYPES = frozenset({*_NUMBERS, "boolean"})
_INTEGERS = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
# The one ISO-8601 form both resolution paths accept: date, time to the minute at least,
# up to nine fraction digits, and a zone (a time without one is ambiguous, so refused).
ISO_8601 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2})"
    r"(?::([0-9]{2})(?:\.([0-9]{1,9}))?)?"
    r"(?:([Zz])|([+-])([01][0-9]|2[0-3]):?([0-5][0-9]))"
)
# ISO-8601 durations in the designator form; years and months only when zero (they have no
# fixed length in seconds). Each number may carry a fraction ("." or ",").
_DURATION_NUMBER = r"([0-9]+(?:[.,][0-9]+)?)"
ISO_8601_DURATION = re.compile(
    rf"([+-])?P(?:{_DURATION_NUMBER}Y)?(?:{_DURATION_NUMBER}M)?(?:{_DURATION_NUMBER}W)?"
    rf"(?:{_DURATION_NUMBER}D)?(?:T(?:{_DURATION_NUMBER}H)?(?:{_DURATION_NUMBER}M)?"
    rf"(?:{_DURATION_NUMBER}S)?)?"
)
_DURATION_SECONDS = (None, None, 7 * 86_400, 86_400, 3_600, 60, 1)
# ASCII digits only: `\d` would also take other scripts' digits, which no API sends.
_NUMBER_TEXT = re.compile(
    r"[+-]?(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class ExtensionError(ValueError):
    """A value an extension cannot convert; the message names the field and the value."""


def parse_iso8601(text: str) -> int | None:
    """ISO-8601 text with a zone as microseconds since the epoch (UTC); None if it is not one.
    Digits beyond microseconds are truncated."""
    match = ISO_8601.fullmatch(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute = (int(g) for g in match.groups()[:5])
    second = int(match[6] or 0)
    micros = int((match[7] or "").ljust(6, "0")[:6])
    offset = 0
    if match[9]:
        offset = (int(match[10]) * 60 + int(match[11])) * (1 if match[9] == "+" else -1)
    try:
        moment = datetime(year, month, day, hour, minute, second, micros, tzinfo=timezone.utc)
    except ValueError:
        return None
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds - offset * 60) * 1_000_000 + delta.microseconds


class DurationError(ValueError):
    """ISO-8601 duration text that has no fixed length in seconds."""


def parse_iso8601_duration(text: str) -> float | None:
    """An ISO-8601 duration (`PT1M30.5S`, `P1DT2H`, `-PT5S`) in seconds; None if it is not one.
    Raises DurationError for non-zero years or months, whose length in seconds varies."""
    text = text.strip()
    match = ISO_8601_DURATION.fullmatch(text)
    if match is None or not any(match.groups()[1:]) or text.endswith("T"):
        return None
    numbers = [float(part.replace(",", ".")) if part else 0.0 for part in match.groups()[1:]]
    if numbers[0] or numbers[1]:
        raise DurationError("years and months have no fixed length in seconds")
    seconds = sum(n * unit for n, unit in zip(numbers[2:], _DURATION_SECONDS[2:], strict=True))
    return -seconds if match[1] == "-" else seconds


def _describe(value: Any) -> str:
    return repr(value)[:60]


def _iso(unit: str) -> Callable[[Any, str], Any]:
    divisor = 1000 if unit == "timestamp-millis" else 1

    def convert(value: Any, where: str) -> Any:
        if not isinstance(value, str):
            return value  # validation names the type error
        micros = parse_iso8601(value)
        if micros is None:
            raise ExtensionError(
                f"{where}: {_describe(value)} is not an ISO-8601 time with a zone "
                "(e.g. 2026-11-27T10:00:00.000Z)"
            )
        return micros // divisor

    return convert


def _iso_duration(value: Any, where: str) -> Any:
    if not isinstance(value, str):
        return value  # a number is seconds already; validation names any other type
    try:
        seconds = parse_iso8601_duration(value)
    except DurationError as exc:
        raise ExtensionError(f"{where}: {_describe(value)}: {exc}") from None
    if seconds is None:
        raise ExtensionError(
            f"{where}: {_describe(value)} is not an ISO-8601 duration (e.g. PT1M30.5S)"
        )
    return seconds


def _iso_converter(logical: str) -> Callable[[Any, str], Any]:
    return _iso_duration if logical == ISO_DURATION else _iso(ISO_TIMESTAMPS[logical])


def _blank_as_null(convert: Callable[[Any, str], Any], nullable: bool) -> Callable[[Any, str], Any]:
    def read(value: Any, where: str) -> Any:
        if isinstance(value, str) and not value.strip():
            if nullable:
                return None
            raise ExtensionError(f"{where}: empty text where a value is required")
        return convert(value, where)

    return read


def _items_from(key: str, items: Callable[[Any, str], Any] | None) -> Callable[[Any, str], Any]:
    def read(value: Any, where: str) -> Any:
        if not isinstance(value, list):
            return value
        plucked = [item.get(key) if isinstance(item, dict) else item for item in value]
        if items is None:
            return plucked
        return [items(item, f"{where}[{n}]") for n, item in enumerate(plucked)]

    return read


def _lenient(kind: str, nullable: bool) -> Callable[[Any, str], Any]:
    def convert(value: Any, where: str) -> Any:
        if not isinstance(value, str):
            if kind in _INTEGERS and isinstance(value, float) and value.is_integer():
                return int(value)
            return value
        text = value.strip()
        if text == "":
            if nullable:
                return None
            raise ExtensionError(f"{where}: empty text where a {kind} is required")
        if kind == "boolean":
            lowered = text.lower()
            if lowered in ("true", "1"):
                return True
            if lowered in ("false", "0"):
                return False
            raise ExtensionError(f"{where}: {_describe(value)} is not a boolean")
        if not _NUMBER_TEXT.fullmatch(text):
            raise ExtensionError(f"{where}: {_describe(value)} is not a number")
        number = Decimal(text.replace(",", ""))
        if kind not in _INTEGERS:
            return float(number)
        low, high = _INTEGERS[kind]
        if number != number.to_integral_value() or not low <= number <= high:
            raise ExtensionError(f"{where}: {_describe(value)} is not a {kind}")
        return int(number)

    return convert


Convert = Callable[[Any, str], Any]


class _Builder:
    """Walks a writer schema document once, building converters where extensions occur."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.named: dict[str, Any] = {}
        self.records: dict[str, Convert | None] = {}

    def type_converter(self, avro_type: Any, namespace: str) -> Convert | None:
        if isinstance(avro_type, list):
            branches = [b for b in avro_type if b != "null"]
            inner = [self.type_converter(b, namespace) for b in branches]
            if not any(inner):
                return None
            if len(branches) != 1:
                raise ValueError(
                    "extensions (iso-timestamp-*, lenient) apply inside a union only when it "
                    f"has one non-null branch, not in {avro_type}"
                )
            convert = inner[0]
            assert convert is not None
            return lambda value, where: None if value is None else convert(value, where)
        if isinstance(avro_type, str):
            full = avro_type if "." in avro_type else f"{namespace}.{avro_type}".lstrip(".")
            if full in self.records:  # a named record, possibly recursive: looked up lazily
                return lambda value, where: self._named(full, value, where)
            return None
        kind = avro_type.get("type")
        logical = avro_type.get("logicalType")
        if logical in ISO_TEXT_TYPES:
            if kind != "string":
                raise ValueError(f"logicalType {logical!r} needs type string, not {kind!r}")
            return _iso_converter(logical)
        if kind == "record":
            return self.record_converter(avro_type, namespace)
        if kind == "array":
            item = self.type_converter(avro_type.get("items"), namespace)
            if item is None:
                return None
            return lambda value, where: (
                [item(v, f"{where}[{n}]") for n, v in enumerate(value)]
                if isinstance(value, list)
                else value
            )
        if kind == "map":
            values = self.type_converter(avro_type.get("values"), namespace)
            if values is None:
                return None
            return lambda value, where: (
                {k: values(v, f"{where}.{k}") for k, v in value.items()}
                if isinstance(value, dict)
                else value
            )
        if isinstance(kind, (dict, list)):
            return self.type_converter(kind, namespace)
        return None

    def _named(self, full: str, value: Any, where: str) -> Any:
        convert = self.records[full]
        return value if convert is None else convert(value, where)

    def record_converter(self, record: dict[str, Any], namespace: str) -> Convert | None:
        namespace = record.get("namespace", namespace)
        name = record.get("name", "")
        full = name if "." in name else f"{namespace}.{name}".lstrip(".")
        self.records[full] = None  # recursive references see it while its fields are built
        fields: list[tuple[str, Convert]] = []
        for field in record.get("fields", []):
            convert = self.type_converter(field.get("type"), namespace)
            if field.get(LENIENT) is True:
                convert = self._lenient_field(field)
            elif LENIENT in field and field[LENIENT] is not False:
                raise ValueError(f"field {field.get('name')!r}: 'lenient' must be true or false")
            if ITEM_KEY in field:
                convert = self._item_key_field(field, namespace)
            if convert is not None:
                fields.append((field["name"], convert))
        if not fields:
            return None

        def convert_record(value: Any, where: str) -> Any:
            if not isinstance(value, dict):
                return value
            converted = dict(value)
            for field_name, convert in fields:
                if field_name in converted:
                    path = f"{where}.{field_name}" if where else field_name
                    converted[field_name] = convert(converted[field_name], path)
            return converted

        self.records[full] = convert_record
        return convert_record

    @staticmethod
    def _lenient_field(field: dict[str, Any]) -> Convert:
        avro_type = field.get("type")
        nullable = isinstance(avro_type, list) and "null" in avro_type
        branches = (
            [b for b in avro_type if b != "null"] if isinstance(avro_type, list) else [avro_type]
        )
        kind = branches[0] if len(branches) == 1 else None
        if isinstance(kind, dict) and kind.get("logicalType") in ISO_TEXT_TYPES:
            return _blank_as_null(_iso_converter(kind["logicalType"]), nullable)
        if isinstance(kind, dict) and "logicalType" not in kind:
            kind = kind.get("type")
        if kind not in _LENIENT_TYPES:
            raise ValueError(
                f"field {field.get('name')!r}: 'lenient' applies to int, long, float, double, "
                f"boolean or ISO-8601 text fields (or nullable ones), not {avro_type}"
            )
        return _lenient(kind, nullable)

    def _item_key_field(self, field: dict[str, Any], namespace: str) -> Convert:
        key = field[ITEM_KEY]
        avro_type = field.get("type")
        branches = (
            [b for b in avro_type if b != "null"] if isinstance(avro_type, list) else [avro_type]
        )
        array = branches[0] if len(branches) == 1 else None
        if not isinstance(key, str) or not key:
            raise ValueError(f"field {field.get('name')!r}: 'item_key' must be a key name")
        if not isinstance(array, dict) or array.get("type") != "array":
            raise ValueError(
                f"field {field.get('name')!r}: 'item_key' applies to array fields (or nullable "
                f"ones), not {avro_type}"
            )
        items = self.type_converter(array.get("items"), namespace)
        convert = _items_from(key, items)
        return lambda value, where: None if value is None else convert(value, where)


def effective_document(document: Mapping[str, Any]) -> dict[str, Any]:
    """The writer schema Avro resolves with: ISO-8601 strings become the timestamps (or the
    seconds) they encode."""

    def rewrite(node: Any) -> Any:
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        if not isinstance(node, dict):
            return node
        if node.get("logicalType") in ISO_TEXT_TYPES and node.get("type") == "string":
            rest = {k: v for k, v in node.items() if k not in ("type", "logicalType")}
            if node["logicalType"] == ISO_DURATION:
                return {**rest, "type": "double"}
            return {**rest, "type": "long", "logicalType": ISO_TIMESTAMPS[node["logicalType"]]}
        return {key: rewrite(value) for key, value in node.items()}

    return rewrite(copy.deepcopy(dict(document)))


def uses_extensions(document: Mapping[str, Any]) -> bool:
    def walk(node: Any) -> bool:
        if isinstance(node, list):
            return any(walk(item) for item in node)
        if isinstance(node, dict):
            if node.get("logicalType") in ISO_TEXT_TYPES or node.get(LENIENT) is True:
                return True
            if ITEM_KEY in node:
                return True
            return any(walk(value) for value in node.values())
        return False

    return walk(document)


def payload_converter(document: Mapping[str, Any]) -> Convert | None:
    """A function converting a payload as the writer's extensions say; None when it has none.
    Raises ValueError naming the field when an extension is used where it cannot apply."""
    return _Builder("").record_converter(dict(document), "")
