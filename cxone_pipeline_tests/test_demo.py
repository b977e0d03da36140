"""`cxone-pipeline demo` against a real landing: every version posted, a closed hour staged."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cxone_pipeline.curate import curate_hour
from cxone_pipeline.demo import sample_payloads
from cxone_pipeline.lake.layout import STAGING, hour_floor, parse_staging_key
from cxone_pipeline.lake.store import LocalStore
from cxone_pipeline.registry import load_registry, load_subject
from cxone_pipeline.settings import DEFAULT_SCHEMAS_DIR
from cxone_pipeline_tests.servers import cli_process, free_port, stop_process, wait_for_http

TOKEN = "demo-token"


def test_sample_payloads_fit_their_writer_schema() -> None:
    for subject in load_registry(DEFAULT_SCHEMAS_DIR).values():
        for writer in subject.versions:
            declared = {f["name"] for f in writer.schema["fields"]}
            for payload in sample_payloads(writer.schema, writer.version, 12, "t"):
                assert set(payload) - declared <= {"eventId", "demo_note"}
                assert declared <= set(payload)


def test_demo_posts_every_version_and_stages_the_previous_hour(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    env = {"CXONE_PIPELINE_LAKE_URL": str(lake), "CXONE_PIPELINE_INGEST_TOKEN": TOKEN}
    port = free_port()
    landing = cli_process(["serve", "--host", "127.0.0.1", "--port", str(port)], env)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", process=landing)
        demo = cli_process(
            ["demo", "--url", f"http://127.0.0.1:{port}", "--per-version", "20"],
            env,
            stdout=subprocess.PIPE,
            text=True,
        )
        output, _ = demo.communicate(timeout=120)
    finally:
        stop_process(landing)
    assert demo.returncode == 0, output
    assert "posted 20 call_event v3 events" in output
    assert "posted 20 call_event v4 events" in output
    assert "staged 80 call_event events into the closed hour" in output

    store = LocalStore(lake)
    previous = hour_floor(datetime.now(timezone.utc)) - timedelta(hours=1)
    hours = {parse_staging_key(info.key).hour for info in store.list(f"{STAGING}/call_event/")}
    assert previous in hours

    schemas = load_subject(DEFAULT_SCHEMAS_DIR, "call_event")
    imported = curate_hour(store, schemas, previous)
    assert imported.result.rows_per_version == {"v1": 20, "v2": 20, "v3": 20, "v4": 20}
    assert imported.result.unmapped_fields == {"demo_note": 8}
    posted = [curate_hour(store, schemas, hour) for hour in hours - {previous}]
    rows = {
        v: sum(o.result.rows_per_version.get(v, 0) for o in posted)
        for v in ("v1", "v2", "v3", "v4")
    }
    assert rows == {"v1": 20, "v2": 20, "v3": 20, "v4": 20}
    codes = {}
    for outcome in posted:
        for code, n in outcome.result.rejects_per_code.items():
            codes[code] = codes.get(code, 0) + n
    assert codes == {"unknown_schema_version": 3, "no_matching_schema": 1}
    unmapped = [
        json.loads(text)
        for outcome in posted
        for text in outcome.result.table.column("_unmapped_fields").to_pylist()
        if text
    ]
    assert len(unmapped) == 8
    assert {"demo_note": "unknown to every schema (0)"} in unmapped
