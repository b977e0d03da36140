"""Shared fixtures: an S3-compatible server (moto, server mode), lakes, the CXone simulator."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from cxone_pipeline.lake.store import LocalStore, S3Store, s3_client
from cxone_pipeline_tests.cxone_simulator import CXoneSimulator, running_simulator
from cxone_pipeline_tests.servers import free_port, start_moto, stop_process

# Fake credentials for the loopback S3 server; real AWS is never contacted.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_REGION="us-east-1",
)
os.environ.pop("AWS_PROFILE", None)
os.environ["DAGSTER_DISABLE_TELEMETRY"] = "1"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    process = start_moto(port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    bucket = f"lake-{secrets.token_hex(6)}"
    s3_client(s3_endpoint).create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture
def s3_lake_env(s3_endpoint: str, s3_bucket: str) -> dict[str, str]:
    """Environment that points the project at a fresh bucket on the loopback S3 server."""
    return {
        "CXONE_PIPELINE_LAKE_URL": f"s3://{s3_bucket}/lake",
        "CXONE_PIPELINE_S3_ENDPOINT_URL": s3_endpoint,
    }


@pytest.fixture
def s3_store(s3_endpoint: str, s3_bucket: str) -> S3Store:
    return S3Store(s3_client(s3_endpoint), s3_bucket, "lake")


@pytest.fixture
def local_store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "lake")


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> LocalStore | S3Store:
    """Each test using this runs once per store implementation."""
    return request.getfixturevalue(f"{request.param}_store")


@pytest.fixture
def sim() -> Iterator[CXoneSimulator]:
    """The CXone simulator under uvicorn on loopback."""
    with running_simulator() as simulator:
        yield simulator
