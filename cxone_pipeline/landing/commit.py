"""Group commit: concurrent requests share durable staging writes, per subject.

A write starts as soon as fewer than `writes_per_subject` are in flight for the subject,
taking every request that queued meanwhile (adaptive batching). One write in flight makes
the largest objects (S3, where each PUT costs CPU); a local disk overlaps the fsyncs of
several, so the landing allows more there. A request is answered only after the
objects holding its events are written: one object per staging hour it touches, so a
request of one hour (every request of a subject partitioned by arrival) never spans two
objects. A request spanning hours that fails may have some hours staged already; its
retry carries the same event ids and curation keeps one copy.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import random
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cxone_pipeline.lake.layout import change_marker_key, hour_floor, staging_key
from cxone_pipeline.lake.store import Store, StoreError
from cxone_pipeline.landing.intake import IntakeError
from cxone_pipeline.landing.metrics import LandingMetrics

logger = logging.getLogger(__name__)

RETRY_AFTER_SATURATED = 1
MAX_PUTS_IN_FLIGHT = 8


class Unavailable(IntakeError):
    """503: the events were not staged; the sender should retry after `retry_after` seconds."""

    def __init__(self, code: str, detail: str, retry_after: int) -> None:
        super().__init__(503, code, detail)
        self.retry_after = retry_after


@dataclass
class _Request:
    """The lines of one request for one staging hour."""

    lines: list[bytes]
    nbytes: int
    received_at: datetime
    hour: datetime
    done: asyncio.Future[None] = field(repr=False)
    arrived: float = field(default_factory=time.monotonic)


class GroupCommitter:
    def __init__(
        self,
        store: Store,
        metrics: LandingMetrics,
        *,
        max_events: int,
        max_bytes: int,
        max_pending_events: int,
        deadline_seconds: float,
        writes_per_subject: int = 1,
        watched_hours: int = 0,
    ) -> None:
        """`watched_hours`: how many hours before the current one the staging sensor looks at
        anyway (its look-back less one, so a write just before the hour turns is still seen):
        writes into them need no change marker."""
        self._watched = timedelta(hours=watched_hours)
        self._store = store
        self._metrics = metrics
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._max_pending = max_pending_events
        self._deadline = deadline_seconds
        self._queues: dict[str, deque[_Request]] = {}
        self._writes_per_subject = writes_per_subject
        self._drains: dict[str, set[asyncio.Task[None]]] = {}
        self._pending_events = 0
        # Store writes get their own threads: a hanging store must not starve the readiness
        # probes, which use the default executor.
        self._put_slots = asyncio.Semaphore(MAX_PUTS_IN_FLIGHT)
        self._put_threads = ThreadPoolExecutor(MAX_PUTS_IN_FLIGHT, thread_name_prefix="store-put")
        self._closing = False
        # (monotonic time, succeeded) of the latest store write attempt, for readiness
        self.last_write: tuple[float, bool] | None = None

    async def commit(
        self, subject: str, by_hour: dict[datetime, list[bytes]], received_at: datetime
    ) -> None:
        """Return once every line is durably staged under its hour; raise `Unavailable` if
        they are not."""
        if self._closing:
            raise Unavailable("shutting_down", "the landing is shutting down", 1)
        events = sum(map(len, by_hour.values()))
        if self._pending_events + events > self._max_pending:
            raise Unavailable(
                "saturated",
                f"{self._pending_events} events are waiting to be staged; retry shortly",
                RETRY_AFTER_SATURATED,
            )
        loop = asyncio.get_running_loop()
        queue = self._queues.setdefault(subject, deque())
        requests = [
            _Request(lines, sum(map(len, lines)), received_at, hour, loop.create_future())
            for hour, lines in by_hour.items()
        ]
        queue.extend(requests)
        self._add_pending(events)
        drains = self._drains.setdefault(subject, set())
        if len(drains) < self._writes_per_subject:
            drains.add(asyncio.create_task(self._drain(subject)))
        # Shielded: a client that disconnects must not cancel the write others share. Every
        # hour's outcome is awaited (none left unretrieved); the first failure is raised.
        outcomes = await asyncio.gather(
            *(asyncio.shield(request.done) for request in requests), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def close(self) -> None:
        """Refuse new requests and wait until everything queued is written or failed."""
        self._closing = True
        while any(self._drains.values()):
            tasks = [task for drains in self._drains.values() for task in drains]
            await asyncio.gather(*tasks, return_exceptions=True)
        self._put_threads.shutdown(wait=False)

    def _add_pending(self, n: int) -> None:
        self._pending_events += n
        self._metrics.pending_events.set(self._pending_events)

    async def _drain(self, subject: str) -> None:
        queue = self._queues[subject]
        try:
            while queue:
                batch = self._take_batch(queue)
                events = sum(len(r.lines) for r in batch)
                try:
                    await self._write(subject, batch)
                except Exception as exc:
                    if not isinstance(exc, Unavailable):
                        # Not a store outage we know: log it, but still answer every request.
                        logger.exception("staging write for %s failed unexpectedly", subject)
                        exc = self._timed_out()
                    for request in batch:
                        if not request.done.done():
                            request.done.set_exception(exc)
                else:
                    self._metrics.batch_events.observe(events)
                    for request in batch:
                        if not request.done.done():
                            request.done.set_result(None)
                finally:
                    self._add_pending(-events)
        finally:
            self._drains[subject].discard(asyncio.current_task())  # type: ignore[arg-type]

    def _take_batch(self, queue: deque[_Request]) -> list[_Request]:
        """Whole requests of one hour, up to the object limits (at least one request)."""
        first = queue.popleft()
        batch, events, nbytes = [first], len(first.lines), first.nbytes
        while queue:
            nxt = queue[0]
            if (
                nxt.hour != first.hour
                or events + len(nxt.lines) > self._max_events
                or nbytes + nxt.nbytes > self._max_bytes
            ):
                break
            batch.append(queue.popleft())
            events += len(nxt.lines)
            nbytes += nxt.nbytes
        return batch

    async def _write(self, subject: str, batch: list[_Request]) -> None:
        started = time.monotonic()
        # The deadline runs from the oldest request's arrival: time spent queued behind a
        # failing write counts, so every request is answered within the deadline.
        deadline = batch[0].arrived + self._deadline
        received_at, hour = batch[0].received_at, batch[0].hour
        key = staging_key(subject, received_at, hour)
        # Written before the object: a marker without its object costs the sensor one look.
        # Hours the sensor's look-back window still covers need none (most pushes of a
        # subject dated by event time go to the hour before).
        now_hour = hour_floor(received_at)
        marker = (
            None
            if now_hour - self._watched <= hour <= now_hour
            else change_marker_key(subject, hour, received_at)
        )
        lines = [line for request in batch for line in request.lines]
        if time.monotonic() >= deadline:
            raise self._timed_out()
        delay = 0.05
        while True:
            remaining = deadline - time.monotonic()
            try:
                await self._put(key, marker, lines, max(remaining, 0.001))
                break
            except (StoreError, asyncio.TimeoutError) as exc:
                self._metrics.store_errors.inc()
                self.last_write = (time.monotonic(), False)
                if deadline - time.monotonic() <= delay:
                    raise self._timed_out() from exc
                await asyncio.sleep(random.uniform(delay / 2, delay))
                delay = min(delay * 2, 1.0)
        self.last_write = (time.monotonic(), True)
        self._metrics.flush_seconds.observe(time.monotonic() - started)

    async def _put(self, key: str, marker: str | None, lines: list[bytes], timeout: float) -> None:
        """Compress and write in one worker-thread call (one hand-off per write). A write that
        outlives `timeout` is abandoned, not stopped (threads cannot be), so it keeps its slot
        until it ends: a store that hangs costs at most MAX_PUTS_IN_FLIGHT threads."""
        started = time.monotonic()
        await asyncio.wait_for(self._put_slots.acquire(), timeout)
        loop = asyncio.get_running_loop()
        put = loop.run_in_executor(self._put_threads, self._compress_and_put, key, marker, lines)
        put.add_done_callback(self._release_put_slot)
        await asyncio.wait_for(asyncio.shield(put), timeout - (time.monotonic() - started))

    def _compress_and_put(self, key: str, marker: str | None, lines: list[bytes]) -> None:
        data = gzip.compress(b"".join(lines), 5, mtime=0)
        if marker is not None:
            self._store.put(marker, b"")
        self._store.put(key, data)

    def _release_put_slot(self, put: asyncio.Future[None]) -> None:
        self._put_slots.release()
        if not put.cancelled():
            put.exception()  # retrieved here: an abandoned write's error was already counted

    def _timed_out(self) -> Unavailable:
        return Unavailable(
            "store_unavailable",
            "the lake store did not confirm the write in time; retry the request",
            max(1, round(self._deadline)),
        )
