"""Curating an hour, manifests, checks and run planning, without Dagster, on both stores."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest

from cxone_pipeline.curate import (
    Manifest,
    Recorded,
    Window,
    check_quarantine_rate,
    check_schema_drift,
    check_unique_event_ids,
    curate_hour,
    reconcile_hours,
    run_reason,
    sensor_hours,
    staging_changed,
    staging_manifest,
)
from cxone_pipeline.lake.layout import curated_key, hour_prefix, quarantine_key
from cxone_pipeline.lake.store import ObjectInfo, Store
from cxone_pipeline.registry import load_subject
from cxone_pipeline.resolve import read_parquet, read_rejects, write_parquet
from cxone_pipeline.settings import DEFAULT_SCHEMAS_DIR
from cxone_pipeline_tests.dagster_fixtures import (
    CALL_PAYLOADS,
    call_events,
    envelope,
    stage,
)

CALL_EVENT = load_subject(DEFAULT_SCHEMAS_DIR, "call_event")
HOUR = datetime(2026, 3, 4, 5, tzinfo=timezone.utc)
FIRST = datetime(2025, 1, 1, tzinfo=timezone.utc)

EXPECTED_ROWS = [
    ("e-1", "v1", "c-1", 61, "101", None, None, "UNKNOWN", None),
    ("e-2", "v2", "c-2", 3_000_000_000, "102", "hi", None, "UNKNOWN", None),
    ("e-3", "v3", "c-3", 30, "103", None, 7, "OUTBOUND", None),
    ("e-4", "v1", "c-4", 61, "101", None, None, "UNKNOWN", '{"queue":"sales"}'),
]


def row_tuples(table: pa.Table) -> list[tuple]:
    return [
        (
            r["_event_id"],
            r["_schema_version"],
            r["customer_id"],
            r["duration_seconds"],
            r["agent_extension"],
            r["transcript_raw"],
            r["contact_id"],
            r["direction"],
            r["_unmapped_fields"],
        )
        for r in table.to_pylist()
    ]


def unresolvable(hour: datetime) -> list[dict]:
    at = hour + timedelta(minutes=30)
    return [
        envelope("bad-1", at, {**CALL_PAYLOADS["v3"], "contactId": 9}, "v9"),
        envelope("bad-2", at, {"something": "else"}),
    ]


def test_curate_hour_writes_canonical_rows_and_quarantine(store: Store) -> None:
    stage(store, "call_event", HOUR, call_events(HOUR))
    stage(store, "call_event", HOUR, unresolvable(HOUR))

    outcome = curate_hour(store, CALL_EVENT, HOUR)

    table = read_parquet(store.get(curated_key("call_event", HOUR, 0)))
    assert row_tuples(table) == EXPECTED_ROWS
    assert table.column_names[-4:] == [
        "_event_id",
        "_schema_version",
        "_received_at",
        "_unmapped_fields",
    ]
    assert outcome.rows == 4 and outcome.rejected == 2
    assert outcome.result.duplicates_dropped == 1
    assert outcome.events_read == 7
    assert outcome.manifest.count == 2
    rejects = read_rejects(store.get(quarantine_key("call_event", HOUR)))
    assert sorted((r["event_id"], r["error"]["code"]) for r in rejects) == [
        ("bad-1", "unknown_schema_version"),
        ("bad-2", "no_matching_schema"),
    ]
    assert outcome.quarantine_key == quarantine_key("call_event", HOUR)


def test_curating_twice_gives_identical_files(local_store: Store) -> None:
    stage(local_store, "call_event", HOUR, call_events(HOUR))
    curate_hour(local_store, CALL_EVENT, HOUR)
    first = local_store.get(curated_key("call_event", HOUR, 0))
    curate_hour(local_store, CALL_EVENT, HOUR)
    assert local_store.get(curated_key("call_event", HOUR, 0)) == first


def test_recurating_replaces_stale_parts_and_clears_fixed_quarantine(local_store: Store) -> None:
    prefix = hour_prefix("curated", "call_event", HOUR)
    local_store.put(curated_key("call_event", HOUR, 7), b"left over by an older layout")
    local_store.put(quarantine_key("call_event", HOUR), b"rejects of an older run")
    stage(local_store, "call_event", HOUR, call_events(HOUR))

    outcome = curate_hour(local_store, CALL_EVENT, HOUR)

    assert [o.key for o in local_store.list(prefix)] == [curated_key("call_event", HOUR, 0)]
    assert outcome.quarantine_key is None
    assert list(local_store.list(hour_prefix("quarantine", "call_event", HOUR))) == []


def test_empty_hour_is_a_valid_outcome_with_no_files(local_store: Store) -> None:
    outcome = curate_hour(local_store, CALL_EVENT, HOUR)
    assert (outcome.rows, outcome.rejected, outcome.curated_keys) == (0, 0, ())
    assert outcome.manifest == Manifest(())
    assert list(local_store.list("curated/")) == []


def test_manifest_changes_with_a_late_object_and_ignores_foreign_files(local_store: Store) -> None:
    stage(local_store, "call_event", HOUR, call_events(HOUR))
    local_store.put(hour_prefix("staging", "call_event", HOUR) + "README.txt", b"not staged")
    before = staging_manifest(local_store, "call_event", HOUR)
    assert before.count == 1

    stage(local_store, "call_event", HOUR, call_events(HOUR, prefix="late"))
    after = staging_manifest(local_store, "call_event", HOUR)

    assert after.count == 2
    assert after.digest != before.digest
    assert staging_manifest(local_store, "call_event", HOUR).digest == after.digest


def test_schema_drift_passes_warns_and_errors(local_store: Store) -> None:
    clean = HOUR - timedelta(hours=1)
    stage(local_store, "call_event", clean, [envelope("ok", clean, CALL_PAYLOADS["v2"], "v2")])
    passed = check_schema_drift(curate_hour(local_store, CALL_EVENT, clean))
    assert passed.passed

    stage(local_store, "call_event", HOUR, call_events(HOUR))
    warned = check_schema_drift(curate_hour(local_store, CALL_EVENT, HOUR))
    assert (warned.passed, warned.severity) == (False, "WARN")
    assert warned.metadata["unmapped_fields"] == {"queue": 1}
    assert warned.metadata["unmapped_by_version"] == {"v1": {"queue": 1}}
    assert "`queue` (1)" in warned.description

    stage(local_store, "call_event", HOUR, unresolvable(HOUR))
    errored = check_schema_drift(curate_hour(local_store, CALL_EVENT, HOUR))
    assert (errored.passed, errored.severity) == (False, "ERROR")
    assert errored.metadata["unknown_versions"] == {"v9": 1}
    assert errored.metadata["no_matching_schema"] == 1
    assert "add `schemas/call_event/<version>.avsc` for `v9`" in errored.description


def test_schema_drift_names_the_newer_version_payloads_nearly_fit(local_store: Store) -> None:
    payload = {**CALL_PAYLOADS["v3"], "direction": "SIDEWAYS", "queue": 4}
    del payload["transcript"]  # no literal null: the columnar path reads it
    stage(local_store, "call_event", HOUR, [envelope("iso", HOUR, payload)])
    outcome = curate_hour(local_store, CALL_EVENT, HOUR)
    assert outcome.result.rows_per_version == {"v2": 1}
    warned = check_schema_drift(outcome)
    assert (warned.passed, warned.severity) == (False, "WARN")
    assert warned.metadata["near_misses"] == [
        "1 row(s) read as v2: v3 declares contactId, direction, skillId, startedAt, tags but "
        "failed: direction: 'SIDEWAYS' is not a symbol of CallDirection (INBOUND, OUTBOUND, "
        "INTERNAL)"
    ]
    assert warned.metadata["near_misses"][0] in warned.description
    assert "fields no schema declares: `queue` (1)" in warned.description
    assert "`contactId` (1)" not in warned.description


def test_quarantine_rate_against_its_threshold(local_store: Store) -> None:
    stage(local_store, "call_event", HOUR, call_events(HOUR) + unresolvable(HOUR))
    outcome = curate_hour(local_store, CALL_EVENT, HOUR)

    failed = check_quarantine_rate(outcome, max_rate=0.01)
    assert (failed.passed, failed.severity) == (False, "ERROR")
    assert failed.metadata["quarantine_rate"] == pytest.approx(2 / 7)
    assert failed.metadata["rejects_per_code"] == {
        "unknown_schema_version": 1,
        "no_matching_schema": 1,
    }
    assert check_quarantine_rate(outcome, max_rate=0.5).passed


def test_unique_event_ids_reads_back_the_curated_files(local_store: Store) -> None:
    stage(local_store, "call_event", HOUR, call_events(HOUR))
    outcome = curate_hour(local_store, CALL_EVENT, HOUR)
    ok = check_unique_event_ids(local_store, "call_event", HOUR)
    assert (ok.passed, ok.metadata["rows"]) == (True, 4)

    # A second part file holding one event again, as a crashed writer of another layout might.
    local_store.put(curated_key("call_event", HOUR, 1), write_parquet(outcome.result.table[:1]))
    failed = check_unique_event_ids(local_store, "call_event", HOUR)
    assert (failed.passed, failed.severity) == (False, "ERROR")
    assert failed.metadata["sample"] == {"e-1": 2}
    assert failed.metadata["rows"] == 5


def test_unique_event_ids_looks_at_the_neighbour_hours_within_the_horizon(
    local_store: Store,
) -> None:
    stage(local_store, "call_event", HOUR, call_events(HOUR))
    outcome = curate_hour(local_store, CALL_EVENT, HOUR)
    # The next hour curated from a lake copied over by hand: it repeats e-2.
    after = HOUR + timedelta(hours=1)
    local_store.put(curated_key("call_event", after, 0), write_parquet(outcome.result.table[1:2]))

    failed = check_unique_event_ids(local_store, "call_event", HOUR, horizon_hours=1)
    assert (failed.passed, failed.metadata["ids_also_in_neighbour_hours"]) == (False, 1)
    assert failed.metadata["sample"] == {"e-2": "neighbour hour"}
    assert "1 are also curated in an hour within 1 hour(s) of it" in failed.description
    assert check_unique_event_ids(local_store, "call_event", HOUR, horizon_hours=0).passed


def test_sensor_hours_wait_for_the_grace_period() -> None:
    grace = timedelta(minutes=2)
    at_0301 = datetime(2026, 3, 4, 3, 1, tzinfo=timezone.utc)
    hours = sensor_hours(at_0301, 3, grace, open_hour_due=False, first_hour=FIRST)
    assert hours == [datetime(2026, 3, 4, h, tzinfo=timezone.utc) for h in (0, 1)]

    at_0302 = at_0301 + timedelta(minutes=1)
    hours = sensor_hours(at_0302, 3, grace, open_hour_due=True, first_hour=FIRST)
    assert hours == [datetime(2026, 3, 4, h, tzinfo=timezone.utc) for h in (0, 1, 2, 3)]

    # A deployment whose partitions start at 02:00 has no earlier hours to run.
    start = datetime(2026, 3, 4, 2, tzinfo=timezone.utc)
    hours = sensor_hours(at_0302, 3, grace, open_hour_due=True, first_hour=start)
    assert hours == [start, start + timedelta(hours=1)]


def test_reconcile_hours_are_the_closed_hours_of_the_last_days() -> None:
    now = datetime(2026, 3, 4, 3, 0, 5, tzinfo=timezone.utc)
    hours = reconcile_hours(now, days=2, first_hour=FIRST)
    assert len(hours) == 48
    assert hours[0] == datetime(2026, 3, 2, 3, tzinfo=timezone.utc)
    assert hours[-1] == datetime(2026, 3, 4, 2, tzinfo=timezone.utc)
    start = datetime(2026, 3, 4, 0, tzinfo=timezone.utc)
    assert reconcile_hours(now, days=2, first_hour=start) == [
        start + timedelta(hours=n) for n in range(3)
    ]


def test_run_reasons() -> None:
    empty = Window(HOUR, Manifest(()), ())
    one = Window(HOUR, Manifest((ObjectInfo("staging/x/a.jsonl.gz", 3),)), ())
    fp1, fp2 = (replace(CALL_EVENT, fingerprint=f) for f in ("fp1", "fp2"))
    assert not staging_changed(empty, None, fp1)
    assert staging_changed(one, None, fp1)
    clean = Recorded(one.own.digest, "fp1", quarantined=0)
    quarantined = Recorded(one.own.digest, "fp1", quarantined=3)
    assert run_reason(one, clean, fp2) is None
    assert run_reason(one, quarantined, fp1) is None
    assert run_reason(one, quarantined, fp2) == "registry_changed"
    assert run_reason(empty, clean, fp1) == "staging_changed"
