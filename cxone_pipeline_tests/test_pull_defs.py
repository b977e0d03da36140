"""`staging/<S>` pulled from CXone in Dagster: one hour, a backfill over days, the real CLI,
and the `cxone_sync` sensor; against the simulator over HTTP."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetKey,
    AssetRecordsFilter,
    AssetSpec,
    DagsterInstance,
    DefaultSensorStatus,
    build_sensor_context,
    materialize,
)

from cxone_pipeline.definitions import build_definitions
from cxone_pipeline.defs.assets import curate_assets, hourly_partitions
from cxone_pipeline.defs.cxone import CXoneResource
from cxone_pipeline.defs.pulls import PULL_POOL, build_cxone_sync_sensor, pull_asset
from cxone_pipeline.defs.sensors import build_staging_sensor
from cxone_pipeline.lake.layout import curated_key, partition_hour, partition_key
from cxone_pipeline.lake.store import LocalStore
from cxone_pipeline.pull import sync_updates
from cxone_pipeline.registry import load_subject
from cxone_pipeline.resolve import read_parquet
from cxone_pipeline.settings import DEFAULT_SCHEMAS_DIR, PROJECT_ROOT, Settings
from cxone_pipeline_tests.cxone_simulator import CXoneSimulator, completed_contacts
from cxone_pipeline_tests.dagster_fixtures import START, Lake, closed_hour, local_lake
from cxone_pipeline_tests.landing_fixtures import staged_envelopes

SUBJECT = "completed_contact"
STAGING = AssetKey(["staging", SUBJECT])
CURATED = AssetKey(["curated", SUBJECT])
PARTITIONS = hourly_partitions(START)
PULL = pull_asset(SUBJECT, PARTITIONS, hours_per_run=24)
CURATE = curate_assets(SUBJECT, PARTITIONS, hours_per_run=24)
FIRST_HOUR = partition_hour(START)
SCHEMAS = load_subject(DEFAULT_SCHEMAS_DIR, SUBJECT)


@pytest.fixture(autouse=True)
def cxone_env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CXone resource reads the environment at each run: point it at the simulator."""
    if "sim" in request.fixturenames:
        sim = request.getfixturevalue("sim")
        for name, value in sim.env(password_grant=True).items():
            monkeypatch.setenv(name, value)


def resources(lake: Lake, sim: CXoneSimulator) -> dict[str, Any]:
    return {**lake.resources(), "cxone": CXoneResource()}


def metadata(instance: DagsterInstance, key: AssetKey, partition: str) -> dict[str, Any]:
    (record,) = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
    ).records
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


def pull_partition(lake: Lake, sim: CXoneSimulator, instance: DagsterInstance, key: str) -> Any:
    return materialize([PULL], partition_key=key, resources=resources(lake, sim), instance=instance)


def curate_partition(lake: Lake, instance: DagsterInstance, key: str) -> Any:
    return materialize([CURATE], partition_key=key, resources=lake.resources(), instance=instance)


def test_pulled_subjects_get_a_partitioned_staging_asset_in_the_pool() -> None:
    defs = build_definitions(Settings())
    staging = defs.resolve_assets_def(STAGING)
    assert staging.partitions_def == defs.resolve_assets_def(CURATED).partitions_def
    assert staging.backfill_policy is not None
    assert staging.backfill_policy.max_partitions_per_run == 24
    assert staging.op.pool == PULL_POOL
    assert (
        defs.resolve_assets_def(AssetKey(["staging", "agent_state_history"])).op.pool == PULL_POOL
    )
    # Pushed subjects keep their external staging asset.
    specs = [a for a in defs.assets or () if isinstance(a, AssetSpec)]
    assert {spec.key.path[1] for spec in specs} == {"agent_state", "call_event"}
    assert defs.resolve_sensor_def("cxone_sync").default_status == DefaultSensorStatus.STOPPED
    configured = build_definitions(Settings(cxone_client_id="app"))
    assert configured.resolve_sensor_def("cxone_sync").default_status == (
        DefaultSensorStatus.RUNNING
    )


def test_materializing_an_hour_pulls_it_and_curating_it_gives_one_row_per_contact(
    sim: CXoneSimulator, lake: Lake, instance: DagsterInstance
) -> None:
    hour = closed_hour(4)
    contacts = sim.add_troubled_hour(hour, 12, "30.0", page_cap=5)
    key = partition_key(hour)

    result = materialize(
        [PULL], partition_key=key, resources=resources(lake, sim), instance=instance
    )

    assert result.success
    meta = metadata(instance, STAGING, key)
    assert {k: meta[k] for k in ("records", "records_staged", "total_records", "pages")} == {
        "records": 12,
        "records_staged": 12,
        "total_records": 12,
        "pages": 3,
    }
    assert (meta["api_version"], meta["writer_version"], meta["objects_written"]) == (
        "30.0",
        "v2",
        1,
    )
    assert (
        meta["window"]
        == f"{hour:%Y-%m-%dT%H}:00:00.000Z to {hour + timedelta(hours=1):%Y-%m-%dT%H}:00:00.000Z"
    )
    assert meta["duration_seconds"] > 0
    serialized = json.dumps({k: str(v) for k, v in meta.items()})
    for secret in (sim.client_secret, sim.access_key_secret):
        assert secret not in serialized

    curated = materialize(
        [CURATE], partition_key=key, resources=lake.resources(), instance=instance
    )
    assert curated.success
    table = read_parquet(lake.store.get(curated_key(SUBJECT, hour, 0)))
    assert table.column("contact_id").to_pylist() == [c["contactId"] for c in contacts]
    curated_meta = metadata(instance, CURATED, key)
    assert curated_meta["dagster/row_count"] == 12
    # The UI shows canonical.avsc's docs as the column descriptions.
    docs = {c.name: c.description for c in curated_meta["dagster/column_schema"].columns}
    assert docs["acw_seconds"].startswith("After-contact work, in seconds")
    assert docs["_event_id"].startswith("The event id")


def test_an_empty_hour_succeeds_with_no_rows(
    sim: CXoneSimulator, lake: Lake, instance: DagsterInstance
) -> None:
    key = partition_key(closed_hour(4))
    result = materialize(
        [PULL], partition_key=key, resources=resources(lake, sim), instance=instance
    )
    assert result.success
    meta = metadata(instance, STAGING, key)
    assert (meta["dagster/row_count"], meta["records"], meta["pages"]) == (0, 0, 1)
    assert staged_envelopes(lake.store, SUBJECT) == []
    curated = materialize(
        [CURATE], partition_key=key, resources=lake.resources(), instance=instance
    )
    assert curated.success
    assert metadata(instance, CURATED, key)["dagster/row_count"] == 0


def test_a_backfill_over_days_pulls_hours_per_run_and_records_each_hour(
    sim: CXoneSimulator, lake: Lake, instance: DagsterInstance
) -> None:
    first = closed_hour(50)
    hours = [first + timedelta(hours=n) for n in range(48)]
    for n in range(0, 48, 6):  # every sixth hour had contacts
        sim.add_contacts(completed_contacts(hours[n], 3, first_id=7_000_000_000 + 100 * n))
    chunks = [hours[:24], hours[24:]]
    for chunk in chunks:
        # What the backfill daemon launches for a multi-run policy: one run per range.
        result = materialize(
            [PULL],
            resources=resources(lake, sim),
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": partition_key(chunk[0]),
                "dagster/asset_partition_range_end": partition_key(chunk[-1]),
            },
        )
        assert result.success
        logs = [
            e.message
            for e in instance.all_logs(result.run_id)
            if e.message and "hours)" in e.message
        ]
        assert any("(24/24 hours)" in message for message in logs)
    assert instance.get_materialized_partitions(STAGING) == {partition_key(h) for h in hours}
    for n, hour in enumerate(hours):
        assert metadata(instance, STAGING, partition_key(hour))["records"] == (
            3 if n % 6 == 0 else 0
        )
    assert len(staged_envelopes(lake.store, SUBJECT)) == 24


def test_curated_follows_a_pulled_hour_and_a_sync_through_the_staging_sensor(
    sim: CXoneSimulator, lake: Lake, instance: DagsterInstance
) -> None:
    """Hours pulled days ago, or touched by cxone_sync, are requested by the staging sensor
    from their change markers: nobody presses a button."""
    staging_sensor = build_staging_sensor([SUBJECT], 30, FIRST_HOUR)

    def curation_requests(cursor: str | None) -> tuple[list[str], str | None]:
        with build_sensor_context(
            instance=instance, cursor=cursor, resources=lake.resources(close_grace_seconds=0)
        ) as context:
            result = staging_sensor(context)
        return sorted(r.partition_key for r in result.run_requests or []), result.cursor

    old, other = closed_hour(72), closed_hour(30)
    sim.add_contacts(completed_contacts(old, 4))
    sim.add_contacts(completed_contacts(other, 2, first_id=8_000_000_000))
    assert pull_partition(lake, sim, instance, partition_key(old)).success
    requested, cursor = curation_requests(None)
    assert requested == [partition_key(old)]
    assert curate_partition(lake, instance, partition_key(old)).success
    assert metadata(instance, CURATED, partition_key(old))["dagster/row_count"] == 4

    sim.update_contact(8_000_000_001, dispositionNotes="refund agreed")
    since = datetime.now(timezone.utc) - timedelta(minutes=1)
    sync_updates(sim.config(), lake.store, SCHEMAS, since, 5, FIRST_HOUR)
    requested, _ = curation_requests(cursor)
    assert requested == [partition_key(other)]


def test_a_failing_pull_names_the_cause_and_no_secret(
    sim: CXoneSimulator, lake: Lake, instance: DagsterInstance
) -> None:
    sim.reporting_allowed = False
    result = materialize(
        [PULL],
        partition_key=partition_key(closed_hour(4)),
        resources=resources(lake, sim),
        instance=instance,
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    description = failure.step_failure_data.user_failure_data.description
    assert "pulled 0 of 1 hours" in description
    assert "answered 403: User does not have permission" in description
    for secret in (sim.client_secret, sim.access_key_secret):
        assert secret not in description


def test_cxone_sync_sensor_keeps_its_cursor_in_dagster(
    sim: CXoneSimulator, lake: Lake, instance: DagsterInstance
) -> None:
    hour = closed_hour(20)  # updated within the first tick's 24-hour look-back
    sim.add_contacts(completed_contacts(hour, 3))
    sensor = build_cxone_sync_sensor([SUBJECT], 60, 24, 5, FIRST_HOUR, running=False)

    def tick(cursor: str | None) -> Any:
        with build_sensor_context(
            instance=instance, cursor=cursor, resources=resources(lake, sim)
        ) as context:
            return sensor(context)

    first = tick(None)
    (cursor,) = json.loads(first.cursor).values()
    assert datetime.fromisoformat(cursor) == datetime.fromisoformat(
        completed_contacts(hour, 3)[-1]["lastUpdateTime"].replace("Z", "+00:00")
    )
    assert "completed_contact: 3 updated record(s)" in first.skip_reason.skip_message
    assert first.run_requests == []

    updated = sim.update_contact(7_000_000_001, dispositionNotes="refund agreed")
    second = tick(first.cursor)
    assert (
        json.loads(second.cursor)[SUBJECT]
        == datetime.fromisoformat(updated["lastUpdateTime"].replace("Z", "+00:00")).isoformat()
    )
    payloads = [e["payload"] for e in staged_envelopes(lake.store, SUBJECT)]
    assert {"refund agreed", "resolved"} == {p["dispositionNotes"] for p in payloads}

    too_old = json.dumps({SUBJECT: (datetime.now(timezone.utc) - timedelta(days=40)).isoformat()})
    third = tick(too_old)
    assert datetime.fromisoformat(json.loads(third.cursor)[SUBJECT]) >= datetime.fromisoformat(
        updated["lastUpdateTime"].replace("Z", "+00:00")
    )
    since = sim.reporting_seen[-1]["updatedSince"]
    assert datetime.fromisoformat(since.replace("Z", "+00:00")) >= datetime.now(
        timezone.utc
    ) - timedelta(days=30, minutes=1)


def test_dagster_cli_materializes_one_pulled_hour(sim: CXoneSimulator, tmp_path: Path) -> None:
    """`dagster asset materialize --select staging/completed_contact --partition <hour>`, as a
    user runs it, through a 429 and a revoked token, with the older API version's names."""
    hour = closed_hour(6)
    contacts = sim.add_troubled_hour(hour, 9, "21.0", page_cap=4)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    lake = tmp_path / "lake"
    env = {
        **sim.env(password_grant=True),
        "CXONE_API_VERSION": "21.0",
        "CXONE_PIPELINE_LAKE_URL": str(lake),
        "DAGSTER_HOME": str(home),
    }
    command = [
        str(Path(sys.executable).parent / "dagster"),
        "asset",
        "materialize",
        "-m",
        "cxone_pipeline.definitions",
        "--select",
        "staging/completed_contact",
        "--partition",
        partition_key(hour),
    ]
    done = subprocess.run(
        command,
        env={**_environ(), **env},
        capture_output=True,
        text=True,
        timeout=240,
        cwd=PROJECT_ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for secret in (sim.client_secret, sim.access_key_secret):
        assert secret not in done.stdout + done.stderr
    assert sim.statuses("GET", sim.reporting_path("21.0", "contacts/completed")) == [
        429,
        200,
        401,
        200,
        200,
    ]
    envelopes = staged_envelopes(LocalStore(lake), SUBJECT)
    assert sorted(int(e["event_id"]) for e in envelopes) == [c["contactId"] for c in contacts]
    assert {e["schema_version"] for e in envelopes} == {"v1"}
    assert "contactStart" in envelopes[0]["payload"]

    with DagsterInstance.ephemeral() as instance:
        result = curate_partition(local_lake(lake), instance, partition_key(hour))
    assert result.success
    table = read_parquet(LocalStore(lake).get(curated_key(SUBJECT, hour, 0)))
    assert table.column("contact_id").to_pylist() == [c["contactId"] for c in contacts]
    assert table.column("contact_start").to_pylist()[0] == hour


def _environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("CXONE_", "DAGSTER_"))}


def test_the_shipped_instance_runs_one_pull_at_a_time(tmp_path: Path) -> None:
    for config in ("dagster.yaml", "dagster.postgres.yaml"):
        text = (PROJECT_ROOT / config).read_text()
        assert "default_limit: 1" in text and "granularity: run" in text
    shutil.copy(PROJECT_ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        pools = instance.get_concurrency_config().pool_config
        assert (pools.default_pool_limit, pools.pool_granularity.value) == (1, "run")
