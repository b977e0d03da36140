"""Writer-schema extensions for CXone's messy values: ISO-8601 durations, blank times, tag lists;
and the `pull` setting of subject.json."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from cxone_pipeline.cli import main
from cxone_pipeline.registry import SchemaError, load_subject
from cxone_pipeline.registry.extensions import (
    DurationError,
    effective_document,
    parse_iso8601_duration,
)
from cxone_pipeline.resolve import transform
from cxone_pipeline.settings import DEFAULT_SCHEMAS_DIR


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT2M5.5S", 125.5),
        ("PT0S", 0.0),
        ("P1DT2H", 93_600.0),
        ("PT1H0M0,25S", 3_600.25),
        ("P2W", 1_209_600.0),
        ("P0Y0M0DT0H5M3S", 303.0),
        ("-PT5S", -5.0),
        (" PT3S ", 3.0),
    ],
)
def test_iso8601_durations_in_seconds(text: str, seconds: float) -> None:
    assert parse_iso8601_duration(text) == seconds


@pytest.mark.parametrize("text", ["P", "PT", "P1DT", "PT5", "5", "00:05:00", "PT5M3SX", ""])
def test_text_that_is_not_a_duration(text: str) -> None:
    assert parse_iso8601_duration(text) is None


def test_years_and_months_are_refused_with_the_reason() -> None:
    with pytest.raises(DurationError, match="no fixed length"):
        parse_iso8601_duration("P1M")


def writer(fields: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "record", "name": "R", "fields": fields}


def test_a_duration_is_a_double_to_avro() -> None:
    document = writer(
        [{"name": "d", "type": ["null", {"type": "string", "logicalType": "iso-duration-seconds"}]}]
    )
    assert effective_document(document)["fields"][0]["type"] == ["null", {"type": "double"}]


@pytest.fixture
def subject_dir(tmp_path: Path) -> Path:
    """A one-writer subject whose writer and canonical schemas the test writes."""
    folder = tmp_path / "schemas" / "s"
    folder.mkdir(parents=True)
    return folder


def make_subject(folder: Path, writer_fields: list[dict], canonical_fields: list[dict]) -> Any:
    (folder / "v1.avsc").write_text(json.dumps(writer(writer_fields)))
    (folder / "canonical.avsc").write_text(json.dumps(writer(canonical_fields)))
    return load_subject(folder.parent, folder.name)


def curate(subject: Any, payloads: list[dict]) -> tuple[list[dict], list[str]]:
    lines = [
        json.dumps(
            {
                "event_id": f"e{n}",
                "received_at": "2026-11-27T10:00:00.000000Z",
                "schema_version": "v1",
                "payload": payload,
            }
        )
        for n, payload in enumerate(payloads)
    ]
    result = transform([gzip.compress(("\n".join(lines) + "\n").encode())], subject)
    rows = [
        {k: v for k, v in row.items() if not k.startswith("_")} for row in result.table.to_pylist()
    ]
    return rows, [reject.message for reject in result.rejects]


def test_durations_resolve_to_seconds_and_numbers_stay_seconds(subject_dir: Path) -> None:
    duration = {"type": "string", "logicalType": "iso-duration-seconds"}
    subject = make_subject(
        subject_dir,
        [{"name": "duration", "type": ["null", duration], "default": None, "lenient": True}],
        [{"name": "seconds", "type": ["null", "double"], "default": None, "aliases": ["duration"]}],
    )
    rows, rejects = curate(
        subject,
        [{"duration": "PT1M0.5S"}, {"duration": 42}, {"duration": ""}, {}, {"duration": "P1Y"}],
    )
    assert rows == [{"seconds": 60.5}, {"seconds": 42.0}, {"seconds": None}, {"seconds": None}]
    assert len(rejects) == 1
    assert "duration: 'P1Y': years and months have no fixed length in seconds" in rejects[0]


def test_blank_times_are_null_only_where_lenient(subject_dir: Path) -> None:
    iso = {"type": "string", "logicalType": "iso-timestamp-millis"}
    subject = make_subject(
        subject_dir,
        [
            {"name": "at", "type": ["null", iso], "default": None, "lenient": True},
            {"name": "strict", "type": ["null", iso], "default": None},
        ],
        [
            {
                "name": "at",
                "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}],
                "default": None,
            },
            {
                "name": "strict",
                "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}],
                "default": None,
            },
        ],
    )
    rows, rejects = curate(subject, [{"at": ""}, {"at": "  "}, {"strict": ""}])
    assert rows == [{"at": None, "strict": None}, {"at": None, "strict": None}]
    assert rejects == [
        "s v1: strict: '' is not an ISO-8601 time with a zone (e.g. 2026-11-27T10:00:00.000Z)"
    ]


def test_item_key_reads_a_list_of_objects_as_their_values(subject_dir: Path) -> None:
    tags = ["null", {"type": "array", "items": "string"}]
    subject = make_subject(
        subject_dir,
        [{"name": "tags", "type": tags, "default": None, "item_key": "tagName"}],
        [{"name": "tags", "type": tags, "default": None}],
    )
    rows, rejects = curate(
        subject,
        [
            {"tags": [{"tagId": 1, "tagName": "VIP"}, {"tagId": 2, "tagName": "Billing"}]},
            {"tags": ["plain"]},
            {"tags": []},
            {"tags": None},
            {"tags": [{"tagId": 3}]},
        ],
    )
    assert rows == [
        {"tags": ["VIP", "Billing"]},
        {"tags": ["plain"]},
        {"tags": []},
        {"tags": None},
    ]
    assert len(rejects) == 1 and "tags" in rejects[0]


@pytest.mark.parametrize(
    ("field", "problem"),
    [
        ({"name": "x", "type": "string", "item_key": "k"}, "'item_key' applies to array fields"),
        (
            {"name": "x", "type": {"type": "array", "items": "string"}, "item_key": ""},
            "'item_key' must be a key name",
        ),
        ({"name": "x", "type": "string", "lenient": True}, "'lenient' applies to int"),
        (
            {"name": "x", "type": {"type": "long", "logicalType": "iso-duration-seconds"}},
            "needs type string",
        ),
    ],
)
def test_misused_extensions_are_refused_naming_the_field(
    subject_dir: Path, field: dict, problem: str
) -> None:
    with pytest.raises(SchemaError, match=problem):
        make_subject(subject_dir, [field], [{"name": "y", "type": "string", "default": ""}])


# The `pull` setting of subject.json ------------------------------------------------------------


@pytest.fixture
def schemas(tmp_path: Path) -> Path:
    return Path(shutil.copytree(DEFAULT_SCHEMAS_DIR, tmp_path / "schemas"))


def test_shipped_pull_settings() -> None:
    pull = load_subject(DEFAULT_SCHEMAS_DIR, "completed_contact").rules.pull
    assert pull is not None
    assert (pull.endpoint, pull.records) == ("contacts/completed", "completedContacts")
    assert pull.sync_by is not None and pull.sync_by.keys == ("last_update_time", "lastUpdateTime")
    assert [pull.writer_for(v) for v in ("20.0", "21.0", "25.0", "26.0", "34.0")] == [
        None,
        "v1",
        "v1",
        "v2",
        "v2",
    ]
    states = load_subject(DEFAULT_SCHEMAS_DIR, "agent_state_history").rules
    assert states.pull is not None and states.pull.sync_by is None
    assert states.event_id({"agentId": 7, "agentSessionId": "12", "stateIndex": 3}) == "7:12:3"
    assert load_subject(DEFAULT_SCHEMAS_DIR, "call_event").rules.pull is None


@pytest.mark.parametrize(
    ("pull", "message"),
    [
        ("contacts", "pull: must be an object"),
        ({"endpont": "x"}, "pull.endpont: unknown setting; did you mean 'endpoint'?"),
        ({"endpoint": "/contacts/../x", "records": "r"}, "pull.endpoint: '/contacts/../x'"),
        ({"endpoint": "contacts/completed", "records": "a b"}, "pull.records: 'a b'"),
        (
            {"endpoint": "contacts/completed", "records": "r", "writer_by_api_version": {}},
            "pull.writer_by_api_version: must map",
        ),
        (
            {"endpoint": "e", "records": "r", "writer_by_api_version": {"new": "v1"}},
            "'new' is not an API version",
        ),
        (
            {"endpoint": "e", "records": "r", "writer_by_api_version": {"21.0": "v3"}},
            "21.0: 'v3' is not a writer version of the subject (v1, v2)",
        ),
        (
            {
                "endpoint": "e",
                "records": "r",
                "writer_by_api_version": {"21.0": "v1"},
                "sync_by": "skill_name",
            },
            "pull.sync_by: 'skill_name' must be a timestamp field",
        ),
    ],
)
def test_schemas_check_names_a_bad_pull_setting(
    schemas: Path, capsys: pytest.CaptureFixture[str], pull: Any, message: str
) -> None:
    path = schemas / "completed_contact" / "subject.json"
    document = json.loads(path.read_text())
    document["pull"] = pull
    path.write_text(json.dumps(document))
    assert main(["schemas", "check", "--schemas-dir", str(schemas)]) == 2
    error = capsys.readouterr().err
    assert "completed_contact/subject.json" in error
    assert message in error
    assert len(error.strip().splitlines()) == 1
