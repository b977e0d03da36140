"""The shipped contact_kpis mart: its numbers on hand-made hours, its checks, its automation."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

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
    CURATE_CONTACTS,
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
KPIS = contact_kpis_asset("completed_contact", daily_partitions(partition_hour(START)))
KPIS_KEY = AssetKey(["marts", "contact_kpis"])
SKILL_NAMES = {10: "Sales", 20: "Support"}


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def contact(
    contact_id: int,
    start: datetime,
    skill: int | None,
    agent: Any,
    acw: Any,
    queue: Any,
    abandoned: Any = False,
    updated: datetime | None = None,
) -> dict:
    """A completed contact as CXone's current API versions send it (v2), staged as pulled."""
    payload = {
        "contactId": contact_id,
        "contactStartDate": iso(start),
        "lastUpdateTime": iso(updated or start + timedelta(minutes=10)),
        "skillId": skill,
        "skillName": SKILL_NAMES.get(skill) if skill else None,
        "abandoned": abandoned,
        "agentSeconds": agent,
        "acwSeconds": acw,
        "inQueueSeconds": queue,
    }
    return envelope(str(contact_id), start, payload, "v2")


def stage_day(lake: Lake, instance: DagsterInstance) -> None:
    """Two hours of DAY and one of the next day, curated."""
    first = datetime(2026, 11, 27, 4, tzinfo=timezone.utc)
    second = first.replace(hour=17)
    at = first + timedelta(minutes=1)
    older_api = {  # v1 spelling, no skill
        "contactId": 5,
        "contactStart": iso(at),
        "lastUpdateTime": iso(at),
        "abandoned": False,
        "agentSeconds": 40,
        "ACWSeconds": 0,
        "inQueueSeconds": 2,
    }
    hours = {
        first: [
            contact(1, at, 10, agent=100, acw=20, queue=12),
            # Numbers and flags as text, as some endpoints send them.
            contact(2, at, 10, agent="200", acw="10", queue="30", abandoned="false"),
            contact(3, at, 10, agent=0, acw=0, queue=60, abandoned=True),
            contact(4, at, 20, agent=50, acw=10, queue=5),
            envelope("5", at, older_api, "v1"),
            # An older copy of contact 2 (the latest lastUpdateTime wins) and a contact whose
            # start has no zone (quarantined): neither is a contact of the day.
            contact(2, at, 10, agent=999, acw=0, queue=1, updated=at),
            envelope("9", at, {"contactId": 9, "contactStartDate": "2026-11-27T04:01:00"}, "v2"),
        ],
        second: [
            contact(6, second, 20, agent=0, acw=0, queue=90, abandoned=True),
            contact(7, second, 20, agent=300, acw=30, queue=15),
            contact(8, second, 20, agent=150, acw=0, queue=10),
        ],
        first + timedelta(days=1): [contact(10, first + timedelta(days=1), 10, 999, 1, 7)],
    }
    for hour, envelopes in hours.items():
        stage(lake.store, "completed_contact", hour, envelopes)
        materialize_hour(lake, instance, hour, CURATE_CONTACTS)


def materialize_day(lake: Lake, instance: DagsterInstance, day: date) -> ExecuteInProcessResult:
    return materialize_downstream(lake, instance, KPIS, day.isoformat(), CURATE_CONTACTS)


def test_contact_kpis_of_a_hand_made_day(lake: Lake, instance: DagsterInstance) -> None:
    stage_day(lake, instance)
    result = materialize_day(lake, instance, DAY)
    assert result.success

    kpis = read_mart(lake.store, "contact_kpis", DAY)
    assert kpis.schema == KPI_SCHEMA
    assert kpis.to_pylist() == [
        {
            "contact_date": DAY,
            "skill_id": 10,
            "skill_name": "Sales",
            "contacts": 3,
            "abandoned": 1,
            "abandoned_rate": pytest.approx(1 / 3),
            # Answered contacts, agent + after-call work: (100 + 20 + 200 + 10) / 2.
            "avg_handle_seconds": 165.0,
            # Every contact, the abandoned one included: (12 + 30 + 60) / 3.
            "avg_queue_seconds": 34.0,
        },
        {
            "contact_date": DAY,
            "skill_id": 20,
            "skill_name": "Support",
            "contacts": 4,
            "abandoned": 1,
            "abandoned_rate": 0.25,
            "avg_handle_seconds": 180.0,  # (60 + 330 + 150) / 3
            "avg_queue_seconds": 30.0,  # (5 + 90 + 15 + 10) / 4
        },
        {
            "contact_date": DAY,
            "skill_id": None,
            "skill_name": None,
            "contacts": 1,
            "abandoned": 0,
            "abandoned_rate": 0.0,
            "avg_handle_seconds": 40.0,
            "avg_queue_seconds": 2.0,
        },
    ]

    materialization = result.asset_materializations_for_node(KPIS.node_def.name)[0]
    assert materialization.partition == "2026-11-27"
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    assert metadata["dagster/row_count"] == 3
    assert metadata["contacts"] == 8
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
    contacts = [contact(1, hour, 10, -30, 0, 5), contact(2, hour, 10, 10, 0, 5)]
    stage(lake.store, "completed_contact", hour, contacts)
    materialize_hour(lake, instance, hour, CURATE_CONTACTS)
    result = materialize_day(lake, instance, DAY)
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert [(e.check_name, e.severity.value) for e in failed] == [("values_in_range", "ERROR")]
    assert failed[0].metadata["out_of_range"].value == {"avg_handle_seconds": [-10.0]}


def test_call_event_kpis_leave_what_a_call_event_lacks_null() -> None:
    calls = pa.table(
        {
            "skill_id": pa.array([10, 10, 20, None], pa.int64()),
            "duration_seconds": pa.array([100, 300, 50, 40], pa.int64()),
        }
    )
    kpis = contact_kpis(to_pandas(calls), SUBJECT_COLUMNS["call_event"], DAY)
    blank = {
        "skill_name": None,
        "abandoned": None,
        "abandoned_rate": None,
        "avg_queue_seconds": None,
    }
    assert kpis.to_pylist() == [
        {"contact_date": DAY, "skill_id": 10, **blank, "contacts": 2, "avg_handle_seconds": 200.0},
        {"contact_date": DAY, "skill_id": 20, **blank, "contacts": 1, "avg_handle_seconds": 50.0},
        {"contact_date": DAY, "skill_id": None, **blank, "contacts": 1, "avg_handle_seconds": 40.0},
    ]


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
    assert CONTACT_KPIS_SUBJECT == "completed_contact"
    assert graph.get(KPIS_KEY).parent_keys == {AssetKey(["curated", "completed_contact"])}
    assert defs.resolve_sensor_def("marts_sensor").default_status.value == "RUNNING"
    assert defs.resolve_assets_def(KPIS_KEY).partitions_def.get_first_partition_key() == (
        "2025-01-01"
    )


def test_curating_a_recent_hour_requests_its_day_and_an_old_one_does_not(
    lake: Lake, instance: DagsterInstance
) -> None:
    assets = Definitions(assets=[CURATE_CONTACTS, KPIS], resources=lake.resources())
    evaluation = evaluate_automation_conditions(assets, instance)
    assert evaluation.total_requested == 0

    recent = closed_hour(2)
    stage(lake.store, "completed_contact", recent, [contact(1, recent, 1, 10, 0, 5)])
    materialize_hour(lake, instance, recent, CURATE_CONTACTS)
    evaluation = evaluate_automation_conditions(assets, instance, cursor=evaluation.cursor)
    requested = evaluation.get_requested_partitions(KPIS_KEY)
    assert requested == {recent.strftime("%Y-%m-%d")}

    evaluation = evaluate_automation_conditions(assets, instance, cursor=evaluation.cursor)
    assert evaluation.total_requested == 0

    old = closed_hour(24 * 5)
    stage(lake.store, "completed_contact", old, [contact(2, old, 1, 10, 0, 5)])
    materialize_hour(lake, instance, old, CURATE_CONTACTS)
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

    # November: contacts 1-3 and the next day's 10 on skill 10, 4 and 6-8 on 20, 5 without.
    assert month == [
        (10, 4, 0.25, pytest.approx(1330 / 3)),
        (20, 4, 0.25, 180.0),
        (None, 1, 0.0, 40.0),
    ]
    assert mart == [
        (DAY, 10, 3, pytest.approx(1 / 3), 165.0),
        (DAY, 20, 4, 0.25, 180.0),
        (DAY, None, 1, 0.0, 40.0),
    ]
