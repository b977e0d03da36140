"""Resolution engine examples: each reject code, dedupe, unmapped fields, Parquet types."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timezone

import pyarrow as pa
import pytest

import cxone_pipeline.resolve.engine as engine
from cxone_pipeline.registry import load_subject
from cxone_pipeline.resolve import (
    REJECT_CODES,
    canonical_arrow_schema,
    read_parquet,
    read_rejects,
    rejects_to_bytes,
    transform,
    write_parquet,
)
from cxone_pipeline.settings import DEFAULT_SCHEMAS_DIR

V1 = {"customer_id": "c1", "call_duration_sec": 61, "agent_ext": "4021"}
V2 = {"customerId": "c2", "duration": 62, "agentId": "4022", "transcript": "hello"}
V3 = {
    "contactId": 7,
    "customerId": "c3",
    "duration": 63,
    "agentId": "4023",
    "direction": "OUTBOUND",
    "skillId": 12,
    "startedAt": 1_764_272_905_123,
    "tags": ["vip"],
}


@pytest.fixture(scope="module")
def call_event():
    return load_subject(DEFAULT_SCHEMAS_DIR, "call_event")


def envelope(event_id: str, payload: object, second: int = 0, version: str | None = None) -> str:
    return json.dumps(
        {
            "event_id": event_id,
            "received_at": f"2026-11-27T19:48:{second:02d}.123456Z",
            "schema_version": version,
            "payload": payload,
        }
    )


def staged(*lines: str, compress: bool = True) -> bytes:
    data = ("\n".join(lines) + "\n").encode()
    return gzip.compress(data) if compress else data


def test_every_version_lands_in_canonical_columns(call_event):
    result = transform(
        [staged(envelope("a", V1, 1), envelope("b", V2, 2), envelope("c", V3, 3))], call_event
    )
    assert result.rejects == []
    assert result.table.schema == canonical_arrow_schema(call_event)
    rows = result.table.to_pylist()
    assert [r["_schema_version"] for r in rows] == ["v1", "v2", "v3"]
    assert [r["customer_id"] for r in rows] == ["c1", "c2", "c3"]
    assert [r["duration_seconds"] for r in rows] == [61, 62, 63]
    assert [r["agent_extension"] for r in rows] == ["4021", "4022", "4023"]
    assert [r["transcript_raw"] for r in rows] == [None, "hello", None]
    assert [r["direction"] for r in rows] == ["UNKNOWN", "UNKNOWN", "OUTBOUND"]
    assert [r["tags"] for r in rows] == [[], [], ["vip"]]
    assert rows[2]["contact_id"] == 7 and rows[2]["skill_id"] == 12
    assert rows[2]["started_at"] == datetime(2025, 11, 27, 19, 48, 25, 123000, tzinfo=timezone.utc)
    assert rows[0]["_received_at"] == datetime(2026, 11, 27, 19, 48, 1, 123456, tzinfo=timezone.utc)
    assert result.rows_per_version == {"v1": 1, "v2": 1, "v3": 1}


def test_plain_and_crlf_ndjson_are_read_like_gzip(call_event, monkeypatch):
    lines = (envelope("a", V1, 1), envelope("b", V2, 2))
    gzipped = transform([staged(*lines)], call_event)
    plain = transform([staged(*lines, compress=False)], call_event)
    monkeypatch.setattr(engine, "resolve_record", None)  # CRLF lines take the columnar path too
    crlf = transform([("\r\n".join(lines) + "\r\n\r\n").encode()], call_event)
    assert gzipped.table.num_rows == 2
    assert plain.table.equals(gzipped.table)
    assert crlf.table.equals(gzipped.table)


@pytest.mark.parametrize(
    ("line", "code", "fragment"),
    [
        (envelope("x", V2, version="v9"), "unknown_schema_version", "'v9'"),
        (envelope("x", {"callerName": "Ann"}), "no_matching_schema", "none of v1, v2, v3"),
        (envelope("x", {**V2, "duration": "long"}, version="v2"), "invalid_record", "duration"),
        (
            envelope("x", {**V3, "direction": "SIDEWAYS"}, version="v3"),
            "invalid_record",
            "direction",
        ),
        (
            envelope("x", {k: v for k, v in V3.items() if k != "skillId"}, version="v3"),
            "invalid_record",
            "skillId",
        ),
        (envelope("x", [1, 2]), "not_an_object", "payload"),
        ("not json at all", "not_an_object", "not valid JSON"),
        ('"a string"', "not_an_object", "JSON str"),
        (json.dumps({"event_id": "x", "payload": V2}), "not_an_object", "received_at"),
    ],
)
def test_each_reject_code(call_event, line, code, fragment):
    result = transform([staged(line, envelope("ok", V2))], call_event)
    assert [r.code for r in result.rejects] == [code]
    assert code in REJECT_CODES
    assert fragment in result.rejects[0].message
    assert result.rejects_per_code == {code: 1}
    assert result.table.column("_event_id").to_pylist() == ["ok"]
    quarantined = read_rejects(rejects_to_bytes(result.rejects))
    assert quarantined[0]["error"] == {"code": code, "message": result.rejects[0].message}
    if code != "not_an_object":
        assert quarantined[0]["payload"] == json.loads(line)["payload"]


def test_unknown_versions_are_counted(call_event):
    result = transform(
        [staged(envelope("a", V2, version="v7"), envelope("b", V2, version="v7"))], call_event
    )
    assert result.unknown_versions == {"v7": 2}
    assert result.table.num_rows == 0


def test_duplicates_keep_earliest_received_then_first_seen(call_event):
    later = envelope("dup", {**V2, "customerId": "later"}, second=9)
    earlier = envelope("dup", {**V2, "customerId": "earlier"}, second=1)
    tie = envelope("dup", {**V2, "customerId": "tie"}, second=1)
    result = transform([staged(later, earlier), staged(tie)], call_event)
    assert result.table.column("customer_id").to_pylist() == ["earlier"]
    assert result.duplicates_dropped == 2


def test_unmapped_fields_keep_their_values_and_control_fields_are_not_unmapped(call_event):
    payload = {**V2, "eventId": "e-1", "_schema_version": "v2", "queue": {"id": 4}, "wrapUp": 12}
    result = transform([staged(envelope("a", payload))], call_event)
    assert json.loads(result.table.column("_unmapped_fields")[0].as_py()) == {
        "queue": {"id": 4},
        "wrapUp": 12,
    }
    assert result.unmapped_fields == {"queue": 1, "wrapUp": 1}
    assert result.unmapped_by_version == {"v2": {"queue": 1, "wrapUp": 1}}


def test_v1_fields_are_unmapped_when_the_payload_is_declared_v2(call_event):
    result = transform([staged(envelope("a", {**V2, **V1}, version="v2"))], call_event)
    assert result.unmapped_by_version == {
        "v2": {"agent_ext": 1, "call_duration_sec": 1, "customer_id": 1}
    }


def test_output_is_sorted_and_deterministic(call_event):
    lines = [envelope(f"e{i}", V2 if i % 2 else V3, second=(7 * i) % 5) for i in range(20)]
    first = transform([staged(*lines)], call_event)
    again = transform([staged(*reversed(lines))], call_event)
    keys = list(
        zip(
            first.table.column("_received_at").to_pylist(),
            first.table.column("_event_id").to_pylist(),
            strict=True,
        )
    )
    assert keys == sorted(keys)
    assert write_parquet(first.table) == write_parquet(again.table)


def test_parquet_round_trip_keeps_design_types(call_event):
    table = transform([staged(envelope("c", V3))], call_event).table
    back = read_parquet(write_parquet(table))
    assert back.equals(table)
    types = {f.name: f.type for f in back.schema}
    assert types["started_at"] == pa.timestamp("ms", tz="UTC")
    assert types["_received_at"] == pa.timestamp("us", tz="UTC")
    assert types["direction"] == pa.string()
    assert types["duration_seconds"] == pa.int64()
    assert pa.types.is_list(types["tags"])
    assert back.schema.field("transcript_raw").nullable
    assert not back.schema.field("customer_id").nullable


def test_empty_input_gives_an_empty_typed_table(call_event):
    result = transform([b"", staged()], call_event)
    assert result.table.num_rows == 0
    assert result.table.schema == canonical_arrow_schema(call_event)
    assert read_parquet(write_parquet(result.table)).num_rows == 0


def test_lines_conflicting_with_the_rest_are_isolated_not_fatal(call_event):
    lines = [envelope(f"e{i:02d}", {**V2, "duration": i}, second=i) for i in range(50)]
    lines[0] = envelope("e00", {**V2, "duration": "zero"})
    lines[25] = envelope("e25", {**V2, "duration": {"minutes": 1}}, version="v2")
    lines[30] = lines[30][:40]  # truncated by a crashed writer
    result = transform([staged(*lines)], call_event)
    assert result.table.num_rows == 47
    assert result.table.column("duration_seconds").to_pylist() == [
        i for i in range(50) if i not in (0, 25, 30)
    ]
    assert {r.envelope.get("event_id", "raw"): r.code for r in result.rejects} == {
        "e00": "no_matching_schema",
        "e25": "invalid_record",
        "raw": "not_an_object",
    }


def test_many_objects_and_a_corrupt_one(call_event):
    objects = [staged(envelope(f"e{i:02d}", {**V2, "duration": i}, second=i)) for i in range(20)]
    objects[7] = b"\x1f\x8b not really gzip"
    result = transform(objects, call_event)
    assert result.table.column("duration_seconds").to_pylist() == [i for i in range(20) if i != 7]
    assert [(r.code, r.message[:9]) for r in result.rejects] == [("not_an_object", "object 7:")]
    assert result.rejects[0].envelope == {"raw": "\x1f\ufffd not really gzip"}


def test_a_conflict_learnt_in_one_object_sets_lines_aside_in_the_next(call_event):
    objects = []
    for part in range(3):
        lines = [envelope(f"e{part}{i}", {**V2, "duration": i}, second=i) for i in range(10)]
        lines[3 + part] = envelope(f"e{part}{3 + part}", {**V2, "duration": "long"})
        objects.append(staged(*lines))
    result = transform(objects, call_event)
    assert result.table.num_rows == 27
    assert sorted(r.envelope["event_id"] for r in result.rejects) == ["e03", "e14", "e25"]
    assert {r.code for r in result.rejects} == {"no_matching_schema"}
