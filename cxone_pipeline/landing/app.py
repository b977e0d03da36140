"""The landing ASGI app, built by a factory from settings (no globals)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cxone_pipeline.lake.layout import DEFAULT_SUBJECT, STAGING, is_valid_subject, partition_hour
from cxone_pipeline.lake.store import LocalStore, Store, StoreError, open_store
from cxone_pipeline.landing.admission import Admission, Hold
from cxone_pipeline.landing.auth import Authenticator, Signed, unauthorized
from cxone_pipeline.landing.commit import GroupCommitter, Unavailable
from cxone_pipeline.landing.intake import (
    Envelopes,
    IntakeError,
    body_format,
    envelope_lines,
    gunzip_bounded,
    header_token,
    parse_events,
    too_large,
)
from cxone_pipeline.landing.metrics import LandingMetrics
from cxone_pipeline.registry import SchemaError, load_registry
from cxone_pipeline.registry.subject import SubjectRules
from cxone_pipeline.settings import Settings

READINESS_PROBE_INTERVAL = 2.0
# Bodies this small (and not compressed) are parsed on the event loop: a few hundred
# microseconds at worst, less than a thread hand-off costs. Anything else is parsed on
# PARSE_THREADS worker threads, so a costly body never stalls other requests or /healthz.
INLINE_PARSE_BYTES = 8 * 1024
PARSE_THREADS = 2
# A local disk overlaps the fsyncs of concurrent writes (the journal commits them together):
# four writes in flight per subject, where S3 keeps one (each PUT costs CPU; see commit.py).
LOCAL_WRITES_PER_SUBJECT = 4


class LandingConfigError(Exception):
    """The landing cannot start with this configuration."""


class SubjectCatalog:
    """Known subjects and their identity rules, re-read from the registry folder when an
    unknown subject is asked for (a new subject needs no restart; changed rules do)."""

    def __init__(self, schemas_dir: Path) -> None:
        self._dir = schemas_dir
        self._rules = self._load()
        if not self._rules:
            # Every POST would be a 404 that senders do not retry: refuse to start instead.
            raise LandingConfigError(
                f"no subjects in {schemas_dir} (folders with a canonical.avsc): "
                "set CXONE_PIPELINE_SCHEMAS_DIR to the schema registry"
            )

    def _load(self) -> dict[str, SubjectRules]:
        try:
            return {name: s.rules for name, s in load_registry(self._dir).items()}
        except SchemaError as exc:
            raise LandingConfigError(f"the schema registry cannot be loaded: {exc}") from None

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._rules)

    def resolve(self, subject: str) -> tuple[str, SubjectRules]:
        if subject not in self._rules and is_valid_subject(subject):
            # A registry broken while running: keep serving the subjects we know.
            with contextlib.suppress(LandingConfigError):
                self._rules = self._load()
        if subject not in self._rules:
            known = ", ".join(sorted(self._rules)) or "none"
            raise IntakeError(
                404, "unknown_subject", f"unknown subject {subject[:64]!r}; known: {known}"
            )
        return subject, self._rules[subject]


class ReadinessProbe:
    """Is the store writable? Probes at most every few seconds, under a key no reader lists."""

    def __init__(self, store: Store, committer: GroupCommitter) -> None:
        self._store = store
        self._committer = committer
        self._key = f"{STAGING}/_probe/readyz"
        self._checked_at = float("-inf")
        self._ok = False
        self._probe: asyncio.Future[None] | None = None

    async def ready(self) -> bool:
        now = time.monotonic()
        last_write = self._committer.last_write
        if last_write is not None and now - last_write[0] < READINESS_PROBE_INTERVAL:
            return last_write[1]
        probe_running = self._probe is not None and not self._probe.done()
        if now - self._checked_at >= READINESS_PROBE_INTERVAL and not probe_running:
            # One probe at a time: against a hanging store, probes must not pile up.
            self._probe = asyncio.ensure_future(
                asyncio.to_thread(self._store.put, self._key, b"ok")
            )
            try:
                await asyncio.wait_for(asyncio.shield(self._probe), 5)
                self._ok = True
            except (StoreError, asyncio.TimeoutError):
                self._ok = False
            self._checked_at = time.monotonic()
        elif probe_running:
            self._ok = False
        return self._ok


def error_response(error: IntakeError) -> JSONResponse:
    headers = {"Retry-After": str(error.retry_after)} if isinstance(error, Unavailable) else None
    return JSONResponse(
        {"error": error.code, "detail": error.detail}, status_code=error.status, headers=headers
    )


async def read_body(request: Request, limit: int, hold: Hold, unverified: bool) -> bytes:
    """The raw body, refused with 413 as soon as it passes `limit` bytes; every chunk is
    reserved from `hold` before it is kept. (A body too slow to arrive is cut by the
    connection's read deadline, landing/connections.py.)"""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    body = bytearray()
    try:
        async for chunk in request.stream():
            hold.reserve(len(chunk), unverified=unverified)
            body += chunk
            if len(body) > limit:
                raise too_large(limit)
    except ClientDisconnect:
        # An aborted upload is the sender's doing: count it, don't log a server error.
        raise IntakeError(
            400, "client_disconnected", "the connection closed before the whole body arrived"
        ) from None
    return bytes(body)


def stage_body(
    raw: bytes,
    encoding: str,
    fmt: str,
    settings: Settings,
    received_at: datetime,
    schema_version: str | None,
    event_key: str | None,
    signed: Signed | None,
    rules: SubjectRules,
    first_hour: datetime,
) -> Envelopes:
    """Decompress, parse and envelope a body: the CPU-heavy part of a request."""
    if encoding == "gzip":
        raw = gunzip_bounded(raw, settings.max_body_bytes)
    events = parse_events(raw, fmt, settings.max_events_per_request)
    arrived_at = None
    if signed is not None:
        # Signed replays land in the hour of their signed timestamp, the original's hour.
        arrived_at = min(received_at, datetime.fromtimestamp(signed.timestamp, timezone.utc))
    return envelope_lines(
        events.payloads,
        received_at,
        schema_version,
        event_key,
        rules,
        first_hour,
        key_per_event=signed is not None,
        arrived_at=arrived_at,
        texts=events.texts,
    )


def create_app(settings: Settings | None = None, store: Store | None = None) -> Starlette:
    settings = settings or Settings.from_env()
    auth = Authenticator(settings.ingest_tokens, settings.webhook_secrets)
    if not auth.configured:
        raise LandingConfigError(
            "no CXONE_PIPELINE_INGEST_TOKEN or CXONE_PIPELINE_WEBHOOK_SECRETS is set: the "
            "landing refuses to run unauthenticated (use `cxone-pipeline serve --dev` on loopback)"
        )
    subjects = SubjectCatalog(settings.schemas_dir)
    unknown = sorted(auth.signed_subjects - subjects.names)
    if unknown:
        raise LandingConfigError(
            "CXONE_PIPELINE_WEBHOOK_SECRETS names subjects the registry lacks: "
            + ", ".join(unknown)
        )
    store = store if store is not None else open_store(settings)
    metrics = LandingMetrics()
    committer = GroupCommitter(
        store,
        metrics,
        max_events=settings.batch_max_events,
        max_bytes=settings.batch_max_bytes,
        max_pending_events=settings.max_pending_events,
        deadline_seconds=settings.store_deadline_seconds,
        writes_per_subject=LOCAL_WRITES_PER_SUBJECT if isinstance(store, LocalStore) else 1,
        # The sensor reads CXONE_PIPELINE_SENSOR_LOOKBACK_HOURS from the same environment.
        watched_hours=max(settings.sensor_lookback_hours - 1, 0),
    )
    admission = Admission(settings.max_concurrent_requests, settings.max_pending_bytes)
    parsers = ThreadPoolExecutor(PARSE_THREADS, thread_name_prefix="parse")
    first_hour = partition_hour(settings.partitions_start)
    readiness = ReadinessProbe(store, committer)

    async def receive(request: Request, hold: Hold) -> tuple[str, Envelopes]:
        """Authenticate, read and stage one request; the caller answers it."""
        headers = request.headers
        signed = auth.authenticate(headers, request.path_params.get("subject", DEFAULT_SUBJECT))
        subject, rules = subjects.resolve(request.path_params.get("subject", DEFAULT_SUBJECT))
        fmt = body_format(headers.get("content-type"))
        schema_version = header_token(headers, "x-schema-version")
        event_key = header_token(headers, "idempotency-key")
        if signed is not None:
            if event_key is not None or schema_version is not None:
                # Unsigned headers must not change what a signed request means.
                raise IntakeError(
                    400,
                    "invalid_header",
                    "signed requests take their event id from webhook-id and their version "
                    "from the payload's _schema_version: drop Idempotency-Key and X-Schema-Version",
                )
            event_key = signed.webhook_id
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("gzip", "identity"):
            raise IntakeError(
                415, "unsupported_encoding", "Content-Encoding must be gzip or absent"
            )
        raw = await read_body(request, settings.max_body_bytes, hold, unverified=signed is not None)
        if signed is not None:
            auth.verify(signed, raw)
            hold.verified()
        received_at = datetime.now(timezone.utc)
        stage = partial(
            stage_body,
            raw,
            encoding,
            fmt,
            settings,
            received_at,
            schema_version,
            event_key,
            signed,
            rules,
            first_hour,
        )
        if encoding == "identity" and len(raw) <= INLINE_PARSE_BYTES:
            staged = stage()
        else:
            staged = await asyncio.get_running_loop().run_in_executor(parsers, stage)
        del raw, stage
        hold.reserve(staged.nbytes)
        await committer.commit(subject, staged.by_hour, received_at)
        return subject, staged

    async def ingest(request: Request) -> Response:
        try:
            with admission.admit() as hold:
                subject, staged = await receive(request, hold)
        except IntakeError as error:
            metrics.rejected(error.code)
            return error_response(error)
        metrics.accepted(subject, len(staged.ids))
        return JSONResponse(
            {"status": "accepted", "count": len(staged.ids), "event_ids": staged.ids},
            status_code=202,
        )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if await readiness.ready():
            return JSONResponse({"status": "ready"})
        # The store's URL names the bucket: operators find it in the configuration, not here.
        return error_response(Unavailable("store_unavailable", "the lake store is not writable", 5))

    async def metrics_endpoint(request: Request) -> Response:
        if not settings.metrics_public:
            try:
                authorization = request.headers.getlist("authorization")
                if len(authorization) != 1:
                    raise unauthorized("send one Authorization: Bearer <token> header")
                auth.check_bearer(authorization[0])
            except IntakeError as error:
                return error_response(error)
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        metrics.rejected(code)
        return JSONResponse(
            {"error": code, "detail": f"{request.method} {request.url.path[:100]}: {exc.detail}"},
            status_code=exc.status_code,
            headers=exc.headers,
        )

    async def internal_error(request: Request, exc: Exception) -> Response:
        metrics.rejected("internal_error")
        return JSONResponse(
            {"error": "internal_error", "detail": "unexpected server error; nothing was staged"},
            status_code=500,
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await committer.close()
        parsers.shutdown(wait=False)

    return Starlette(
        routes=[
            Route("/ingest", ingest, methods=["POST"]),
            Route("/ingest/{subject:path}", ingest, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error, Exception: internal_error},
        lifespan=lifespan,
    )
