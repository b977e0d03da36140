"""`nightly_reconcile`: a new schema version recovers quarantined hours; staging changes re-run."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from dagster import (
    DagsterInstance,
    RunRequest,
    SkipReason,
    build_schedule_context,
    instance_for_test,
)

from cxone_pipeline.defs.schedules import build_reconcile_schedule
from cxone_pipeline.lake.layout import curated_key, partition_hour, partition_key, quarantine_key
from cxone_pipeline.resolve import read_parquet
from cxone_pipeline.settings import DEFAULT_SCHEMAS_DIR
from cxone_pipeline_tests.dagster_fixtures import (
    CALL_PAYLOADS,
    START,
    Lake,
    call_events,
    closed_hour,
    envelope,
    materialize_hour,
    stage,
)

SCHEDULE = build_reconcile_schedule(
    ["agent_state", "call_event"], "0 3 * * *", first_hour=partition_hour(START)
)
V5 = {
    "type": "record",
    "name": "CallEvent",
    "namespace": "com.nice.cxone",
    "fields": [
        *json.loads((DEFAULT_SCHEMAS_DIR / "call_event" / "v3.avsc").read_text())["fields"],
        {"name": "wrapUpCode", "type": "string"},
    ],
}


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    """A schedule context needs an instance it can reference, unlike an ephemeral one."""
    with instance_for_test() as test_instance:
        yield test_instance


def evaluate(lake: Lake, instance: DagsterInstance) -> list[RunRequest] | SkipReason:
    context = build_schedule_context(
        instance=instance,
        scheduled_execution_time=datetime.now(timezone.utc),
        resources=lake.resources(),
    )
    with context:
        return SCHEDULE(context)


def test_a_new_schema_version_recovers_quarantined_events(
    lake: Lake, instance: DagsterInstance, tmp_path: Path
) -> None:
    lake.schemas_dir = tmp_path / "schemas"
    shutil.copytree(DEFAULT_SCHEMAS_DIR, lake.schemas_dir)
    hour = closed_hour(20)  # yesterday's traffic, within the two reconcile days
    at = hour + timedelta(minutes=10)
    v5 = {**CALL_PAYLOADS["v3"], "wrapUpCode": "RESOLVED"}
    stage(lake.store, "call_event", hour, call_events(hour))
    stage(lake.store, "call_event", hour, [envelope(f"v5-{n}", at, v5, "v5") for n in range(3)])
    materialize_hour(lake, instance, hour)
    assert len(read_parquet(lake.store.get(curated_key("call_event", hour, 0)))) == 4
    assert lake.store.get(quarantine_key("call_event", hour))

    unchanged = evaluate(lake, instance)
    assert isinstance(unchanged, SkipReason)
    assert "48 hours" in unchanged.skip_message

    (lake.schemas_dir / "call_event" / "v5.avsc").write_text(json.dumps(V5))
    requests = evaluate(lake, instance)

    assert [(r.partition_key, r.tags["cxone/reason"]) for r in requests] == [
        (partition_key(hour), "registry_changed")
    ]
    assert {k.to_user_string() for k in requests[0].asset_selection} == {
        "curated/call_event",
        "quarantine/call_event",
    }
    materialize_hour(lake, instance, hour)
    rows = read_parquet(lake.store.get(curated_key("call_event", hour, 0))).to_pylist()
    assert [r["_event_id"] for r in rows if r["_schema_version"] == "v5"] == [
        "v5-0",
        "v5-1",
        "v5-2",
    ]
    assert list(lake.store.list(quarantine_key("call_event", hour))) == []
    assert isinstance(evaluate(lake, instance), SkipReason)


def test_changed_staging_is_reconciled_and_old_hours_are_left_alone(
    lake: Lake, instance: DagsterInstance
) -> None:
    missed, late, too_old = closed_hour(5), closed_hour(30), closed_hour(60)
    for hour in (late, too_old):
        stage(lake.store, "call_event", hour, call_events(hour))
        materialize_hour(lake, instance, hour)
    stage(lake.store, "call_event", missed, call_events(missed))  # the sensor was stopped
    stage(lake.store, "call_event", late, call_events(late, prefix="late"))
    stage(lake.store, "call_event", too_old, call_events(too_old, prefix="late"))

    requests = evaluate(lake, instance)

    assert sorted((r.partition_key, r.tags["cxone/reason"]) for r in requests) == sorted(
        [(partition_key(missed), "staging_changed"), (partition_key(late), "staging_changed")]
    )
    assert len({r.run_key for r in requests}) == 2
