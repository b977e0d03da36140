"""Named regression tests for Avro's resolution semantics (issue #11), each through both paths.

Every case runs the engine twice on the same staged bytes: as it is (the columnar path takes
what it can) and with the columnar path switched off (every row per record); both must give the
same table and rejects, and the values the Avro specification gives.
"""

from __future__ import annotations

import gzip
import json
import math
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest

import cxone_pipeline.resolve.engine as engine
from cxone_pipeline.cli import main
from cxone_pipeline.registry import SubjectSchemas, load_subject
from cxone_pipeline.resolve import TransformResult, read_parquet, transform, write_parquet


def record(name: str, fields: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"type": "record", "name": name, "namespace": "test", "fields": fields, **extra}


def registry(tmp_path: Path, canonical: dict[str, Any], *writers: dict[str, Any]) -> Path:
    folder = tmp_path / "schemas" / "s"
    folder.mkdir(parents=True)
    (folder / "canonical.avsc").write_text(json.dumps(canonical))
    for number, writer in enumerate(writers, start=1):
        (folder / f"v{number}.avsc").write_text(json.dumps(writer))
    return tmp_path / "schemas"


def subject(tmp_path: Path, canonical: dict[str, Any], *writers: dict[str, Any]) -> SubjectSchemas:
    return load_subject(registry(tmp_path, canonical, *writers), "s")


def accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture, canonical: dict[str, Any], *writers: dict
) -> SubjectSchemas:
    """The subject of a registry `schemas check` accepts (every case that must work)."""
    schemas_dir = registry(tmp_path, canonical, *writers)
    assert check(capsys, schemas_dir) == (0, "")
    return load_subject(schemas_dir, "s")


def staged(payloads: list[dict[str, Any]], version: str | None = None) -> bytes:
    lines = [
        json.dumps(
            {
                "event_id": f"e{n:03d}",
                "received_at": f"2026-11-27T19:00:{n % 60:02d}.{n:06d}Z",
                "schema_version": version,
                "payload": payload,
            }
        )
        for n, payload in enumerate(payloads)
    ]
    return gzip.compress(("\n".join(lines) + "\n").encode())


def both_paths(
    schemas: SubjectSchemas, payloads: list[dict[str, Any]], version: str | None = None
) -> TransformResult:
    """The result of the engine as it is, checked equal to the per-record path's."""
    data = staged(payloads, version)
    result = transform([data], schemas)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine.columnar, "null_free", lambda nulls, *_: np.zeros(len(nulls), bool))
        per_record = transform([data], schemas)
    assert result.table.equals(per_record.table)
    assert [(r.envelope["event_id"], r.code) for r in result.rejects] == [
        (r.envelope["event_id"], r.code) for r in per_record.rejects
    ]
    assert read_parquet(write_parquet(result.table)).equals(result.table)
    return result


def column(result: TransformResult, name: str) -> list[Any]:
    return result.table.column(name).to_pylist()


def rejected(result: TransformResult) -> dict[str, str]:
    return {r.envelope["event_id"]: r.code for r in result.rejects}


def check(capsys, schemas_dir: Path) -> tuple[int, str]:
    code = main(["schemas", "check", "--schemas-dir", str(schemas_dir)])
    return code, capsys.readouterr().err


LONG = {"type": "long"}


def test_a_field_is_read_by_name_before_an_alias_takes_another_field(tmp_path, capsys):
    canonical = record("R", [{"name": "y", "type": "long", "aliases": ["x"]}])
    both_fields = record("R", [{"name": "x", "type": "long"}, {"name": "y", "type": "long"}])
    renamed = record("R", [{"name": "x", "type": "long"}])
    schemas = accepted(tmp_path, capsys, canonical, both_fields, renamed)
    result = both_paths(schemas, [{"x": 1, "y": 2, "_schema_version": "v1"}, {"x": 3}])
    assert column(result, "y") == [2, 3]
    assert column(result, "_schema_version") == ["v1", "v2"]


def test_a_writer_declaring_event_id_reads_it_as_a_field(tmp_path, capsys):
    fields = [{"name": "eventId", "type": "string"}, {"name": "amount", "type": "long"}]
    schemas = accepted(tmp_path, capsys, record("R", fields), record("R", fields))
    result = both_paths(schemas, [{"eventId": "id-1", "amount": 5}, {"amount": 6}])
    assert column(result, "eventId") == ["id-1"]
    assert column(result, "_unmapped_fields") == [None]
    assert rejected(result) == {"e001": "no_matching_schema"}
    assert "missing required field(s) eventId" in result.rejects[0].message


def test_uuid_is_canonical_text_and_a_bad_one_quarantines_only_its_record(tmp_path, capsys):
    uuid_type = {"type": "string", "logicalType": "uuid"}
    canonical = record("R", [{"name": "id", "type": uuid_type}, {"name": "raw", "type": "string"}])
    writer = record("R", [{"name": "id", "type": uuid_type}, {"name": "raw", "type": uuid_type}])
    good = "3F2504E0-4F89-11D3-9A0C-0305E82C3301"
    result = both_paths(
        accepted(tmp_path, capsys, canonical, writer),
        [{"id": good, "raw": good}, {"id": "not-a-uuid", "raw": good}],
    )
    assert column(result, "id") == [good.lower()]
    assert column(result, "raw") == [good.lower()]
    assert rejected(result) == {"e001": "invalid_record"}
    assert "id: 'not-a-uuid' is not a UUID" in result.rejects[0].message


def test_a_timestamp_read_as_a_plain_long_is_the_number_and_vice_versa(tmp_path, capsys):
    millis = {"type": "long", "logicalType": "timestamp-millis"}
    canonical = record("R", [{"name": "at", "type": "long"}, {"name": "seen", "type": millis}])
    writer = record("R", [{"name": "at", "type": millis}, {"name": "seen", "type": "long"}])
    result = both_paths(
        accepted(tmp_path, capsys, canonical, writer),
        [{"at": 1_764_272_905_123, "seen": 5}, {"at": 253_402_300_800_000, "seen": 1}],
    )
    assert column(result, "at") == [1_764_272_905_123]
    assert column(result, "seen") == [datetime(1970, 1, 1, 0, 0, 0, 5000, tzinfo=timezone.utc)]
    assert rejected(result) == {"e001": "invalid_record"}
    assert "outside the range of timestamp-millis" in result.rejects[0].message


def test_empty_and_recursive_writer_records_resolve(tmp_path, capsys):
    node = record(
        "Node",
        [{"name": "value", "type": "long"}, {"name": "next", "type": ["null", "test.Node"]}],
    )
    writer = record(
        "R",
        [
            {"name": "meta", "type": record("Meta", [])},
            {"name": "list", "type": node},
            {"name": "head", "type": "long"},
        ],
    )
    canonical = record("R", [{"name": "head", "type": "long"}])
    payload = {"meta": {}, "list": {"value": 1, "next": {"value": 2, "next": None}}, "head": 1}
    bad_text = {**payload, "list": {"value": 1, "next": {"value": 2, "next": None, "x": "\ud800"}}}
    deep_bad = {**payload, "list": {"value": 1, "next": {"value": "two", "next": None}}}
    result = both_paths(
        accepted(tmp_path, capsys, canonical, writer), [payload, bad_text, deep_bad]
    )
    assert column(result, "head") == [1, 1]
    assert rejected(result) == {"e002": "no_matching_schema"}


@pytest.mark.parametrize(
    ("field", "problem"),
    [
        ({"name": "meta", "type": record("Meta", [])}, "record Meta has no fields"),
        (
            {
                "name": "list",
                "type": record(
                    "Node",
                    [{"name": "v", "type": "long"}, {"name": "next", "type": ["null", "Node"]}],
                ),
            },
            "record Node contains itself",
        ),
        (
            {"name": "f", "type": {"type": "fixed", "name": "Zero", "size": 0}},
            "fixed Zero of size 0",
        ),
    ],
)
def test_schemas_check_refuses_canonical_types_parquet_cannot_hold(
    tmp_path, capsys, field, problem
):
    fields = [{"name": "head", "type": "long"}, field]
    code, err = check(capsys, registry(tmp_path, record("R", fields), record("R", fields)))
    assert code == 2
    assert "s/canonical.avsc: field" in err and problem in err


def test_reader_defaults_of_bytes_fixed_and_decimal_are_code_points(tmp_path, capsys):
    decimal = {"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 2}
    canonical = record(
        "R",
        [
            {"name": "n", "type": "long"},
            {"name": "b", "type": "bytes", "default": "\u00ff\u0000"},
            {
                "name": "f",
                "type": {"type": "fixed", "name": "Two", "size": 2},
                "default": "\u00e9A",
            },
            {"name": "d", "type": decimal, "default": "\u0001\u0000"},
            {"name": "m", "type": ["null", "bytes"], "default": None},
        ],
    )
    result = both_paths(
        accepted(tmp_path, capsys, canonical, record("R", [{"name": "n", **LONG}])), [{"n": 1}]
    )
    assert result.table.to_pylist()[0] | {"_received_at": None} == {
        "n": 1,
        "b": b"\xff\x00",
        "f": b"\xe9A",
        "d": Decimal("2.56"),
        "m": None,
        "_event_id": "e000",
        "_schema_version": "v1",
        "_received_at": None,
        "_unmapped_fields": None,
    }


def test_invalid_reader_defaults_are_refused_by_schemas_check(tmp_path, capsys):
    canonical = record(
        "R",
        [{"name": "n", "type": "long"}, {"name": "b", "type": "bytes", "default": "\u20ac"}],
    )
    code, err = check(capsys, registry(tmp_path, canonical, record("R", [{"name": "n", **LONG}])))
    assert code == 1
    assert "s v1: canonical field 'b': its default is invalid" in err


def test_multi_branch_unions_are_structs_with_one_member_per_branch(tmp_path, capsys):
    amount = ["null", "long", "string"]
    canonical = record("R", [{"name": "amount", "type": amount, "default": None}])
    writers = [
        record("R", [{"name": "amount", "type": amount}]),
        record("R", [{"name": "amount", "type": ["string", "int"]}]),  # reordered, promoted
        record("R", [{"name": "amount", "type": "long"}]),
    ]
    schemas_dir = registry(tmp_path, canonical, *writers)
    assert check(capsys, schemas_dir) == (0, "")
    schemas = load_subject(schemas_dir, "s")
    payloads = [
        {"amount": 5, "_schema_version": 1},
        {"amount": "", "_schema_version": 1},
        {"amount": None, "_schema_version": 1},
        {"amount": "12", "_schema_version": 2},
        {"amount": 7, "_schema_version": 2},
        {"amount": 2**40, "_schema_version": 3},
    ]
    result = both_paths(schemas, payloads)
    assert column(result, "amount") == [
        {"long": 5, "string": None},
        {"long": None, "string": ""},
        None,
        {"long": None, "string": "12"},
        {"long": 7, "string": None},
        {"long": 2**40, "string": None},
    ]
    path = tmp_path / "part.parquet"
    path.write_bytes(write_parquet(result.table))
    queried = duckdb.sql(
        f"SELECT coalesce(amount.long::VARCHAR, amount.string) FROM '{path}' ORDER BY _event_id"
    ).fetchall()
    assert [value for (value,) in queried] == ["5", "", None, "12", "7", str(2**40)]


def test_unions_of_records_resolve_by_name_and_alias(tmp_path, capsys):
    person = record("Person", [{"name": "name", "type": "string"}], aliases=["Human"])
    company = record(
        "Company", [{"name": "name", "type": "string"}, {"name": "vat", **{"type": "string"}}]
    )
    canonical = record("R", [{"name": "party", "type": ["null", person, company]}])
    human = record("Human", [{"name": "name", "type": "string"}])
    writer = record("R", [{"name": "party", "type": ["null", company, human]}])
    result = both_paths(
        accepted(tmp_path, capsys, canonical, writer),
        [{"party": {"name": "Ann"}}, {"party": {"name": "Acme", "vat": "X1"}}, {"party": None}],
    )
    assert column(result, "party") == [
        {"Person": {"name": "Ann"}, "Company": None},
        {"Person": None, "Company": {"name": "Acme", "vat": "X1"}},
        None,
    ]


def test_a_type_key_is_an_ordinary_key(tmp_path, capsys):
    first = record("First", [{"name": "a", "type": "long"}])
    second = record("Second", [{"name": "a", "type": "long"}, {"name": "b", "type": "long"}])
    fields = [
        {"name": "pick", "type": [first, second]},
        {"name": "tags", "type": {"type": "map", "values": "string"}},
    ]
    schemas = accepted(tmp_path, capsys, record("R", fields), record("R", fields))
    payload = {"pick": {"-type": "test.Second", "a": 1}, "tags": {"-type": "x"}, "-type": "R"}
    result = both_paths(schemas, [payload])
    assert column(result, "pick") == [{"First": {"a": 1}, "Second": None}]
    assert column(result, "tags") == [[("-type", "x")]]
    assert column(result, "_unmapped_fields") == ['{"-type":"R"}']


def test_record_and_enum_name_mismatches_are_refused_and_quarantined_alike(tmp_path, capsys):
    direction = {"type": "enum", "name": "Direction", "symbols": ["IN", "OUT"]}
    canonical = record("R", [{"name": "d", "type": direction}])
    renamed_enum = record("R", [{"name": "d", "type": {**direction, "name": "Dir"}}])
    renamed_record = record("Other", [{"name": "d", "type": direction}])
    schemas_dir = registry(tmp_path, canonical, renamed_enum, renamed_record)
    code, err = check(capsys, schemas_dir)
    assert code == 1
    assert (
        "s v1: canonical field 'd' cannot read v1 field 'd': an enum Dir is neither named " in err
    )
    assert "s v2: a record Other is neither named R nor among its aliases" in err
    result = both_paths(load_subject(schemas_dir, "s"), [{"d": "IN"}], version="v1")
    assert rejected(result) == {"e000": "invalid_record"}
    result = both_paths(load_subject(schemas_dir, "s"), [{"d": "IN"}], version="v2")
    assert rejected(result) == {"e000": "invalid_record"}


def test_values_fastavro_cannot_write_quarantine_only_their_record(tmp_path, capsys):
    fields = [{"name": "x", "type": "float"}, {"name": "note", "type": "string"}]
    canonical = record("R", [{"name": "x", "type": "double"}])
    result = both_paths(
        accepted(tmp_path, capsys, canonical, record("R", fields)),
        [{"x": 0.1, "note": "ok"}, {"x": 3.5e38, "note": "ok"}, {"x": 1, "note": "\ud800"}],
    )
    # Beyond float32's range fastavro's writer casts to infinity; text that is not Unicode
    # it cannot write, even in a field the canonical schema does not read.
    assert column(result, "x") == [pa.scalar(0.1, pa.float32()).as_py(), math.inf]
    assert rejected(result) == {"e002": "invalid_record"}


def test_schemas_check_refuses_writer_bytes_and_mixed_logical_types(tmp_path, capsys):
    micros = {"type": "long", "logicalType": "timestamp-micros"}
    millis = {"type": "long", "logicalType": "timestamp-millis"}
    canonical = record("R", [{"name": "at", "type": millis}])
    writer = record(
        "R", [{"name": "at", "type": micros}, {"name": "blob", "type": ["null", "bytes"]}]
    )
    code, err = check(capsys, registry(tmp_path, canonical, writer))
    assert code == 1
    assert "s v1: field 'blob' is a bytes: JSON has no bytes" in err
    assert "s v1: canonical field 'at' cannot read v1 field 'at': a long (timestamp-micros)" in err


MILLIS = {"type": "long", "logicalType": "timestamp-millis"}
DRIFT_CANONICAL = record(
    "R",
    [
        {"name": "customer_id", "type": "string", "aliases": ["customerId"]},
        {"name": "contact_id", "type": ["null", "long"], "default": None, "aliases": ["contactId"]},
        {"name": "started_at", "type": ["null", MILLIS], "default": None, "aliases": ["startedAt"]},
    ],
)
DRIFT_WRITERS = (
    record("R", [{"name": "customerId", "type": "string"}]),
    record(
        "R",
        [
            {"name": "contactId", "type": "long"},
            {"name": "customerId", "type": "string"},
            {"name": "startedAt", "type": MILLIS},
        ],
    ),
)
ISO_V2_PAYLOAD = {
    "customerId": "c-1",
    "contactId": 7,
    "startedAt": "2026-11-27T10:00:00Z",
    "skill": 5,
}


def test_rows_read_as_an_older_version_name_the_newer_one_and_why_it_failed(tmp_path, capsys):
    schemas = accepted(tmp_path, capsys, DRIFT_CANONICAL, *DRIFT_WRITERS)
    result = both_paths(schemas, [ISO_V2_PAYLOAD, {**ISO_V2_PAYLOAD, "customerId": "c-2"}])
    assert result.rows_per_version == {"v1": 2}
    assert column(result, "contact_id") == [None, None]
    [miss] = result.near_misses
    assert (miss.matched, miss.unmapped, miss.rows) == (
        "v1",
        ("contactId", "skill", "startedAt"),
        2,
    )
    assert (miss.version, miss.declared) == ("v2", ("contactId", "startedAt"))
    assert miss.describe() == (
        "2 row(s) read as v1: v2 declares contactId, startedAt but failed: startedAt: "
        "'2026-11-27T10:00:00Z' is a string where a long (timestamp-millis) is expected"
    )


def test_no_matching_schema_names_the_nearest_version_and_its_problem(tmp_path):
    schemas = subject(tmp_path, DRIFT_CANONICAL, *DRIFT_WRITERS)
    result = both_paths(schemas, [{"contactId": 7, "startedAt": 1}, {"callerName": "Ann"}])
    assert [r.message for r in result.rejects] == [
        "s: payload matches none of v1, v2; nearest is v2, declaring 2 of its 2 keys, but "
        "missing required field(s) customerId",
        "s: payload matches none of v1, v2 and none declares any of its keys (callerName)",
    ]


def test_writer_extensions_resolve_alike_on_both_paths(tmp_path, capsys):
    iso = {"type": "string", "logicalType": "iso-timestamp-millis"}
    canonical = record(
        "R",
        [
            {"name": "customer_id", "type": "string", "aliases": ["customerId"]},
            {"name": "duration", "type": ["null", "long"], "default": None},
            {
                "name": "started_at",
                "type": ["null", MILLIS],
                "default": None,
                "aliases": ["startedAt"],
            },
        ],
    )
    extended = record(
        "R",
        [
            {"name": "customerId", "type": "string"},
            {"name": "duration", "type": "long", "lenient": True},
            {"name": "startedAt", "type": iso},
        ],
    )
    schemas = accepted(tmp_path, capsys, canonical, DRIFT_WRITERS[0], extended)
    at = "2026-11-27T10:00:00Z"
    result = both_paths(
        schemas,
        [
            {"customerId": "a", "duration": "1,234", "startedAt": at},
            {"customerId": "b", "duration": 5, "startedAt": 1_795_773_600_000},
            {"customerId": "c", "duration": "soon", "startedAt": at},
        ],
    )
    assert column(result, "_schema_version") == ["v2", "v2", "v1"]
    assert column(result, "duration") == [1234, 5, None]
    moment = datetime(2026, 11, 27, 10, tzinfo=timezone.utc)
    assert column(result, "started_at") == [moment, moment, None]
    [miss] = result.near_misses
    assert miss.problem == "duration: 'soon' is not a number"
    # Numbers sent as text, consistently: Arrow reads a text column, which the columnar path
    # must not take as "not v2" (it would read them as v1); it defers them.
    texts = both_paths(schemas, [{"customerId": "d", "duration": "7", "startedAt": 0}] * 2)
    assert column(texts, "_schema_version") == ["v2", "v2"]
    assert column(texts, "duration") == [7, 7]


def test_iso_times_and_item_keys_take_the_columnar_path_only_in_the_exact_form(tmp_path, capsys):
    iso = {"type": "string", "logicalType": "iso-timestamp-millis"}
    canonical = record(
        "R",
        [
            {"name": "contact_id", "type": "long", "aliases": ["contactId"]},
            {"name": "start", "type": MILLIS, "aliases": ["contactStartDate"]},
            {
                "name": "updated",
                "type": ["null", MILLIS],
                "default": None,
                "aliases": ["lastUpdateTime"],
            },
            {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []},
        ],
    )
    writer = record(
        "R",
        [
            {"name": "contactId", "type": "long"},
            {"name": "contactStartDate", "type": iso},
            {"name": "lastUpdateTime", "type": ["null", iso], "default": None, "lenient": True},
            {
                "name": "tags",
                "type": {"type": "array", "items": "string"},
                "default": [],
                "item_key": "tagName",
            },
        ],
    )
    schemas = accepted(tmp_path, capsys, canonical, writer)
    exact = [
        "2026-11-27T10:00:00Z",
        "2026-11-27T10:00:00.5+01:00",
        "2024-02-29T23:59:59.999-05:30",  # a leap day
        "0001-01-01T00:00:00Z",
    ]
    slow = [
        "2026-11-27T10:00:00.1234567Z",  # digits beyond milliseconds: truncated per record
        "2026-11-27 10:00:00Z",  # a space, a form the extension also takes
        "2026-11-27T10:00Z",  # no seconds
        "2026-02-29T10:00:00Z",  # not a day: quarantined
        "2026-11-27T24:00:00Z",  # not a time: quarantined
        "2026-11-27T10:00:00+24:00",  # not a zone offset: quarantined
        "2026-11-27T10:00:00",  # no zone: quarantined
    ]
    payloads = [
        {"contactId": n, "contactStartDate": at, "lastUpdateTime": at, "tags": [{"tagName": "vip"}]}
        for n, at in enumerate(exact + slow)
    ]
    payloads[0]["lastUpdateTime"] = ""  # blank and lenient: null
    payloads[1]["tags"] = [{"tagId": 1}]  # an item without its key: quarantined
    result = both_paths(schemas, payloads * 4)  # enough rows for Arrow to share one parse
    calls: list[int] = []
    per_record = engine._resolve_record
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "_resolve_record", lambda *a: (calls.append(1), per_record(*a))[1])
        transform([staged(payloads * 4)], schemas)
    assert len(calls) == 4 * (len(slow) + 2)  # the exact forms went columnar, only they
    rows = {r["contact_id"]: r for r in result.table.to_pylist()}
    assert sorted(rows) == [0, 2, 3, 4, 5, 6]
    assert rows[0]["updated"] is None and rows[0]["tags"] == ["vip"]
    assert rows[2]["start"] == datetime(
        2024, 2, 29, 23, 59, 59, 999000, timezone(timedelta(hours=-5, minutes=-30))
    )
    assert rows[4]["start"] == datetime(2026, 11, 27, 10, 0, 0, 123000, tzinfo=timezone.utc)
    assert rows[6]["start"] == datetime(2026, 11, 27, 10, tzinfo=timezone.utc)
    assert sorted(set(rejected(result).values())) == ["no_matching_schema"]
    assert len(result.rejects) == 4 * 5  # contacts 1, 7, 8, 9 and 10


def test_dates_and_times_hold_only_what_reads_as_one(tmp_path, capsys):
    day = {"type": "int", "logicalType": "date"}
    time_ms = {"type": "int", "logicalType": "time-millis"}
    local = {"type": "long", "logicalType": "local-timestamp-micros"}
    fields = [
        {"name": "day", "type": day},
        {"name": "at", "type": time_ms},
        {"name": "local", "type": local},
    ]
    result = both_paths(
        accepted(tmp_path, capsys, record("R", fields), record("R", fields)),
        [
            {"day": "2026-11-27", "at": 1_000, "local": 1},
            {"day": 20_784, "at": 86_399_999, "local": 0},
            {"day": "27/11/2026", "at": 0, "local": 0},  # not a date: valid for no version
            {"day": 0, "at": -1, "local": 0},  # before midnight: not a time
            {"day": 0, "at": 0, "local": 2**62},  # beyond year 9999
        ],
    )
    assert column(result, "day") == [date(2026, 11, 27)] * 2
    assert column(result, "at") == [time(0, 0, 1), time(23, 59, 59, 999_000)]
    assert column(result, "local") == [datetime(1970, 1, 1, 0, 0, 0, 1), datetime(1970, 1, 1)]
    assert rejected(result) == {
        "e002": "no_matching_schema",
        "e003": "invalid_record",
        "e004": "invalid_record",
    }
    assert "day: '27/11/2026' is a string where an int (date) is expected" in (
        result.rejects[0].message
    )


def test_lone_surrogates_outside_resolved_fields_never_fail_the_hour(tmp_path, capsys):
    fields = [{"name": "n", "type": "long"}]
    schemas = accepted(tmp_path, capsys, record("R", fields), record("R", fields))
    line = json.dumps(
        {
            "event_id": "\ud800",
            "received_at": "2026-11-27T19:00:00Z",
            "payload": {"n": 1, "note": "a\ud800"},
        }
    )
    reserved = json.dumps(
        {"received_at": "2026-11-27T19:00:01Z", "payload": {"n": 2, "eventId": "sha256:x"}}
    )
    result = transform([f"{line}\n{reserved}".encode()], schemas)
    assert column(result, "n") == [1, 2]
    assert column(result, "_unmapped_fields") == ['{"note":"a\\ud800"}', None]
    assert all(event_id.startswith("sha256:") for event_id in column(result, "_event_id"))
