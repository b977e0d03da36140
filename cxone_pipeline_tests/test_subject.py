"""Subject rules (`schemas/<S>/subject.json`): loading, checking, event ids and event times."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from cxone_pipeline.cli import main
from cxone_pipeline.lake.envelope import ReservedEventId
from cxone_pipeline.registry import SchemaError, load_subject
from cxone_pipeline.registry.subject import SubjectRules
from cxone_pipeline.settings import DEFAULT_SCHEMAS_DIR

CANONICAL = {
    "type": "record",
    "name": "Contact",
    "fields": [
        {"name": "contact_id", "type": "long", "aliases": ["contactId"]},
        {"name": "agent_id", "type": ["null", "long"], "default": None, "aliases": ["agentId"]},
        {
            "name": "contact_start",
            "type": {"type": "long", "logicalType": "timestamp-millis"},
            "aliases": ["contactStart", "contactStartDate"],
        },
        {
            "name": "last_update_time",
            "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}],
            "default": None,
            "aliases": ["lastUpdateTime"],
        },
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "queue", "type": "string", "default": "main"},
    ],
}
WRITER = {
    "type": "record",
    "name": "Contact",
    "fields": [
        {"name": "contactId", "type": "long", "lenient": True},
        {"name": "agentId", "type": ["null", "long"], "default": None},
        {
            "name": "contactStartDate",
            "type": {"type": "string", "logicalType": "iso-timestamp-millis"},
        },
        {
            "name": "lastUpdateTime",
            "type": ["null", {"type": "string", "logicalType": "iso-timestamp-millis"}],
            "default": None,
        },
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}
RULES = {
    "event_id": "contact_id",
    "event_time": "contact_start",
    "keep": "latest",
    "keep_by": "last_update_time",
}


def write_subject(root: Path, rules: dict | None = RULES, name: str = "contact") -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "canonical.avsc").write_text(json.dumps(CANONICAL))
    (folder / "v1.avsc").write_text(json.dumps(WRITER))
    if rules is not None:
        (folder / "subject.json").write_text(json.dumps(rules))
    return root


def test_a_subject_without_the_file_keeps_the_default_rules() -> None:
    call_event = load_subject(DEFAULT_SCHEMAS_DIR, "call_event")
    assert call_event.rules == SubjectRules()
    assert call_event.rules.horizon_hours == 1
    assert call_event.rules.event_id({"eventId": "e-1"}) == "e-1"
    assert call_event.rules.event_id({"x": 1}, "key-9") == "key-9"
    assert call_event.rules.event_id({"x": 1}).startswith("sha256:")
    assert call_event.rules.event_time({"startedAt": "2026-11-27T10:00:00Z"}) is None


def test_ids_compare_as_text_and_come_from_any_spelling(tmp_path: Path) -> None:
    rules = load_subject(write_subject(tmp_path), "contact").rules
    assert rules.event_id({"contactId": 7_000_000_001}) == "7000000001"
    assert rules.event_id({"contactId": "7000000001"}) == "7000000001"
    assert rules.event_id({"contact_id": 7_000_000_001.0}) == "7000000001"
    # Missing or unusable: the default rule.
    assert rules.event_id({"contactId": True, "eventId": "e-2"}) == "e-2"
    assert rules.event_id({"note": "x"}).startswith("sha256:")
    assert rules.partitioned_by_event_time and rules.horizon_hours == 0


def test_composite_ids_join_their_parts(tmp_path: Path) -> None:
    root = write_subject(tmp_path, {"event_id": ["agent_id", "contact_id"]})
    rules = load_subject(root, "contact").rules
    assert rules.event_id({"agentId": 12, "contactId": "7"}) == "12:7"
    assert rules.event_id({"contactId": 7, "eventId": "fallback"}) == "fallback"


def test_event_times_read_iso_text_and_epoch_numbers(tmp_path: Path) -> None:
    rules = load_subject(write_subject(tmp_path), "contact").rules
    at = datetime(2026, 11, 27, 9, 0, 0, 123000, tzinfo=timezone.utc)
    assert rules.event_time({"contactStartDate": "2026-11-27T10:00:00.123+01:00"}) == at
    assert rules.event_time({"contactStart": 1_795_770_000_123}) == at
    assert rules.event_time({"contactStart": "2026-11-27T10:00:00"}) is None  # no zone
    assert rules.event_time({"contactStart": "yesterday"}) is None
    assert rules.event_time({}) is None


def test_derived_ids_cannot_be_supplied() -> None:
    rules = SubjectRules()
    with pytest.raises(ReservedEventId, match="reserved for ids the pipeline derives"):
        rules.event_id({"eventId": "sha256:" + "0" * 64})
    with pytest.raises(ReservedEventId, match="Idempotency-Key"):
        rules.event_id({}, "sha256:abc")


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"evnt_id": "contact_id"}, "evnt_id: unknown setting; did you mean 'event_id'?"),
        ({"event_id": "contactid"}, "'contactid' is not a field of canonical.avsc; did you mean"),
        ({"event_id": ["contact_id", 7]}, "event_id: 7 is not a field of canonical.avsc"),
        ({"event_id": "queue"}, "event_id: 'queue' has a default: every payload without it"),
        ({"event_time": "note"}, "event_time: 'note' must be a timestamp-millis or timestamp-"),
        ({"keep": "newest"}, "keep: 'newest': use 'first' (earliest received) or 'latest'"),
        ({"keep": "latest"}, "keep_by: keep 'latest' needs keep_by"),
        ({"keep_by": "note"}, "keep_by: only used with keep 'latest'"),
        ({"dedupe_horizon_hours": 48}, "dedupe_horizon_hours: 48 must be between 0 and 24"),
        ({"dedupe_horizon_hours": "1"}, "dedupe_horizon_hours: '1' is not a whole number"),
        (["contact_id"], "subject.json: must be a JSON object"),
    ],
)
def test_schemas_check_refuses_bad_rules_naming_the_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rules: object, message: str
) -> None:
    root = write_subject(tmp_path, None)
    (root / "contact" / "subject.json").write_text(json.dumps(rules))
    with pytest.raises(SchemaError, match=r"subject\.json"):
        load_subject(root, "contact")

    code = main(["schemas", "check", "--schemas-dir", str(root)])

    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1


def test_the_shipped_registry_and_a_rules_subject_pass_the_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = Path(shutil.copytree(DEFAULT_SCHEMAS_DIR, tmp_path / "schemas"))
    write_subject(root)
    assert main(["schemas", "check", "--schemas-dir", str(root)]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert ["contact", "v1"] in [row[:2] for row in rows]


def test_rules_change_the_registry_fingerprint(tmp_path: Path) -> None:
    root = write_subject(tmp_path)
    before = load_subject(root, "contact").fingerprint
    (root / "contact" / "subject.json").write_text(
        json.dumps({**RULES, "keep": "first"} | {"keep_by": None})
    )
    assert load_subject(root, "contact").fingerprint != before
