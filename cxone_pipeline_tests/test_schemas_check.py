"""`cxone-pipeline schemas check` on the shipped registry and on broken copies of it."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from cxone_pipeline.cli import main
from cxone_pipeline.registry import load_subject
from cxone_pipeline.resolve import transform
from cxone_pipeline.settings import DEFAULT_SCHEMAS_DIR


@pytest.fixture
def schemas(tmp_path: Path) -> Path:
    return Path(shutil.copytree(DEFAULT_SCHEMAS_DIR, tmp_path / "schemas"))


def edit(path: Path, change) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document, indent=2))


def field(document: dict, name: str) -> dict:
    return next(f for f in document["fields"] if f["name"] == name)


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["schemas", "check", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_shipped_registry_passes_with_a_table(capsys):
    code, out, err = run(capsys, "--schemas-dir", str(DEFAULT_SCHEMAS_DIR))
    assert (code, err) == (0, "")
    lines = [line.split() for line in out.splitlines()]
    assert lines[0] == ["SUBJECT", "VERSION", "FINGERPRINT", "MODE", "STATUS"]
    rows = {(row[0], row[1]): (row[3], row[4]) for row in lines[1:]}
    assert rows == {
        ("agent_state", "v1"): ("-", "ok"),
        ("agent_state", "v2"): ("NONE", "ok"),
        ("agent_state_history", "v1"): ("-", "ok"),
        ("call_event", "v1"): ("-", "ok"),
        ("call_event", "v2"): ("NONE", "ok"),
        ("call_event", "v3"): ("FORWARD", "ok"),
        ("call_event", "v4"): ("NONE", "ok"),
        ("completed_contact", "v1"): ("-", "ok"),
        ("completed_contact", "v2"): ("NONE", "ok"),
    }


def test_json_report_carries_full_fingerprints(capsys, monkeypatch):
    monkeypatch.setenv("CXONE_PIPELINE_SCHEMAS_DIR", str(DEFAULT_SCHEMAS_DIR))
    code, out, _ = run(capsys, "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] is True
    subject = load_subject(DEFAULT_SCHEMAS_DIR, "call_event")
    assert report["subjects"]["call_event"]["fingerprint"] == subject.fingerprint
    versions = report["subjects"]["call_event"]["versions"]
    assert [(v["version"], v["mode"], v["status"]) for v in versions] == [
        ("v1", None, "ok"),
        ("v2", "NONE", "ok"),
        ("v3", "FORWARD", "ok"),
        ("v4", "NONE", "ok"),
    ]
    assert versions[2]["fingerprint"] == subject.version("v3").fingerprint


def test_canonical_field_added_without_default_fails(schemas, capsys):
    edit(
        schemas / "call_event" / "canonical.avsc",
        lambda d: d["fields"].append({"name": "queue_id", "type": "long"}),
    )
    code, out, err = run(capsys, "--schemas-dir", str(schemas))
    assert code == 1
    assert "call_event v1: canonical field 'queue_id'" in err
    assert "call_event v3: canonical field 'queue_id'" in err
    assert "no default" in err
    assert "incompatible" in out


def test_rename_without_alias_fails(schemas, capsys):
    edit(
        schemas / "call_event" / "canonical.avsc",
        lambda d: field(d, "agent_extension").pop("aliases"),
    )
    code, _, err = run(capsys, "--schemas-dir", str(schemas))
    assert code == 1
    assert "call_event v2: canonical field 'agent_extension'" in err
    assert "add an alias" in err
    assert "agent_state" not in err


def test_incompatible_type_change_fails(schemas, capsys):
    edit(schemas / "call_event" / "v3.avsc", lambda d: field(d, "duration").update(type="string"))
    code, _, err = run(capsys, "--schemas-dir", str(schemas))
    assert code == 1
    assert err.strip() == (
        "cxone-pipeline schemas check: call_event v3: canonical field 'duration_seconds' cannot "
        "read v3 field 'duration': a string cannot be read as a long"
    )


def test_unparseable_schema_is_a_one_line_error(schemas, capsys):
    (schemas / "agent_state" / "v2.avsc").write_text("{")
    code, _, err = run(capsys, "--schemas-dir", str(schemas))
    assert code == 2
    assert "v2.avsc: not valid JSON" in err
    assert len(err.strip().splitlines()) == 1


def test_a_new_version_is_a_file_drop(schemas, capsys):
    def v5(document: dict) -> None:
        field(document, "skillId").update(type="long")
        document["fields"].append({"name": "queueId", "type": ["null", "long"], "default": None})

    shutil.copy(schemas / "call_event" / "v3.avsc", schemas / "call_event" / "v5.avsc")
    edit(schemas / "call_event" / "v5.avsc", v5)
    code, out, _ = run(capsys, "--schemas-dir", str(schemas))
    assert code == 0
    assert ["call_event", "v5"] in [line.split()[:2] for line in out.splitlines()]
    payload = {
        "contactId": 1,
        "customerId": "c",
        "duration": 3,
        "agentId": "a",
        "direction": "INTERNAL",
        "skillId": 2**40,
        "startedAt": 0,
        "queueId": 9,
    }
    line = json.dumps({"event_id": "e", "received_at": "2026-11-27T19:00:00Z", "payload": payload})
    result = transform([gzip.compress(line.encode())], load_subject(schemas, "call_event"))
    assert result.rows_per_version == {"v5": 1}
    assert result.table.column("skill_id").to_pylist() == [2**40]
    assert result.unmapped_fields == {}
