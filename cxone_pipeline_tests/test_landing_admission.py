"""What a request may cost the landing: parsing off the event loop and stopped at the event
limit, a bounded number of requests and bytes in progress, unverified bodies kept to their
share. Each attack of the review is run against the landing under uvicorn."""

from __future__ import annotations

import gzip
import json
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from cxone_pipeline.lake.store import LocalStore
from cxone_pipeline.landing import app as landing_app
from cxone_pipeline.landing.admission import Admission
from cxone_pipeline.landing.auth import signed_headers
from cxone_pipeline.landing.commit import Unavailable
from cxone_pipeline.landing.intake import IntakeError, parse_events
from cxone_pipeline_tests.landing_fixtures import (
    AUTH,
    WEBHOOK_SECRET,
    running_landing,
    staged_envelopes,
)

# The review's bomb: 1 KB of gzip that inflates to 349,000 empty events.
TINY_EVENTS = gzip.compress(b"{}\n" * 349_000, 9, mtime=0)
NDJSON_GZIP = {**AUTH, "Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}


def test_parsing_stops_at_the_event_limit() -> None:
    """The limit is met while parsing: what follows the first event past it is never read
    (here, invalid JSON that a parse of the whole body would trip over first)."""
    for body, fmt in (
        (b"{}\n" * 11 + b"not json", "ndjson"),
        (b"[" + b"{}," * 11 + b"not json]", "json"),
    ):
        with pytest.raises(IntakeError) as refused:
            parse_events(body, fmt, max_events=10)
        assert (refused.value.status, refused.value.code) == (413, "too_many_events"), fmt
    assert len(TINY_EVENTS) < 2048


@contextmanager
def gated_parse(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[threading.Event, threading.Event]]:
    """Parses of bodies over 100 KB wait at a gate: (entered, release)."""
    entered, release = threading.Event(), threading.Event()
    parse = landing_app.parse_events

    def gated(body: bytes, fmt: str, max_events: int) -> list[dict[str, Any]]:
        if len(body) > 100_000:
            entered.set()
            release.wait(30)
        return parse(body, fmt, max_events)

    monkeypatch.setattr(landing_app, "parse_events", gated)
    try:
        yield entered, release
    finally:
        release.set()


def test_healthz_and_honest_posts_are_served_while_a_costly_body_is_parsed(
    local_store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parsing runs off the event loop: while the bomb's parse is held at a gate, the loop
    still answers. Parsing on the loop would block both requests until the gate opens."""
    with (
        gated_parse(monkeypatch) as (entered, release),
        running_landing(local_store) as url,
        ThreadPoolExecutor(1) as pool,
    ):
        bomb = pool.submit(
            httpx.post, url + "/ingest/call_event", content=TINY_EVENTS, headers=NDJSON_GZIP
        )
        assert entered.wait(10)
        health = httpx.get(url + "/healthz", timeout=5)
        honest = httpx.post(
            url + "/ingest/call_event", json={"eventId": "honest"}, headers=AUTH, timeout=5
        )
        release.set()
        refused = bomb.result(30)
    assert health.status_code == 200
    assert (honest.status_code, honest.json()["event_ids"]) == (202, ["honest"])
    assert (refused.status_code, refused.json()["error"]) == (413, "too_many_events")
    assert [e["event_id"] for e in staged_envelopes(local_store)] == ["honest"]


def test_honest_requests_all_succeed_while_three_bomb_senders_run(local_store: LocalStore) -> None:
    """The review's "three such senders time out honest requests", bounded in count."""
    honest_ids = [f"h{n}" for n in range(60)]

    def bomber() -> list[int]:
        with httpx.Client(timeout=30) as http:
            return [
                http.post(
                    url + "/ingest/call_event", content=TINY_EVENTS, headers=NDJSON_GZIP
                ).status_code
                for _ in range(10)
            ]

    with running_landing(local_store) as url, ThreadPoolExecutor(3) as pool:
        bombs = [pool.submit(bomber) for _ in range(3)]
        with httpx.Client(timeout=30) as http:
            honest = [
                http.post(url + "/ingest/call_event", json={"eventId": i}, headers=AUTH)
                for i in honest_ids
            ]
        statuses = [status for bomb in bombs for status in bomb.result(120)]
    assert [r.status_code for r in honest] == [202] * len(honest_ids)
    assert statuses == [413] * 30
    assert sorted(e["event_id"] for e in staged_envelopes(local_store)) == sorted(honest_ids)


def test_admission_counts_requests_and_bytes() -> None:
    admission = Admission(max_requests=2, max_bytes=1000)
    with admission.admit() as first, admission.admit() as second:
        with pytest.raises(Unavailable, match="2 requests are in progress"):
            admission.admit()
        first.reserve(200, unverified=True)  # unverified bodies get a quarter: 250 bytes
        with pytest.raises(Unavailable, match="unverified bodies hold 200 bytes"):
            second.reserve(100, unverified=True)
        first.verified()
        second.reserve(250, unverified=True)
        with pytest.raises(Unavailable, match="hold 450 bytes"):
            first.reserve(600)
        assert (admission.bytes, admission.unverified_bytes) == (450, 250)
    assert (admission.requests, admission.bytes, admission.unverified_bytes) == (0, 0, 0)


def slow_upload(url: str, headers: dict[str, str], length: int, sent: bytes) -> socket.socket:
    """A request whose body stops after `sent`: it holds its place until the read timeout."""
    sock = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10)
    head = "".join(f"{k}: {v}\r\n" for k, v in {**headers, "Content-Length": length}.items())
    sock.sendall(f"POST /ingest/call_event HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode() + sent)
    return sock


def wait_until(condition: Callable[[], bool]) -> None:
    for _ in range(200):
        if condition():
            return
        threading.Event().wait(0.05)
    raise AssertionError("condition not reached")


def test_requests_and_unverified_bytes_in_progress_are_capped(local_store: LocalStore) -> None:
    """Slow uploads hold their place; past the caps the landing answers 503 at once instead
    of buffering more. Unverified (signed) bodies get a quarter of the byte budget, so
    they cannot crowd out authenticated senders."""
    body = json.dumps({"eventId": "big", "pad": "x" * 20_000}).encode()
    signed = {**signed_headers(WEBHOOK_SECRET, "msg_big", body), "Content-Type": "application/json"}
    with running_landing(
        local_store, max_concurrent_requests=3, max_pending_bytes=64 * 1024, read_timeout_seconds=30
    ) as url:
        unverified = httpx.post(url + "/ingest/call_event", content=body, headers=signed)
        bearer = httpx.post(url + "/ingest/call_event", content=body, headers=AUTH)
        held = [slow_upload(url, AUTH, 1000, b"{") for _ in range(3)]
        try:
            wait_until(lambda: "saturated" in str(post_small(url).json()))
            crowded = post_small(url)
        finally:
            for sock in held:
                sock.close()
        wait_until(lambda: post_small(url).status_code == 202)
    assert (unverified.status_code, unverified.json()["error"]) == (503, "saturated")
    assert "unverified bodies" in unverified.json()["detail"]
    assert unverified.headers["Retry-After"] == "1"
    assert bearer.status_code == 202
    assert (crowded.status_code, crowded.json()["error"]) == (503, "saturated")
    assert "requests are in progress" in crowded.json()["detail"]


def post_small(url: str) -> httpx.Response:
    return httpx.post(url + "/ingest/call_event", json={"eventId": "small"}, headers=AUTH)
