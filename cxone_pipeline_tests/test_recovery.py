"""One walk through the promise for records that cannot be resolved: accepted at the door,
quarantined with a reason, flagged by the drift check, recovered once their schema is added."""

from __future__ import annotations

import gzip
import json
import shutil
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
from dagster import AssetCheckSeverity, build_schedule_context, instance_for_test, materialize

from cxone_pipeline.lake.layout import curated_key, hour_floor, partition_key, quarantine_key
from cxone_pipeline.resolve import read_parquet
from cxone_pipeline.settings import DEFAULT_SCHEMAS_DIR
from cxone_pipeline_tests.dagster_fixtures import CALL_PAYLOADS, CURATE_CALLS, local_lake
from cxone_pipeline_tests.landing_fixtures import AUTH, running_landing
from cxone_pipeline_tests.test_schedule import SCHEDULE, V5

V5_PAYLOAD = {**CALL_PAYLOADS["v3"], "wrapUpCode": "RESOLVED"}
POSTS = [
    # (event id, X-Schema-Version, payload): what CXone might send on a bad day
    ("ok-v2", None, {**CALL_PAYLOADS["v2"]}),
    ("unknown-version", "v5", V5_PAYLOAD),
    ("declared-in-payload", None, {**V5_PAYLOAD, "_schema_version": "v5"}),
    ("matches-nothing", None, {"caller": "C-9", "seconds": 12}),
    ("wrong-type", "v2", {**CALL_PAYLOADS["v2"], "duration": "forty-two"}),
    ("missing-field", "v2", {"duration": 5, "agentId": "a-1"}),
]


def test_unresolvable_records_are_kept_flagged_and_recovered(tmp_path: Path) -> None:
    schemas_dir = tmp_path / "schemas"
    shutil.copytree(DEFAULT_SCHEMAS_DIR, schemas_dir)
    lake = local_lake(tmp_path / "lake")
    lake.schemas_dir = schemas_dir

    # All posts must land in one hour: don't start in the last seconds of one.
    now = datetime.now(timezone.utc)
    next_hour = hour_floor(now) + timedelta(hours=1)
    if next_hour - now < timedelta(seconds=10):
        time.sleep((next_hour - now).total_seconds() + 0.1)

    # 1. Schema problems are never refused at the door.
    with running_landing(lake.store, schemas_dir=schemas_dir) as url:
        for event_id, version, payload in POSTS:
            headers = {**AUTH, **({"X-Schema-Version": version} if version else {})}
            response = httpx.post(
                url + "/ingest/call_event", json={**payload, "eventId": event_id}, headers=headers
            )
            assert response.status_code == 202, response.text
    hour = hour_floor(datetime.now(timezone.utc))
    partition = partition_key(hour)

    with instance_for_test() as instance:

        def run_hour() -> dict[str, tuple[bool, AssetCheckSeverity, str]]:
            result = materialize(
                [CURATE_CALLS],
                partition_key=partition,
                resources=lake.resources(),
                instance=instance,
            )
            assert result.success
            return {
                e.check_name: (e.passed, e.severity, e.description or "")
                for e in result.get_asset_check_evaluations()
            }

        # 2. Quarantined with a reason; the drift check says what to do.
        checks = run_hour()
        rejects = {
            r["event_id"]: r["error"]["code"]
            for r in map(
                json.loads,
                gzip.decompress(lake.store.get(quarantine_key("call_event", hour))).splitlines(),
            )
        }
        assert rejects == {
            "unknown-version": "unknown_schema_version",
            "declared-in-payload": "unknown_schema_version",
            "matches-nothing": "no_matching_schema",
            "wrong-type": "invalid_record",
            "missing-field": "invalid_record",
        }
        curated = read_parquet(lake.store.get(curated_key("call_event", hour, 0)))
        assert curated.column("_event_id").to_pylist() == ["ok-v2"]
        passed, severity, description = checks["schema_drift"]
        assert (passed, severity) == (False, AssetCheckSeverity.ERROR)
        assert "add `schemas/call_event/<version>.avsc` for `v5`" in description
        assert checks["quarantine_rate"][:2] == (False, AssetCheckSeverity.ERROR)

        # 3. The missing version is added; the reconcile schedule, run once the hour has
        # closed, finds the hour by itself and the re-run recovers what v5 explains.
        (schemas_dir / "call_event" / "v5.avsc").write_text(json.dumps(V5))
        later = hour + timedelta(hours=3)
        with build_schedule_context(
            instance=instance, scheduled_execution_time=later, resources=lake.resources()
        ) as context:
            requests = SCHEDULE(context)
        assert [(r.partition_key, r.tags["cxone/reason"]) for r in requests] == [
            (partition, "registry_changed")
        ]
        checks = run_hour()

    rows = read_parquet(lake.store.get(curated_key("call_event", hour, 0))).to_pylist()
    assert sorted((r["_event_id"], r["_schema_version"]) for r in rows) == [
        ("declared-in-payload", "v5"),
        ("ok-v2", "v2"),
        ("unknown-version", "v5"),
    ]
    recovered = next(r for r in rows if r["_event_id"] == "unknown-version")
    assert (recovered["contact_id"], recovered["direction"], recovered["tags"]) == (
        7,
        "OUTBOUND",
        ["vip"],
    )
    still_rejected = {
        json.loads(line)["event_id"]
        for line in gzip.decompress(lake.store.get(quarantine_key("call_event", hour))).splitlines()
    }
    # No schema version can make these valid: they stay, with their reasons.
    assert still_rejected == {"wrong-type", "missing-field", "matches-nothing"}
    assert checks["schema_drift"][:2] == (False, AssetCheckSeverity.ERROR)
    assert "no matching schema: 1" in checks["schema_drift"][2]
