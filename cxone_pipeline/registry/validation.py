"""Whether a JSON value is a valid datum of a writer schema, and which union branch it takes.

The rules are fastavro's (`validate`, and the branch its writer picks) applied to the values
JSON has; where fastavro deviates from the Avro specification the specification wins: a
`"-type"` key is an ordinary key, never a branch choice. Checks are compiled once per writer
schema, since version detection runs them on every payload the columnar path defers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any, Generic, TypeVar

Check = Callable[[Any], bool]
T = TypeVar("T")
Select = Callable[[Any], "int | None"]

INT_RANGE = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
NAMED_KINDS = frozenset({"record", "error", "enum", "fixed"})
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
# fastavro reads `date` text with date.fromisoformat; this is the form every Python it supports
# (3.10 included) accepts, so validity does not depend on the interpreter.
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _in_range(kind: str) -> Check:
    low, high = INT_RANGE[kind]
    return lambda value: is_integer(value) and low <= value <= high


_PRIMITIVE_CHECKS: dict[str, Check] = {
    "null": lambda value: value is None,
    "boolean": lambda value: isinstance(value, bool),
    "int": _in_range("int"),
    "long": _in_range("long"),
    "float": is_number,
    "double": is_number,
    "string": lambda value: isinstance(value, str),
    "bytes": lambda value: isinstance(value, (bytes, bytearray)),  # never a JSON value
}


def date_days(value: Any) -> Any:
    """A `date` value as the writer holds it: ISO `YYYY-MM-DD` text becomes days since the
    epoch (as fastavro converts it); anything else is returned as is. None for text that is
    not a date."""
    if not isinstance(value, str):
        return value
    if not _ISO_DATE.fullmatch(value):
        return None
    try:
        return date.fromisoformat(value).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        return None


class IdentityCache(Generic[T]):
    """What was compiled from schema objects, keyed by the objects themselves (immutable, and
    living as long as their registry); at most `size` entries."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._items: dict[tuple[int, ...], tuple[tuple[object, ...], T]] = {}

    def get(self, key: tuple[object, ...], build: Callable[[], T]) -> T:
        ident = tuple(map(id, key))
        found = self._items.get(ident)
        if found is None or any(a is not b for a, b in zip(found[0], key, strict=True)):
            if len(self._items) >= self.size:
                self._items.clear()
            found = (key, build())
            self._items[ident] = found
        return found[1]


def is_unicode(text: str) -> bool:
    """False for text with lone surrogates: JSON can escape them, UTF-8 (so Avro, Arrow and
    Parquet) cannot hold them."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def short_name(name: str) -> str:
    return name.rsplit(".", 1)[-1]


class WriterChecks:
    """The compiled checks of one parsed writer schema (fastavro's `parse_schema` output)."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.named: dict[str, Any] = dict(schema.get("__named_schemas", {}))
        self._by_name: dict[str, Check | None] = {}
        self.root = self.check(dict(schema))

    def resolve(self, avro_type: Any) -> Any:
        """A named reference as the schema it names; any other type as it is."""
        if isinstance(avro_type, str) and avro_type in self.named:
            return self.named[avro_type]
        return avro_type

    def check(self, avro_type: Any) -> Check:
        if isinstance(avro_type, str) and avro_type in self.named:
            return self._named(avro_type)
        avro_type = self.resolve(avro_type)
        if isinstance(avro_type, list):
            checks = [self.check(branch) for branch in avro_type]
            return lambda value: any(check(value) for check in checks)
        if isinstance(avro_type, str):
            return _PRIMITIVE_CHECKS[avro_type]
        kind = avro_type["type"]
        if kind in ("record", "error"):
            return self._named(avro_type["name"], avro_type)
        if kind == "int" and avro_type.get("logicalType") == "date":
            return lambda value: _PRIMITIVE_CHECKS["int"](date_days(value))
        if kind in _PRIMITIVES:
            return _PRIMITIVE_CHECKS[kind]
        if kind == "enum":
            symbols = frozenset(avro_type["symbols"])
            return lambda value: isinstance(value, str) and value in symbols
        if kind == "fixed":
            size = avro_type["size"]
            return lambda value: isinstance(value, bytes) and len(value) == size
        if kind == "array":
            item = self.check(avro_type["items"])
            return lambda value: isinstance(value, list) and all(map(item, value))
        if kind == "map":
            values = self.check(avro_type["values"])
            return lambda value: isinstance(value, dict) and all(map(values, value.values()))
        raise ValueError(f"unknown Avro type {kind!r}")

    def _named(self, name: str, schema: dict[str, Any] | None = None) -> Check:
        if name not in self._by_name:
            self._by_name[name] = None  # a recursive reference sees it while it is compiled
            self._by_name[name] = self._compile_named(schema or self.named[name])
        check = self._by_name[name]
        if check is None:
            return lambda value: self._by_name[name](value)  # type: ignore[misc]
        return check

    def _compile_named(self, schema: dict[str, Any]) -> Check:
        if schema["type"] not in ("record", "error"):
            return self.check(schema)
        fields = [
            (field["name"], self.check(field["type"]), field.get("default"))
            for field in schema["fields"]
        ]

        def check_record(value: Any) -> bool:
            # An absent field is checked as its default (null when it has none).
            return isinstance(value, dict) and all(
                check(value.get(name, default)) for name, check, default in fields
            )

        return check_record

    def selector(self, union: list[Any]) -> Select:
        """The branch fastavro's writer gives a value of `union`: the first valid one, except
        that among records the one sharing most keys with the value wins (first on ties, and a
        later valid non-record stops the search) and a valid float gives way to a later double.
        None when no branch is valid."""
        checks = [self.check(branch) for branch in union]
        kinds = []
        for branch in union:
            resolved = self.resolve(branch)
            kind = resolved if isinstance(resolved, str) else resolved["type"]
            fields = (
                frozenset(f["name"] for f in resolved["fields"])
                if kind in ("record", "error")
                else frozenset()
            )
            kinds.append(("record" if kind == "error" else kind, fields))

        def select(value: Any) -> int | None:
            best, most, float_seen = None, -1, False
            for index, (check, (kind, fields)) in enumerate(zip(checks, kinds, strict=True)):
                if float_seen:
                    if kind == "double":
                        return index
                    continue
                if not check(value):
                    continue
                if kind == "record":
                    shared = len(fields.intersection(value))
                    if shared > most:
                        best, most = index, shared
                elif kind == "float":
                    best, float_seen = index, True
                else:
                    return index
            return best

        return select

    def problem(self, value: Any, avro_type: Any, path: str) -> str | None:
        """Why `value` is not valid for `avro_type`, naming the field path; None when it is."""
        if self.check(avro_type)(value):
            return None
        resolved = self.resolve(avro_type)
        if isinstance(resolved, list):
            branches = [b for b in resolved if b != "null"]
            if len(branches) == 1 and value is not None:
                return self.problem(value, branches[0], path)
            names = ", ".join(type_name(self.resolve(b)) for b in resolved)
            return f"{path}: {describe(value)} is {json_kind(value)}, none of {names}"
        kind = resolved if isinstance(resolved, str) else resolved["type"]
        if kind in ("record", "error") and isinstance(value, dict):
            for field in resolved["fields"]:
                name = field["name"]
                where = f"{path}.{name}" if path else name
                if name not in value and "default" not in field:
                    found = self.problem(None, field["type"], where)
                    if found is not None:
                        return f"{where}: missing (it has no default)"
                    continue
                found = self.problem(value.get(name, field.get("default")), field["type"], where)
                if found is not None:
                    return found
        if kind == "array" and isinstance(value, list):
            for index, item in enumerate(value):
                found = self.problem(item, resolved["items"], f"{path}[{index}]")
                if found is not None:
                    return found
        if kind == "map" and isinstance(value, dict):
            for key, item in value.items():
                found = self.problem(item, resolved["values"], f"{path}.{key}")
                if found is not None:
                    return found
        if kind == "enum" and isinstance(value, str):
            enum = short_name(resolved["name"])
            symbols = ", ".join(resolved["symbols"])[:120]
            return f"{path}: {describe(value)} is not a symbol of {enum} ({symbols})"
        if kind in INT_RANGE and is_integer(value):
            return f"{path}: {value} is outside the {kind} range"
        found = "null" if value is None else f"{describe(value)} is {json_kind(value)}"
        return f"{path}: {found} where {type_name(resolved)} is expected"


def describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def type_name(avro_type: Any) -> str:
    """An Avro type as people read it: `a long (timestamp-millis)`, `an enum Direction`."""
    if isinstance(avro_type, list):
        return "a union"
    if isinstance(avro_type, str):
        kind, logical, name = avro_type, None, None
    else:
        kind, logical, name = avro_type["type"], avro_type.get("logicalType"), avro_type.get("name")
    text = f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"
    if kind in NAMED_KINDS and name:
        text += f" {short_name(name)}"
    return f"{text} ({logical})" if logical else text
