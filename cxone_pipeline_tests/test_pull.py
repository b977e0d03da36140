"""Pulling CXone's history into staging and curating it, against the simulator over HTTP:
pages, faults, API versions, updates over time, and pushes meeting pulls in one row."""

from __future__ import annotations

import gzip
import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from cxone_pipeline.curate import curate_hour
from cxone_pipeline.cxone.reporting import utc_z
from cxone_pipeline.lake.layout import (
    CHANGES,
    parse_change_marker,
    partition_hour,
    zone_prefix,
)
from cxone_pipeline.lake.store import LocalStore, Store
from cxone_pipeline.pull import PullError, pull_hours, stage_records, sync_since, sync_updates
from cxone_pipeline.registry import SubjectSchemas, load_subject
from cxone_pipeline.resolve import read_rejects
from cxone_pipeline.settings import DEFAULT_SCHEMAS_DIR
from cxone_pipeline_tests.cxone_simulator import (
    CXoneSimulator,
    agent_states,
    completed_contacts,
)
from cxone_pipeline_tests.dagster_fixtures import START, closed_hour
from cxone_pipeline_tests.landing_fixtures import AUTH, running_landing, staged_envelopes

CONTACTS = load_subject(DEFAULT_SCHEMAS_DIR, "completed_contact")
STATES = load_subject(DEFAULT_SCHEMAS_DIR, "agent_state_history")
FIRST_HOUR = partition_hour(START)
COMPLETED = "contacts/completed"


def pull(
    sim: CXoneSimulator,
    store: Store,
    hour: datetime,
    api_version: str = "30.0",
    schemas: SubjectSchemas = CONTACTS,
) -> Any:
    (report,) = pull_hours(sim.config(api_version), store, schemas, [hour], FIRST_HOUR)
    return report


def rows(store: Store, hour: datetime, schemas: SubjectSchemas = CONTACTS) -> list[dict]:
    outcome = curate_hour(store, schemas, hour)
    assert outcome.rejected == 0, outcome.result.rejects[:3]
    return sorted(outcome.result.table.to_pylist(), key=lambda row: row["_event_id"])


def markers(store: Store, subject: str = "completed_contact") -> list[datetime]:
    found = [parse_change_marker(info.key) for info in store.list(zone_prefix(CHANGES, subject))]
    return sorted(marker.hour for marker in found if marker is not None)


def pulled_objects(store: Store, subject: str = "completed_contact") -> list[str]:
    return [e["_key"] for e in staged_envelopes(store, subject)]


def test_an_hour_is_pulled_across_pages_a_429_and_a_revoked_token(
    sim: CXoneSimulator, store: Store
) -> None:
    hour = closed_hour(5)
    contacts = sim.add_troubled_hour(hour, 25, "30.0", page_cap=7)
    sim.add_contacts(completed_contacts(hour + timedelta(hours=1), 3, first_id=8_000_000_000))

    report = pull(sim, store, hour)

    assert (report.records, report.pages, report.total_records) == (25, 4, 25)
    assert report.staged.records_per_hour == {hour: 25}
    assert (report.writer_version, report.records_in_window) == ("v2", 25)
    assert sim.statuses("GET", sim.reporting_path("30.0", COMPLETED)) == [
        429,
        200,
        401,
        200,
        200,
        200,
    ]
    envelopes = staged_envelopes(store, "completed_contact")
    assert len({e["_key"] for e in envelopes}) == 1
    assert envelopes[0]["_key"].split("/")[-1].startswith("pull-")
    assert sorted(e["event_id"] for e in envelopes) == [str(c["contactId"]) for c in contacts]
    assert {e["schema_version"] for e in envelopes} == {"v2"}
    by_id = {e["event_id"]: e["payload"] for e in envelopes}
    assert by_id[str(contacts[1]["contactId"])] == contacts[1]
    assert markers(store) == [hour]


def test_a_re_pull_of_unchanged_records_adds_nothing_and_changed_ones_add_an_object(
    sim: CXoneSimulator, local_store: Store
) -> None:
    hour = closed_hour(5)
    sim.add_contacts(completed_contacts(hour, 10))
    first = pull(sim, local_store, hour)
    again = pull(sim, local_store, hour)
    assert (first.staged.objects_written, again.staged.objects_written) == (1, 0)
    assert again.staged.objects_skipped == 1
    assert len(set(pulled_objects(local_store))) == 1
    assert len(markers(local_store)) == 1

    sim.update_contact(7_000_000_003, dispositionNotes="called back")
    changed = pull(sim, local_store, hour)
    assert changed.staged.objects_written == 1
    assert len(set(pulled_objects(local_store))) == 2


def test_curated_columns_are_the_same_whatever_the_api_version(
    sim: CXoneSimulator, tmp_path: Path
) -> None:
    hour = closed_hour(5)
    sim.add_contacts(completed_contacts(hour, 14))
    curated = {}
    for version in ("21.0", "30.0"):
        store = LocalStore(tmp_path / version)
        assert pull(sim, store, hour, version).writer_version == ("v1" if version < "26" else "v2")
        curated[version] = rows(store, hour)

    old, new = curated["21.0"], curated["30.0"]
    assert list(old[0]) == list(new[0])  # same columns, same order
    assert [r["contact_id"] for r in old] == [7_000_000_000 + n for n in range(14)]
    current_only = {"end_reason", "routing_attribute", "high_proficiency", "low_proficiency"}
    current_only |= {"division_no", "_schema_version", "_received_at"}
    for before, after in zip(old, new, strict=True):
        assert {k: v for k, v in before.items() if k not in current_only} == {
            k: v for k, v in after.items() if k not in current_only
        }
        assert before["end_reason"] is None and after["end_reason"] == "Contact Hung Up"
    assert (old[0]["_schema_version"], new[0]["_schema_version"]) == ("v1", "v2")

    by_id = {row["contact_id"] - 7_000_000_000: row for row in new}
    assert by_id[0]["contact_start"] == hour
    assert by_id[0]["tags"] == ["VIP"] and by_id[1]["tags"] == []
    assert by_id[1]["acw_seconds"] is None  # "" for a number is null
    assert by_id[0]["acw_seconds"] == 30.0
    assert by_id[2]["hold_seconds"] == 1234.5  # "1,234.5"
    assert by_id[3]["is_refused"] is True  # "True"
    assert by_id[4]["is_outbound"] is True and by_id[5]["is_outbound"] is False
    assert by_id[0]["from_address"] == "+15550000000"
    assert by_id[0]["in_queue_seconds"] == 20.5
    assert by_id[0]["_unmapped_fields"] is None


def test_an_empty_hour_is_a_204_and_stages_nothing(sim: CXoneSimulator, local_store: Store) -> None:
    hour = closed_hour(5)
    report = pull(sim, local_store, hour)
    assert (report.records, report.pages, report.total_records) == (0, 1, 0)
    assert report.staged.objects_written == 0
    assert pulled_objects(local_store) == []
    assert curate_hour(local_store, CONTACTS, hour).rows == 0


def test_a_writer_mapping_the_api_contradicts_stops_the_pull(
    sim: CXoneSimulator, local_store: Store, tmp_path: Path
) -> None:
    schemas_dir = Path(shutil.copytree(DEFAULT_SCHEMAS_DIR, tmp_path / "schemas"))
    rules = schemas_dir / "completed_contact" / "subject.json"
    document = json.loads(rules.read_text())
    document["pull"]["writer_by_api_version"] = {"21.0": "v1"}
    rules.write_text(json.dumps(document))
    hour = closed_hour(5)
    sim.add_contacts(completed_contacts(hour, 3))
    with pytest.raises(PullError) as raised:
        pull(sim, local_store, hour, "30.0", load_subject(schemas_dir, "completed_contact"))
    message = str(raised.value)
    assert "CXONE_API_VERSION 30.0 answers completed_contact records that fit writer v2" in message
    assert "missing required field(s) contactStart" in message
    assert pulled_objects(local_store) == []


def test_an_api_version_older_than_every_mapping_is_refused_before_connecting(
    sim: CXoneSimulator, local_store: Store
) -> None:
    with pytest.raises(PullError, match=r"CXONE_API_VERSION 20\.0 is older"):
        pull(sim, local_store, closed_hour(5), "20.0")
    assert sim.seen == []


def test_agent_state_history_rows_with_composite_ids_and_seconds(
    sim: CXoneSimulator, local_store: Store
) -> None:
    hour = closed_hour(5)
    sim.agent_states = agent_states(hour, agents=3, states_per_agent=4)
    sim.page_cap = 5
    report = pull(sim, local_store, hour, schemas=STATES)
    assert (report.records, report.pages) == (12, 3)
    curated = rows(local_store, hour, STATES)
    assert [r["_event_id"] for r in curated][:2] == ["30000:900000:1", "30000:900000:2"]
    first = curated[0]
    assert first["duration_seconds"] == 30.5  # PT0M30.5S
    assert first["start_date"] == hour
    assert (first["agent_state_name"], first["state_index"]) == ("LoggedIn", 1)
    assert all(r["duration_seconds"] == int(r["duration_seconds"]) + 0.5 for r in curated)


# Keeping it complete: updatedSince ---------------------------------------------------------


def test_sync_stages_updates_under_their_own_hours_and_moves_its_cursor(
    sim: CXoneSimulator, local_store: Store
) -> None:
    days_ago, hours_ago = closed_hour(50), closed_hour(3)
    sim.add_contacts(completed_contacts(days_ago, 4))
    sim.add_contacts(completed_contacts(hours_ago, 4, first_id=8_000_000_000))
    since = datetime.now(timezone.utc) - timedelta(minutes=1)  # every contact is older
    sim.update_contact(7_000_000_001, dispositionNotes="refund agreed")
    newest = sim.update_contact(8_000_000_002, tags=[{"tagId": 9, "tagName": "Escalated"}])

    report = sync_updates(sim.config(), local_store, CONTACTS, since, 10, FIRST_HOUR)

    assert (report.records, report.complete) == (2, True)
    assert report.cursor == datetime.fromisoformat(newest["lastUpdateTime"].replace("Z", "+00:00"))
    assert report.staged.records_per_hour == {days_ago: 1, hours_ago: 1}
    assert markers(local_store) == [days_ago, hours_ago]
    seen = sim.reporting_seen[0]
    assert seen["orderBy"] == "lastUpdateTime asc"
    assert seen["updatedSince"].endswith("Z") and "startDate" not in seen
    staged = {e["event_id"]: e for e in staged_envelopes(local_store, "completed_contact")}
    assert staged["7000000001"]["payload"]["dispositionNotes"] == "refund agreed"
    assert staged["8000000002"]["schema_version"] == "v2"

    again = sync_updates(sim.config(), local_store, CONTACTS, report.cursor, 10, FIRST_HOUR)
    assert again.staged.objects_written == 0  # only the cursor's own update, staged already
    assert again.cursor == report.cursor


def test_sync_pages_on_the_update_time_past_ties_and_a_page_budget(
    sim: CXoneSimulator, local_store: Store
) -> None:
    hour = closed_hour(30)
    contacts = completed_contacts(hour, 17)
    for contact in contacts[:9]:  # more identical update times than fit in a page
        contact["lastUpdateTime"] = utc_z(hour + timedelta(minutes=30))
    sim.add_contacts(contacts)
    sim.page_cap = 4
    since = hour - timedelta(hours=1)

    partial = sync_updates(sim.config(), local_store, CONTACTS, since, 2, FIRST_HOUR)
    assert (partial.pages, partial.complete) == (2, False)
    rest = sync_updates(sim.config(), local_store, CONTACTS, partial.cursor, 50, FIRST_HOUR)
    assert rest.complete
    staged_ids = {e["event_id"] for e in staged_envelopes(local_store, "completed_contact")}
    assert staged_ids == {str(c["contactId"]) for c in contacts}


def test_the_sync_cursor_is_never_older_than_30_days() -> None:
    now = datetime(2026, 11, 29, 12, tzinfo=timezone.utc)
    lookback = timedelta(hours=24)
    assert sync_since(None, now, lookback) == now - lookback
    assert sync_since(now - timedelta(days=3), now, lookback) == now - timedelta(days=3)
    assert sync_since(now - timedelta(days=45), now, lookback) == now - timedelta(days=30)


# Pushes, pulls and updates of one contact: the copy with the latest lastUpdateTime wins ---


def push(store: Store, payloads: list[dict[str, Any]]) -> None:
    with running_landing(store) as url:
        response = httpx.post(f"{url}/ingest/completed_contact", json=payloads, headers=AUTH)
    assert response.status_code == 202, response.text


def test_re_pulling_after_cxone_updated_contacts_replaces_values_without_adding_rows(
    sim: CXoneSimulator, local_store: Store
) -> None:
    hour = closed_hour(5)
    sim.add_contacts(completed_contacts(hour, 6))
    pull(sim, local_store, hour)
    assert len(rows(local_store, hour)) == 6

    sim.update_contact(7_000_000_002, dispositionNotes="refund agreed", primaryDispositionId=9)
    sim.update_contact(7_000_000_004, tags=[{"tagId": 9, "tagName": "Escalated"}])
    pull(sim, local_store, hour)

    curated = {r["contact_id"] - 7_000_000_000: r for r in rows(local_store, hour)}
    assert len(curated) == 6
    assert (curated[2]["disposition_notes"], curated[2]["primary_disposition_id"]) == (
        "refund agreed",
        9,
    )
    assert curated[4]["tags"] == ["Escalated"]
    assert curated[3]["disposition_notes"] == "resolved"


def test_push_and_pull_of_one_contact_become_one_row_with_the_newest_values(
    sim: CXoneSimulator, local_store: Store
) -> None:
    hour = closed_hour(5)
    (contact,) = completed_contacts(hour, 1)
    # What a Studio script posts when the contact ends: current names, the id as a string,
    # no lastUpdateTime and no disposition yet.
    studio = {
        "contactId": str(contact["contactId"]),
        "contactStartDate": contact["contactStartDate"],
        "skillId": contact["skillId"],
        "agentId": contact["agentId"],
        "fromAddress": contact["fromAddress"],
        "toAddress": contact["toAddress"],
        "mediaTypeId": 4,
        "totalDurationSeconds": 290,
    }
    push(local_store, [studio])
    sim.add_contacts([contact])
    pull(sim, local_store, hour)

    (row,) = rows(local_store, hour)
    assert row["contact_id"] == contact["contactId"]
    assert row["total_duration_seconds"] == float(contact["totalDurationSeconds"])
    assert row["disposition_notes"] == "resolved"
    assert row["_schema_version"] == "v2"


@pytest.mark.parametrize("order", ["push after pull", "push before pull"])
def test_a_pushed_stale_copy_never_overrides_a_newer_pulled_one(
    sim: CXoneSimulator, local_store: Store, order: str
) -> None:
    hour = closed_hour(5)
    (contact,) = completed_contacts(hour, 1)
    sim.add_contacts([contact])
    updated = sim.update_contact(contact["contactId"], dispositionNotes="refund agreed")
    # What a Studio script saw before CXone updated the contact: an older lastUpdateTime.
    stale = {
        **contact,
        "dispositionNotes": "pending",
        "lastUpdateTime": contact["contactStartDate"],
    }
    if order == "push before pull":
        push(local_store, [stale])
    pull(sim, local_store, hour)
    if order == "push after pull":
        push(local_store, [stale])

    (row,) = rows(local_store, hour)
    assert row["disposition_notes"] == "refund agreed"
    assert row["last_update_time"] == datetime.fromisoformat(
        updated["lastUpdateTime"].replace("Z", "+00:00")
    )


def test_an_update_reaches_curated_through_the_sync(
    sim: CXoneSimulator, local_store: Store
) -> None:
    hour = closed_hour(30)
    sim.add_contacts(completed_contacts(hour, 3))
    pull(sim, local_store, hour)
    since = datetime.now(timezone.utc) - timedelta(minutes=1)
    sim.update_contact(7_000_000_001, dispositionNotes="refund agreed")
    sync_updates(sim.config(), local_store, CONTACTS, since, 10, FIRST_HOUR)

    curated = rows(local_store, hour)
    assert len(curated) == 3
    assert curated[1]["disposition_notes"] == "refund agreed"


def test_pulled_envelopes_read_back_as_gzip_ndjson(sim: CXoneSimulator, local_store: Store) -> None:
    hour = closed_hour(5)
    sim.add_contacts(completed_contacts(hour, 2))
    pull(sim, local_store, hour)
    (key,) = set(pulled_objects(local_store))
    lines = gzip.decompress(local_store.get(key)).decode().splitlines()
    envelope = json.loads(lines[0])
    assert set(envelope) == {"event_id", "received_at", "schema_version", "payload"}
    assert envelope["received_at"].endswith("Z")


def test_a_record_with_a_lone_surrogate_is_staged_and_quarantined_alone(local_store: Store) -> None:
    """A .NET API cutting free text mid-emoji sends "\\ud83d" alone. A puller cannot ask CXone
    to fix it: the hour is staged (escaped), the record quarantined, the others curated, and a
    sync reading it moves on."""
    hour = closed_hour(5)
    records = completed_contacts(hour, 3)
    records[1]["dispositionNotes"] = "call back \ud83d"
    staged = stage_records(
        local_store, CONTACTS, records, "v2", hour + timedelta(hours=2), FIRST_HOUR
    )
    assert staged.objects_written == 1 and staged.records_per_hour == {hour: 3}

    outcome = curate_hour(local_store, CONTACTS, hour)

    assert sorted(outcome.result.table.column("contact_id").to_pylist()) == [
        records[0]["contactId"],
        records[2]["contactId"],
    ]
    [reject] = outcome.result.rejects
    assert reject.envelope["event_id"] == str(records[1]["contactId"])
    assert "is not valid Unicode text" in reject.message
    written = read_rejects(local_store.get(outcome.quarantine_key))
    assert written[0]["payload"]["dispositionNotes"] == "call back \ud83d"


def test_updates_of_contacts_older_than_the_lake_are_counted_not_staged(
    local_store: Store,
) -> None:
    """Staged under the hour each sync pulled them, every update of a contact that started
    before the first partition would be curated once more in another hour."""
    records = completed_contacts(FIRST_HOUR - timedelta(hours=1), 2) + completed_contacts(
        FIRST_HOUR + timedelta(hours=1), 1, first_id=8_000_000_000
    )
    for pulled_at in (FIRST_HOUR + timedelta(hours=30), FIRST_HOUR + timedelta(hours=32)):
        staged = stage_records(local_store, CONTACTS, records, "v2", pulled_at, FIRST_HOUR)
        assert staged.before_first_partition == 2
        assert staged.records_per_hour == {FIRST_HOUR + timedelta(hours=1): 1}
    keys = [e["_key"] for e in staged_envelopes(local_store, "completed_contact")]
    assert len(keys) == 1  # the one contact inside the lake, once: the re-pull added nothing
