"""What a user does: run the landing, the Dagster webserver and daemon, post events, read results.

Real processes on loopback, a temporary DAGSTER_HOME and lake; results come from Dagster's
GraphQL API and the curated Parquet files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from cxone_pipeline.devenv import create_instance_storage
from cxone_pipeline.lake.layout import (
    CURATED,
    QUARANTINE,
    STAGING,
    parse_hour_path,
    partition_key,
)
from cxone_pipeline.lake.store import LocalStore, ObjectNotFound
from cxone_pipeline.marts import read_mart
from cxone_pipeline.resolve import read_parquet, read_rejects
from cxone_pipeline.settings import PROJECT_ROOT
from cxone_pipeline_tests.servers import cli_process, free_port, stop_process, wait_for_http

BIN = Path(sys.executable).parent  # the virtualenv's bin: dagster-webserver, dagster-daemon
TOKEN = "e2e-token"
T = TypeVar("T")

CALL_EVENTS = [
    ("v1", {"eventId": "c1", "customer_id": "C-1", "call_duration_sec": 10, "agent_ext": "7"}),
    ("v1", {"eventId": "c2", "customer_id": "C-2", "call_duration_sec": 20, "agent_ext": "7"}),
    (
        "v2",
        {"eventId": "c3", "customerId": "C-3", "duration": 30, "agentId": "8", "transcript": "t"},
    ),
    (
        "v3",
        {
            "eventId": "c4",
            "contactId": 4,
            "customerId": "C-4",
            "duration": 40,
            "agentId": "9",
            "direction": "INBOUND",
            "skillId": 1,
            "startedAt": 1_764_000_000_000,
            "tags": ["a"],
        },
    ),
    # No version: inferred as the newest writer schema it fits (v2), with an unknown field.
    (None, {"eventId": "c5", "customerId": "C-5", "duration": 50, "agentId": "8", "mood": "ok"}),
    # A version no schema file describes: staged, then quarantined.
    ("v9", {"eventId": "c6", "customerId": "C-6", "duration": 60, "agentId": "8"}),
]
AGENT_EVENTS = [
    (
        "v1",
        {
            "eventId": "a1",
            "AgentId": 1,
            "BusNo": 2,
            "SessionId": "s",
            "CurrentState": "Available",
            "StartDate": "2026-01-01",
        },
    ),
    (
        "v2",
        {
            "eventId": "a2",
            "agentId": 3,
            "businessUnitId": 4,
            "sessionId": "t",
            "state": "Unavailable",
            "startDate": "2026-01-01",
            "reasonCode": "Lunch",
        },
    ),
]


def completed_contacts(started: datetime) -> list[tuple[str | None, dict]]:
    """Contacts a Studio script pushes as CXone's current API versions spell them: two skills,
    one abandoned, numbers and flags as text as some endpoints send them, and an earlier
    update of the first contact posted after it (the later lastUpdateTime wins)."""
    start = started.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    updated = (started + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.000Z")

    def contact(
        contact_id: int, skill: tuple[int, str], agent: Any, acw: Any, queue: Any, **more: Any
    ) -> tuple[str, dict]:
        payload = {
            "contactId": contact_id,
            "contactStartDate": start,
            "lastUpdateTime": updated,
            "skillId": skill[0],
            "skillName": skill[1],
            "agentSeconds": agent,
            "acwSeconds": acw,
            "inQueueSeconds": queue,
            "abandoned": False,
        }
        return "v2", {**payload, **more}

    sales, support = (11, "Sales"), (12, "Support")
    return [
        contact(7000000001, sales, 100, 20, 10),
        contact(7000000002, sales, "200", "10", "30", abandoned="false"),
        contact(7000000003, sales, 0, 0, 50, abandoned=True),
        contact(7000000004, support, 60, 0, 5),
        contact(7000000001, sales, 999, 0, 1, lastUpdateTime=start),
    ]


RUNS = """
query Runs($tags: [ExecutionTag!]) {
  runsOrError(filter: {tags: $tags}) { ... on Runs { results { runId status } } }
}"""
CHECKS = """
query Checks($key: AssetKeyInput!, $check: String!, $partition: String) {
  assetCheckExecutions(assetKey: $key, checkName: $check, partition: $partition, limit: 1) {
    status
    evaluation { success severity partition description }
  }
}"""


def wait_for(what: str, probe: Callable[[], T | None], timeout: float) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def graphql(url: str, query: str, **variables: Any) -> dict:
    response = httpx.post(
        f"{url}/graphql", json={"query": query, "variables": variables}, timeout=30
    )
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[str, str, LocalStore]]:
    """Landing, webserver and daemon sharing a lake and a DAGSTER_HOME; yields their URLs."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    lake = tmp_path / "lake"
    env = {
        "DAGSTER_HOME": str(home),
        "CXONE_PIPELINE_LAKE_URL": str(lake),
        "CXONE_PIPELINE_INGEST_TOKEN": TOKEN,
        "CXONE_PIPELINE_SENSOR_INTERVAL_SECONDS": "2",
        # The landing stamps events with the current hour: refresh the open hour right away.
        "CXONE_PIPELINE_OPEN_HOUR_REFRESH_SECONDS": "1",
        "CXONE_PIPELINE_CLOSE_GRACE_SECONDS": "0",
    }
    create_instance_storage({**os.environ, **env})
    landing_port, dagster_port = free_port(), free_port()
    workspace = str(PROJECT_ROOT / "workspace.yaml")
    processes = [
        cli_process(["serve", "--host", "127.0.0.1", "--port", str(landing_port)], env),
        subprocess.Popen(
            [
                str(BIN / "dagster-webserver"),
                "-w",
                workspace,
                "-h",
                "127.0.0.1",
                "-p",
                str(dagster_port),
            ],
            env={**os.environ, **env},
            cwd=PROJECT_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", workspace],
            env={**os.environ, **env},
            cwd=PROJECT_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    try:
        landing_url = f"http://127.0.0.1:{landing_port}"
        dagster_url = f"http://127.0.0.1:{dagster_port}"
        # Dagster keeps starting while the test posts: its readiness is awaited with the runs.
        wait_for_http(f"{landing_url}/healthz", timeout=60, process=processes[0])
        yield landing_url, dagster_url, LocalStore(lake)
    finally:
        for process in reversed(processes):
            stop_process(process, timeout=30)


def post(landing_url: str, subject: str, events: list[tuple[str | None, dict]]) -> list[str]:
    """POST each event on its own; returns the event ids the landing answered."""
    ids = []
    for version, payload in events:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        if version:
            headers["X-Schema-Version"] = version
        response = httpx.post(f"{landing_url}/ingest/{subject}", json=payload, headers=headers)
        assert response.status_code == 202, response.text
        ids += response.json()["event_ids"]
    return ids


def curated_rows(store: LocalStore, subject: str) -> list[dict]:
    return [
        row
        for info in store.list(f"{CURATED}/{subject}/")
        for row in read_parquet(store.get(info.key)).to_pylist()
    ]


# Three processes import Dagster and the code location, then each run imports it again: on two
# busy cores that alone can take minutes, so this test gets more than the suite's default.
@pytest.mark.timeout(420)
def test_posted_events_become_curated_rows_and_check_results(stack) -> None:
    landing_url, dagster_url, store = stack
    assert post(landing_url, "call_event", CALL_EVENTS) == [e["eventId"] for _, e in CALL_EVENTS]
    assert post(landing_url, "agent_state", AGENT_EVENTS) == ["a1", "a2"]
    started = datetime.now(timezone.utc).replace(microsecond=0)
    contacts = completed_contacts(started)
    contact_ids = [str(c["contactId"]) for _, c in contacts]
    assert post(landing_url, "completed_contact", contacts) == contact_ids

    def all_curated() -> bool:
        subjects = ("call_event", "agent_state", "completed_contact")
        ids = {r["_event_id"] for s in subjects for r in curated_rows(store, s)}
        return ids == {"c1", "c2", "c3", "c4", "c5", "a1", "a2", *contact_ids}

    def sensor_runs_done() -> list[dict] | None:
        if not all_curated():
            return None
        tags = [{"key": "cxone/trigger", "value": "staging_sensor"}]
        try:
            runs = graphql(dagster_url, RUNS, tags=tags)["runsOrError"]["results"]
        except httpx.TransportError:  # the webserver is still loading the code location
            return None
        finished = runs and all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs)
        return runs if finished else None

    runs = wait_for("sensor-launched runs to curate every event", sensor_runs_done, timeout=220)
    assert {r["status"] for r in runs} == {"SUCCESS"}

    rows = {r["_event_id"]: r for r in curated_rows(store, "call_event")}
    assert {
        k: (r["_schema_version"], r["customer_id"], r["duration_seconds"]) for k, r in rows.items()
    } == {
        "c1": ("v1", "C-1", 10),
        "c2": ("v1", "C-2", 20),
        "c3": ("v2", "C-3", 30),
        "c4": ("v3", "C-4", 40),
        "c5": ("v2", "C-5", 50),
    }
    assert rows["c5"]["_unmapped_fields"] == '{"mood":"ok"}'
    agents = {
        r["_event_id"]: (r["agent_id"], r["state"]) for r in curated_rows(store, "agent_state")
    }
    assert agents == {"a1": (1, "Available"), "a2": (3, "Unavailable")}
    curated_contacts = {
        r["contact_id"]: (r["skill_id"], r["agent_seconds"], r["abandoned"], r["contact_start"])
        for r in curated_rows(store, "completed_contact")
    }
    assert curated_contacts == {
        7000000001: (11, 100.0, False, started),  # the copy updated last
        7000000002: (11, 200.0, False, started),
        7000000003: (11, 0.0, True, started),
        7000000004: (12, 60.0, False, started),
    }
    rejects = [
        reject
        for info in store.list(f"{QUARANTINE}/call_event/")
        for reject in read_rejects(store.get(info.key))
    ]
    assert [(r["event_id"], r["error"]["code"]) for r in rejects] == [
        ("c6", "unknown_schema_version")
    ]

    partition = partition_key(parse_hour_path(next(iter(store.list(f"{STAGING}/call_event/"))).key))
    results = {}
    # Completed contacts are partitioned by their start, the others by arrival.
    partitions = {"call_event": partition, "agent_state": partition}
    partitions["completed_contact"] = partition_key(started)
    for subject, partition in partitions.items():
        for check in ("schema_drift", "quarantine_rate", "unique_event_ids"):
            executions = graphql(
                dagster_url,
                CHECKS,
                key={"path": ["curated", subject]},
                check=check,
                partition=partition,
            )["assetCheckExecutions"]
            evaluation = executions[0]["evaluation"]
            assert evaluation["partition"] == partition
            results[(subject, check)] = (evaluation["success"], evaluation["severity"])
    assert results == {
        ("call_event", "schema_drift"): (False, "ERROR"),
        ("call_event", "quarantine_rate"): (False, "ERROR"),
        ("call_event", "unique_event_ids"): (True, "ERROR"),
        ("agent_state", "schema_drift"): (True, "WARN"),
        ("agent_state", "quarantine_rate"): (True, "ERROR"),
        ("agent_state", "unique_event_ids"): (True, "ERROR"),
        ("completed_contact", "schema_drift"): (True, "WARN"),
        ("completed_contact", "quarantine_rate"): (True, "ERROR"),
        ("completed_contact", "unique_event_ids"): (True, "ERROR"),
    }

    # The marts_sensor then builds the day's contact KPIs from the curated completed contacts.
    day = started.date()
    expected_kpis = [
        # contacts, abandoned, rate, average handle (agent + after-call work of answered
        # contacts), average queue
        (11, "Sales", 3, 1, 1 / 3, 165.0, 30.0),
        (12, "Support", 1, 0, 0.0, 60.0, 5.0),
    ]

    def kpis() -> list[tuple] | None:
        try:
            table = read_mart(store, "contact_kpis", day)
        except ObjectNotFound:
            return None
        rows = [tuple(r.values())[1:] for r in table.to_pylist()]
        return rows if rows == expected_kpis else None

    wait_for("marts/contact_kpis of the day", kpis, timeout=120)

    def evaluation(check: str) -> dict | None:
        executions = graphql(
            dagster_url,
            CHECKS,
            key={"path": ["marts", "contact_kpis"]},
            check=check,
            partition=day.isoformat(),
        )["assetCheckExecutions"]
        return executions[0]["evaluation"] if executions else None

    for check in ("contacts_reconciled", "one_row_per_skill", "values_in_range"):
        result = wait_for(f"{check} on marts/contact_kpis", lambda c=check: evaluation(c), 60)
        assert result["success"], result
