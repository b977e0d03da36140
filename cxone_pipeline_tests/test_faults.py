"""Faults under load: the landing process killed, the store gone, two landings on one lake.

Each test drives real `cxone-pipeline serve` processes over loopback with batched bodies from
keep-alive connections in threads; every event carries its `eventId`, so a retry repeats the id.
"""

from __future__ import annotations

import http.client
import itertools
import json
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

import httpx
import pytest
from dagster import DagsterInstance
from prometheus_client.parser import text_string_to_metric_families

from cxone_pipeline.curate import curate_hour
from cxone_pipeline.lake.layout import CURATED, parse_staging_key, partition_hour, partition_key
from cxone_pipeline.lake.store import LocalStore, S3Store, Store, s3_client
from cxone_pipeline.registry import load_subject
from cxone_pipeline.resolve import read_parquet
from cxone_pipeline.settings import DEFAULT_SCHEMAS_DIR
from cxone_pipeline_tests.dagster_fixtures import CALL_PAYLOADS, materialize_hour, s3_lake
from cxone_pipeline_tests.landing_fixtures import TOKEN, staged_envelopes, staged_objects
from cxone_pipeline_tests.servers import TcpProxy, cli_process, free_port, wait_for_http
from cxone_pipeline_tests.test_sensor import tick

SUBJECT = "call_event"
EVENTS_PER_REQUEST = 20
BATCHES = 1_000  # 20,000 events
LOAD_TIMEOUT = 60.0
HEADERS = {
    "Authorization": f"Bearer {TOKEN}",
    "Content-Type": "application/json",
    "X-Schema-Version": "v1",
}
RETRYABLE = (0, 503)  # 0: no HTTP answer (refused, reset, timed out)
FIRST_RETRY_PAUSE = 0.05
MAX_RETRY_PAUSE = 0.5


# Landing processes -----------------------------------------------------------------------------


@dataclass
class Landing:
    """One `cxone-pipeline serve` process on a loopback port."""

    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self) -> Landing:
        self.process = cli_process(
            ["serve", "--port", str(self.port)],
            {"CXONE_PIPELINE_INGEST_TOKEN": TOKEN, **self.env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return self

    def wait_ready(self) -> Landing:
        assert self.process is not None
        wait_for_http(self.url + "/healthz", process=self.process)
        return self

    def start(self) -> Landing:
        return self.launch().wait_ready()

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def rss_bytes(self) -> int:
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(line.split()[1]) * 1024

    def metric(self, name: str) -> float:
        text = httpx.get(self.url + "/metrics", headers=HEADERS, timeout=10).text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name
        )


@pytest.fixture
def landings() -> Iterator[list[Landing]]:
    """Landings a test starts; all stopped at the end, whatever happened."""
    started: list[Landing] = []
    yield started
    for landing in started:
        landing.stop()


# Load ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """A POST's outcome; status 0 when no HTTP answer came back."""

    status: int
    error: str | None
    retry_after: str | None
    seconds: float


def call_event(event_id: str) -> dict:
    return {**CALL_PAYLOADS["v1"], "eventId": event_id}


class Load:
    """Batches of events posted from `connections` threads, each retrying its batch until a 202.

    Connection errors and 503s are retried with the same event ids, after a short pause that
    doubles up to half a second (shorter than Retry-After, to keep the tests short); any other
    status is a failure and the batch is given up. Requests go to `urls` in turn.
    """

    def __init__(self, name: str, urls: list[str], connections: int, max_batches: int) -> None:
        self._name = name
        self._urls = urls
        self._connections = connections
        self._batches = iter(range(max_batches))
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._stop_new = threading.Event()
        self._threads: list[threading.Thread] = []
        self.deadline = time.monotonic() + LOAD_TIMEOUT
        self.sent: list[str] = []
        self.acked: list[str] = []
        self.acked_by_url: Counter[str] = Counter()
        self.replies: list[Reply] = []
        self.failures: list[str] = []
        self.given_up: list[int] = []

    def start(self) -> Load:
        self._threads = [threading.Thread(target=self._worker) for _ in range(self._connections)]
        for thread in self._threads:
            thread.start()
        return self

    def stop_new_batches(self) -> None:
        self._stop_new.set()

    def join(self) -> None:
        for thread in self._threads:
            thread.join(max(self.deadline - time.monotonic(), 0) + 30)
        assert not any(t.is_alive() for t in self._threads), "load threads did not finish"

    def run(self) -> Load:
        self.start()
        self.join()
        return self

    def wait_acked(self, events: int) -> None:
        wait_until(lambda: len(self.acked) >= events, f"{events} acknowledged events")

    def replies_with(self, error: str) -> list[Reply]:
        with self._lock:
            return [r for r in self.replies if r.error == error]

    def _next_batch(self) -> int | None:
        with self._lock:
            if self._stop_new.is_set():
                return None
            return next(self._batches, None)

    def _worker(self) -> None:
        connections: dict[str, http.client.HTTPConnection] = {}
        try:
            while (batch := self._next_batch()) is not None:
                ids = [f"{self._name}-{batch}-{n}" for n in range(EVENTS_PER_REQUEST)]
                with self._lock:
                    self.sent += ids
                self._send_until_acked(batch, ids, connections)
        finally:
            for connection in connections.values():
                connection.close()

    def _send_until_acked(
        self, batch: int, ids: list[str], connections: dict[str, http.client.HTTPConnection]
    ) -> None:
        body = json.dumps([call_event(i) for i in ids]).encode()
        pause = FIRST_RETRY_PAUSE
        while time.monotonic() < self.deadline:
            with self._lock:
                url = self._urls[next(self._turn) % len(self._urls)]
            reply = post(connections, url, body)
            with self._lock:
                if reply.status == 202:
                    self.acked += ids
                    self.acked_by_url[url] += len(ids)
                    return
                self.replies.append(reply)
                if reply.status not in RETRYABLE:
                    self.failures.append(f"batch {batch}: {reply}")
                    return
            time.sleep(random.uniform(pause / 2, pause))
            pause = min(pause * 2, MAX_RETRY_PAUSE)
        with self._lock:
            self.given_up.append(batch)


def post(connections: dict[str, http.client.HTTPConnection], url: str, body: bytes) -> Reply:
    started = time.monotonic()
    connection = connections.get(url)
    if connection is None:
        host, port = url.removeprefix("http://").split(":")
        connection = connections[url] = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("POST", f"/ingest/{SUBJECT}", body, HEADERS)
        response = connection.getresponse()
        payload = json.loads(response.read() or b"{}")
    except (OSError, http.client.HTTPException, ValueError):
        connection.close()
        del connections[url]
        return Reply(0, None, None, time.monotonic() - started)
    return Reply(
        response.status,
        payload.get("error"),
        response.getheader("Retry-After"),
        time.monotonic() - started,
    )


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout}s")
        time.sleep(0.02)


# Reading the lake back -------------------------------------------------------------------------


def staged_ids(store: Store) -> Counter[str]:
    return Counter(e["event_id"] for e in staged_envelopes(store, SUBJECT))


def staged_hours(store: Store) -> set[datetime]:
    return {parse_staging_key(key).hour for key in staged_objects(store, SUBJECT)}


def curated_ids(store: Store) -> Counter[str]:
    return Counter(
        event_id
        for info in store.list(f"{CURATED}/{SUBJECT}/")
        for event_id in read_parquet(store.get(info.key)).column("_event_id").to_pylist()
    )


def curate_staged_hours(store: Store) -> None:
    schemas = load_subject(DEFAULT_SCHEMAS_DIR, SUBJECT)
    for hour in staged_hours(store):
        curate_hour(store, schemas, hour)


def assert_load_completed(load: Load) -> None:
    assert load.failures == []
    assert load.given_up == []
    assert len(load.acked) == len(load.sent) == len(set(load.sent))


# 1. Crash --------------------------------------------------------------------------------------


def test_sigkill_mid_load_loses_nothing_acknowledged_and_curates_each_event_once(
    tmp_path: Path, landings: list[Landing]
) -> None:
    store = LocalStore(tmp_path / "lake")
    landing = Landing({"CXONE_PIPELINE_LAKE_URL": str(store.root)}).start()
    landings.append(landing)
    load = Load("crash", [landing.url], connections=64, max_batches=BATCHES).start()

    load.wait_acked(BATCHES * EVENTS_PER_REQUEST // 4)
    landing.kill()
    acked_before_restart = len(load.acked)
    landing.start()
    load.join()

    assert acked_before_restart < BATCHES * EVENTS_PER_REQUEST == len(load.sent)
    assert any(r.status == 0 for r in load.replies), "the kill cut no connection"
    assert_load_completed(load)
    staged = staged_ids(store)
    assert set(load.acked) <= set(staged) <= set(load.sent)
    curate_staged_hours(store)
    assert curated_ids(store) == Counter(load.sent)


# 2. Store outage -------------------------------------------------------------------------------

DEADLINE_SECONDS = 2
DEADLINE_MARGIN_SECONDS = 2
# Up to four staging objects' worth of events queue during the outage; a request queued behind
# failing writes must still get its 503 within its own deadline. The outage lasts three
# deadlines, long enough for a deadline counted per write instead of per request to show.
BATCH_MAX_EVENTS = 100
MAX_PENDING_EVENTS = 400
OUTAGE_SECONDS = 3.0 * DEADLINE_SECONDS
RSS_GROWTH_LIMIT = 200 * 1024 * 1024


class Outage(Protocol):
    def pause(self) -> None: ...

    def resume(self) -> None: ...


class UnwritableStaging:
    """The local lake's `staging` swapped, atomically, for a regular file: every write under it
    fails with ENOTDIR, even as root, and swapping back restores every object.

    `staging` is a symlink for the test's whole life, so each swap is a single rename.
    """

    def __init__(self, root: Path) -> None:
        self._link = root / "staging"
        self._folder = root / "staging.folder"
        self._blocker = root / "staging.blocker"
        self._folder.mkdir(parents=True)
        self._blocker.write_bytes(b"")
        self._point_at(self._folder)

    def _point_at(self, target: Path) -> None:
        swap = self._link.with_name("staging.swap")
        swap.symlink_to(target.name)
        swap.replace(self._link)

    def pause(self) -> None:
        self._point_at(self._blocker)

    def resume(self) -> None:
        self._point_at(self._folder)


@dataclass
class OutageLake:
    """The landing's environment, a store to read the lake back, and the switch that breaks it."""

    env: dict[str, str]
    store: Store
    outage: Outage


@pytest.fixture(params=["s3", "local"])
def outage_lake(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OutageLake]:
    if request.param == "local":
        store = LocalStore(tmp_path / "lake")
        yield OutageLake(
            {"CXONE_PIPELINE_LAKE_URL": str(store.root)}, store, UnwritableStaging(store.root)
        )
        return
    endpoint: str = request.getfixturevalue("s3_endpoint")
    bucket: str = request.getfixturevalue("s3_bucket")
    with TcpProxy(int(endpoint.rsplit(":", 1)[1])) as proxy:
        env = {
            "CXONE_PIPELINE_LAKE_URL": f"s3://{bucket}/lake",
            "CXONE_PIPELINE_S3_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}",
        }
        yield OutageLake(env, S3Store(s3_client(endpoint), bucket, "lake"), proxy)


def test_store_outage_answers_503_in_time_stays_bounded_and_recovers(
    outage_lake: OutageLake, landings: list[Landing]
) -> None:
    outage = outage_lake.outage
    landing = Landing(
        {
            **outage_lake.env,
            "CXONE_PIPELINE_STORE_DEADLINE_SECONDS": str(DEADLINE_SECONDS),
            "CXONE_PIPELINE_MAX_PENDING_EVENTS": str(MAX_PENDING_EVENTS),
            "CXONE_PIPELINE_BATCH_MAX_EVENTS": str(BATCH_MAX_EVENTS),
        }
    ).start()
    landings.append(landing)
    load = Load("outage", [landing.url], connections=32, max_batches=100_000).start()
    load.wait_acked(1_000)
    rss_before = landing.rss_bytes()
    rss_during: list[int] = []
    outage.pause()
    try:
        outage_ends = time.monotonic() + OUTAGE_SECONDS
        wait_until(lambda: bool(load.replies_with("store_unavailable")), "503 from the store")
        ready_during = httpx.get(landing.url + "/readyz", timeout=30)
        while time.monotonic() < outage_ends:
            rss_during.append(landing.rss_bytes())
            time.sleep(0.1)
    finally:
        outage.resume()
    wait_until(
        lambda: httpx.get(landing.url + "/readyz", timeout=30).status_code == 200,
        "readiness after the outage",
    )
    load.wait_acked(len(load.acked) + 1_000)
    load.stop_new_batches()
    load.join()
    after = post({}, landing.url, json.dumps(call_event("after-outage")).encode())

    assert landing.process.poll() is None
    assert (ready_during.status_code, ready_during.json()["error"]) == (503, "store_unavailable")
    unavailable = load.replies_with("store_unavailable")
    saturated = load.replies_with("saturated")
    assert unavailable and saturated
    assert {r.status for r in load.replies} == {503}
    assert all(int(r.retry_after) >= 1 for r in unavailable + saturated)
    slowest = max(r.seconds for r in unavailable)
    assert slowest < DEADLINE_SECONDS + DEADLINE_MARGIN_SECONDS
    assert max(rss_during) - rss_before < RSS_GROWTH_LIMIT
    assert after.status == 202
    assert_load_completed(load)
    staged = staged_ids(outage_lake.store)
    assert set(load.acked) | {"after-outage"} <= set(staged)


# 3. Scale-out ----------------------------------------------------------------------------------


def test_scale_out_two_landings_write_distinct_objects_and_curate_each_event_once(
    s3_endpoint: str, s3_bucket: str, landings: list[Landing], instance: DagsterInstance
) -> None:
    lake = s3_lake(s3_endpoint, s3_bucket)
    env = {
        "CXONE_PIPELINE_LAKE_URL": f"s3://{s3_bucket}/lake",
        "CXONE_PIPELINE_S3_ENDPOINT_URL": s3_endpoint,
    }
    landings += [Landing(env).launch(), Landing(env).launch()]
    for landing in landings:
        landing.wait_ready()
    urls = [landing.url for landing in landings]
    load = Load("scale", urls, connections=64, max_batches=BATCHES).run()

    assert_load_completed(load)
    assert load.replies == []
    for landing in landings:
        accepted = landing.metric("cxone_landing_events_accepted_total")
        assert accepted == load.acked_by_url[landing.url] > 0
    flushes = sum(landing.metric("cxone_landing_batch_events_count") for landing in landings)
    keys = staged_objects(lake.store, SUBJECT)
    assert len(keys) == len(set(keys)) == flushes
    assert staged_ids(lake.store) == Counter(load.sent)

    result = tick(lake, instance, close_grace_seconds=0)
    partitions = sorted(request.partition_key for request in result.run_requests)
    assert partitions == sorted(partition_key(hour) for hour in staged_hours(lake.store))
    for partition in partitions:
        materialize_hour(lake, instance, partition_hour(partition))
    assert curated_ids(lake.store) == Counter(load.sent)
