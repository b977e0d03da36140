"""The drift loop closed: quarantined and unmapped records → `schemas propose --write` →
`schemas check` passes → a re-materialization curates them with the new columns filled."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, DagsterInvalidConfigError

from cxone_pipeline.cli import main
from cxone_pipeline.curate import curate_hour
from cxone_pipeline.defs.proposals import propose_schema_job
from cxone_pipeline.lake.layout import (
    curated_key,
    parse_proposal_key,
    partition_key,
    quarantine_key,
)
from cxone_pipeline.lake.store import ObjectNotFound
from cxone_pipeline.registry import load_subject
from cxone_pipeline.registry.drift import read_drift
from cxone_pipeline.registry.propose import ProposalError, propose, write_proposal
from cxone_pipeline.resolve import read_parquet
from cxone_pipeline.settings import DEFAULT_SCHEMAS_DIR
from cxone_pipeline_tests.dagster_fixtures import (
    CALL_PAYLOADS,
    Lake,
    call_events,
    closed_hour,
    envelope,
    local_lake,
    materialize_hour,
    s3_lake,
    stage,
)

SUBJECT = "call_event"
UTC = timezone.utc


def next_shape(n: int) -> dict[str, Any]:
    """CXone's next call event, declared v5 by the sender: new fields, skillId renamed to
    skillNumber, ISO-8601 times, a nested queue object, holdSeconds only sometimes."""
    payload: dict[str, Any] = {
        "contactId": 7000 + n,
        "customerId": f"c-{n}",
        "duration": 40 + n,
        "agentId": "201",
        "direction": "INBOUND",
        "skillNumber": 5 if n % 2 else 6,
        "startedAt": f"2026-11-29T09:1{n}:00.250Z",
        "answeredAt": f"2026-11-29T10:1{n}:03+01:00",
        "queue": {"id": 12, "name": "Sales"},
        "wrapUpCode": "RESOLVED",
        "tags": ["new"],
    }
    if n % 2:
        payload["holdSeconds"] = 12
    return payload


def with_extras(n: int) -> dict[str, Any]:
    """Undeclared: valid for v2, so curated as v2 with the other fields unmapped."""
    return {
        "customerId": f"c-u{n}",
        "duration": 9,
        "agentId": "301",
        "queueName": "Support",
        "csat": 4.5 if n else 4,
        "startedAt": "2026-11-29T09:00:00Z",
    }


def drifted_hour(lake: Lake, hour: datetime) -> None:
    at = hour + timedelta(minutes=7)
    events = call_events(hour)  # its e-4 declares v1 and carries an unmapped "queue"
    events.append(envelope("e-6", at, {**CALL_PAYLOADS["v3"], "skillId": 6}, "v3"))
    events += [envelope(f"n-{n}", at + timedelta(seconds=n), next_shape(n), "v5") for n in range(4)]
    events += [envelope(f"u-{n}", at + timedelta(seconds=n), with_extras(n)) for n in range(3)]
    stage(lake.store, SUBJECT, hour, events)


def curate(lake: Lake, instance: DagsterInstance, hour: datetime) -> dict[str, Any]:
    """Materialize the hour; the schema_drift check's evaluation."""
    evaluations = materialize_hour(lake, instance, hour).get_asset_check_evaluations()
    return next(e for e in evaluations if e.check_name == "schema_drift")


def rows(lake: Lake, hour: datetime) -> dict[str, dict[str, Any]]:
    table = read_parquet(lake.store.get(curated_key(SUBJECT, hour, 0)))
    return {row["_event_id"]: row for row in table.to_pylist()}


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()  # what Dagster logged before
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(params=["local", "s3"])
def drift_lake(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Lake:
    """A lake (local folder or bucket on the loopback S3 server) the command reads through
    CXONE_PIPELINE_LAKE_URL, with a registry copy of its own."""
    if request.param == "s3":
        env = request.getfixturevalue("s3_lake_env")
        lake = s3_lake(env["CXONE_PIPELINE_S3_ENDPOINT_URL"], request.getfixturevalue("s3_bucket"))
    else:
        env = {"CXONE_PIPELINE_LAKE_URL": str(tmp_path / "lake")}
        lake = local_lake(tmp_path / "lake")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    lake.schemas_dir = Path(shutil.copytree(DEFAULT_SCHEMAS_DIR, tmp_path / "schemas"))
    return lake


def test_quarantined_and_unmapped_records_are_recovered_by_the_proposal(
    drift_lake: Lake, instance: DagsterInstance, capsys: pytest.CaptureFixture[str]
) -> None:
    lake, hour = drift_lake, closed_hour(3)
    drifted_hour(lake, hour)
    drift = curate(lake, instance, hour)
    assert not drift.passed
    command = drift.metadata["propose_command"].value
    assert (
        command
        == f"cxone-pipeline schemas propose --subject call_event --partition {partition_key(hour)}"
    )
    assert drift.metadata["pending_proposal"].value == "none"
    assert sorted(rows(lake, hour)) == ["e-1", "e-2", "e-3", "e-4", "e-6", "u-0", "u-1", "u-2"]

    schemas = str(lake.schemas_dir)
    code, out, err = cli(capsys, *command.split()[1:], "--schemas-dir", schemas, "--write")
    assert (code, err) == (0, ""), err
    assert "v5.avsc: new writer version for 4 quarantined (declared v5)" in out
    assert "resolves 4 of 4 quarantined" in out
    assert "v6.avsc: new writer version for 3 unmapped (v2 + unmapped fields)" in out
    assert "resolves 3 of 3 unmapped" in out
    assert "skillNumber (v5) may be a rename of skill_id: 2 of its 2 distinct value(s)" in out
    assert "e-4  unmapped: declares v1, so it resolves with v1 again" in out
    folder = lake.schemas_dir / SUBJECT
    v5 = json.loads((folder / "v5.avsc").read_text())
    assert {f["name"]: f["type"] for f in v5["fields"]} == {
        "contactId": "long",
        "customerId": "string",
        "duration": "long",
        "agentId": "string",
        "direction": {
            "type": "enum",
            "name": "CallDirection",
            "symbols": ["INBOUND", "OUTBOUND", "INTERNAL"],
        },
        "skillNumber": "int",
        "startedAt": {"type": "string", "logicalType": "iso-timestamp-millis"},
        "answeredAt": {"type": "string", "logicalType": "iso-timestamp-millis"},
        "queue": {
            "type": "record",
            "name": "Queue",
            "fields": [{"name": "id", "type": "int"}, {"name": "name", "type": "string"}],
        },
        "wrapUpCode": "string",
        "tags": {"type": "array", "items": "string"},
        "holdSeconds": ["null", "int"],
    }
    canonical = json.loads((folder / "canonical.avsc").read_text())
    added = {f["name"]: f for f in canonical["fields"][9:]}
    assert list(added) == [
        "skill_number",
        "answered_at",
        "queue",
        "wrap_up_code",
        "hold_seconds",
        "csat",
        "queue_name",
    ]
    assert all(f["default"] is None and f["type"][0] == "null" for f in added.values())
    assert added["wrap_up_code"]["aliases"] == ["wrapUpCode"]
    skill_id = next(f for f in canonical["fields"] if f["name"] == "skill_id")
    assert skill_id["aliases"] == ["skillId"]  # the rename is suggested, not applied

    assert cli(capsys, "schemas", "check", "--schemas-dir", schemas)[0] == 0
    # Proposing again before the hour is re-curated proposes nothing new: the registry as it
    # is resolves those records now.
    code, out, _ = cli(capsys, *command.split()[1:], "--schemas-dir", schemas, "--json")
    again = json.loads(out)
    assert (code, again["versions"], again["files"]) == (0, [], {})
    assert again["resolved_by_existing"] == {"v5": 4, "v6": 3}
    drift = curate(lake, instance, hour)
    curated = rows(lake, hour)
    with pytest.raises(ObjectNotFound):  # nothing is left in quarantine
        lake.store.get(quarantine_key(SUBJECT, hour))
    for n in range(4):
        row = curated[f"n-{n}"]
        assert row["_schema_version"] == "v5" and row["_unmapped_fields"] is None
        assert (row["contact_id"], row["direction"], row["skill_id"]) == (7000 + n, "INBOUND", None)
        assert row["skill_number"] == (5 if n % 2 else 6)
        assert row["started_at"] == datetime(2026, 11, 29, 9, 10 + n, 0, 250_000, UTC)
        assert row["answered_at"] == datetime(2026, 11, 29, 9, 10 + n, 3, tzinfo=UTC)
        assert row["queue"] == {"id": 12, "name": "Sales"}
        assert (row["wrap_up_code"], row["hold_seconds"]) == ("RESOLVED", 12 if n % 2 else None)
    for n in range(3):
        row = curated[f"u-{n}"]
        assert (row["_schema_version"], row["_unmapped_fields"]) == ("v6", None)
        assert (row["queue_name"], row["csat"]) == ("Support", 4.5 if n else 4.0)
        assert row["started_at"] == datetime(2026, 11, 29, 9, tzinfo=UTC)
    # Declared v1 by its sender: no new version applies to it, as the proposal said.
    assert curated["e-4"]["_unmapped_fields"] == '{"queue":"sales"}'
    assert curated["e-3"]["skill_id"] == 5 and curated["e-3"]["skill_number"] is None
    assert drift.metadata["unmapped_fields"].value == {"queue": 1}


def test_without_write_nothing_changes_and_json_carries_the_summary(
    drift_lake: Lake, instance: DagsterInstance, capsys: pytest.CaptureFixture[str]
) -> None:
    hour = closed_hour(3)
    drifted_hour(drift_lake, hour)
    curate(drift_lake, instance, hour)
    before = {p.name: p.read_bytes() for p in (drift_lake.schemas_dir / SUBJECT).iterdir()}
    args = ["schemas", "propose", "--subject", SUBJECT, "--since", "6", "--json"]
    code, out, _ = cli(capsys, *args, "--schemas-dir", str(drift_lake.schemas_dir))
    assert code == 0
    after = {p.name: p.read_bytes() for p in (drift_lake.schemas_dir / SUBJECT).iterdir()}
    assert after == before
    report = json.loads(out)
    assert report["read"] == {"quarantined": 4, "unmapped": 4}
    assert [(v["version"], v["records"], v["resolved"]) for v in report["versions"]] == [
        ("v5", {"quarantined": 4}, {"quarantined": 4}),
        ("v6", {"unmapped": 3}, {"unmapped": 3}),
    ]
    assert report["renames"] == [
        {
            "sender_field": "skillNumber",
            "canonical_field": "skill_id",
            "version": "v5",
            "shared_values": 2,
            "distinct_values": 2,
            "examples": ["5", "6"],
            "accepted": False,
        }
    ]
    assert report["filled"]["queue"] == 4 and report["filled"]["hold_seconds"] == 2
    assert [(f["event_id"], f["code"]) for f in report["still_failing"]] == [("e-4", "unmapped")]
    assert sorted(report["files"]) == ["canonical.avsc", "v5.avsc", "v6.avsc"]
    assert report["notes"] == [
        "the columnar fast path does not resolve queue: with them, v1, v2, v3, v4, v5, v6 are "
        "resolved record by record (fastavro), several times slower (docs/benchmarks.md)"
    ]


def renamed_required(n: int) -> dict[str, Any]:
    """A v5 that renames a required canonical field: customerId → customerRef."""
    payload = {**CALL_PAYLOADS["v2"], "customerRef": f"c-{n}"}
    del payload["customerId"]
    return payload


def test_a_shape_that_cannot_pass_check_is_not_written_until_its_rename_is_accepted(
    lake: Lake, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lake.schemas_dir = Path(shutil.copytree(DEFAULT_SCHEMAS_DIR, tmp_path / "schemas"))
    hour = closed_hour(3)
    at = hour + timedelta(minutes=1)
    events = [envelope(f"r-{n}", at, renamed_required(n), "v5") for n in range(1, 3)]
    events += [envelope("e-1", at, {**CALL_PAYLOADS["v2"], "customerId": "c-1"}, "v2")]
    events += [envelope("e-2", at, {**CALL_PAYLOADS["v2"], "customerId": "c-2"}, "v2")]
    stage(lake.store, SUBJECT, hour, events)
    schemas = load_subject(lake.schemas_dir, SUBJECT)
    curate_hour(lake.store, schemas, hour)
    sample = read_drift(lake.store, schemas, [hour])

    refused = propose(lake.schemas_dir, sample)
    assert refused.files == {} and refused.versions == ()
    [not_proposed] = refused.not_proposed
    assert not_proposed.version == "v5"
    assert "canonical field 'customer_id': v5 has no field named" in not_proposed.problems[0]
    assert [(r.sender_field, r.canonical_field) for r in refused.renames] == [
        ("customerRef", "customer_id")
    ]
    with pytest.raises(ProposalError, match="nothing to write"):
        write_proposal(lake.schemas_dir, refused)
    assert not (lake.schemas_dir / SUBJECT / "v5.avsc").exists()
    with pytest.raises(ProposalError, match="no rename is suggested for that field"):
        propose(lake.schemas_dir, sample, accept_renames=["duration"])

    accepted = propose(lake.schemas_dir, sample, accept_renames=["customerRef"])
    assert [(v.version, v.resolved) for v in accepted.versions] == [("v5", {"quarantined": 2})]
    assert write_proposal(lake.schemas_dir, accepted).failures == []
    canonical = load_subject(lake.schemas_dir, SUBJECT).canonical
    customer = next(f for f in canonical.fields if f["name"] == "customer_id")
    assert customer["aliases"] == ["customerId", "customerRef"]
    assert "customer_ref" not in {f["name"] for f in canonical.fields}
    # Proposed against the registry before the write: refused now.
    with pytest.raises(ProposalError, match="changed since the proposal was made"):
        write_proposal(lake.schemas_dir, accepted)


PROPOSE_SCHEMA = propose_schema_job(["agent_state", SUBJECT])


def test_the_job_config_reads_no_environment_and_echoes_no_value(
    lake: Lake, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What an attack review did through the open UI: config that reads a variable."""
    monkeypatch.setenv("PLANTED_SECRET", "canary-7f3a")
    attacks = [
        {"subject": {"env": "PLANTED_SECRET"}},
        {"subject": SUBJECT, "partitions": [{"env": "PLANTED_SECRET"}]},
        {"subject": SUBJECT, "accept_renames": [{"env": "PLANTED_SECRET"}]},
        {"subject": "not_a_subject"},
    ]
    for config in attacks:
        with pytest.raises(DagsterInvalidConfigError) as refused:
            PROPOSE_SCHEMA.execute_in_process(
                run_config={"ops": {"propose_schema_op": {"config": config}}},
                resources=lake.resources(),
                instance=instance,
            )
        assert "canary-7f3a" not in str(refused.value)
    assert instance.get_runs() == []


def test_the_job_leaves_a_proposal_in_the_lake_and_the_check_points_at_it(
    lake: Lake, instance: DagsterInstance, tmp_path: Path
) -> None:
    lake.schemas_dir = Path(shutil.copytree(DEFAULT_SCHEMAS_DIR, tmp_path / "schemas"))
    hour = closed_hour(3)
    drifted_hour(lake, hour)
    curate(lake, instance, hour)
    result = PROPOSE_SCHEMA.execute_in_process(
        run_config={
            "ops": {
                "propose_schema_op": {
                    "config": {"subject": SUBJECT, "partitions": [partition_key(hour)]}
                }
            }
        },
        resources=lake.resources(),
        instance=instance,
    )
    assert result.success
    proposal_json = result.output_for_node("propose_schema_op")
    found = parse_proposal_key(proposal_json)
    assert found is not None and found.name == "proposal.json"
    names = sorted(info.key.rsplit("/", 1)[1] for info in lake.store.list(found.folder))
    assert names == ["canonical.avsc", "proposal.json", "summary.txt", "v5.avsc", "v6.avsc"]
    stored = json.loads(lake.store.get(proposal_json))
    assert [v["version"] for v in stored["versions"]] == ["v5", "v6"]
    assert b"may be a rename of skill_id" in lake.store.get(found.folder + "summary.txt")
    # The registry is untouched; the next materialization's drift check names the proposal.
    assert not (lake.schemas_dir / SUBJECT / "v5.avsc").exists()
    drift = curate(lake, instance, hour)
    assert (
        drift.metadata["pending_proposal"].value == f"{lake.store.url.rstrip('/')}/{proposal_json}"
    )


def test_enums_maps_and_arrays_of_records_resolve_and_unreadable_shapes_say_why(
    lake: Lake, tmp_path: Path
) -> None:
    lake.schemas_dir = Path(shutil.copytree(DEFAULT_SCHEMAS_DIR, tmp_path / "schemas"))
    hour = closed_hour(3)
    at = hour + timedelta(minutes=1)
    labels = [{"en": "hi"}, {"fr": "salut"}, {"de": "hallo"}]
    events = [
        envelope(
            f"m-{n}",
            at,
            {
                **CALL_PAYLOADS["v2"],
                "channel": ["VOICE", "CHAT"][n % 2],
                "labels": labels[n],
                "legs": [{"agent": "a", "secs": n}],
            },
            "v6",
        )
        for n in range(3)
    ]
    events += [envelope(f"x-{n}", at, {"caller": "C-9", "seconds": 12}) for n in range(2)]
    stage(lake.store, SUBJECT, hour, events)
    schemas = load_subject(lake.schemas_dir, SUBJECT)
    curate_hour(lake.store, schemas, hour)
    proposal = propose(lake.schemas_dir, read_drift(lake.store, schemas, [hour]), ["channel"])
    [v6] = proposal.versions
    assert (v6.version, v6.resolved) == ("v6", {"quarantined": 3})
    added = {c.field: c.type for c in proposal.canonical_changes}
    assert added["channel"] == [
        "null",
        {"type": "enum", "name": "Channel", "symbols": ["CHAT", "VOICE"]},
    ]
    assert added["labels"] == ["null", {"type": "map", "values": "string"}]
    assert added["legs"][1]["items"]["name"] == "LegsItem"
    assert proposal.filled == {"channel": 3, "labels": 3, "legs": 3}
    # caller/seconds carry none of the required canonical fields: not proposed, and why.
    [v7] = proposal.not_proposed
    assert (v7.version, v7.records) == ("v7", 2)
    assert "canonical field 'customer_id': v7 has no field named" in v7.problems[0]
    assert [(f.event_id, f.code) for f in proposal.still_failing] == [
        ("x-0", "no_matching_schema"),
        ("x-1", "no_matching_schema"),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--partition", "2026-11-29"], "invalid hourly partition key '2026-11-29'"),
        (["--since", "0"], "between 1 and 744 hours, not 0"),
        (["--limit", "0"], "--limit 0: must be at least 1"),
    ],
)
def test_bad_arguments_exit_with_one_line(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(
        capsys,
        "schemas",
        "propose",
        "--subject",
        SUBJECT,
        "--schemas-dir",
        str(DEFAULT_SCHEMAS_DIR),
        *args,
    )
    assert (code, out) == (2, "")
    assert err.startswith("cxone-pipeline schemas: ") and message in err
    assert err.count("\n") == 1


def test_an_unknown_subject_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "schemas", "propose", "--subject", "Bad/Name", "--since", "1")
    assert code == 2 and "invalid subject 'Bad/Name'" in err
