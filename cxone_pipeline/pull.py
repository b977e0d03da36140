"""Pull a subject's records from CXone's Reporting API into staging, and keep them up to date.

Records are staged under their event-time hours, one content-addressed object per hour
(`layout.pull_key`): a re-pull of unchanged records writes nothing, changed records add an
object whose newer copies win in curated. Envelopes record the writer version the subject's
`pull.writer_by_api_version` names for the API version pulled.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from cxone_pipeline.cxone.client import CXoneClient
from cxone_pipeline.cxone.config import CXoneConfig
from cxone_pipeline.cxone.reporting import ReportingAPI, last_page, utc_z
from cxone_pipeline.importer import stage_once, staged_keys
from cxone_pipeline.lake.envelope import ReservedEventId, canonical_json
from cxone_pipeline.lake.layout import hour_floor, pull_key
from cxone_pipeline.lake.store import Store
from cxone_pipeline.landing.intake import IntakeError, envelope_lines, staging_hour
from cxone_pipeline.registry import SubjectSchemas, payload_problem
from cxone_pipeline.registry.extensions import parse_iso8601
from cxone_pipeline.registry.subject import PullSettings, Spelling
from cxone_pipeline.settings import UPDATED_SINCE_MAX_HOURS

T = TypeVar("T")
HOUR = timedelta(hours=1)
UPDATED_SINCE_WINDOW = timedelta(hours=UPDATED_SINCE_MAX_HOURS)
# Records compared with the writer version before anything is staged under its name.
_WRITER_SAMPLE = 20


class PullError(Exception):
    """The subject cannot be pulled as configured; the message names the setting to change."""


@dataclass
class Staged:
    """What staging a batch of records wrote, per staging hour."""

    records_per_hour: dict[datetime, int] = field(default_factory=dict)
    objects_written: int = 0
    objects_skipped: int = 0
    # Records that started before the first partition: not staged (the lake does not hold
    # those hours, and staging each update under the hour it was pulled would curate the
    # contact once per pull).
    before_first_partition: int = 0

    def add(self, other: Staged) -> None:
        for hour, count in other.records_per_hour.items():
            self.records_per_hour[hour] = self.records_per_hour.get(hour, 0) + count
        self.objects_written += other.objects_written
        self.objects_skipped += other.objects_skipped
        self.before_first_partition += other.before_first_partition


@dataclass
class PullReport:
    """One pulled window (an hour): what CXone answered and what was staged where."""

    subject: str
    start: datetime
    end: datetime
    api_version: str
    writer_version: str
    records: int
    pages: int
    total_records: int | None
    staged: Staged
    seconds: float

    @property
    def records_in_window(self) -> int:
        """Records staged under the window's own hour(s); the others' event times lie
        elsewhere (or could not be read) and were staged under their own hours."""
        return sum(
            n for hour, n in self.staged.records_per_hour.items() if self.start <= hour < self.end
        )


@dataclass
class SyncReport:
    """One `updatedSince` poll of a subject."""

    subject: str
    since: datetime
    cursor: datetime  # where the next poll starts: the newest update staged, or `since`
    records: int
    pages: int
    complete: bool  # False when the page budget ran out before the updates did
    staged: Staged


def pull_settings(schemas: SubjectSchemas) -> PullSettings:
    if schemas.rules.pull is None:
        raise PullError(
            f"subject {schemas.name!r} is not pulled from CXone: its subject.json has no 'pull'"
        )
    return schemas.rules.pull


def writer_version(schemas: SubjectSchemas, api_version: str) -> str:
    writer = pull_settings(schemas).writer_for(api_version)
    if writer is None:
        raise PullError(
            f"CXONE_API_VERSION {api_version} is older than every API version that "
            f"schemas/{schemas.name}/subject.json pull.writer_by_api_version maps to a writer"
        )
    return writer


def check_writer(
    schemas: SubjectSchemas, writer: str, api_version: str, records: Sequence[dict[str, Any]]
) -> None:
    """Refuse to stage records under `writer` when a sample fits another writer and none fits
    it: the API version answers with other field names than subject.json says."""
    sample = records[:_WRITER_SAMPLE]
    mapped = schemas.version(writer)
    if mapped is None or not sample:
        return
    problems = [payload_problem(record, mapped) for record in sample]
    if any(problem is None for problem in problems):
        return
    for other in schemas.versions:
        if other.version != writer and any(payload_problem(r, other) is None for r in sample):
            raise PullError(
                f"CXONE_API_VERSION {api_version} answers {schemas.name} records that fit "
                f"writer {other.version}, not {writer} as schemas/{schemas.name}/subject.json "
                f"pull.writer_by_api_version says ({problems[0]}): map {api_version} to "
                f"{other.version} there"
            )


def stage_records(
    store: Store,
    schemas: SubjectSchemas,
    records: Iterable[dict[str, Any]],
    writer: str,
    received_at: datetime,
    first_hour: datetime,
) -> Staged:
    """Stage `records` under their event-time hours, one object per hour named by the
    digest of the writer version and the records (in event-id order), so the same records
    stage nothing new however often they are pulled; `received_at` goes into new envelopes."""
    rules = schemas.rules
    by_hour: dict[datetime, list[tuple[str, bytes, dict[str, Any]]]] = {}
    staged = Staged()
    try:
        for record in records:
            moment = rules.event_time(record)
            if moment is not None and moment < first_hour:
                staged.before_first_partition += 1
                continue
            hour = staging_hour(rules, record, received_at, first_hour)
            entry = (rules.event_id(record), canonical_json(record), record)
            by_hour.setdefault(hour, []).append(entry)
    except ReservedEventId as exc:
        raise PullError(f"{schemas.name}: {exc}") from None
    for hour, entries in sorted(by_hour.items()):
        entries.sort(key=lambda entry: entry[:2])
        digest = hashlib.sha256(writer.encode())
        for _, text, _ in entries:
            digest.update(b"\n" + text)
        try:
            envelopes = envelope_lines(
                [record for _, _, record in entries],
                received_at,
                writer,
                None,
                rules,
                first_hour,
                keep_lone_surrogates=True,
            )
        except IntakeError as exc:
            raise PullError(f"{schemas.name}: {exc.detail}") from None
        lines = envelopes.by_hour[hour]
        key = pull_key(schemas.name, hour, digest.hexdigest())
        existing = staged_keys(store, schemas.name, hour)
        if stage_once(store, schemas.name, hour, key, b"".join(lines), existing):
            staged.objects_written += 1
        else:
            staged.objects_skipped += 1
        staged.records_per_hour[hour] = len(lines)
    return staged


async def pull_window(
    reporting: ReportingAPI,
    store: Store,
    schemas: SubjectSchemas,
    start: datetime,
    end: datetime,
    first_hour: datetime,
) -> PullReport:
    """Fetch the records whose event time lies in [start, end) and stage them."""
    began = time.monotonic()
    pull = pull_settings(schemas)
    writer = writer_version(schemas, reporting.api_version)
    received_at = datetime.now(timezone.utc)
    params = {"startDate": utc_z(start), "endDate": utc_z(end)}
    fetched = await reporting.fetch(pull.endpoint, pull.records, params)
    check_writer(schemas, writer, reporting.api_version, fetched.records)
    staged = stage_records(store, schemas, fetched.records, writer, received_at, first_hour)
    return PullReport(
        schemas.name,
        start,
        end,
        reporting.api_version,
        writer,
        len(fetched.records),
        fetched.pages,
        fetched.total_records,
        staged,
        time.monotonic() - began,
    )


def pull_hours(
    config: CXoneConfig,
    store: Store,
    schemas: SubjectSchemas,
    hours: Sequence[datetime],
    first_hour: datetime,
    progress: Callable[[PullReport], None] = lambda report: None,
) -> list[PullReport]:
    """Pull each hour in turn with one client (one token, one connection pool); `progress`
    is called after each hour."""

    async def pull_each(reporting: ReportingAPI) -> list[PullReport]:
        reports = []
        for hour in hours:
            start = hour_floor(hour)
            report = await pull_window(reporting, store, schemas, start, start + HOUR, first_hour)
            progress(report)
            reports.append(report)
        return reports

    return _with_reporting(config, schemas, pull_each)


def _with_reporting(
    config: CXoneConfig,
    schemas: SubjectSchemas,
    work: Callable[[ReportingAPI], Awaitable[T]],
) -> T:
    """Run `work` with one client (one token, one connection pool) on its own event loop,
    after checking that the subject can be pulled at the configured API version."""
    writer_version(schemas, config.api_version)

    async def run() -> T:
        async with CXoneClient(config) as client:
            return await work(ReportingAPI(client))

    return asyncio.run(run())


def sync_since(cursor: datetime | None, now: datetime, lookback: timedelta) -> datetime:
    """Where a poll starts: the cursor, or `lookback` ago on the first poll; never more
    than CXone's 30-day `updatedSince` window ago."""
    since = cursor if cursor is not None else now - lookback
    return max(since, now - UPDATED_SINCE_WINDOW)


def sync_updates(
    config: CXoneConfig,
    store: Store,
    schemas: SubjectSchemas,
    since: datetime,
    max_pages: int,
    first_hour: datetime,
) -> SyncReport:
    """Stage the records CXone updated since `since`, page by page, oldest update first,
    reading at most `max_pages` pages.

    Pages are keyed on the update time: after each page the query restarts from the newest
    update staged (`skip` only moves past a page of identical update times), so a record
    updated again while this runs moves behind the cursor instead of shifting a page under it.
    """
    pull = pull_settings(schemas)
    if pull.sync_by is None:
        raise PullError(f"schemas/{schemas.name}/subject.json pull has no sync_by field")
    sync_by = pull.sync_by
    writer = writer_version(schemas, config.api_version)
    order_by = f"{_writer_spelling(schemas, writer, sync_by.keys)} asc"
    received_at = datetime.now(timezone.utc)

    async def poll(reporting: ReportingAPI) -> SyncReport:
        cursor = _micros(since)
        skip = records = pages = largest = 0
        staged = Staged()
        while pages < max_pages:
            params = {"updatedSince": utc_z(_from_micros(cursor)), "orderBy": order_by}
            page = await reporting.page(pull.endpoint, pull.records, params, skip)
            pages += 1
            records += len(page.records)
            check_writer(schemas, writer, config.api_version, page.records)
            staged.add(stage_records(store, schemas, page.records, writer, received_at, first_hour))
            done = last_page(page, skip + len(page.records), largest)
            largest = max(largest, len(page.records))
            newest = max((_update_micros(record, sync_by) for record in page.records), default=-1)
            if newest > cursor:
                cursor, skip = newest, 0
            else:
                skip += len(page.records)
            if done:
                break
        else:
            done = False
        return SyncReport(schemas.name, since, _from_micros(cursor), records, pages, done, staged)

    return _with_reporting(config, schemas, poll)


def _writer_spelling(schemas: SubjectSchemas, writer: str, keys: Sequence[str]) -> str:
    """How `writer` spells the field whose spellings are `keys` (the API's own name)."""
    version = schemas.version(writer)
    names = {f["name"] for f in version.fields} if version else set()
    return next((key for key in keys if key in names), keys[-1])


def _update_micros(record: dict[str, Any], sync_by: Spelling) -> int:
    value = sync_by.value(record)
    micros = parse_iso8601(value) if isinstance(value, str) else None
    return micros if micros is not None else -1


def _micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _from_micros(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / 1_000_000, timezone.utc)
