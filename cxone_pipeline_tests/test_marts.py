"""The shipped contact_kpis mart: its numbers on hand-made hours, its checks, its automation."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    Definitions,
    ExecuteInProcessResult,
    evaluate_automation_conditions,
)

from cxone_pipeline.definitions import defs
from cxone_pipeline.defs.marts import contact_kpis_asset, daily_partitions
from cxone_pipeline.lake.layout import mart_key, partition_hour
from cxone_pipeline.lake.read import to_pandas
from cxone_pipeline.marts import read_mart
from cxone_pipeline.marts.contact_kpis import (
    CONTACT_KPIS_SUBJECT,
    KPI_SCHEMA,
    SUBJECT_COLUMNS,
    check_contacts_reconciled,
    check_one_row_per_skill,
    contact_kpis,
)
from cxone_pipeline.registry import load_registry
from cxone_pipeline.resolve import canonical_arrow_schema
from cxone_pipeline.settings import DEFAULT_SCHEMAS_DIR, PROJECT_ROOT
from cxone_pipeline_tests.dagster_fixtures import (
    CURATE_CALLS,
    START,
    Lake,
    closed_hour,
    envelope,
    local_lake,
    materialize_downstream,
    materialize_hour,
    stage,
)

DAY = date(2026, 11, 27)
KPIS = contact_kpis_asset("call_event", daily_partitions(partition_hour(START)))
KPIS_KEY = AssetKey(["marts", "contact_kpis"])


def call(event_id: str, at: datetime, skill: int, seconds: int) -> dict:
    payload = {
        "contactId": int(event_id.split("-")[1]),
        "customerId": f"cust-{event_id}",
        "duration": seconds,
        "agentId": "101",
        "direction": "INBOUND",
        "skillId": skill,
        "startedAt": int(at.timestamp() * 1000),
    }
    return envelope(event_id, at, payload, "v3")


def stage_day(lake: Lake, instance: DagsterInstance) -> None:
    """Two hours of DAY and one of the next day, curated."""
    first = datetime(2026, 11, 27, 4, tzinfo=timezone.utc)
    second = first.replace(hour=17)
    at = first + timedelta(minutes=1)
    no_skill = {"customer_id": "cust-c-4", "call_duration_sec": 40, "agent_ext": "102"}
    hours = {
        first: [
            call("c-1", at, 10, 100),
            call("c-2", at, 10, 300),
            call("c-3", at, 20, 50),
            envelope("c-4", at, no_skill, "v1"),
            # A retry of c-1 (deduplicated) and an event no schema resolves (quarantined):
            # neither is a contact of the day.
            call("c-1", at + timedelta(seconds=9), 10, 100),
            envelope("c-9", at, {"customerId": "x"}, "v9"),
        ],
        second: [call("c-5", second, 20, 150)],
        first + timedelta(days=1): [call("c-6", first, 10, 999)],
    }
    for hour, envelopes in hours.items():
        stage(lake.store, "call_event", hour, envelopes)
        materialize_hour(lake, instance, hour)


def materialize_day(lake: Lake, instance: DagsterInstance, day: date) -> ExecuteInProcessResult:
    return materialize_downstream(lake, instance, KPIS, day.isoformat())


def test_contact_kpis_of_a_hand_made_day(lake: Lake, instance: DagsterInstance) -> None:
    stage_day(lake, instance)
    result = materialize_day(lake, instance, DAY)
    assert result.success

    kpis = read_mart(lake.store, "contact_kpis", DAY)
    assert kpis.schema == KPI_SCHEMA
    # call_event has no abandonment, queue time or skill name: those KPIs are null.
    blank = {
        "skill_name": None,
        "abandoned": None,
        "abandoned_rate": None,
        "avg_queue_seconds": None,
    }
    assert kpis.to_pylist() == [
        {"contact_date": DAY, "skill_id": 10, "contacts": 2, **blank, "avg_handle_seconds": 200.0},
        {"contact_date": DAY, "skill_id": 20, "contacts": 2, **blank, "avg_handle_seconds": 100.0},
        {"contact_date": DAY, "skill_id": None, "contacts": 1, **blank, "avg_handle_seconds": 40.0},
    ]

    materialization = result.asset_materializations_for_node(KPIS.node_def.name)[0]
    assert materialization.partition == "2026-11-27"
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    assert metadata["dagster/row_count"] == 3
    assert metadata["contacts"] == 5
    assert metadata["file"].endswith(mart_key("contact_kpis", DAY, 0))
    checks = {(e.check_name, e.partition): e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {
        ("contacts_reconciled", "2026-11-27"): True,
        ("one_row_per_skill", "2026-11-27"): True,
        ("values_in_range", "2026-11-27"): True,
    }


def test_a_day_without_contacts_is_a_file_with_no_rows(
    lake: Lake, instance: DagsterInstance
) -> None:
    assert materialize_day(lake, instance, DAY).success
    kpis = read_mart(lake.store, "contact_kpis", DAY)
    assert kpis.num_rows == 0
    assert kpis.schema == KPI_SCHEMA


def test_negative_durations_fail_values_in_range(lake: Lake, instance: DagsterInstance) -> None:
    hour = datetime(2026, 11, 27, 9, tzinfo=timezone.utc)
    stage(lake.store, "call_event", hour, [call("c-1", hour, 10, -30), call("c-2", hour, 10, 10)])
    materialize_hour(lake, instance, hour)
    result = materialize_day(lake, instance, DAY)
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert [(e.check_name, e.severity.value) for e in failed] == [("values_in_range", "ERROR")]
    assert failed[0].metadata["out_of_range"].value == {"avg_handle_seconds": [-10.0]}


def test_completed_contact_kpis_count_abandonment_and_queue_time() -> None:
    contacts = pa.table(
        {
            "skill_id": pa.array([5, 5, 5, 7, 7], pa.int64()),
            "skill_name": ["Sales", "Sales", None, "Support", "Support"],
            "abandoned": [False, True, False, False, None],
            "agent_seconds": pa.array([100, 0, 50, None, 30], pa.int32()),
            "acw_seconds": pa.array([10, 0, 10, 5, 0], pa.int32()),
            "in_queue_seconds": pa.array([5, 60, None, 3, 9], pa.int32()),
        }
    )
    kpis = contact_kpis(to_pandas(contacts), SUBJECT_COLUMNS["completed_contact"], DAY)
    assert kpis.to_pylist() == [
        {
            "contact_date": DAY,
            "skill_id": 5,
            "skill_name": "Sales",
            "contacts": 3,
            "abandoned": 1,
            "abandoned_rate": pytest.approx(1 / 3),
            # Answered contacts only: (100 + 10 + 50 + 10) / 2.
            "avg_handle_seconds": 85.0,
            # Every contact with a queue time, the abandoned one included: (5 + 60) / 2.
            "avg_queue_seconds": 32.5,
        },
        {
            "contact_date": DAY,
            "skill_id": 7,
            "skill_name": "Support",
            "contacts": 2,
            # An unknown abandonment flag counts as answered.
            "abandoned": 0,
            "abandoned_rate": 0.0,
            # A contact missing one of its handle parts has no handle time.
            "avg_handle_seconds": 30.0,
            "avg_queue_seconds": 6.0,
        },
    ]


def test_reconciliation_and_uniqueness_checks_fail_on_a_wrong_file() -> None:
    rows = [
        {"contact_date": DAY, "skill_id": 1, "contacts": 2},
        {"contact_date": DAY, "skill_id": 1, "contacts": 3},
    ]
    kpis = pa.Table.from_pylist(rows, schema=KPI_SCHEMA)
    reconciled = check_contacts_reconciled(kpis, 4)
    assert (reconciled.passed, reconciled.metadata) == (
        False,
        {"contacts_in_mart": 5, "curated_rows_read": 4},
    )
    unique = check_one_row_per_skill(kpis)
    assert (unique.passed, unique.metadata["repeated_skills"]) == (False, [1])


def test_every_mapping_names_columns_of_its_subjects_canonical_schema() -> None:
    registry = load_registry(DEFAULT_SCHEMAS_DIR)
    assert CONTACT_KPIS_SUBJECT in registry
    for subject in SUBJECT_COLUMNS.keys() & registry.keys():
        schema = canonical_arrow_schema(registry[subject])
        columns = SUBJECT_COLUMNS[subject]
        assert set(columns.names()) <= set(schema.names), subject
        numeric = [columns.skill_id, *columns.handle_seconds, columns.queue_seconds]
        for name in filter(None, numeric):
            assert pa.types.is_integer(schema.field(name).type) or pa.types.is_floating(
                schema.field(name).type
            ), (subject, name)
        if columns.abandoned:
            assert pa.types.is_boolean(schema.field(columns.abandoned).type), subject


def test_contact_kpis_follow_curated_in_the_lineage() -> None:
    graph = defs.resolve_asset_graph()
    assert graph.get(KPIS_KEY).parent_keys == {AssetKey(["curated", CONTACT_KPIS_SUBJECT])}
    assert defs.resolve_sensor_def("marts_sensor").default_status.value == "RUNNING"
    assert defs.resolve_assets_def(KPIS_KEY).partitions_def.get_first_partition_key() == (
        "2025-01-01"
    )


def test_curating_a_recent_hour_requests_its_day_and_an_old_one_does_not(
    lake: Lake, instance: DagsterInstance
) -> None:
    assets = Definitions(assets=[CURATE_CALLS, KPIS], resources=lake.resources())
    evaluation = evaluate_automation_conditions(assets, instance)
    assert evaluation.total_requested == 0

    recent = closed_hour(2)
    stage(lake.store, "call_event", recent, [call("c-1", recent, 1, 10)])
    materialize_hour(lake, instance, recent)
    evaluation = evaluate_automation_conditions(assets, instance, cursor=evaluation.cursor)
    requested = evaluation.get_requested_partitions(KPIS_KEY)
    assert requested == {recent.strftime("%Y-%m-%d")}

    evaluation = evaluate_automation_conditions(assets, instance, cursor=evaluation.cursor)
    assert evaluation.total_requested == 0

    old = closed_hour(24 * 5)
    stage(lake.store, "call_event", old, [call("c-2", old, 1, 10)])
    materialize_hour(lake, instance, old)
    evaluation = evaluate_automation_conditions(assets, instance, cursor=evaluation.cursor)
    assert evaluation.total_requested == 0


def documented_duckdb_queries() -> list[str]:
    text = (PROJECT_ROOT / "docs" / "dagster.md").read_text()
    section = text.split("DuckDB (these two queries are run by the test suite", 1)[1]
    return re.findall(r"```sql\n(.*?)```", section, re.S)[:2]


def test_the_duckdb_queries_of_building_on_the_lake(
    tmp_path: Path, instance: DagsterInstance
) -> None:
    lake = local_lake(tmp_path / ".lake")
    stage_day(lake, instance)
    assert materialize_day(lake, instance, DAY).success
    connection = duckdb.connect()
    connection.execute(f"SET file_search_path = '{tmp_path}'")
    month, mart = (connection.execute(query).fetchall() for query in documented_duckdb_queries())

    # November: c-1, c-2 and the next day's c-6 on skill 10; c-3, c-5 on 20; c-4 without.
    assert month == [(10, 3, pytest.approx(1399 / 3)), (20, 2, 100.0), (None, 1, 40.0)]
    assert mart == [(DAY, 10, 2, 200.0), (DAY, 20, 2, 100.0), (DAY, None, 1, 40.0)]
