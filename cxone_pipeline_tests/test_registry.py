"""Registry: loading, natural order, fingerprints, version detection and validation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cxone_pipeline.registry import (
    InvalidRecord,
    NoMatchingSchema,
    SchemaError,
    UnknownSchemaVersion,
    detect_version,
    discover_subjects,
    load_registry,
    load_subject,
    payload_problem,
)
from cxone_pipeline.settings import DEFAULT_SCHEMAS_DIR

V1 = {"customer_id": "c1", "call_duration_sec": 61, "agent_ext": "4021"}
V2 = {"customerId": "c1", "duration": 61, "agentId": "4021"}
V3 = {
    **V2,
    "contactId": 7,
    "direction": "INBOUND",
    "skillId": 12,
    "startedAt": 1_764_272_905_000,
}


@pytest.fixture
def registry_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(DEFAULT_SCHEMAS_DIR, tmp_path / "schemas"))


def test_shipped_registry_loads_in_natural_order():
    registry = load_registry(DEFAULT_SCHEMAS_DIR)
    assert sorted(registry) == [
        "agent_state",
        "agent_state_history",
        "call_event",
        "completed_contact",
    ]
    call_event = registry["call_event"]
    assert [v.version for v in call_event.versions] == ["v1", "v2", "v3", "v4"]
    assert call_event.canonical.version == "canonical"
    assert call_event.version("v2") is call_event.versions[1]
    assert call_event.version("v5") is None
    assert all(len(v.fingerprint) == 64 for v in call_event.versions)


def test_versions_sort_naturally(registry_copy: Path):
    folder = registry_copy / "call_event"
    for stem in ("v10", "v9"):
        shutil.copy(folder / "v3.avsc", folder / f"{stem}.avsc")
    subject = load_subject(registry_copy, "call_event")
    assert [v.version for v in subject.versions] == ["v1", "v2", "v3", "v4", "v9", "v10"]


def test_fingerprint_is_over_parsing_canonical_form(registry_copy: Path):
    path = registry_copy / "call_event" / "v2.avsc"
    before = load_subject(registry_copy, "call_event")
    document = json.loads(path.read_text())
    document["doc"] = "reworded documentation"
    path.write_text(json.dumps(document, indent=4))
    after = load_subject(registry_copy, "call_event")
    assert after.version("v2").fingerprint == before.version("v2").fingerprint
    assert after.fingerprint != before.fingerprint


def test_registry_fingerprint_changes_when_a_version_is_added(registry_copy: Path):
    before = load_subject(registry_copy, "call_event").fingerprint
    shutil.copy(registry_copy / "call_event" / "v3.avsc", registry_copy / "call_event" / "v5.avsc")
    assert load_subject(registry_copy, "call_event").fingerprint != before
    assert load_subject(registry_copy, "agent_state").fingerprint == (
        load_subject(DEFAULT_SCHEMAS_DIR, "agent_state").fingerprint
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        ('{"type": "record", "name": "X", "fields": [{"name": "a", "type": "strin"}]}', "strin"),
        ('{"type": "string"}', "must be an Avro record"),
        ('{"type": "record", "name": "X"}', "no 'fields' list"),
    ],
)
def test_invalid_schema_file_is_named(registry_copy: Path, content: str, problem: str):
    path = registry_copy / "call_event" / "v2.avsc"
    path.write_text(content)
    with pytest.raises(SchemaError) as caught:
        load_subject(registry_copy, "call_event")
    assert str(path) in str(caught.value)
    assert problem in str(caught.value)


def test_subject_without_writer_versions_is_an_error(tmp_path: Path):
    (tmp_path / "lonely").mkdir()
    shutil.copy(DEFAULT_SCHEMAS_DIR / "call_event" / "canonical.avsc", tmp_path / "lonely")
    assert discover_subjects(tmp_path) == ["lonely"]
    with pytest.raises(SchemaError, match="no writer schema"):
        load_subject(tmp_path, "lonely")


@pytest.fixture(scope="module")
def call_event():
    return load_subject(DEFAULT_SCHEMAS_DIR, "call_event")


@pytest.mark.parametrize(("payload", "version"), [(V1, "v1"), (V2, "v2"), (V3, "v3")])
def test_inferred_version_is_the_newest_that_validates(call_event, payload, version):
    assert detect_version(call_event, payload).version == version


def test_declared_version_wins_over_inference(call_event):
    both = {**V1, **V2}
    assert detect_version(call_event, both).version == "v2"
    assert detect_version(call_event, both, envelope_version="v1").version == "v1"
    assert detect_version(call_event, {**both, "_schema_version": "1"}, "v2").version == "v1"
    assert detect_version(call_event, {**both, "_schema_version": 2}).version == "v2"


def test_detection_failures_carry_their_quarantine_code(call_event):
    with pytest.raises(UnknownSchemaVersion) as unknown:
        detect_version(call_event, V2, envelope_version="v7")
    assert (unknown.value.code, unknown.value.declared) == ("unknown_schema_version", "v7")
    with pytest.raises(NoMatchingSchema, match="none of v1, v2, v3"):
        detect_version(call_event, {"foo": 1})
    with pytest.raises(InvalidRecord, match="duration"):
        detect_version(call_event, {**V2, "duration": "long"}, envelope_version="v2")


def test_fields_with_defaults_may_be_absent_but_not_null_when_not_nullable(call_event):
    v3 = call_event.version("v3")
    assert payload_problem(V3, v3) is None
    assert payload_problem({**V3, "transcript": None}, v3) is None
    assert "tags" in payload_problem({**V3, "tags": None}, v3)
    assert "missing required field(s) skillId" in payload_problem(
        {k: v for k, v in V3.items() if k != "skillId"}, v3
    )
    assert "direction" in payload_problem({**V3, "direction": "SIDEWAYS"}, v3)
    assert "skillId" in payload_problem({**V3, "skillId": 2**31}, v3)
    assert payload_problem({**V3, "extra": {"nested": True}}, v3) is None
