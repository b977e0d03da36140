from __future__ import annotations

import asyncio
import dataclasses
import gzip
import hashlib
import json
import re
import socket
import threading
import time
from datetime import datetime, timezone

import httpx
import pytest

from cxone_pipeline.lake.layout import parse_staging_key
from cxone_pipeline.lake.store import LocalStore, S3Store, StoreError
from cxone_pipeline.landing.app import LandingConfigError, create_app
from cxone_pipeline.landing.auth import sign, signed_headers
from cxone_pipeline.landing.commit import MAX_PUTS_IN_FLIGHT
from cxone_pipeline_tests.landing_fixtures import (
    AGENT_WEBHOOK_SECRET,
    AUTH,
    OLD_TOKEN,
    OLD_WEBHOOK_SECRET,
    TEST_SETTINGS,
    WEBHOOK_SECRET,
    running_landing,
    staged_envelopes,
    staged_objects,
)

V2 = {"customerId": "c-1", "duration": 42, "agentId": "a-7"}


def post(
    url: str,
    body: bytes | str,
    headers: dict[str, str] | None = None,
    path: str = "/ingest/call_event",
) -> httpx.Response:
    return httpx.post(url + path, content=body, headers={**AUTH, **(headers or {})}, timeout=30)


def test_single_event_is_staged_as_an_envelope_before_202(store: LocalStore | S3Store) -> None:
    with running_landing(store) as url:
        before = datetime.now(timezone.utc)
        response = post(
            url, json.dumps(V2), {"Content-Type": "application/json", "X-Schema-Version": "v2"}
        )
        assert response.status_code == 202
        body = response.json()
        expected_id = (
            "sha256:"
            + hashlib.sha256(
                json.dumps(V2, sort_keys=True, separators=(",", ":")).encode()
            ).hexdigest()
        )
        assert body == {"status": "accepted", "count": 1, "event_ids": [expected_id]}

        [envelope] = staged_envelopes(store, "call_event")
        assert envelope["event_id"] == expected_id
        assert envelope["schema_version"] == "v2"
        assert envelope["payload"] == V2
        received = datetime.strptime(envelope["received_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=timezone.utc
        )
        assert before <= received <= datetime.now(timezone.utc)
        staged = parse_staging_key(envelope["_key"])
        assert staged is not None and staged.subject == "call_event"
        assert staged.hour == received.replace(minute=0, second=0, microsecond=0)


def test_array_ndjson_gzip_and_default_subject(local_store: LocalStore) -> None:
    events = [{"eventId": f"e{i}", "customerId": f"c{i}"} for i in range(3)]
    with running_landing(local_store) as url:
        r1 = post(url, json.dumps(events), {"Content-Type": "application/json"}, path="/ingest")
        ndjson = "\n".join(json.dumps(e) for e in events) + "\n\n"
        r2 = post(url, ndjson, {"Content-Type": "application/x-ndjson"}, path="/ingest/agent_state")
        r3 = post(
            url,
            gzip.compress(json.dumps(events[0]).encode()),
            {"Content-Encoding": "gzip"},  # no content type: read as JSON
        )
        r4 = post(url, json.dumps(events[1]), {"Content-Type": "text/plain; charset=utf-8"})
    assert [r.status_code for r in (r1, r2, r3, r4)] == [202, 202, 202, 202]
    assert r1.json()["event_ids"] == ["e0", "e1", "e2"]
    assert r2.json()["event_ids"] == ["e0", "e1", "e2"]
    call_ids = sorted(e["event_id"] for e in staged_envelopes(local_store, "call_event"))
    assert call_ids == ["e0", "e0", "e1", "e1", "e2"]
    assert len(staged_envelopes(local_store, "agent_state")) == 3


def test_identical_retry_gets_the_same_event_id(local_store: LocalStore) -> None:
    with running_landing(local_store) as url:
        first = post(url, json.dumps(V2))
        retry = post(
            url, json.dumps(dict(reversed(list(V2.items()))))
        )  # same JSON, other key order
        keyed = post(url, json.dumps(V2), {"Idempotency-Key": "cx-123"})
        own_id = post(url, json.dumps({**V2, "event_id": 99}), {"Idempotency-Key": "ignored"})
    assert first.json()["event_ids"] == retry.json()["event_ids"]
    assert first.json()["event_ids"][0].startswith("sha256:")
    assert keyed.json()["event_ids"] == ["cx-123"]
    assert own_id.json()["event_ids"] == ["99"]


ERROR_CASES = [
    pytest.param(b"{not json", {}, 400, "invalid_json", id="invalid-json"),
    pytest.param(b"", {}, 400, "invalid_json", id="empty"),
    pytest.param(b"[1, 2]", {}, 400, "not_an_object", id="array-of-scalars"),
    pytest.param(b'"text"', {}, 400, "not_an_object", id="scalar"),
    pytest.param(b'{"a": 1, "a": 2}', {}, 400, "invalid_json", id="duplicate-keys"),
    pytest.param(b'{"a": NaN}', {}, 400, "invalid_json", id="nan"),
    pytest.param(b'{"a": 123456789012345678901234567890}', {}, 400, "invalid_json", id="big-int"),
    pytest.param(b"\xff\xfe{}", {}, 400, "invalid_json", id="invalid-utf8"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, {}, 400, "invalid_json", id="deep-nesting"),
    pytest.param(
        b"{}", {"Content-Type": "application/xml"}, 415, "unsupported_media_type", id="xml"
    ),
    pytest.param(b"{}", {"Content-Encoding": "br"}, 415, "unsupported_encoding", id="brotli"),
    pytest.param(b"{}", {"Content-Encoding": "gzip"}, 400, "invalid_gzip", id="not-gzip"),
    pytest.param(
        b"{}", {"X-Schema-Version": "v2/../..;x"}, 400, "invalid_header", id="bad-version"
    ),
    pytest.param(b"{}", {"Idempotency-Key": "a b"}, 400, "invalid_header", id="bad-idem-key"),
    pytest.param(b"[{}, {}]", {"Idempotency-Key": "k"}, 400, "invalid_header", id="idem-key-batch"),
    pytest.param(b"{}", {"Authorization": "Bearer wrong"}, 401, "unauthorized", id="wrong-token"),
    pytest.param(b"{}", {"Authorization": "Basic abc"}, 401, "unauthorized", id="basic-auth"),
]


@pytest.mark.parametrize(("body", "headers", "status", "code"), ERROR_CASES)
def test_bad_requests_get_a_json_error_and_stage_nothing(
    local_store: LocalStore, body: bytes, headers: dict[str, str], status: int, code: str
) -> None:
    with running_landing(local_store) as url:
        response = post(url, body, headers)
        assert response.status_code == status
        assert response.json()["error"] == code
        assert response.json()["detail"]
        assert httpx.get(url + "/healthz").status_code == 200
    assert staged_objects(local_store) == []


def test_missing_token_unknown_subject_and_routes(local_store: LocalStore) -> None:
    with running_landing(local_store) as url:
        missing = httpx.post(url + "/ingest/call_event", content=b"{}")
        unknown = post(url, b"{}", path="/ingest/nope")
        traversal = post(url, b"{}", path="/ingest/..%2F..%2Fcurated")
        not_found = httpx.get(url + "/nothing")
        wrong_method = httpx.get(url + "/ingest/call_event")
    assert (missing.status_code, missing.json()["error"]) == (401, "unauthorized")
    assert (unknown.status_code, unknown.json()["error"]) == (404, "unknown_subject")
    assert (
        "agent_state, agent_state_history, call_event, completed_contact"
        in unknown.json()["detail"]
    )
    assert (traversal.status_code, traversal.json()["error"]) == (404, "unknown_subject")
    assert (not_found.status_code, not_found.json()["error"]) == (404, "not_found")
    assert (wrong_method.status_code, wrong_method.json()["error"]) == (405, "method_not_allowed")
    assert list(local_store.list("")) == []


def test_rotated_tokens_are_all_accepted(local_store: LocalStore) -> None:
    with running_landing(local_store) as url:
        response = post(url, b"{}", {"Authorization": f"Bearer {OLD_TOKEN}"})
    assert response.status_code == 202


def signed_post(
    url: str,
    body: bytes,
    webhook_id: str = "msg_1",
    *,
    secret: str = WEBHOOK_SECRET,
    timestamp: int | None = None,
    path: str = "/ingest/call_event",
    extra: dict[str, str] | None = None,
) -> httpx.Response:
    headers = {**signed_headers(secret, webhook_id, body, timestamp), **(extra or {})}
    return httpx.post(url + path, content=body, headers=headers, timeout=30)


def test_standard_webhooks_signed_requests(local_store: LocalStore) -> None:
    body = json.dumps(V2).encode()
    batch = json.dumps([V2, {**V2, "duration": 43}]).encode()
    now = int(time.time())
    with running_landing(local_store) as url:
        good = signed_post(url, body)
        replay = signed_post(url, body)
        rotated = signed_post(url, body, "msg_2", secret=OLD_WEBHOOK_SECRET)
        several = httpx.post(
            url + "/ingest/call_event",
            content=body,
            headers={
                **signed_headers(WEBHOOK_SECRET, "msg_3", body),
                "webhook-signature": "v1a,bm90LWFzeW1tZXRyaWM= v1,AAAA "
                + sign(WEBHOOK_SECRET, "msg_3", now, body),
                "webhook-timestamp": str(now),
            },
        )
        many = signed_post(url, batch, "msg_4")
        refused = {
            "stale": signed_post(url, body, timestamp=now - 301),
            "future": signed_post(url, body, timestamp=now + 299),
            "tampered": httpx.post(
                url + "/ingest/call_event",
                content=body.replace(b"42", b"43"),
                headers=signed_headers(WEBHOOK_SECRET, "msg_1", body),
            ),
            "other-subject": signed_post(url, body, path="/ingest/agent_state"),
            "wrong-secret": signed_post(url, body, secret=AGENT_WEBHOOK_SECRET),
            "valid-bearer-bad-signature": httpx.post(
                url + "/ingest/call_event",
                content=body.replace(b"42", b"43"),
                headers={**AUTH, **signed_headers(WEBHOOK_SECRET, "msg_1", body)},
            ),
        }
        reserved = signed_post(url, body, "sha256:" + "0" * 64)
        new_key = signed_post(url, body, extra={"Idempotency-Key": "fresh"})
        new_version = signed_post(url, body, extra={"X-Schema-Version": "v1"})
    assert [r.status_code for r in (good, replay, rotated, several, many)] == [202] * 5
    assert good.json()["event_ids"] == replay.json()["event_ids"] == ["msg_1"]
    assert many.json()["event_ids"] == ["msg_4:0", "msg_4:1"]
    for name, response in refused.items():
        assert (name, response.status_code, response.json()["error"]) == (
            name,
            401,
            "unauthorized",
        )
    assert "window" in refused["stale"].json()["detail"]
    assert "window" in refused["future"].json()["detail"]
    assert "does not match" in refused["other-subject"].json()["detail"]
    for response in (new_key, new_version):
        assert (response.status_code, response.json()["error"]) == (400, "invalid_header")
    assert (reserved.status_code, reserved.json()["error"]) == (400, "invalid_event_id")
    staged = staged_envelopes(local_store)
    assert sorted(e["event_id"] for e in staged) == [
        "msg_1",
        "msg_1",
        "msg_2",
        "msg_3",
        "msg_4:0",
        "msg_4:1",
    ]
    # A replay is the same event in the same hour: curation keeps one row of it.
    assert len({(e["event_id"], e["_key"].rsplit("/", 1)[0]) for e in staged}) == 5


def test_signature_headers_are_judged_before_the_body_is_read(local_store: LocalStore) -> None:
    """A signed request that cannot verify is answered without waiting for its body: the
    sender announces 1 MB and sends none of it."""
    stale = signed_headers(WEBHOOK_SECRET, "msg_1", b"{}", int(time.time()) - 3600)
    cases = {
        "stale": stale,
        "no-secret-for-subject": {**signed_headers(WEBHOOK_SECRET, "msg_1", b"{}")},
        "missing-header": {"webhook-id": "msg_1", "webhook-timestamp": str(int(time.time()))},
        "not-v1": {**signed_headers(WEBHOOK_SECRET, "m", b"{}"), "webhook-signature": "v2,abc"},
    }
    paths = {"no-secret-for-subject": "/ingest/nope"}
    with running_landing(local_store, read_timeout_seconds=30) as url:
        port = int(url.rsplit(":", 1)[1])
        for name, headers in cases.items():
            head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            request = (
                f"POST {paths.get(name, '/ingest/call_event')} HTTP/1.1\r\nHost: x\r\n"
                f"Content-Type: application/json\r\nContent-Length: 1000000\r\n{head}\r\n"
            )
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(request.encode())
                answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 401"), (name, answer[:200])
            assert b'"unauthorized"' in answer, name
    assert staged_objects(local_store) == []


def test_size_and_count_limits(local_store: LocalStore) -> None:
    limit = 20_000
    with running_landing(local_store, max_body_bytes=limit, max_events_per_request=5) as url:
        at_limit = post(url, b'{"k": "' + b"x" * (limit - 9) + b'"}')
        over = post(url, b'{"k": "' + b"x" * (limit - 8) + b'"}')
        bomb = post(
            url, gzip.compress(b'{"k": "' + b"x" * 10_000_000 + b'"}'), {"Content-Encoding": "gzip"}
        )
        too_many = post(url, json.dumps([{}] * 6))
    assert at_limit.status_code == 202
    assert (over.status_code, over.json()["error"]) == (413, "payload_too_large")
    assert (bomb.status_code, bomb.json()["error"]) == (413, "payload_too_large")
    assert "decompression" in bomb.json()["detail"]
    assert (too_many.status_code, too_many.json()["error"]) == (413, "too_many_events")
    assert len(staged_envelopes(local_store)) == 1


def test_concurrent_clients_every_acknowledged_id_staged_exactly_once(
    store: LocalStore | S3Store,
) -> None:
    clients, per_client = 200, 2

    async def client(url: str, http: httpx.AsyncClient, n: int) -> list[str]:
        ids = []
        for i in range(per_client):
            event = {"eventId": f"c{n}-{i}", "customerId": "x", "duration": i}
            response = await http.post(url + "/ingest/call_event", json=event, headers=AUTH)
            assert response.status_code == 202
            ids += response.json()["event_ids"]
        return ids

    async def run(url: str) -> list[str]:
        limits = httpx.Limits(max_connections=clients)
        async with httpx.AsyncClient(limits=limits, timeout=60) as http:
            results = await asyncio.gather(*(client(url, http, n) for n in range(clients)))
        return [i for ids in results for i in ids]

    # A generous store deadline: this test is about batching, not about a slow shared machine.
    with running_landing(store, store_deadline_seconds=60) as url:
        acknowledged = asyncio.run(run(url))
        metrics = httpx.get(url + "/metrics", headers=AUTH).text
    staged = [e["event_id"] for e in staged_envelopes(store, "call_event")]
    assert sorted(staged) == sorted(acknowledged)
    assert len(set(acknowledged)) == clients * per_client
    objects = staged_objects(store, "call_event")
    assert len(objects) < clients * per_client  # group commit shared writes
    assert 'cxone_landing_events_accepted_total{subject="call_event"} 400.0' in metrics


class FailingStore(LocalStore):
    """A local store whose writes fail until `healthy` is set."""

    healthy = False

    def put(self, key: str, data: bytes) -> None:
        if not self.healthy and not key.startswith("staging/_probe"):
            raise StoreError("disk on fire")
        super().put(key, data)


def test_store_failure_answers_503_and_acknowledges_nothing_unwritten(tmp_path) -> None:
    store = FailingStore(tmp_path)
    with running_landing(store, store_deadline_seconds=0.5) as url:
        started = time.monotonic()
        failed = post(url, json.dumps(V2))
        elapsed = time.monotonic() - started
        ready_during = httpx.get(url + "/readyz")
        store.healthy = True
        recovered = post(url, json.dumps({**V2, "eventId": "after"}))
        metrics = httpx.get(url + "/metrics", headers=AUTH).text
    assert (failed.status_code, failed.json()["error"]) == (503, "store_unavailable")
    assert failed.headers["Retry-After"] == "1"
    assert elapsed < 5  # within the deadline (0.5 s), give or take a busy machine
    assert ready_during.status_code == 503
    assert recovered.status_code == 202
    assert [e["event_id"] for e in staged_envelopes(store)] == ["after"]
    retries = re.search(r"^cxone_landing_store_errors_total (\S+)$", metrics, re.M)
    assert retries is not None and float(retries.group(1)) >= 2  # it retried before giving up
    assert 'cxone_landing_requests_rejected_total{reason="store_unavailable"} 1.0' in metrics


class HangingStore(LocalStore):
    """A store whose writes hang until released, like an S3 endpoint that stops answering."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.release = threading.Event()
        self.started = 0

    def put(self, key: str, data: bytes) -> None:
        if not key.startswith("staging/_probe"):
            self.started += 1
            self.release.wait(60)
        super().put(key, data)


def test_a_hanging_store_costs_a_bounded_number_of_writes(tmp_path) -> None:
    store = HangingStore(tmp_path)
    with running_landing(store, store_deadline_seconds=0.3) as url:
        # A long outage under steady traffic: every request starts a write that hangs.
        responses = [post(url, json.dumps({"n": n})) for n in range(MAX_PUTS_IN_FLIGHT + 6)]
        store.release.set()
        recovered = post(url, json.dumps(V2))
        time.sleep(1)  # let the abandoned writes that held a slot finish
    assert {r.status_code for r in responses} == {503}
    assert {r.json()["error"] for r in responses} == {"store_unavailable"}
    assert recovered.status_code == 202
    # Writes abandoned at their deadline still run once the store answers; without a bound,
    # every request of the outage would leave one behind, holding a thread and its payload.
    assert store.started == MAX_PUTS_IN_FLIGHT + 1
    assert len(staged_objects(store)) == MAX_PUTS_IN_FLIGHT + 1


def test_refuses_to_start_without_subjects(tmp_path) -> None:
    empty = tmp_path / "schemas"
    empty.mkdir()
    with pytest.raises(LandingConfigError, match="no subjects in"):
        create_app(dataclasses.replace(TEST_SETTINGS, schemas_dir=empty), LocalStore(tmp_path))


class BrokenStore(LocalStore):
    """A store failing in a way no store should: not a StoreError."""

    def put(self, key: str, data: bytes) -> None:
        if not key.startswith("staging/_probe"):
            raise RuntimeError("bug in a store implementation")
        super().put(key, data)


def test_an_unexpected_store_failure_is_still_answered(tmp_path) -> None:
    with running_landing(BrokenStore(tmp_path)) as url:
        first = post(url, json.dumps(V2))
        second = post(url, json.dumps(V2))  # the subject's writer survived the first failure
    assert [(r.status_code, r.json()["error"]) for r in (first, second)] == [
        (503, "store_unavailable"),
        (503, "store_unavailable"),
    ]
    assert "Retry-After" in first.headers


def test_signed_request_without_signing_enabled_is_refused(local_store) -> None:
    with running_landing(local_store, webhook_secrets=()) as url:
        response = signed_post(url, b"{}")
    assert (response.status_code, response.json()["error"]) == (401, "unauthorized")
    assert "not enabled for this path" in response.json()["detail"]


class DownStore(LocalStore):
    def put(self, key: str, data: bytes) -> None:
        raise StoreError(f"cannot write {key} under {self.root}")


def test_metrics_need_the_token_and_probes_name_nothing(tmp_path) -> None:
    store = DownStore(tmp_path / "secret-bucket-name")
    with running_landing(store) as url:
        anonymous = httpx.get(url + "/metrics")
        doubled = httpx.get(
            url + "/metrics", headers=[("Authorization", AUTH["Authorization"])] * 2
        )
        scraped = httpx.get(url + "/metrics", headers=AUTH)
        ready = httpx.get(url + "/readyz")
    with running_landing(store, metrics_public=True) as url:
        public = httpx.get(url + "/metrics")
    assert [anonymous.status_code, doubled.status_code] == [401, 401]
    assert "cxone_landing_events_accepted" not in anonymous.text
    assert scraped.status_code == public.status_code == 200
    assert "cxone_landing_pending_events" in scraped.text
    assert ready.status_code == 503
    assert "secret-bucket-name" not in ready.text
