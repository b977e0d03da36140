"""Run the landing app under uvicorn against a given store, and read back what it staged."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cxone_pipeline.lake.layout import parse_staging_key
from cxone_pipeline.lake.store import Store
from cxone_pipeline.landing.app import create_app
from cxone_pipeline.landing.command import uvicorn_options
from cxone_pipeline.landing.connections import ConnectionLimits, guarded_protocol
from cxone_pipeline.registry import discover_subjects
from cxone_pipeline.settings import DEFAULT_SCHEMAS_DIR, Secret, Settings
from cxone_pipeline_tests.servers import uvicorn_thread

TOKEN = "test-token-1"
OLD_TOKEN = "test-token-0"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Standard Webhooks secrets: whsec_ + base64 of the key bytes; each belongs to one subject.
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"call-event-test-key-0123456789ab").decode()
OLD_WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"call-event-old-key-0123456789abc").decode()
AGENT_WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"agent-state-test-key-0123456789a").decode()

TEST_SETTINGS = Settings(
    ingest_tokens=(Secret(TOKEN), Secret(OLD_TOKEN)),
    webhook_secrets=(
        ("call_event", Secret(WEBHOOK_SECRET)),
        ("call_event", Secret(OLD_WEBHOOK_SECRET)),
        ("agent_state", Secret(AGENT_WEBHOOK_SECRET)),
    ),
    schemas_dir=DEFAULT_SCHEMAS_DIR,
)


@contextmanager
def running_landing(store: Store, **overrides: Any) -> Iterator[str]:
    """The landing app under uvicorn in this process, with the options `serve` uses."""
    settings = dataclasses.replace(TEST_SETTINGS, **overrides)
    if "webhook_secrets" not in overrides:
        # A test's own registry: sign only for the subjects it has.
        subjects = set(discover_subjects(settings.schemas_dir))
        secrets = tuple((s, secret) for s, secret in settings.webhook_secrets if s in subjects)
        settings = dataclasses.replace(settings, webhook_secrets=secrets)
    options = {
        **uvicorn_options(settings),
        "http": guarded_protocol(ConnectionLimits.from_settings(settings)),
    }
    with uvicorn_thread(create_app(settings, store), **options) as url:
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
