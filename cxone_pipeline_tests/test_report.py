"""What a curated hour says on call: hour ranges, reasons, samples, verdicts, the rolling check."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from dagster import AssetCheckSeverity, AssetKey, DagsterInstance, Failure, materialize

from cxone_pipeline.curate import CheckOutcome
from cxone_pipeline.devenv import dev_settings
from cxone_pipeline.lake.hours import describe_hours, hour_ranges
from cxone_pipeline.lake.layout import hour_prefix, partition_key
from cxone_pipeline.report import (
    HourTally,
    check_recent_quarantine,
    quarantine_verdict,
    recent_window,
    sample_records,
    top_reasons,
)
from cxone_pipeline.resolve import Reject
from cxone_pipeline_tests.dagster_fixtures import (
    CURATE_CALLS,
    Lake,
    call_events,
    closed_hour,
    envelope,
    materialize_hour,
    stage,
)

H = datetime(2026, 11, 27, 19, tzinfo=timezone.utc)
CURATED = AssetKey(["curated", "call_event"])


def hours(*offsets: int) -> list[datetime]:
    return [H + timedelta(hours=n) for n in offsets]


def test_hours_are_named_as_ranges_never_as_a_min_max_span() -> None:
    assert hour_ranges(hours(5, 0, 1, 2, 2)) == [(H, H + timedelta(hours=2)), (*hours(5, 5),)]
    assert describe_hours(hours(0)) == "2026-11-27-19:00"
    assert describe_hours(hours(0, 1, 2, 5)) == (
        "2026-11-27-19:00 to 2026-11-27-21:00 (3 hours), 2026-11-28-00:00"
    )
    assert describe_hours(hours(*range(0, 40, 2)), limit=2) == (
        "2026-11-27-19:00, 2026-11-27-21:00, and 18 more ranges"
    )


def reject(n: int, code: str, message: str, payload: object = None) -> Reject:
    return Reject({"event_id": f"e{n}", "payload": payload}, code, message)


def test_top_reasons_group_messages_that_differ_only_in_values() -> None:
    rejects = [
        reject(1, "no_matching_schema", "call_event: matches none of v1, v2 (keys: a, b)"),
        reject(2, "no_matching_schema", "call_event: matches none of v1, v2 (keys: c)"),
        reject(3, "unknown_schema_version", "call_event: schema version 'v9' is not known"),
        reject(4, "invalid_record", "call_event v3: field 'duration' is 'x'"),
        reject(5, "invalid_record", "call_event v3: field 'duration' is 'y'"),
        reject(6, "invalid_record", "call_event v3: field 'duration' is 'z'"),
    ]
    assert top_reasons(rejects, limit=2) == [
        {"code": "invalid_record", "count": 3, "message": "call_event v3: field 'duration' is 'x'"},
        {
            "code": "no_matching_schema",
            "count": 2,
            "message": "call_event: matches none of v1, v2 (keys: a, b)",
        },
    ]


def test_samples_are_few_and_truncated() -> None:
    rejects = [reject(n, "invalid_record", "m" * 500, {"text": "x" * 1000}) for n in range(5)]
    samples = sample_records(rejects)
    assert [s["event_id"] for s in samples] == ["e0", "e1", "e2"]
    assert len(samples[0]["payload"]) == 300 and samples[0]["payload"].endswith("…")
    assert samples[0]["payload"].startswith('{"text":"xxx')
    assert len(samples[0]["message"]) == 200


def checked(passed: bool) -> list[CheckOutcome]:
    return [
        CheckOutcome("schema_drift", False, "ERROR", "drift"),
        CheckOutcome("quarantine_rate", passed, "ERROR", "rate"),
    ]


def test_verdict_tags_or_fails_only_for_failed_quarantine_rate() -> None:
    results = {
        "2026-11-27-19:00": checked(False),
        "2026-11-27-20:00": checked(False),
        "2026-11-27-21:00": checked(True),
    }
    tags = {
        "cxone/quarantine_rate": "failed",
        "cxone/quarantine_rate_failed_hours": "2026-11-27-19:00 to 2026-11-27-20:00 (2 hours)",
    }
    assert quarantine_verdict("call_event", results, "tag").tags == tags
    assert quarantine_verdict("call_event", results, "tag").failure is None
    failed = quarantine_verdict("call_event", results, "fail")
    assert failed.tags == tags
    assert failed.failure.startswith("quarantine_rate failed for 2 hours of call_event: ")
    assert quarantine_verdict("call_event", results, "ignore").tags == {}
    passing = {"2026-11-27-19:00": checked(True)}
    assert quarantine_verdict("call_event", passing, "fail").failure is None


def test_recent_check_names_the_failing_hours() -> None:
    tallies = [
        HourTally("2026-11-27-19:00", 0, 10),
        HourTally("2026-11-27-20:00", 7, 9),
        HourTally("2026-11-27-21:00", 0, 0),
    ]
    outcome = check_recent_quarantine("call_event", tallies, 0.01)
    assert (outcome.name, outcome.passed, outcome.severity) == (
        "recent_quarantine_rate",
        False,
        "ERROR",
    )
    assert outcome.description.startswith(
        "1 hour of the last 24 quarantined more than 1.00%: 2026-11-27-20:00 (77.78%)."
    )
    assert outcome.metadata["failing_hours"] == {"2026-11-27-20:00": "77.78% (7 of 9)"}
    assert check_recent_quarantine("call_event", tallies[:1], 0.01).passed
    window = recent_window(H + timedelta(minutes=30))
    assert (len(window), window[0], window[-1]) == (24, H - timedelta(hours=23), H)


def test_fail_action_fails_the_run_after_writing_every_hour(
    lake: Lake, instance: DagsterInstance
) -> None:
    bad, good = closed_hour(3), closed_hour(2)
    stage(lake.store, "call_event", bad, [envelope("x", bad, {"customerId": "x"}, "v7")])
    stage(lake.store, "call_event", good, call_events(good))
    tags = {
        "dagster/asset_partition_range_start": partition_key(bad),
        "dagster/asset_partition_range_end": partition_key(good),
    }
    with pytest.raises(Failure, match="quarantine_rate failed for 1 hour of call_event"):
        materialize(
            [CURATE_CALLS],
            resources=lake.resources(quarantine_rate_action="fail"),
            instance=instance,
            tags=tags,
        )
    (run,) = instance.get_runs()
    assert run.tags["cxone/quarantine_rate"] == "failed"
    assert run.tags["cxone/quarantine_rate_failed_hours"] == partition_key(bad)
    # Both hours were written and recorded before the run failed.
    assert instance.get_materialized_partitions(CURATED) == {
        partition_key(bad),
        partition_key(good),
    }
    assert lake.store.list(hour_prefix("curated", "call_event", good))


def test_tag_action_keeps_the_run_green(lake: Lake, instance: DagsterInstance) -> None:
    bad = closed_hour(2)
    stage(lake.store, "call_event", bad, [envelope("x", bad, {"customerId": "x"}, "v7")])
    result = materialize_hour(lake, instance, bad)
    assert instance.get_run_by_id(result.run_id).tags["cxone/quarantine_rate"] == "failed"
    recent = [
        e for e in result.get_asset_check_evaluations() if e.check_name == "recent_quarantine_rate"
    ]
    assert [(e.passed, e.severity, e.partition) for e in recent] == [
        (False, AssetCheckSeverity.ERROR, None)
    ]


def test_devenv_up_defaults_keep_what_the_user_set() -> None:
    now = datetime(2026, 11, 29, 21, 47, tzinfo=timezone.utc)
    assert dev_settings({}, now) == {
        "CXONE_PIPELINE_SENSOR_INTERVAL_SECONDS": "30",
        "CXONE_PIPELINE_OPEN_HOUR_REFRESH_SECONDS": "30",
        "CXONE_PIPELINE_PARTITIONS_START": "2026-11-22-00:00",
    }
    mine = {"CXONE_PIPELINE_OPEN_HOUR_REFRESH_SECONDS": "900"}
    assert "CXONE_PIPELINE_OPEN_HOUR_REFRESH_SECONDS" not in dev_settings(mine, now)
