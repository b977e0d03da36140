"""Run the landing app under uvicorn against a given store, and read back what it staged."""

from __future__ import annotations

import dataclasses
import gzip
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cxone_pipeline.lake.layout import parse_staging_key
from cxone_pipeline.lake.store import Store
from cxone_pipeline.landing.app import create_app
from cxone_pipeline.landing.command import KEEP_ALIVE_SECONDS
from cxone_pipeline.settings import DEFAULT_SCHEMAS_DIR, Secret, Settings
from cxone_pipeline_tests.servers import uvicorn_thread

TOKEN = "test-token-1"
OLD_TOKEN = "test-token-0"
HMAC_SECRET = "test-hmac-secret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

TEST_SETTINGS = Settings(
    ingest_tokens=(Secret(TOKEN), Secret(OLD_TOKEN)),
    hmac_secret=Secret(HMAC_SECRET),
    schemas_dir=DEFAULT_SCHEMAS_DIR,
)


@contextmanager
def running_landing(store: Store, **overrides: Any) -> Iterator[str]:
    settings = dataclasses.replace(TEST_SETTINGS, **overrides)
    with uvicorn_thread(create_app(settings, store), timeout_keep_alive=KEEP_ALIVE_SECONDS) as url:
        yield url


def staged_objects(store: Store, subject: str = "") -> list[str]:
    return [
        info.key
        for info in store.list(f"staging/{subject}")
        if parse_staging_key(info.key) is not None
    ]


def staged_envelopes(store: Store, subject: str = "") -> list[dict[str, Any]]:
    envelopes = []
    for key in staged_objects(store, subject):
        for line in gzip.decompress(store.get(key)).splitlines():
            envelopes.append({**json.loads(line), "_key": key})
    return envelopes
