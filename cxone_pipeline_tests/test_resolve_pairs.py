"""Differential property test over generated schema pairs: both engine paths equal the oracle.

Hypothesis generates a canonical schema (primitives, logical types, enums, arrays, maps, nested
records, nullable and multi-branch unions, defaults) and writer versions derived from it the way
schemas evolve (renames with aliases, promotions, dropped and added fields, reordered and
widened unions, renamed named types, enum symbols added and removed, a writer field of the same
name as a canonical field that also has an alias, a declared `eventId`, and now and then a type
that cannot be read), then payloads for those writers, valid and not. Each batch goes through the
engine as it is and with the columnar path switched off; both must equal `avro_oracle`.
"""

from __future__ import annotations

import gzip
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import cxone_pipeline.resolve.engine as engine
from cxone_pipeline.registry import SubjectSchemas, load_subject
from cxone_pipeline.resolve import TransformResult, transform
from cxone_pipeline_tests.avro_oracle import expected_table

PRIMITIVES = ["boolean", "int", "long", "float", "double", "string"]
TIMESTAMP = {"type": "long", "logicalType": "timestamp-millis"}
DATE = {"type": "int", "logicalType": "date"}
UUID = {"type": "string", "logicalType": "uuid"}
# At most one branch of each class in a canonical union, so that the oracle can tell from a
# value fastavro returns which branch it took.
UNION_CLASSES = ["integral", "floating", "text", "boolean", "record", "array"]


@dataclass
class Names:
    """Fresh names for the named types of one example, and its shape: a simple example keeps
    to the types the columnar path takes (primitives, timestamps, enums, arrays, nullables)."""

    simple: bool = False
    count: int = 0

    def fresh(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"


# --- canonical schemas ------------------------------------------------------------------------


@st.composite
def reader_type(
    draw: st.DrawFn, names: Names, depth: int, in_union: bool = False, writable: bool = False
) -> Any:
    """A canonical type (`writable`: one a writer may declare too, so no bytes)."""
    options = [*PRIMITIVES, "timestamp", "enum"]
    if not names.simple:
        options += ["date", "uuid"] if writable else ["date", "uuid", "bytes"]
    if depth > 0 and names.simple:
        options += ["array"] + ([] if in_union else ["nullable"])
    elif depth > 0:
        options += ["array", "map", "record"]
        if not in_union:
            options += ["nullable", "nullable", "union"]
    kind = draw(st.sampled_from(options))
    if kind in PRIMITIVES or kind == "bytes":
        return kind
    if kind == "timestamp":
        return dict(TIMESTAMP)
    if kind == "date":
        return dict(DATE)
    if kind == "uuid":
        return dict(UUID)
    if kind == "enum":
        symbols = draw(st.lists(st.sampled_from("ABCD"), min_size=1, max_size=4, unique=True))
        enum = {"type": "enum", "name": names.fresh("E"), "symbols": symbols}
        if draw(st.booleans()):
            enum["default"] = draw(st.sampled_from(symbols))
        return enum
    if kind == "array":
        return {"type": "array", "items": draw(reader_type(names, depth - 1, writable=writable))}
    if kind == "map":
        return {"type": "map", "values": draw(reader_type(names, depth - 1, writable=writable))}
    if kind == "record":
        return draw(reader_record(names, depth - 1, names.fresh("N"), writable=writable))
    if kind == "nullable":
        inner = draw(reader_type(names, depth - 1, in_union=True, writable=writable))
        return ["null", inner] if draw(st.booleans()) else [inner, "null"]
    classes = draw(st.lists(st.sampled_from(UNION_CLASSES), min_size=2, max_size=3, unique=True))
    branches = [draw(union_branch(names, depth - 1, c)) for c in classes]
    if draw(st.booleans()):
        branches.insert(draw(st.integers(0, len(branches))), "null")
    return branches


@st.composite
def union_branch(draw: st.DrawFn, names: Names, depth: int, kind: str) -> Any:
    if kind == "integral":
        return draw(st.sampled_from(["int", "long"]))
    if kind == "floating":
        return draw(st.sampled_from(["float", "double"]))
    if kind == "text":
        if draw(st.booleans()):
            return "string"
        return {"type": "enum", "name": names.fresh("E"), "symbols": ["A", "B"]}
    if kind == "boolean":
        return "boolean"
    if kind == "record":
        return draw(reader_record(names, max(depth, 0), names.fresh("N")))
    return {"type": "array", "items": draw(st.sampled_from(["long", "string"]))}


@st.composite
def reader_record(
    draw: st.DrawFn, names: Names, depth: int, name: str, writable: bool = False, most: int = 3
) -> dict[str, Any]:
    fields = []
    for number in range(draw(st.integers(1, most))):
        avro_type = draw(reader_type(names, depth, writable=writable))
        item: dict[str, Any] = {"name": f"f{number}", "type": avro_type}
        if draw(st.integers(0, 2)) == 0:
            item["default"] = draw(default_of(avro_type))
        fields.append(item)
    return {"type": "record", "name": name, "fields": fields}


@st.composite
def default_of(draw: st.DrawFn, avro_type: Any) -> Any:
    """A JSON default valid for a canonical type, as the specification writes it."""
    if isinstance(avro_type, list):
        return draw(default_of(avro_type[0])) if avro_type[0] != "null" else None
    kind = avro_type if isinstance(avro_type, str) else avro_type["type"]
    if kind == "bytes":
        return draw(st.text(st.characters(max_codepoint=255), max_size=3))
    if kind == "enum":
        return draw(st.sampled_from(avro_type["symbols"]))
    if kind == "array":
        return draw(st.lists(default_of(avro_type["items"]), max_size=2))
    if kind == "map":
        return draw(
            st.dictionaries(st.sampled_from(["k", "-type"]), default_of(avro_type["values"]))
        )
    if kind == "record":
        return {f["name"]: draw(default_of(f["type"])) for f in avro_type["fields"]}
    if isinstance(avro_type, dict) and avro_type.get("logicalType") == "date":
        return draw(st.integers(-719_162, 2_932_896))
    return draw(value_of(avro_type, clean=True))


# --- writer schemas derived from the canonical one ----------------------------------------------

_WRITER_PRIMITIVE = {
    "boolean": ["boolean"],
    "int": ["int", "int", "date"],
    "long": ["long", "long", "int", "timestamp"],
    "float": ["float", "float", "int", "long"],
    "double": ["double", "float", "int", "long"],
    "string": ["string", "string", "uuid"],
    "bytes": ["string"],
}


def _named_copy(reader: dict[str, Any], renamed: bool, names: Names) -> str:
    """The writer's name for a reader's named type; a renamed one becomes a reader alias."""
    if not renamed:
        return reader["name"]
    name = names.fresh(f"W{reader['name']}_")
    reader.setdefault("aliases", []).append(name)
    return name


@st.composite
def writer_type(draw: st.DrawFn, reader: Any, names: Names) -> Any:
    """A writer type the canonical `reader` type may read (and now and then one it cannot)."""
    if draw(st.integers(0, 29)) == 0:
        return draw(st.sampled_from(["string", "long", ["null", "boolean"]]))
    if isinstance(reader, list):
        branches = [b for b in reader if b != "null"]
        if len(branches) == 1:
            inner = draw(writer_type(branches[0], names))
            if isinstance(inner, list):
                return inner
            shape = draw(st.sampled_from(["null first", "null first", "plain", "null last"]))
            return {"null first": ["null", inner], "plain": inner, "null last": [inner, "null"]}[
                shape
            ]
        chosen = draw(st.permutations(range(len(reader))))[: draw(st.integers(1, len(reader)))]
        written: list[Any] = []
        for index in chosen:
            inner = (
                reader[index]
                if reader[index] == "null"
                else draw(writer_type(reader[index], names))
            )
            written += [
                t for t in (inner if isinstance(inner, list) else [inner]) if t not in written
            ]
        return written if len(written) > 1 else written[0]
    kind = reader if isinstance(reader, str) else reader["type"]
    logical = None if isinstance(reader, str) else reader.get("logicalType")
    if logical == "timestamp-millis":
        return draw(st.sampled_from([dict(TIMESTAMP), dict(TIMESTAMP), "long"]))
    if logical == "date":
        return draw(st.sampled_from([dict(DATE), dict(DATE), "int"]))
    if logical == "uuid":
        return draw(st.sampled_from([dict(UUID), "string"]))
    if kind in _WRITER_PRIMITIVE:
        chosen = draw(st.sampled_from(_WRITER_PRIMITIVE[kind]))
        written = {"timestamp": TIMESTAMP, "date": DATE, "uuid": UUID}.get(chosen, chosen)
        written = dict(written) if isinstance(written, dict) else written
        if draw(st.integers(0, 9)) == 0:  # widened: values of the other branch do not resolve
            return ["null", written] if kind != "string" else ["null", "string"]
        return written
    if kind == "enum":
        symbols = list(reader["symbols"])
        if draw(st.booleans()):
            symbols = [s for s in symbols if draw(st.booleans())] or symbols[:1]
        if draw(st.booleans()):
            symbols.append("Z")
        name = _named_copy(reader, draw(st.integers(0, 4)) == 0, names)
        return {"type": "enum", "name": name, "symbols": symbols}
    if kind == "array":
        return {"type": "array", "items": draw(writer_type(reader["items"], names))}
    if kind == "map":
        return {"type": "map", "values": draw(writer_type(reader["values"], names))}
    return draw(writer_record(reader, names, top=False))


@st.composite
def writer_record(
    draw: st.DrawFn, reader: dict[str, Any], names: Names, top: bool
) -> dict[str, Any]:
    renamed = not top and draw(st.integers(0, 4)) == 0
    fields = []
    for item in reader["fields"]:
        action = draw(st.sampled_from(["keep", "keep", "keep", "rename", "drop"]))
        if action == "drop" and ("default" in item or draw(st.integers(0, 5)) == 0):
            continue  # without a default, no record of this writer resolves
        name = item["name"]
        if action == "rename":
            name = names.fresh(f"old_{item['name']}_")
            item.setdefault("aliases", []).append(name)
        written = {"name": name, "type": draw(writer_type(item["type"], names))}
        if draw(st.integers(0, 3)) == 0:
            written["default"] = draw(default_of(written["type"]))
        fields.append(written)
        if top and action == "keep" and item["type"] in PRIMITIVES and draw(st.integers(0, 5)) == 0:
            # A writer field named like the canonical field's alias: the name still wins.
            trap = names.fresh(f"alias_{item['name']}_")
            item.setdefault("aliases", []).append(trap)
            fields.append({"name": trap, "type": item["type"]})
    for _ in range(draw(st.integers(0, 2))):
        extra = draw(reader_type(names, 1, writable=True))
        fields.append({"name": names.fresh("x_"), "type": extra})
    draw(st.randoms()).shuffle(fields)
    name = reader["name"] if not renamed else _named_copy(reader, True, names)
    return {"type": "record", "name": name, "fields": fields}


@st.composite
def schema_pair(draw: st.DrawFn) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    names = Names(simple=draw(st.booleans()))
    canonical = draw(reader_record(names, 2, "R", most=5))
    if draw(st.integers(0, 3)) == 0:
        canonical["fields"].append({"name": "eventId", "type": "string", "default": "-"})
    primitive = [f for f in canonical["fields"] if f["type"] in PRIMITIVES]
    if primitive and draw(st.integers(0, 3)) == 0:  # one writer field read by two canonical ones
        source = draw(st.sampled_from(primitive))
        canonical["fields"].append(
            {"name": "twin", "type": source["type"], "aliases": [source["name"]], "default": None}
            | {"default": draw(default_of(source["type"]))}
        )
    writers = [
        draw(writer_record(canonical, names, top=True)) for _ in range(draw(st.integers(1, 3)))
    ]
    if draw(st.integers(0, 19)) == 0:
        writers[0]["name"] = "Other"  # neither the canonical name nor an alias of it
    return canonical, writers


# --- payloads -------------------------------------------------------------------------------

TEXT = st.one_of(
    st.text(st.characters(blacklist_categories=("Nd", "Cs")), max_size=6),
    st.sampled_from(["A", "B", "Z", "null", "2026-11-27", "2026-11-27T19:48:25Z", ""]),
)
WRONG = st.one_of(
    TEXT,
    st.integers(-(2**70), 2**70),
    st.sampled_from([2.0, 1.5, True, None, [], [1], {"a": 1}, 2**31, 2**63, 3.5e38, "\ud800"]),
)


def value_of(avro_type: Any, clean: bool) -> st.SearchStrategy[Any]:
    """JSON values of a writer type (plain, as CXone sends them, not union-wrapped)."""
    if isinstance(avro_type, list):
        branches = [b for b in avro_type if not clean or b != "null"] or avro_type
        return st.one_of(*(value_of(b, clean) for b in branches))
    kind = avro_type if isinstance(avro_type, str) else avro_type["type"]
    logical = None if isinstance(avro_type, str) else avro_type.get("logicalType")
    if logical == "timestamp-millis":
        inside = st.integers(-62_135_596_800_000, 253_402_300_799_999)
        return inside if clean else st.one_of(inside, st.integers(-(2**63), 2**63 - 1))
    if logical == "date":
        return st.one_of(st.integers(-800_000, 3_000_000), st.just("2026-11-27"))
    if logical == "uuid":
        return st.one_of(st.uuids().map(str).map(str.upper), TEXT)
    if kind == "enum":
        return st.sampled_from(avro_type["symbols"])
    if kind == "array":
        return st.lists(value_of(avro_type["items"], clean), max_size=3)
    if kind == "map":
        keys = st.one_of(st.sampled_from(["k", "-type"]), st.text(max_size=3))
        return st.dictionaries(keys, value_of(avro_type["values"], clean), max_size=3)
    if kind == "record":
        return record_value(avro_type, clean)
    return {
        "null": st.none(),
        "boolean": st.booleans(),
        "int": st.integers(-(2**31), 2**31 - 1),
        "long": st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-5, 5)),
        "float": st.one_of(
            st.floats(width=32, allow_nan=False, allow_infinity=False),
            st.integers(-9, 9),
            st.just(3.5e38),
        ),
        "double": st.one_of(
            st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**70), 2**70)
        ),
        "string": TEXT,
        "bytes": st.nothing(),
    }[kind]


@st.composite
def record_value(draw: st.DrawFn, record: dict[str, Any], clean: bool) -> dict[str, Any]:
    value = {}
    for item in record["fields"]:
        roll = draw(st.integers(0, 19))
        if roll == 0 and (not clean or "default" in item):
            continue  # absent: its default, or invalid without one
        wrong = roll == 1 and not clean
        value[item["name"]] = draw(WRONG if wrong else value_of(item["type"], clean))
    if draw(st.integers(0, 5)) == 0:
        value[draw(st.sampled_from(["-type", "extra", "eventId"]))] = draw(
            st.sampled_from([record["name"], "R", 1] + ([] if clean else [None]))
        )
    return value


@st.composite
def envelopes(draw: st.DrawFn, subject: SubjectSchemas, count: int) -> list[dict[str, Any]]:
    clean = draw(st.sampled_from([True, True, False]))
    batch = []
    for index in range(count):
        version = draw(st.sampled_from(subject.versions))
        payload = draw(record_value(version.document, clean))
        header = None
        declared = draw(st.sampled_from(["none", "none", "payload", "header"]))
        if declared == "payload":
            payload["_schema_version"] = version.version
        elif declared == "header":
            header = version.version
        batch.append(
            {
                "event_id": f"evt-{index:03d}",
                "received_at": f"2026-11-27T19:{index % 60:02d}:00.{index:06d}Z",
                "schema_version": header,
                "payload": payload,
            }
        )
    return batch


def staged_object(batch: list[dict[str, Any]]) -> bytes:
    lines = "\n".join(json.dumps(e) for e in batch) + "\n"
    return gzip.compress(lines.encode())


def write_registry(folder: Path, canonical: dict[str, Any], writers: list[dict[str, Any]]) -> None:
    (folder / "s").mkdir()
    (folder / "s" / "canonical.avsc").write_text(json.dumps({**canonical, "namespace": "t"}))
    for number, writer in enumerate(writers, start=1):
        (folder / "s" / f"v{number}.avsc").write_text(json.dumps({**writer, "namespace": "t"}))


PAIRS = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@PAIRS
@given(data=st.data())
def test_both_paths_equal_fastavro_on_generated_schema_pairs(data: st.DataObject):
    canonical, writers = data.draw(schema_pair())
    with tempfile.TemporaryDirectory() as folder:
        write_registry(Path(folder), canonical, writers)
        subject = load_subject(Path(folder), "s")
    batch = data.draw(envelopes(subject, data.draw(st.integers(1, 8))))
    expected, expected_rejects = expected_table(subject, batch)
    staged = [staged_object(batch)]
    for columnar_path in (True, False):
        result, per_record = run_engine(staged, subject, columnar_path)
        if columnar_path:  # how much the columnar path took: see --hypothesis-show-statistics
            event(f"rows the columnar path resolved: {min(len(batch) - per_record, 2)}+")
            event(
                f"rows: {min(result.table.num_rows, 2)}+, rejects: {min(len(result.rejects), 2)}+"
            )
        assert {r.envelope["event_id"]: r.code for r in result.rejects} == expected_rejects
        actual = {row["_event_id"]: row for row in result.table.to_pylist()}
        for row in expected.to_pylist():
            assert actual.get(row["_event_id"]) == row, (columnar_path, row["_event_id"])
        assert result.table.equals(expected)


def run_engine(
    staged: list[bytes], subject: SubjectSchemas, columnar_path: bool
) -> tuple[TransformResult, int]:
    """The engine's result, with the columnar path on or off, and how many envelopes it
    resolved one by one."""
    calls = []
    resolve_record = engine._resolve_record
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "_resolve_record", lambda *a: (calls.append(1), resolve_record(*a)))
        if not columnar_path:
            patch.setattr(
                engine.columnar, "null_free", lambda nulls, *_: np.zeros(len(nulls), bool)
            )
        return transform(staged, subject), len(calls)
