"""Downstream assets declared on `curated/<S>` get its hours as pandas or Arrow, on both lakes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from dagster import (
    AssetIn,
    AssetKey,
    DagsterInstance,
    DagsterInvariantViolationError,
    DailyPartitionsDefinition,
    asset,
    build_output_context,
)

from cxone_pipeline.defs.curated_io import CURATED_IO_MANAGER, CuratedIOManager
from cxone_pipeline.defs.marts import HOURS_OF_THE_DAY
from cxone_pipeline.defs.resources import CurationSettings
from cxone_pipeline.lake.layout import hour_floor, partition_key
from cxone_pipeline.registry import load_subject
from cxone_pipeline.resolve import canonical_arrow_schema
from cxone_pipeline.settings import DEFAULT_SCHEMAS_DIR
from cxone_pipeline_tests.dagster_fixtures import (
    CURATE_CALLS,
    Lake,
    call_events,
    local_lake,
    materialize_downstream,
    materialize_hour,
    s3_lake,
    stage,
)

# Two hours of one past day, and an hour of that day that never gets data.
DAY = "2026-11-27"
HOURS = [
    datetime(2026, 11, 27, 3, tzinfo=timezone.utc),
    datetime(2026, 11, 27, 4, tzinfo=timezone.utc),
]
CANONICAL = canonical_arrow_schema(load_subject(DEFAULT_SCHEMAS_DIR, "call_event"))
DAILY = DailyPartitionsDefinition(start_date="2025-01-01", timezone="UTC", end_offset=1)
CURATED_CALLS = AssetKey(["curated", "call_event"])

# What each probe asset received, by asset name.
received: dict[str, Any] = {}


@asset(
    partitions_def=CURATE_CALLS.partitions_def, ins={"call_event": AssetIn(key_prefix="curated")}
)
def hourly_frame(call_event: pd.DataFrame) -> None:
    received["hourly_frame"] = call_event


@asset(
    partitions_def=DAILY,
    ins={"calls": AssetIn(CURATED_CALLS, partition_mapping=HOURS_OF_THE_DAY)},
)
def daily_table(calls: pa.Table) -> None:
    received["daily_table"] = calls


@asset(
    partitions_def=DAILY,
    ins={"calls": AssetIn(CURATED_CALLS, partition_mapping=HOURS_OF_THE_DAY)},
)
def daily_unannotated(calls) -> None:  # no annotation: loaded as pandas
    received["daily_unannotated"] = calls


@asset(partitions_def=DAILY, ins={"calls": AssetIn(CURATED_CALLS)})
def daily_dict(calls: dict) -> None:
    received["daily_dict"] = calls


@pytest.fixture(params=["local", "s3"])
def any_lake(request: pytest.FixtureRequest, tmp_path: Path) -> Lake:
    if request.param == "local":
        return local_lake(tmp_path / "lake")
    return s3_lake(request.getfixturevalue("s3_endpoint"), request.getfixturevalue("s3_bucket"))


def curate(lake: Lake, instance: DagsterInstance, hours: list[datetime]) -> None:
    for n, hour in enumerate(hours):
        stage(lake.store, "call_event", hour, call_events(hour, prefix=f"h{n}"))
        materialize_hour(lake, instance, hour)


def load(lake: Lake, instance: DagsterInstance, probe: Any, partition: str) -> Any:
    received.clear()
    assert materialize_downstream(lake, instance, probe, partition).success
    return received[probe.key.path[-1]]


def test_an_hourly_asset_gets_its_hour_as_a_typed_frame(
    any_lake: Lake, instance: DagsterInstance
) -> None:
    curate(any_lake, instance, HOURS)
    frame = load(any_lake, instance, hourly_frame, partition_key(HOURS[1]))

    assert list(frame.columns) == CANONICAL.names
    assert dict(frame.dtypes.astype(str)) == {
        "customer_id": "string",
        "duration_seconds": "Int64",
        "agent_extension": "string",
        "transcript_raw": "string",
        "contact_id": "Int64",
        "direction": "string",
        "skill_id": "Int64",
        "started_at": "datetime64[ms, UTC]",
        "tags": "list<element: string not null>[pyarrow]",
        "_event_id": "string",
        "_schema_version": "string",
        "_received_at": "datetime64[us, UTC]",
        "_unmapped_fields": "string",
    }
    rows = frame.set_index("_event_id")
    assert list(rows.index) == ["h1-1", "h1-2", "h1-3", "h1-4"]
    assert rows.loc["h1-2", "duration_seconds"] == 3_000_000_000
    assert rows.loc["h1-3", "skill_id"] == 5
    assert rows.loc["h1-3", "tags"] == ["vip"]
    assert rows.loc["h1-3", "started_at"] == pd.Timestamp(1_764_000_000_000, unit="ms", tz="UTC")
    assert rows.loc["h1-4", "_unmapped_fields"] == '{"queue":"sales"}'
    assert rows.loc["h1-4", "_received_at"] == pd.Timestamp(
        HOURS[1] + timedelta(minutes=5, seconds=3)
    )
    # v1 carries no contact id, skill or transcript: missing, as pandas' NA.
    assert rows.loc["h1-1", "contact_id"] is pd.NA
    assert rows.loc["h1-1", "skill_id"] is pd.NA
    assert rows.loc["h1-1", "transcript_raw"] is pd.NA
    assert rows.loc["h1-1", "tags"] == []


def test_a_daily_asset_gets_the_hours_of_its_day_as_arrow(
    any_lake: Lake, instance: DagsterInstance
) -> None:
    next_day = HOURS[1] + timedelta(days=1)
    curate(any_lake, instance, [*HOURS, next_day])
    table = load(any_lake, instance, daily_table, DAY)

    assert table.schema == CANONICAL
    # The two hours of the day in hour order; the next day's hour is not part of it.
    assert table.column("_event_id").to_pylist() == [
        "h0-1",
        "h0-2",
        "h0-3",
        "h0-4",
        "h1-1",
        "h1-2",
        "h1-3",
        "h1-4",
    ]
    assert table.column("duration_seconds").to_pylist() == [61, 3_000_000_000, 30, 61] * 2


def test_an_unannotated_input_is_a_frame_and_today_reads_only_existing_hours(
    any_lake: Lake, instance: DagsterInstance
) -> None:
    # Today's partition maps to hours after the open one, which the curated asset does not have.
    open_hour = hour_floor(datetime.now(timezone.utc))
    curate(any_lake, instance, [open_hour])
    frame = load(any_lake, instance, daily_unannotated, open_hour.strftime("%Y-%m-%d"))
    assert isinstance(frame, pd.DataFrame)
    assert list(frame["_event_id"]) == ["h0-1", "h0-2", "h0-3", "h0-4"]
    assert frame["duration_seconds"].dtype == "Int64"


def test_a_day_without_data_is_an_empty_frame_with_the_canonical_columns(
    lake: Lake, instance: DagsterInstance
) -> None:
    frame = load(lake, instance, daily_unannotated, DAY)
    assert frame.empty
    assert list(frame.columns) == CANONICAL.names
    assert frame["skill_id"].dtype == "Int64"
    assert str(frame["started_at"].dtype) == "datetime64[ms, UTC]"


def test_an_input_annotated_with_another_type_is_refused(
    lake: Lake, instance: DagsterInstance
) -> None:
    result = materialize_downstream(lake, instance, daily_dict, DAY)
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert "annotate it pd.DataFrame or pa.Table" in str(failure)


def test_the_curate_run_stores_nothing_through_the_io_manager(lake: Lake) -> None:
    curation = CurationSettings(schemas_dir=str(DEFAULT_SCHEMAS_DIR))
    manager = CuratedIOManager(lake=lake.lake, curation=curation)
    context = build_output_context(asset_key=CURATED_CALLS)
    manager.handle_output(context, None)
    with pytest.raises(DagsterInvariantViolationError, match="yield MaterializeResult"):
        manager.handle_output(context, pd.DataFrame())
    assert list(lake.store.list("")) == []


def test_the_resource_key_is_the_curated_specs_io_manager() -> None:
    spec = next(s for s in CURATE_CALLS.specs if s.key.path[0] == "curated")
    assert CURATE_CALLS.get_io_manager_key_for_asset_key(spec.key) == CURATED_IO_MANAGER
