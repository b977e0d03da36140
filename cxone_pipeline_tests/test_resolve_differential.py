"""Differential tests: the engine's rows equal fastavro's writer→reader resolution, per record.

Hypothesis generates payloads for every version of every shipped subject, valid and not:
absent optional fields, extra fields, int→long promotion, enum symbols the writer lacks, wrong
types, missing required fields, out-of-range numbers, explicit nulls, declared and undeclared
versions. The oracle (`avro_oracle`) is written from DESIGN.md and fastavro alone, not from the
engine; `test_resolve_pairs` does the same over generated schemas.
"""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cxone_pipeline.resolve.engine as engine
from cxone_pipeline.registry import SchemaVersion, SubjectSchemas, load_registry
from cxone_pipeline.resolve import read_parquet, transform, write_parquet
from cxone_pipeline.settings import DEFAULT_SCHEMAS_DIR
from cxone_pipeline_tests.avro_oracle import expected_table

REGISTRY = load_registry(DEFAULT_SCHEMAS_DIR)
EPOCH = datetime(2026, 11, 27, 19, tzinfo=timezone.utc)


# --- payload strategies -----------------------------------------------------------------------

TEXT = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["null", "annulled", "2026-11-27T19:48:25Z", "2026-11-27", "", 'say "hi"']),
)
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=3,
)
TIMESTAMP_MS = st.one_of(
    st.integers(-62_135_596_800_000, 253_402_300_799_999),
    st.integers(-(2**63), 2**63 - 1),
    st.just(1_764_272_905_123),
)


def value_of(avro_type: Any, named: dict[str, Any], nulls: bool) -> st.SearchStrategy[Any]:
    """Valid JSON values for a parsed Avro type (as CXone sends them: plain, not union-wrapped)."""
    if isinstance(avro_type, list):
        branches = [b for b in avro_type if nulls or b != "null"]
        return st.one_of(*(value_of(branch, named, nulls) for branch in branches))
    if isinstance(avro_type, str) and avro_type in named:
        return value_of(named[avro_type], named, nulls)
    kind = avro_type if isinstance(avro_type, str) else avro_type["type"]
    if not isinstance(avro_type, str) and avro_type.get("logicalType") == "timestamp-millis":
        return TIMESTAMP_MS
    return {
        "null": st.none(),
        "string": TEXT,
        "int": st.integers(-(2**31), 2**31 - 1),
        "long": st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-5, 5)),
        "enum": st.sampled_from(avro_type["symbols"]) if kind == "enum" else st.nothing(),
        "array": st.lists(value_of(avro_type["items"], named, nulls), max_size=3)
        if kind == "array"
        else st.nothing(),
    }[kind]


WRONG = st.one_of(
    TEXT,
    st.integers(-(2**70), 2**70),
    st.sampled_from([2.0, 1.5, True, None, [], [1], {"a": 1}, 2**31, 2**63, "SIDEWAYS"]),
)


@st.composite
def payloads(draw: st.DrawFn, version: SchemaVersion, clean: bool) -> dict[str, Any]:
    """A payload for `version`; a clean one has no wrong value and no explicit null, as most
    production payloads, so that the columnar path (not only the per-record one) is tested."""
    named = version.schema.get("__named_schemas", {})
    payload = {}
    for field in version.fields:
        roll = draw(st.integers(0, 19))
        if roll == 0:
            continue  # absent: fine when the field has a default, invalid otherwise
        wrong = roll == 1 and not clean
        payload[field["name"]] = draw(WRONG if wrong else value_of(field["type"], named, not clean))
    if draw(st.integers(0, 4)) == 0:
        extra = draw(st.dictionaries(st.text(min_size=1, max_size=6), JSON_VALUES, max_size=3))
        payload.update({k: v for k, v in extra.items() if k not in payload})
    return payload


@st.composite
def envelopes(draw: st.DrawFn, subject: SubjectSchemas, index: int, clean: bool) -> dict[str, Any]:
    version = draw(st.sampled_from(subject.versions))
    payload = draw(payloads(version, clean))
    declared = draw(st.sampled_from(["none", "none", "payload", "header", "unknown"]))
    header = None
    number = version.version.lstrip("v")
    if declared == "payload":
        payload["_schema_version"] = draw(st.sampled_from([version.version, number, int(number)]))
    elif declared == "header":
        header = draw(st.sampled_from([version.version, number]))
    elif declared == "unknown":
        header = "v99"
    received = EPOCH + timedelta(microseconds=draw(st.integers(0, 3_599_999_999)))
    return {
        "event_id": f"evt-{index:04d}",
        "received_at": received.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "schema_version": header,
        "payload": payload,
    }


@st.composite
def staged_batches(draw: st.DrawFn, subject: SubjectSchemas) -> list[dict[str, Any]]:
    count, clean = draw(st.integers(1, 12)), draw(st.booleans())
    return [draw(envelopes(subject, index, clean)) for index in range(count)]


def staged_objects(batch: list[dict[str, Any]], pieces: int) -> list[bytes]:
    lines = [json.dumps(e, ensure_ascii=bool(i % 2)) for i, e in enumerate(batch)]
    objects = []
    for piece in range(pieces):
        text = ("\n".join(lines[piece::pieces]) + "\n").encode()
        objects.append(gzip.compress(text) if piece % 2 == 0 else text)
    return objects


# --- the properties ---------------------------------------------------------------------------


def assert_matches_oracle(subject: SubjectSchemas, batch: list[dict[str, Any]], pieces: int):
    result = transform(staged_objects(batch, pieces), subject)
    expected, expected_rejects = expected_table(subject, batch)
    assert {r.envelope["event_id"]: r.code for r in result.rejects} == expected_rejects
    actual_rows = {r["_event_id"]: r for r in result.table.to_pylist()}
    for row in expected.to_pylist():
        assert actual_rows.get(row["_event_id"]) == row, row["_event_id"]
    assert result.table.equals(expected)
    assert read_parquet(write_parquet(result.table)).equals(result.table)


DIFFERENTIAL = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.mark.parametrize("name", ["call_event", "agent_state"])
@DIFFERENTIAL
@given(data=st.data())
def test_rows_equal_fastavro_resolution(name: str, data: st.DataObject):
    subject = REGISTRY[name]
    batch = data.draw(staged_batches(subject))
    assert_matches_oracle(subject, batch, data.draw(st.integers(1, 3)))


def test_valid_rows_take_the_columnar_path(monkeypatch: pytest.MonkeyPatch):
    """Valid, null-free envelopes never reach the per-record path (so the fast path is tested)."""

    def per_record(*args: object) -> None:
        raise AssertionError("a valid row was resolved one record at a time")

    monkeypatch.setattr(engine, "resolve_record", per_record)
    monkeypatch.setattr(engine, "detect_version", per_record)
    subject = REGISTRY["call_event"]
    batch = [
        {
            "event_id": f"e{i}",
            "received_at": "2026-11-27T19:00:00Z",
            "schema_version": None,
            "payload": payload,
        }
        for i, payload in enumerate(
            [
                {"customer_id": "a", "call_duration_sec": 2**31 - 1, "agent_ext": "1"},
                {"customerId": "b", "duration": 2**62, "agentId": "2", "queue": {"id": [4, 5]}},
                {
                    "contactId": 3,
                    "customerId": "c",
                    "duration": 4,
                    "agentId": "5",
                    "direction": "INTERNAL",
                    "skillId": -6,
                    "startedAt": 7,
                    "tags": [],
                },
            ]
        )
    ]
    result = transform(staged_objects(batch, 1), subject)
    assert result.rows_per_version == {"v1": 1, "v2": 1, "v3": 1}
    assert result.table.column("duration_seconds").to_pylist() == [2**31 - 1, 2**62, 4]
    assert result.table.column("_unmapped_fields").to_pylist() == [
        None,
        '{"queue":{"id":[4,5]}}',
        None,
    ]
