"""The production instance file, `dagster.postgres.yaml`, on a real PostgreSQL server."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import AssetCheckKey, AssetKey, DagsterInstance, materialize

from cxone_pipeline.lake.layout import partition_key
from cxone_pipeline.settings import PROJECT_ROOT
from cxone_pipeline_tests.dagster_fixtures import (
    CURATE_CALLS,
    Lake,
    call_events,
    closed_hour,
    stage,
)
from cxone_pipeline_tests.postgres import postgres_server
from cxone_pipeline_tests.test_sensor import requested, tick


@pytest.fixture(scope="module")
def pg_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterInstance]:
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(PROJECT_ROOT / "dagster.postgres.yaml", home / "dagster.yaml")
    with postgres_server() as server, pytest.MonkeyPatch.context() as env:
        for name, value in server.env().items():
            env.setenv(name, value)
        with DagsterInstance.from_config(str(home)) as instance:
            yield instance


def test_materialization_sensor_and_checks_on_postgres(
    lake: Lake, pg_instance: DagsterInstance
) -> None:
    storage = type(pg_instance.event_log_storage).__name__
    assert storage == "PostgresEventLogStorage"
    hour = closed_hour()
    partition = partition_key(hour)
    stage(lake.store, "call_event", hour, call_events(hour))

    first_tick = tick(lake, pg_instance)
    assert [p for p, _ in requested(first_tick)] == [partition]

    result = materialize(
        [CURATE_CALLS], partition_key=partition, resources=lake.resources(), instance=pg_instance
    )
    assert result.success
    assert pg_instance.get_materialized_partitions(AssetKey(["curated", "call_event"])) == {
        partition
    }

    # The materialization recorded the manifest in PostgreSQL: nothing changed, no new run.
    assert requested(tick(lake, pg_instance)) == []

    checks = pg_instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [
            AssetCheckKey(AssetKey(["curated", "call_event"]), name)
            for name in ("schema_drift", "quarantine_rate", "unique_event_ids")
        ]
    )
    outcomes = {
        key.name: record.event.asset_check_evaluation.passed  # type: ignore[union-attr]
        for key, record in checks.items()
    }
    # call_events() carries one field no schema declares: drift warns, the rest passes.
    assert outcomes == {"schema_drift": False, "quarantine_rate": True, "unique_event_ids": True}
    assert all(record.partition == partition for record in checks.values())
    assert Path(PROJECT_ROOT / "dagster.postgres.yaml").read_text().count("env: DAGSTER_PG_") == 5
