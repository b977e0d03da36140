"""Studio delivery: `studio-snippet` output, and every documented payload curating cleanly."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from cxone_pipeline.cli import main
from cxone_pipeline.curate import curate_hour
from cxone_pipeline.cxone.studio import default_url, example_body, studio_shape, studio_text
from cxone_pipeline.lake.layout import parse_staging_key
from cxone_pipeline.lake.store import LocalStore
from cxone_pipeline.registry import load_registry, load_subject
from cxone_pipeline.settings import DEFAULT_SCHEMAS_DIR, PROJECT_ROOT
from cxone_pipeline_tests.landing_fixtures import AUTH, running_landing

DOCS = [PROJECT_ROOT / "README.md", PROJECT_ROOT / "docs" / "cxone-setup.md"]
# `curl … /ingest/<subject> … -d '<json>'`, across the command's continuation lines.
CURL = re.compile(r"curl [^`]*?/ingest/(\w+)[^`]*?-d '(\{.*?\})'", re.S)
MARKED = re.compile(r"<!-- payload: (\w+) (\w+) -->\n```json\n(.*?)```", re.S)


def documented_payloads() -> list[tuple[str, str, str | None, dict]]:
    """(where, subject, declared version, payload) of every payload the docs tell users to send."""
    found = []
    for path in DOCS:
        text = path.read_text()
        for subject, body in CURL.findall(text):
            found.append((path.name, subject, None, json.loads(body)))
        for subject, version, body in MARKED.findall(text):
            found.append((path.name, subject, version, json.loads(body)))
    return found


def test_the_docs_carry_payloads_for_curl_and_studio() -> None:
    where = {(name, subject, version) for name, subject, version, _ in documented_payloads()}
    assert where == {
        ("README.md", "call_event", None),
        ("cxone-setup.md", "call_event", None),
        ("cxone-setup.md", "call_event", "v4"),
    }


def test_documented_payloads_curate_with_no_quarantine(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "lake")
    payloads = documented_payloads()
    with running_landing(store) as url:
        for n, (_, subject, version, payload) in enumerate(payloads):
            headers = {**AUTH, "Idempotency-Key": f"doc-{n}"}
            if version:
                headers["X-Schema-Version"] = version
            response = httpx.post(f"{url}/ingest/{subject}", json=payload, headers=headers)
            assert response.status_code == 202, response.text

    schemas = load_subject(DEFAULT_SCHEMAS_DIR, "call_event")
    hours = {parse_staging_key(info.key).hour for info in store.list("staging/call_event/")}
    outcomes = [curate_hour(store, schemas, hour) for hour in hours]
    assert [r.message for o in outcomes for r in o.result.rejects] == []
    rows = {r["_event_id"]: r for o in outcomes for r in o.result.table.to_pylist()}
    assert len(rows) == len(payloads)
    studio = rows["5000001-call_event"]
    assert (studio["_schema_version"], studio["contact_id"], studio["skill_id"]) == (
        "v4",
        5000001,
        42,
    )
    assert studio["started_at"].isoformat() == "2026-11-29T10:00:00+00:00"
    assert studio["_unmapped_fields"] is None
    assert rows["curl-test-1"]["duration_seconds"] == 61


@pytest.mark.parametrize("subject", sorted(load_registry(DEFAULT_SCHEMAS_DIR)))
def test_every_subject_s_example_body_curates(tmp_path: Path, subject: str) -> None:
    schemas = load_subject(DEFAULT_SCHEMAS_DIR, subject)
    shape = studio_shape(schemas)
    body = example_body(shape)
    store = LocalStore(tmp_path / "lake")
    with running_landing(store) as url:
        response = httpx.post(
            f"{url}/ingest/{subject}",
            json=body,
            headers={**AUTH, "X-Schema-Version": shape.version},
        )
    assert response.status_code == 202, response.text
    # The subject's own id fields (subject.json), else the snippet's eventId.
    expected_id = body.get("eventId") or schemas.rules.event_id(body)
    assert response.json()["event_ids"] == [expected_id]
    assert expected_id.startswith(("5000001", "42"))
    (hour,) = {parse_staging_key(info.key).hour for info in store.list(f"staging/{subject}/")}
    outcome = curate_hour(store, schemas, hour)
    assert (outcome.rows, outcome.rejected) == (1, 0)
    assert outcome.result.rows_per_version == {shape.version: 1}


def test_the_documented_snippet_is_what_the_command_prints(capsys) -> None:
    text = (PROJECT_ROOT / "docs" / "cxone-setup.md").read_text()
    documented = re.search(r"<!-- studio-snippet: call_event -->\n```\n(.*?)\n```", text, re.S)
    assert main(["studio-snippet", "--subject", "call_event"]) == 0
    printed = capsys.readouterr().out.rstrip("\n")
    assert documented.group(1) == printed
    shape = studio_shape(load_subject(DEFAULT_SCHEMAS_DIR, "call_event"))
    assert printed == studio_text(shape, default_url("call_event"))


def test_snippet_posts_the_newest_version_with_headers_and_a_stable_id(capsys) -> None:
    url = "https://lb.example.org/cx/ingest/call_event"
    assert main(["studio-snippet", "--subject", "call_event", "--url", url]) == 0
    out = capsys.readouterr().out
    assert 'event.eventId = "{ContactID}-call_event"' in out
    assert 'event.startDate = "{startDate}"' in out
    assert 'proxy.AddHeader("Authorization", "Bearer {ingestToken}")' in out
    assert 'proxy.AddHeader("X-Schema-Version", "v4")' in out
    assert f'proxy.MakeRestRequest("{url}", body, 0, "POST")' in out
    assert '"Content-Type": "application/json"' in out
    # Optional fields are named, not posted.
    assert "event.transcript" not in out and "transcript (text" in out


def test_numbers_a_writer_reads_strictly_are_assigned_unquoted(capsys) -> None:
    assert main(["studio-snippet", "--subject", "agent_state"]) == 0
    out = capsys.readouterr().out
    assert "event.agentId = agentId\n" in out
    assert 'event.sessionId = "{sessionId}"' in out
    assert "unconfirmed" in out


def test_unknown_subject_is_one_line(capsys) -> None:
    assert main(["studio-snippet", "--subject", "nope"]) == 2
    known = ", ".join(sorted(load_registry(DEFAULT_SCHEMAS_DIR)))
    assert capsys.readouterr().err.strip() == (
        f"cxone-pipeline studio-snippet: unknown subject 'nope'; known: {known}"
    )
