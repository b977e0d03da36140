"""`cxone-pipeline demo`: samples every version resolves, and a run against a real landing."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cxone_pipeline.curate import HourOutcome, curate_hour
from cxone_pipeline.demo import DEMO_SKILLS, SubjectSamples, Window
from cxone_pipeline.lake.layout import STAGING, parse_staging_key, partition_hour
from cxone_pipeline.lake.read import to_pandas
from cxone_pipeline.lake.store import LocalStore
from cxone_pipeline.marts.contact_kpis import SUBJECT_COLUMNS, contact_kpis
from cxone_pipeline.registry import SubjectSchemas, load_registry, load_subject
from cxone_pipeline.settings import DEFAULT_SCHEMAS_DIR
from cxone_pipeline_tests.dagster_fixtures import envelope, stage
from cxone_pipeline_tests.servers import cli_process, free_port, stop_process, wait_for_http

TOKEN = "demo-token"
HOUR = datetime(2026, 11, 27, 10, tzinfo=timezone.utc)
WINDOW = Window(HOUR, HOUR + timedelta(hours=1))
# The subjects whose curated rows carry their event time (subject.json), by that column.
EVENT_TIMES = {"completed_contact": "contact_start", "agent_state_history": "start_date"}


def curate_samples(store: LocalStore, schemas: SubjectSchemas, per_version: int) -> HourOutcome:
    """Stage `per_version` samples of every version into HOUR, undeclared, and curate it."""
    samples = SubjectSamples(schemas, "c0ffee")
    payloads = [
        payload
        for writer in schemas.versions
        for payload in samples.batch(writer, writer.version, per_version, WINDOW)
    ]
    stage(store, schemas.name, HOUR, [envelope(p["eventId"], HOUR, p) for p in payloads])
    return curate_hour(store, schemas, HOUR)


def test_samples_of_every_version_resolve_as_that_version(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    for schemas in load_registry(DEFAULT_SCHEMAS_DIR).values():
        for writer in schemas.versions:
            declared = {f["name"] for f in writer.document["fields"]}
            for payload in SubjectSamples(schemas, "0a").batch(writer, "x", 12, WINDOW):
                assert set(payload) - declared <= {"eventId", "demo_note"}
                assert declared <= set(payload)

        outcome = curate_samples(store, schemas, 12)
        # Inferred as their own version, none quarantined, no two with one event id.
        expected = {writer.version: 12 for writer in schemas.versions}
        assert outcome.result.rows_per_version == expected, schemas.name
        assert outcome.rejected == 0, schemas.name
        if schemas.name in EVENT_TIMES:
            times = outcome.result.table.column(EVENT_TIMES[schemas.name]).to_pylist()
            assert all(HOUR <= t < WINDOW.end for t in times), schemas.name


def test_extension_fields_get_iso_text_tag_objects_and_times_in_the_window() -> None:
    registry = load_registry(DEFAULT_SCHEMAS_DIR)
    contacts = registry["completed_contact"]
    samples = SubjectSamples(contacts, "c0ffee")
    current = samples.batch(contacts.versions[1], "v2", 4, WINDOW)
    assert [c["contactStartDate"] for c in current] == [
        "2026-11-27T10:07:30.000Z",
        "2026-11-27T10:22:30.000Z",
        "2026-11-27T10:37:30.000Z",
        "2026-11-27T10:52:30.000Z",
    ]
    assert current[0]["tags"] == [{"tagName": "tags-0"}]
    assert [c["skillName"] for c in current] == [name for _, name in DEMO_SKILLS]

    older = samples.batch(contacts.versions[0], "v1", 4, WINDOW)
    another_run = SubjectSamples(contacts, "beef01").batch(contacts.versions[1], "v2", 4, WINDOW)
    ids = [c["contactId"] for c in current + older + another_run]
    assert len(set(ids)) == 12
    assert older[0]["contactStart"] == "2026-11-27T10:07:30.000Z"

    states = registry["agent_state_history"]
    state = SubjectSamples(states, "c0ffee").batch(states.versions[0], "v1", 2, WINDOW)[1]
    assert (state["startDate"], state["duration"]) == ("2026-11-27T10:45:00.000Z", "PT1M1.5S")


def test_the_demo_contacts_give_the_mart_meaningful_numbers(tmp_path: Path) -> None:
    schemas = load_subject(DEFAULT_SCHEMAS_DIR, "completed_contact")
    outcome = curate_samples(LocalStore(tmp_path), schemas, 100)
    assert (outcome.rows, outcome.rejected) == (200, 0)

    contacts = to_pandas(outcome.result.table)
    kpis = contact_kpis(contacts, SUBJECT_COLUMNS["completed_contact"], HOUR.date()).to_pylist()
    assert [(k["skill_id"], k["skill_name"], k["contacts"], k["abandoned"]) for k in kpis] == [
        (4101, "Sales", 50, 17),
        (4102, "Support", 50, 13),
        (4103, "Billing", 50, 10),
        (4104, "Retention", 50, 9),
    ]
    for row in kpis:
        assert 100 < row["avg_handle_seconds"] < 700, row
        assert 10 < row["avg_queue_seconds"] < 150, row


def test_demo_posts_every_version_and_stages_the_previous_hour(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    env = {"CXONE_PIPELINE_LAKE_URL": str(lake), "CXONE_PIPELINE_INGEST_TOKEN": TOKEN}
    port = free_port()
    landing = cli_process(["serve", "--host", "127.0.0.1", "--port", str(port)], env)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", process=landing)
        demo = cli_process(
            ["demo", "--url", f"http://127.0.0.1:{port}", "--per-version", "20"],
            env,
            stdout=subprocess.PIPE,
            text=True,
        )
        output, _ = demo.communicate(timeout=120)
    finally:
        stop_process(landing)
    assert demo.returncode == 0, output
    assert "posted 20 call_event v3 events" in output
    assert "posted 20 call_event v4 events" in output
    assert "posted 20 completed_contact v2 events" in output
    closed = re.search(r"staged 80 call_event events into the closed hour (\S+) ", output)
    assert closed, output
    assert f"staged 40 completed_contact events into the closed hour {closed[1]} " in output
    previous = partition_hour(closed[1])

    store = LocalStore(lake)
    for subject, versions in (("call_event", 4), ("completed_contact", 2)):
        schemas = load_subject(DEFAULT_SCHEMAS_DIR, subject)
        expected = {f"v{n}": 20 for n in range(1, versions + 1)}
        hours = {parse_staging_key(info.key).hour for info in store.list(f"{STAGING}/{subject}/")}
        assert previous in hours

        imported = curate_hour(store, schemas, previous)
        assert imported.result.rows_per_version == expected, subject
        assert imported.rejected == 0, subject
        assert imported.result.unmapped_fields == {"demo_note": 2 * versions}
        posted = [curate_hour(store, schemas, hour) for hour in hours - {previous}]
        rows = {v: sum(o.result.rows_per_version.get(v, 0) for o in posted) for v in expected}
        assert rows == expected, subject
        codes: dict[str, int] = {}
        for outcome in posted:
            for code, n in outcome.result.rejects_per_code.items():
                codes[code] = codes.get(code, 0) + n
        assert codes == {"unknown_schema_version": 3, "no_matching_schema": 1}, subject
        unmapped = [
            json.loads(text)
            for outcome in posted
            for text in outcome.result.table.column("_unmapped_fields").to_pylist()
            if text
        ]
        assert len(unmapped) == 2 * versions
        assert {"demo_note": "unknown to every schema (0)"} in unmapped

    # Completed contacts are staged by their start: the import's in the closed hour.
    starts = imported.result.table.column("contact_start").to_pylist()
    assert all(previous <= start < previous + timedelta(hours=1) for start in starts)
