"""Staged events of every schema version and Dagster resources over a test lake."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetsDefinition, DagsterInstance, ExecuteInProcessResult, materialize
from dagster_aws.s3 import S3Resource

from cxone_pipeline.defs.assets import curate_assets, hourly_partitions
from cxone_pipeline.defs.curated_io import curated_io_managers
from cxone_pipeline.defs.resources import CurationSettings, LakeResource
from cxone_pipeline.lake.layout import hour_floor, import_key, partition_key
from cxone_pipeline.lake.store import LocalStore, S3Store, Store, s3_client
from cxone_pipeline.settings import DEFAULT_SCHEMAS_DIR


def closed_hour(hours_ago: int = 2) -> datetime:
    """An hour that is closed and past its grace period whenever the suite runs."""
    return hour_floor(datetime.now(timezone.utc)) - timedelta(hours=hours_ago)


CALL_PAYLOADS: dict[str, dict[str, Any]] = {
    "v1": {"customer_id": "c-1", "call_duration_sec": 61, "agent_ext": "101"},
    "v2": {"customerId": "c-2", "duration": 3_000_000_000, "agentId": "102", "transcript": "hi"},
    "v3": {
        "contactId": 7,
        "customerId": "c-3",
        "duration": 30,
        "agentId": "103",
        "transcript": None,
        "direction": "OUTBOUND",
        "skillId": 5,
        "startedAt": 1_764_000_000_000,
        "tags": ["vip"],
    },
}


def envelope(
    event_id: str, received_at: datetime, payload: Any, version: str | None = None
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "received_at": received_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "schema_version": version,
        "payload": payload,
    }


def stage(store: Store, subject: str, hour: datetime, envelopes: list[dict]) -> str:
    """Write one gzip NDJSON staging object into `hour`, named by its content like an import."""
    body = b"".join(json.dumps(e).encode() + b"\n" for e in envelopes)
    key = import_key(subject, hour, hashlib.sha256(body).hexdigest()[:32])
    store.put(key, gzip.compress(body, mtime=0))
    return key


def call_events(hour: datetime, prefix: str = "e") -> list[dict]:
    """One event per call_event version, a second v1 event, an unknown field and a duplicate."""
    at = hour + timedelta(minutes=5)
    v1_extra = {**CALL_PAYLOADS["v1"], "customer_id": "c-4", "queue": "sales"}
    return [
        envelope(f"{prefix}-1", at, CALL_PAYLOADS["v1"], "v1"),
        envelope(f"{prefix}-2", at + timedelta(seconds=1), CALL_PAYLOADS["v2"], "v2"),
        envelope(f"{prefix}-3", at + timedelta(seconds=2), CALL_PAYLOADS["v3"], "v3"),
        envelope(f"{prefix}-4", at + timedelta(seconds=3), v1_extra, "v1"),
        # A retry of e-1 received later: the earliest copy wins.
        envelope(f"{prefix}-1", at + timedelta(seconds=4), CALL_PAYLOADS["v1"], "v1"),
    ]


@dataclass
class Lake:
    """A test lake: the store to stage into and read back, and the resources pointing at it."""

    store: Store
    lake: LakeResource
    schemas_dir: Path = DEFAULT_SCHEMAS_DIR

    def resources(self, **knobs: Any) -> dict[str, Any]:
        curation = CurationSettings(schemas_dir=str(self.schemas_dir), **knobs)
        return {"lake": self.lake, "curation": curation, **curated_io_managers(self.lake, curation)}


def local_lake(root: Path) -> Lake:
    return Lake(LocalStore(root), LakeResource(lake_url=str(root), s3=S3Resource()))


def s3_lake(endpoint: str, bucket: str) -> Lake:
    return Lake(
        S3Store(s3_client(endpoint), bucket, "lake"),
        LakeResource(lake_url=f"s3://{bucket}/lake", s3=S3Resource(endpoint_url=endpoint)),
    )


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return local_lake(tmp_path / "lake")


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as test_instance:
        yield test_instance


START = "2025-01-01-00:00"
CURATE_CALLS = curate_assets("call_event", hourly_partitions(START), hours_per_run=24)
CURATE_CONTACTS = curate_assets("completed_contact", hourly_partitions(START), hours_per_run=24)


def materialize_hour(
    lake: Lake, instance: DagsterInstance, hour: datetime, curate: AssetsDefinition = CURATE_CALLS
) -> ExecuteInProcessResult:
    """Materialize curated/quarantine of a subject (call_event unless `curate` says) for one
    hour, as a sensor-launched run would."""
    result = materialize(
        [curate],
        partition_key=partition_key(hour),
        resources=lake.resources(),
        instance=instance,
    )
    assert result.success
    return result


def materialize_downstream(
    lake: Lake,
    instance: DagsterInstance,
    asset: AssetsDefinition,
    partition: str,
    curate: AssetsDefinition = CURATE_CALLS,
) -> ExecuteInProcessResult:
    """Materialize an asset whose input is the curated asset of `curate` (call_event unless
    it says), loaded from the lake."""
    return materialize(
        [curate, asset],
        selection=[asset],
        partition_key=partition,
        resources=lake.resources(),
        instance=instance,
        raise_on_error=False,
    )
