"""One row per event id across the whole subject: the dedupe horizon, keep policies, invalid
copies, event-time hours; on the local lake and on the S3 server."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from dagster import DagsterInstance, build_sensor_context

from cxone_pipeline.curate import HourOutcome, curate_hour
from cxone_pipeline.defs.sensors import build_staging_sensor
from cxone_pipeline.lake.layout import (
    CHANGES,
    curated_key,
    import_key,
    parse_change_marker,
    parse_staging_key,
    partition_hour,
    partition_key,
    quarantine_key,
    zone_prefix,
)
from cxone_pipeline.lake.store import ObjectNotFound, Store
from cxone_pipeline.registry import SubjectSchemas, load_subject
from cxone_pipeline.resolve import read_parquet, read_rejects
from cxone_pipeline.settings import DEFAULT_SCHEMAS_DIR
from cxone_pipeline_tests.dagster_fixtures import (
    CALL_PAYLOADS,
    START,
    Lake,
    closed_hour,
    envelope,
    materialize_hour,
    stage,
)
from cxone_pipeline_tests.landing_fixtures import AUTH, running_landing, staged_envelopes
from cxone_pipeline_tests.test_subject import write_subject

CALL_EVENT = load_subject(DEFAULT_SCHEMAS_DIR, "call_event")
H10 = datetime(2026, 3, 4, 10, tzinfo=timezone.utc)
H11 = H10 + timedelta(hours=1)
LATER = H10 + timedelta(days=10)  # every hour of these tests is closed by then
JUNK = {"customerId": "c-2", "duration": "not a number", "agentId": "a"}


def curate(store: Store, schemas: SubjectSchemas, hour: datetime) -> HourOutcome:
    return curate_hour(store, schemas, hour, now=LATER)


def curated(store: Store, subject: str, hour: datetime) -> list[dict]:
    try:
        return read_parquet(store.get(curated_key(subject, hour, 0))).to_pylist()
    except ObjectNotFound:
        return []


def quarantined(store: Store, subject: str, hour: datetime) -> list[str]:
    try:
        return [r["event_id"] for r in read_rejects(store.get(quarantine_key(subject, hour)))]
    except ObjectNotFound:
        return []


def ids(rows: list[dict]) -> list[str]:
    return [row["_event_id"] for row in rows]


def stage_retry_across_the_boundary(store: Store) -> None:
    stage(
        store,
        "call_event",
        H10,
        [envelope("e1", H11 - timedelta(milliseconds=100), CALL_PAYLOADS["v2"])],
    )
    stage(
        store,
        "call_event",
        H11,
        [
            envelope("e1", H11 + timedelta(seconds=1), CALL_PAYLOADS["v2"]),
            envelope("e2", H11 + timedelta(seconds=2), CALL_PAYLOADS["v1"]),
        ],
    )


@pytest.mark.parametrize("order", [(H10, H11), (H11, H10)], ids=["10-then-11", "11-then-10"])
def test_a_retry_across_the_hour_boundary_is_kept_once_in_the_first_hour(
    store: Store, order: tuple[datetime, datetime]
) -> None:
    stage_retry_across_the_boundary(store)

    outcomes = {hour: curate(store, CALL_EVENT, hour) for hour in order}

    assert ids(curated(store, "call_event", H10)) == ["e1"]
    assert ids(curated(store, "call_event", H11)) == ["e2"]
    assert outcomes[H11].result.duplicates_across_hours == 1
    assert outcomes[H10].result.duplicates_across_hours == 0
    assert outcomes[H11].events_read == 2  # its own rows and rejects, no neighbour's


def test_the_sensor_recurates_the_later_hour_when_the_earlier_copy_lands_late(
    lake: Lake, instance: DagsterInstance
) -> None:
    """A write that timed out at 10:59:59 lands after hour 11 (holding the retry) was curated."""
    h10, h11 = closed_hour(3), closed_hour(2)
    retry = envelope("e1", h11 + timedelta(seconds=1), CALL_PAYLOADS["v2"])
    stage(lake.store, "call_event", h11, [retry])
    materialize_hour(lake, instance, h11)
    assert ids(curated(lake.store, "call_event", h11)) == ["e1"]

    original = envelope("e1", h11 - timedelta(milliseconds=100), CALL_PAYLOADS["v2"])
    stage(lake.store, "call_event", h10, [original])
    sensor = build_staging_sensor(["call_event"], 30, partition_hour(START))
    with build_sensor_context(instance=instance, resources=lake.resources()) as context:
        result = sensor(context)

    requested = sorted(r.partition_key for r in result.run_requests)
    assert requested == [partition_key(h10), partition_key(h11)]
    for hour in (h11, h10):  # the order the runs happen to finish in does not matter
        materialize_hour(lake, instance, hour)
    assert ids(curated(lake.store, "call_event", h10)) == ["e1"]
    assert ids(curated(lake.store, "call_event", h11)) == []


def test_a_junk_copy_posted_first_no_longer_suppresses_the_real_event(store: Store) -> None:
    stage(
        store,
        "call_event",
        H10,
        [
            envelope("e1", H10 + timedelta(minutes=1), JUNK),
            envelope("e1", H10 + timedelta(minutes=2), CALL_PAYLOADS["v2"]),
        ],
    )
    outcome = curate(store, CALL_EVENT, H10)

    [row] = curated(store, "call_event", H10)
    assert (row["_event_id"], row["customer_id"], row["duration_seconds"]) == (
        "e1",
        "c-2",
        3_000_000_000,
    )
    assert quarantined(store, "call_event", H10) == []
    assert (outcome.rejected, outcome.result.superseded, outcome.result.duplicates_dropped) == (
        0,
        1,
        0,
    )


def test_an_invalid_copy_after_a_valid_one_is_superseded_not_quarantined(store: Store) -> None:
    stage(
        store,
        "call_event",
        H10,
        [
            envelope("e1", H10 + timedelta(minutes=1), CALL_PAYLOADS["v2"]),
            envelope("e1", H10 + timedelta(minutes=2), JUNK),
            envelope("e9", H10 + timedelta(minutes=3), JUNK),
        ],
    )
    outcome = curate(store, CALL_EVENT, H10)

    assert ids(curated(store, "call_event", H10)) == ["e1"]
    assert quarantined(store, "call_event", H10) == ["e9"]
    assert (outcome.rejected, outcome.result.superseded) == (1, 1)


def test_a_junk_copy_in_the_earlier_hour_is_superseded_by_the_valid_one_after_it(
    store: Store,
) -> None:
    stage(store, "call_event", H10, [envelope("e1", H11 - timedelta(seconds=1), JUNK)])
    stage(
        store, "call_event", H11, [envelope("e1", H11 + timedelta(seconds=1), CALL_PAYLOADS["v2"])]
    )

    early, late = curate(store, CALL_EVENT, H10), curate(store, CALL_EVENT, H11)

    assert curated(store, "call_event", H10) == [] and quarantined(store, "call_event", H10) == []
    assert ids(curated(store, "call_event", H11)) == ["e1"]
    assert (early.result.superseded, late.result.duplicates_across_hours) == (1, 0)


def test_copies_further_apart_than_the_horizon_are_different_events(store: Store) -> None:
    h13 = H10 + timedelta(hours=3)
    stage(store, "call_event", H10, [envelope("e1", H10, CALL_PAYLOADS["v2"])])
    stage(store, "call_event", h13, [envelope("e1", h13, CALL_PAYLOADS["v2"])])
    curate(store, CALL_EVENT, H10)
    curate(store, CALL_EVENT, h13)
    assert (
        ids(curated(store, "call_event", H10)) == ids(curated(store, "call_event", h13)) == ["e1"]
    )


@pytest.fixture
def contact(tmp_path: Path) -> SubjectSchemas:
    return load_subject(write_subject(tmp_path / "schemas"), "contact")


def contact_payload(contact_id: object, updated: str | None, note: str) -> dict:
    payload = {
        "contactId": contact_id,
        "contactStartDate": "2026-03-04T10:15:00.000Z",
        "note": note,
    }
    if updated is not None:
        payload["lastUpdateTime"] = updated
    return payload


def test_keep_latest_takes_the_newest_update_and_the_later_received_on_ties(
    store: Store, contact: SubjectSchemas
) -> None:
    at = H10 + timedelta(minutes=20)
    copies = [
        ("1", "2026-03-04T10:30:00Z", "second update", 1),
        ("1", "2026-03-04T10:20:00Z", "first update", 2),  # received later, but older
        ("2", "2026-03-04T11:00:00Z", "tie, received first", 3),
        ("2", "2026-03-04T11:00:00Z", "tie, received last", 4),
        ("3", None, "no update time", 5),
        ("3", "2026-03-04T10:16:00Z", "an update time wins over none", 6),
    ]
    stage(
        store,
        "contact",
        H10,
        [
            envelope(i, at + timedelta(seconds=s), contact_payload(int(i), u, n))
            for i, u, n, s in copies
        ],
    )
    outcome = curate(store, contact, H10)

    rows = {row["contact_id"]: row["note"] for row in curated(store, "contact", H10)}
    assert rows == {1: "second update", 2: "tie, received last", 3: "an update time wins over none"}
    assert outcome.result.duplicates_dropped == 3


def test_int_and_string_ids_are_one_event_and_the_newest_values_win(
    store: Store, contact: SubjectSchemas
) -> None:
    at = H10 + timedelta(minutes=20)
    stage(
        store,
        "contact",
        H10,
        [
            envelope(
                "7000000001", at, contact_payload(7_000_000_001, "2026-03-04T10:40:00Z", "new")
            ),
            envelope(
                "7000000001",
                at + timedelta(seconds=1),
                contact_payload("7,000,000,001", "2026-03-04T10:30:00Z", "stale"),
            ),
        ],
    )
    curate(store, contact, H10)
    [row] = curated(store, "contact", H10)
    assert (row["_event_id"], row["contact_id"], row["note"]) == (
        "7000000001",
        7_000_000_001,
        "new",
    )


def test_the_landing_stages_by_event_time_and_leaves_a_marker(
    store: Store, contact: SubjectSchemas, tmp_path: Path
) -> None:
    now = datetime.now(timezone.utc)
    two_days_ago = (now - timedelta(days=2)).replace(minute=15, second=0, microsecond=0)
    body = [
        {
            "contactId": 5,
            "contactStartDate": two_days_ago.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "note": "late",
        },
        {"contactId": 6, "contactStartDate": "not a time", "note": "fallback"},
        {
            "contactId": 7,
            "contactStartDate": (now + timedelta(hours=2)).isoformat(),
            "note": "future",
        },
        {  # the hour before: inside the sensor's look-back window, so no marker
            "contactId": 8,
            "contactStartDate": (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "note": "an hour ago",
        },
    ]
    with running_landing(store, schemas_dir=tmp_path / "schemas") as url:
        response = httpx.post(f"{url}/ingest/contact", json=body, headers=AUTH)
    assert response.status_code == 202
    assert response.json()["event_ids"] == ["5", "6", "7", "8"]

    hours = {
        e["payload"]["contactId"]: parse_staging_key(e["_key"]).hour
        for e in staged_envelopes(store, "contact")
    }
    received_hour = now.replace(minute=0, second=0, microsecond=0)
    assert hours[5] == two_days_ago.replace(minute=0)
    assert hours[6] in (received_hour, received_hour + timedelta(hours=1))  # the hour may turn
    assert hours[7] == hours[6]
    markers = [parse_change_marker(i.key) for i in store.list(zone_prefix(CHANGES, "contact"))]
    assert [m.hour for m in markers if m is not None] == [hours[5]]

    outcome = curate_hour(store, contact, hours[6])
    assert outcome.event_time_fallbacks == 1  # the future one; the unreadable one is quarantined
    assert sorted(row["note"] for row in curated(store, "contact", hours[6])) == ["future"]


def test_a_stale_copy_pushed_later_never_overrides_the_newer_one(
    store: Store, contact: SubjectSchemas
) -> None:
    copies = [
        (5, "2026-03-04T12:00:00Z", "pulled, newer"),
        (6, "2026-03-04T10:45:00Z", "pushed, stale"),
    ]
    for hours_later, updated, note in copies:  # one staging object each, as pull and push write
        at = H10 + timedelta(hours=hours_later)
        stage(store, "contact", H10, [envelope("1", at, contact_payload(1, updated, note))])
    outcome = curate(store, contact, H10)
    assert [row["note"] for row in curated(store, "contact", H10)] == ["pulled, newer"]
    assert (outcome.rows, outcome.result.duplicates_dropped) == (1, 1)


def test_lines_that_are_not_utf8_are_rejected_alone_and_never_fail_an_hour(store: Store) -> None:
    """Arrow's JSON reader does not check UTF-8; Python's does. A hand-dropped object with
    bytes that are not UTF-8 (in an unmapped value, a declared field, an event id) must give
    the per-record path's answer for those lines only, here and in the neighbour hour."""
    good = [envelope(f"g{n}", H10 + timedelta(minutes=n), CALL_PAYLOADS["v2"]) for n in range(6)]
    lines = [json.dumps(e).encode() for e in good]
    bad_unmapped = json.dumps(envelope("b1", H10, {**CALL_PAYLOADS["v2"], "note": "XX"}))
    bad_field = json.dumps(envelope("b2", H10, {**CALL_PAYLOADS["v2"], "customerId": "XX"}))
    bad_id = json.dumps(envelope("XX", H10, CALL_PAYLOADS["v2"]))
    for text in (bad_unmapped, bad_field, bad_id):
        lines.append(text.encode().replace(b"XX", b"\xff\xfe"))
    key = import_key("call_event", H10, "ab" * 16)
    store.put(key, gzip.compress(b"\n".join(lines) + b"\n"))
    stage(store, "call_event", H11, [envelope("g9", H11, CALL_PAYLOADS["v1"])])

    outcome = curate(store, CALL_EVENT, H10)
    later = curate(store, CALL_EVENT, H11)

    assert ids(curated(store, "call_event", H10)) == [f"g{n}" for n in range(6)]
    assert outcome.rejected == 3
    assert sorted(r.code for r in outcome.result.rejects) == ["not_an_object"] * 3
    assert ids(curated(store, "call_event", H11)) == ["g9"] and later.rejected == 0


def test_a_request_spanning_more_than_a_day_of_hours_is_refused_before_staging(
    store: Store, contact: SubjectSchemas, tmp_path: Path
) -> None:
    start = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    hours = [start - timedelta(hours=n + 1) for n in range(25)]
    body = [
        {"contactId": n, "contactStartDate": h.strftime("%Y-%m-%dT%H:%M:%SZ"), "note": "x"}
        for n, h in enumerate(hours)
    ]
    with running_landing(store, schemas_dir=tmp_path / "schemas") as url:
        refused = httpx.post(f"{url}/ingest/contact", json=body, headers=AUTH)
        day = httpx.post(f"{url}/ingest/contact", json=body[:24], headers=AUTH)
    assert (refused.status_code, refused.json()["error"]) == (413, "too_many_hours")
    assert day.status_code == 202
    assert (
        len({parse_staging_key(e["_key"]).hour for e in staged_envelopes(store, "contact")}) == 24
    )


def test_under_first_the_earlier_hour_wins_even_if_its_copy_was_received_later(
    store: Store,
) -> None:
    """A signed request is staged by its signed time: a retry signed at 11:00:00.5 may be
    received before the 10:59:59 attempt, which the clock puts in hour 10. Ranking by hour
    first keeps one copy, in hour 10, from both sides."""
    stage(
        store, "call_event", H10, [envelope("e1", H11 + timedelta(seconds=2), CALL_PAYLOADS["v2"])]
    )
    stage(
        store, "call_event", H11, [envelope("e1", H11 + timedelta(seconds=1), CALL_PAYLOADS["v2"])]
    )
    for hour in (H11, H10):
        curate(store, CALL_EVENT, hour)
    assert ids(curated(store, "call_event", H10)) == ["e1"]
    assert ids(curated(store, "call_event", H11)) == []
