"""The code location: definitions per subject, materializing hours in-process on both lakes."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from dagster import (
    AssetCheckSeverity,
    AssetKey,
    AssetRecordsFilter,
    DagsterInstance,
    materialize,
)

from cxone_pipeline.definitions import build_definitions, defs
from cxone_pipeline.defs.assets import curate_assets, hourly_partitions, recorded_inputs
from cxone_pipeline.defs.resources import build_resources
from cxone_pipeline.lake.layout import curated_key, partition_key, quarantine_key
from cxone_pipeline.resolve import read_parquet, read_rejects
from cxone_pipeline.settings import DEFAULT_SCHEMAS_DIR, Settings, SettingsError
from cxone_pipeline_tests.dagster_fixtures import (
    CURATE_CALLS,
    START,
    Lake,
    call_events,
    closed_hour,
    envelope,
    s3_lake,
    stage,
)

PARTITIONS = hourly_partitions(START)
CURATED = AssetKey(["curated", "call_event"])
QUARANTINE = AssetKey(["quarantine", "call_event"])


def latest_metadata(instance: DagsterInstance, key: AssetKey, partition: str) -> dict:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
    ).records
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def check_results(result) -> dict[tuple[str, str], tuple[bool, AssetCheckSeverity]]:
    return {
        (e.partition, e.check_name): (e.passed, e.severity)
        for e in result.get_asset_check_evaluations()
    }


def test_definitions_cover_every_subject_of_the_registry() -> None:
    keys = {key.to_user_string() for key in defs.resolve_all_asset_keys()}
    assert keys == {
        f"{zone}/{subject}"
        for zone in ("staging", "curated", "quarantine")
        for subject in ("agent_state", "agent_state_history", "call_event", "completed_contact")
    } | {"marts/contact_kpis"}
    checks = {
        key.name for key in defs.resolve_asset_graph().asset_check_keys if key.asset_key == CURATED
    }
    assert checks == {
        "schema_drift",
        "quarantine_rate",
        "unique_event_ids",
        "recent_quarantine_rate",
    }
    # Descriptions are Markdown in the UI: no <placeholder> for it to swallow as HTML.
    graph = defs.resolve_asset_graph()
    descriptions = {
        key.name: graph.get_check_spec(key).description
        for key in graph.asset_check_keys
        if key.asset_key == CURATED
    }
    assert [name for name, text in descriptions.items() if "<" in text] == []
    assert "add `schemas/call_event/vN.avsc`" in descriptions["schema_drift"]
    assert defs.resolve_sensor_def("staging_sensor").default_status.value == "RUNNING"
    assert defs.resolve_schedule_def("nightly_reconcile").cron_schedule == "0 3 * * *"
    assert defs.resolve_job_def("register_cxone_webhook") is not None
    curate = defs.resolve_assets_def(CURATED)
    assert curate.backfill_policy.max_partitions_per_run == 24
    assert curate.partitions_def.get_first_partition_key() == "2025-01-01-00:00"


def test_a_new_subject_folder_needs_no_code(tmp_path: Path) -> None:
    schemas = tmp_path / "schemas"
    shutil.copytree(DEFAULT_SCHEMAS_DIR, schemas)
    shutil.copytree(schemas / "agent_state", schemas / "queue_stat")
    found = build_definitions(Settings(schemas_dir=schemas)).resolve_all_asset_keys()
    assert AssetKey(["curated", "queue_stat"]) in found
    assert AssetKey(["staging", "queue_stat"]) in found


def materialize_and_read(lake: Lake, instance: DagsterInstance, hour) -> list[dict]:
    partition = partition_key(hour)
    result = materialize(
        [CURATE_CALLS], partition_key=partition, resources=lake.resources(), instance=instance
    )
    assert result.success
    return read_parquet(lake.store.get(curated_key("call_event", hour, 0))).to_pylist()


def assert_call_rows(rows: list[dict]) -> None:
    assert [
        (r["_event_id"], r["_schema_version"], r["customer_id"], r["duration_seconds"])
        for r in rows
    ] == [
        ("e-1", "v1", "c-1", 61),
        ("e-2", "v2", "c-2", 3_000_000_000),
        ("e-3", "v3", "c-3", 30),
        ("e-4", "v1", "c-4", 61),
    ]
    assert rows[2]["tags"] == ["vip"] and rows[2]["direction"] == "OUTBOUND"
    assert rows[3]["_unmapped_fields"] == '{"queue":"sales"}'


def test_materialize_an_hour_on_the_local_lake(lake: Lake, instance: DagsterInstance) -> None:
    hour = closed_hour()
    partition = partition_key(hour)
    staged = [
        stage(lake.store, "call_event", hour, call_events(hour)),
        stage(
            lake.store,
            "call_event",
            hour,
            [envelope("bad", hour + timedelta(minutes=9), {"customerId": "x"}, "v7")],
        ),
    ]

    rows = materialize_and_read(lake, instance, hour)

    assert_call_rows(rows)
    rejects = read_rejects(lake.store.get(quarantine_key("call_event", hour)))
    assert [(r["event_id"], r["error"]["code"]) for r in rejects] == [
        ("bad", "unknown_schema_version")
    ]
    meta = latest_metadata(instance, CURATED, partition)
    assert meta["dagster/row_count"] == 4
    assert meta["rows_per_version"] == {"v1": 2, "v2": 1, "v3": 1}
    assert meta["rejects_per_code"] == {"unknown_schema_version": 1}
    assert meta["duplicates_dropped"] == 1
    assert meta["unmapped_fields"] == {"queue": 1}
    assert meta["staging_object_count"] == 2
    assert len(meta["staging_manifest_digest"]) == 64
    columns = meta["dagster/column_schema"].columns
    assert [c.name for c in columns][:3] == ["customer_id", "duration_seconds", "agent_extension"]
    assert columns[-1].name == "_unmapped_fields"
    assert all(c.description for c in columns), [c.name for c in columns if not c.description]
    assert columns[0].description.startswith("The customer's id")
    quarantined = latest_metadata(instance, QUARANTINE, partition)
    assert quarantined["dagster/row_count"] == 1
    assert quarantined["top_reasons"] == [
        {
            "code": "unknown_schema_version",
            "count": 1,
            "message": "call_event: schema version 'v7' is not in the registry (v1, v2, v3, v4)",
        }
    ]
    assert [(s["event_id"], s["payload"]) for s in quarantined["sample_records"]] == [
        ("bad", '{"customerId":"x"}')
    ]
    observed = instance.fetch_observations(AssetKey(["staging", "call_event"]), limit=1).records
    observation = observed[0].asset_observation
    assert observation.partition == partition
    assert observation.metadata["objects"].value == 2
    assert observation.metadata["bytes"].value == sum(len(lake.store.get(key)) for key in staged)
    recorded = recorded_inputs(instance, "call_event", partition)
    assert recorded.quarantined == 1
    assert recorded.manifest_digest == meta["staging_manifest_digest"]
    assert len(staged) == meta["staging_object_count"]


def test_materialize_an_hour_on_s3(s3_endpoint: str, s3_bucket: str) -> None:
    lake = s3_lake(s3_endpoint, s3_bucket)
    hour = closed_hour()
    stage(lake.store, "call_event", hour, call_events(hour))
    with DagsterInstance.ephemeral() as ephemeral:
        rows = materialize_and_read(lake, ephemeral, hour)
    assert_call_rows(rows)
    assert list(lake.store.list("quarantine/")) == []


def test_materializing_twice_gives_identical_rows(lake: Lake, instance: DagsterInstance) -> None:
    hour = closed_hour()
    stage(lake.store, "call_event", hour, call_events(hour))
    assert materialize_and_read(lake, instance, hour) == materialize_and_read(lake, instance, hour)


def test_checks_pass_and_fail_per_partition(lake: Lake, instance: DagsterInstance) -> None:
    clean, drifting = closed_hour(3), closed_hour(2)
    stage(lake.store, "call_event", clean, call_events(clean)[:3])
    stage(lake.store, "call_event", drifting, call_events(drifting))
    stage(
        lake.store,
        "call_event",
        drifting,
        [envelope("bad", drifting, {"customerId": "x"}, "v7")],
    )
    results, descriptions = {}, {}
    for hour in (clean, drifting):
        result = materialize(
            [CURATE_CALLS],
            partition_key=partition_key(hour),
            resources=lake.resources(),
            instance=instance,
        )
        results.update(check_results(result))
        descriptions.update(
            {
                (e.partition, e.check_name): e.description
                for e in result.get_asset_check_evaluations()
            }
        )

    ok, error = (True, AssetCheckSeverity.WARN), (False, AssetCheckSeverity.ERROR)
    p_clean, p_drift = partition_key(clean), partition_key(drifting)
    assert results == {
        (p_clean, "schema_drift"): ok,
        (p_clean, "quarantine_rate"): (True, AssetCheckSeverity.ERROR),
        (p_clean, "unique_event_ids"): (True, AssetCheckSeverity.ERROR),
        (p_drift, "schema_drift"): error,
        (p_drift, "quarantine_rate"): error,
        (p_drift, "unique_event_ids"): (True, AssetCheckSeverity.ERROR),
        # The rolling check of the last run still names the failing hour.
        (None, "recent_quarantine_rate"): error,
    }
    assert f"{p_drift} (16.67%)" in descriptions[(None, "recent_quarantine_rate")]
    assert (
        "add `schemas/call_event/<version>.avsc` for `v7`"
        in descriptions[(p_drift, "schema_drift")]
    )
    assert "docs/operations.md" in descriptions[(p_drift, "quarantine_rate")]

    # Raising the threshold turns the quarantine check green for the same hour.
    lenient = materialize(
        [CURATE_CALLS],
        partition_key=p_drift,
        resources=lake.resources(quarantine_rate_max=0.5),
        instance=instance,
    )
    assert check_results(lenient)[(p_drift, "quarantine_rate")] == (
        True,
        AssetCheckSeverity.ERROR,
    )
    assert check_results(lenient)[(p_drift, "schema_drift")] == error
    assert check_results(lenient)[(None, "recent_quarantine_rate")] == (
        True,
        AssetCheckSeverity.ERROR,
    )


def test_backfill_of_48_hours_runs_24_hours_per_run(lake: Lake, instance: DagsterInstance) -> None:
    first = closed_hour(49)
    hours = [first + timedelta(hours=n) for n in range(48)]
    for n, hour in enumerate(hours):
        if n % 12 == 0:  # a few hours hold events; the others are empty but valid
            stage(lake.store, "call_event", hour, call_events(hour, prefix=f"h{n}"))
    policy = CURATE_CALLS.backfill_policy
    runs = [
        hours[i : i + policy.max_partitions_per_run]
        for i in range(0, 48, policy.max_partitions_per_run)
    ]
    assert len(runs) == 2
    for chunk in runs:
        # What the backfill daemon launches for a multi-run policy: one run per partition range.
        result = materialize(
            [CURATE_CALLS],
            resources=lake.resources(),
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": partition_key(chunk[0]),
                "dagster/asset_partition_range_end": partition_key(chunk[-1]),
            },
        )
        assert result.success
        drift = {
            p for (p, name), (passed, _) in check_results(result).items() if name == "schema_drift"
        }
        assert drift == {partition_key(h) for h in chunk}

    for n, hour in enumerate(hours):
        meta = latest_metadata(instance, CURATED, partition_key(hour))
        expected = 4 if n % 12 == 0 else 0
        assert meta["dagster/row_count"] == expected, partition_key(hour)
        assert meta["staging_object_count"] == (1 if expected else 0)
        if expected:
            rows = read_parquet(lake.store.get(curated_key("call_event", hour, 0))).to_pylist()
            assert {r["_event_id"] for r in rows} == {f"h{n}-{i}" for i in (1, 2, 3, 4)}
    assert instance.get_materialized_partitions(CURATED) == {partition_key(h) for h in hours}


def test_materialize_an_agent_state_hour(lake: Lake, instance: DagsterInstance) -> None:
    subject = "agent_state"
    hour = closed_hour()
    at = hour + timedelta(minutes=1)
    v1 = {"AgentId": 1, "BusNo": 2, "SessionId": "s", "CurrentState": "Available", "StartDate": "d"}
    v2 = {
        "agentId": 3,
        "businessUnitId": 4,
        "sessionId": "t",
        "state": "Unavailable",
        "startDate": "e",
        "reasonCode": "Lunch",
    }
    stage(lake.store, subject, hour, [envelope("a1", at, v1), envelope("a2", at, v2)])
    result = materialize(
        [curate_assets(subject, PARTITIONS, 24)],
        partition_key=partition_key(hour),
        resources=lake.resources(),
        instance=instance,
    )
    assert result.success
    rows = read_parquet(lake.store.get(curated_key(subject, hour, 0))).to_pylist()
    assert [
        (r["_event_id"], r["_schema_version"], r["agent_id"], r["state"], r["reason_code"])
        for r in rows
    ] == [("a1", "v1", 1, "Available", None), ("a2", "v2", 3, "Unavailable", "Lunch")]


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXONE_PIPELINE_SENSOR_INTERVAL_SECONDS", "5")
    monkeypatch.setenv("CXONE_PIPELINE_BACKFILL_HOURS_PER_RUN", "6")
    monkeypatch.setenv("CXONE_PIPELINE_RECONCILE_CRON", "15 4 * * *")
    monkeypatch.setenv("CXONE_PIPELINE_SENSOR_LOOKBACK_HOURS", "5")
    monkeypatch.setenv("CXONE_PIPELINE_QUARANTINE_RATE_MAX", "0.05")
    monkeypatch.setenv("CXONE_PIPELINE_PARTITIONS_START", "2026-11-01-00:00")
    configured = build_definitions(Settings.from_env())

    assert configured.resolve_sensor_def("staging_sensor").minimum_interval_seconds == 5
    assert configured.resolve_schedule_def("nightly_reconcile").cron_schedule == "15 4 * * *"
    curate = configured.resolve_assets_def(CURATED)
    assert curate.backfill_policy.max_partitions_per_run == 6
    assert curate.partitions_def.get_first_partition_key() == "2026-11-01-00:00"
    curation = build_resources(Settings.from_env())["curation"]
    assert (curation.quarantine_rate_max, curation.lookback_hours) == (0.05, 5)
    # Fixed for every run: run config for it is refused (tested as a UI launch).
    assert configured.resources["curation"].config_schema.as_field().config_type.fields == {}


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CXONE_PIPELINE_SENSOR_INTERVAL_SECONDS", "often", "is not an integer"),
        ("CXONE_PIPELINE_BACKFILL_HOURS_PER_RUN", "0", "must be at least 1"),
        ("CXONE_PIPELINE_QUARANTINE_RATE_MAX", "5", "between 0 and 1"),
    ],
)
def test_malformed_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=message) as raised:
        build_definitions(Settings.from_env())
    assert name in str(raised.value)
