"""Curate one staging hour into canonical Parquet and quarantine, and decide which hours need it.

Plain functions over the lake store and the resolution engine; `cxone_pipeline.defs` calls them.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from cxone_pipeline.display import (
    MAX_NAMES,
    code,
    counts_text,
    more,
    names_text,
    plain,
    top_counts,
)
from cxone_pipeline.lake.layout import (
    CHANGES,
    CURATED,
    STAGING,
    change_marker_after,
    curated_key,
    hour_floor,
    hour_prefix,
    parse_change_marker,
    parse_staging_key,
    partition_key,
    quarantine_key,
    zone_prefix,
)
from cxone_pipeline.lake.store import ObjectInfo, Store
from cxone_pipeline.registry import SubjectSchemas
from cxone_pipeline.registry.subject import KEEP_LATEST
from cxone_pipeline.resolve import (
    TransformResult,
    read_parquet,
    rejects_to_bytes,
    write_parquet,
)
from cxone_pipeline.resolve.engine import copies, resolve, select
from cxone_pipeline.resolve.envelopes import parse_envelope, staged_lines

OPERATIONS_DOC = "docs/operations.md#when-a-check-fails"


@dataclass(frozen=True)
class Manifest:
    """The staging objects of one hour, by key and size: what a materialization read."""

    objects: tuple[ObjectInfo, ...]

    @property
    def count(self) -> int:
        return len(self.objects)

    @property
    def digest(self) -> str:
        """SHA-256 over the sorted (key, size) pairs; staging objects are immutable, so this
        changes exactly when an object is added (late data) or removed."""
        sha = hashlib.sha256()
        for info in self.objects:
            sha.update(f"{info.key}\t{info.size}\n".encode())
        return sha.hexdigest()


def staging_manifest(store: Store, subject: str, hour: datetime) -> Manifest:
    """List one hour prefix of staging; temp files and foreign names are not staging objects."""
    objects = [
        o for o in store.list(hour_prefix(STAGING, subject, hour)) if parse_staging_key(o.key)
    ]
    return Manifest(tuple(sorted(objects, key=lambda o: o.key)))


@dataclass(frozen=True)
class Window:
    """The staging a curated hour depends on: its own objects, and those of the neighbour
    hours within the subject's dedupe horizon (earlier hours, and later hours once they are
    closed), whose copies of the same event ids can win over the hour's own."""

    hour: datetime
    own: Manifest
    neighbours: tuple[tuple[int, Manifest], ...]  # (offset in hours, manifest), non-empty

    def digest(self, with_later: bool) -> str:
        """The own manifest's digest when no neighbour counts (so subjects without a horizon
        keep the digests they always had), else a digest over the counted manifests."""
        counted = [(o, m) for o, m in self.neighbours if o < 0 or with_later]
        if not counted:
            return self.own.digest
        sha = hashlib.sha256(self.own.digest.encode())
        for offset, manifest in counted:
            sha.update(f"\n{offset}:{manifest.digest}".encode())
        return sha.hexdigest()


def staging_window(
    store: Store,
    schemas: SubjectSchemas,
    hour: datetime,
    now: datetime | None = None,
    listed: dict[datetime, Manifest] | None = None,
) -> Window:
    """List the hour and its neighbours within the horizon; later hours only once closed.
    `listed` caches manifests across calls for one subject (a sensor tick, a schedule)."""
    hour = hour_floor(hour)
    open_hour = hour_floor(now or datetime.now(timezone.utc))
    listed = {} if listed is None else listed

    def manifest(of: datetime) -> Manifest:
        if of not in listed:
            listed[of] = staging_manifest(store, schemas.name, of)
        return listed[of]

    horizon = schemas.rules.horizon_hours
    neighbours = []
    for offset in (*range(-horizon, 0), *range(1, horizon + 1)):
        neighbour = hour + timedelta(hours=offset)
        if offset > 0 and neighbour >= open_hour:
            continue
        if manifest(neighbour).count:
            neighbours.append((offset, manifest(neighbour)))
    return Window(hour, manifest(hour), tuple(neighbours))


def counts_later_hours(schemas: SubjectSchemas, quarantined: int) -> bool:
    """Whether later copies can change the hour's outcome: under `latest` always; under
    `first` only for copies it quarantined, which a later resolvable copy supersedes."""
    return schemas.rules.keep == KEEP_LATEST or quarantined > 0


# The envelope's id as the landing, the importer and pulls write it: first key, compact JSON.
_ENVELOPE_ID = re.compile(rb'\{"event_id":"((?:[^"\\]|\\.)*)"')


def _line_id(line: bytes) -> str | None:
    """The envelope's event id, or None for a line that is not an envelope (any bytes: a
    hand-dropped file may hold anything, and a neighbour's line must never fail an hour)."""
    try:
        match = _ENVELOPE_ID.match(line)
        if match is not None:
            raw = match[1]
            return raw.decode() if b"\\" not in raw else json.loads(b'"' + raw + b'"')
        return parse_envelope(0, line).event_id
    except ValueError:  # UnicodeDecodeError and JSON errors included
        return None


def _copies_of(
    store: Store, schemas: SubjectSchemas, manifest: Manifest, ids: set[str], offset: int
) -> pa.Table:
    """The copies of `ids` staged in a neighbour hour, resolved, as `select` compares them."""
    lines = [
        line
        for info in manifest.objects
        for line in staged_lines(store.get(info.key))
        if _line_id(line) in ids
    ]
    return copies(resolve([b"\n".join(lines)] if lines else [], schemas), schemas, offset)


@dataclass(frozen=True)
class HourOutcome:
    """What curating one hour read, produced and wrote."""

    subject: str
    hour: datetime
    manifest: Manifest
    registry_fingerprint: str
    result: TransformResult
    curated_keys: tuple[str, ...]
    quarantine_key: str | None
    window_digest: str = ""
    event_time_fallbacks: int = 0

    @property
    def rows(self) -> int:
        return self.result.table.num_rows

    @property
    def rejected(self) -> int:
        return len(self.result.rejects)

    @property
    def events_read(self) -> int:
        """Every staged line of the hour: a row, a reject, or a copy that lost to another."""
        result = self.result
        dropped = result.duplicates_dropped + result.duplicates_across_hours + result.superseded
        return self.rows + self.rejected + dropped


def curate_hour(
    store: Store, schemas: SubjectSchemas, hour: datetime, now: datetime | None = None
) -> HourOutcome:
    """Resolve every staged event of `hour`, keep one copy per event id (against the copies
    of its neighbour hours too), and replace the hour's curated and quarantine files.

    Reads exactly the objects of the window it records, so an object landing meanwhile shows
    up as a window change on the next sensor tick. New files are written before stale ones are
    deleted: a reader never sees the hour empty while it is being replaced.
    """
    hour = hour_floor(hour)
    subject = schemas.name
    window = staging_window(store, schemas, hour, now)
    manifest = window.own
    resolved = resolve((store.get(o.key) for o in manifest.objects), schemas)
    rejected_ids = {r.event_id for r in resolved.rejects if r.event_id is not None}
    with_later = counts_later_hours(schemas, len(rejected_ids))
    compared = [(o, m) for o, m in window.neighbours if o < 0 or with_later]
    ids = set(resolved.table.column("_event_id").to_pylist()) | rejected_ids if compared else set()
    neighbours = [_copies_of(store, schemas, m, ids, offset) for offset, m in compared]
    result = select(resolved, schemas, neighbours)
    del resolved, neighbours  # every copy is in `result` or counted: free them before writing

    written: tuple[str, ...] = ()
    if result.table.num_rows:
        written = (curated_key(subject, hour, 0),)
        store.put(written[0], write_parquet(result.table))
    for stale in list(store.list(hour_prefix(CURATED, subject, hour))):
        if stale.key not in written:
            store.delete(stale.key)

    rejects_key: str | None = quarantine_key(subject, hour)
    if result.rejects:
        store.put(rejects_key, rejects_to_bytes(result.rejects))
    else:
        store.delete(rejects_key)
        rejects_key = None
    return HourOutcome(
        subject,
        hour,
        manifest,
        schemas.fingerprint,
        result,
        written,
        rejects_key,
        window.digest(counts_later_hours(schemas, len(result.rejects))),
        event_time_fallbacks(result.table, schemas, hour),
    )


def event_time_fallbacks(table: pa.Table, schemas: SubjectSchemas, hour: datetime) -> int:
    """Rows of a subject partitioned by event time that sit in another hour than their event
    time's: it was missing, unreadable, too early or in the future when they were staged."""
    field = schemas.rules.event_time_field
    if field is None or not table.num_rows:
        return 0
    times = table.column(field.name)
    start = pa.scalar(hour, times.type)
    end = pa.scalar(hour + timedelta(hours=1), times.type)
    inside = pc.and_(pc.greater_equal(times, start), pc.less(times, end)).fill_null(False)
    return table.num_rows - pc.sum(inside.cast(pa.int64())).as_py()


# Checks ---------------------------------------------------------------------------------------

Severity = Literal["WARN", "ERROR"]


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    severity: Severity
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


_REASON_CHARS = 300  # a resolution reason quoted from sender data (display.py bounds names)


def _counts(counts: dict[str, int]) -> str:
    # Names come from payloads: bounded, stripped and shown as code (display.py).
    return counts_text(counts)


def check_schema_drift(outcome: HourOutcome) -> CheckOutcome:
    """ERROR for events no schema can read; WARN for payload fields no schema declares."""
    result, subject = outcome.result, outcome.subject
    unmatched = result.rejects_per_code.get("no_matching_schema", 0)
    # Versions without unmapped fields say nothing about drift.
    unmapped_by_version = {v: dict(f) for v, f in result.unmapped_by_version.items() if f}
    metadata: dict[str, Any] = {
        "unknown_versions": top_counts(result.unknown_versions),
        "no_matching_schema": unmatched,
        "unmapped_fields": top_counts(result.unmapped_fields),
        "unmapped_by_version": {v: top_counts(f) for v, f in unmapped_by_version.items()},
        "registry_fingerprint": outcome.registry_fingerprint,
    }
    if result.unknown_versions or unmatched or result.unmapped_fields:
        metadata["propose_command"] = (
            f"cxone-pipeline schemas propose --subject {subject} "
            f"--partition {partition_key(outcome.hour)}"
        )
    if result.unknown_versions or unmatched:
        actions = []
        if result.unknown_versions:
            actions.append(
                # A code span: the UI renders Markdown, where a bare <version> is an HTML tag.
                f"add `schemas/{subject}/<version>.avsc` for {names_text(result.unknown_versions)}"
            )
        if unmatched:
            # The reason names the nearest version and why it failed; payloads shape it.
            sample = next(r.message for r in result.rejects if r.code == "no_matching_schema")
            metadata["no_matching_schema_sample"] = plain(sample, _REASON_CHARS)
            actions.append(
                f"inspect quarantine/{subject} (code no_matching_schema, e.g. "
                f"{code(sample, _REASON_CHARS)}) and add the writer schema those payloads "
                f"follow under schemas/{subject}/"
            )
        description = (
            f"{sum(result.unknown_versions.values()) + unmatched} event(s) match no schema "
            f"(unknown versions: {_counts(result.unknown_versions) or 'none'}; "
            f"no matching schema: {unmatched}). Next: {'; '.join(actions)} (`"
            f"{metadata['propose_command']}` drafts them), run "
            f"`cxone-pipeline schemas check`, then the nightly_reconcile schedule recovers "
            f"them; see {OPERATIONS_DOC}"
        )
        return CheckOutcome("schema_drift", False, "ERROR", description, metadata)
    if result.unmapped_fields:
        # Fields a newer version declares: that version failed on these payloads, say why.
        near = [plain(miss.describe(), _REASON_CHARS) for miss in result.near_misses]
        metadata["near_misses"] = near[:MAX_NAMES]
        elsewhere = {key for miss in result.near_misses for key in miss.declared}
        undeclared = {k: n for k, n in result.unmapped_fields.items() if k not in elsewhere}
        found, actions = [], []
        if near:
            shown = "; ".join(code(text, _REASON_CHARS) for text in near[:3])
            found.append(f"payloads fit a newer version except for some fields: {shown}")
            if len(near) > 3:
                found[-1] += f"; {more(len(near) - 3)}"
            actions.append(
                f"fix those values at the sender, or add a schemas/{subject}/vN.avsc that "
                "accepts them (e.g. iso-timestamp-millis for ISO-8601 text, lenient for numbers "
                "sent as text; docs/schemas.md)"
            )
        if undeclared:
            found.append(
                f"payloads carry fields no schema declares: {_counts(undeclared)} "
                f"(versions {names_text(unmapped_by_version)})"
            )
            actions.append(
                f"if they are real, add a new schemas/{subject}/vN.avsc declaring them and map "
                f"them in canonical.avsc (`{metadata['propose_command']}` drafts both)"
            )
        description = (
            f"{'. '.join(found)}. Unmapped fields are kept in _unmapped_fields. Next: "
            f"{'; '.join(actions)}; see {OPERATIONS_DOC}"
        )
        return CheckOutcome("schema_drift", False, "WARN", description, metadata)
    return CheckOutcome(
        "schema_drift", True, "WARN", "every field of every event is declared", metadata
    )


def check_quarantine_rate(outcome: HourOutcome, max_rate: float) -> CheckOutcome:
    rate = outcome.rejected / outcome.events_read if outcome.events_read else 0.0
    metadata: dict[str, Any] = {
        "quarantine_rate": rate,
        "limit": f"{max_rate:.2%}",  # text: a constant is no plot
        "quarantined": outcome.rejected,
        "events_read": outcome.events_read,
        "rejects_per_code": dict(outcome.result.rejects_per_code),
    }
    if rate > max_rate:
        description = (
            f"{outcome.rejected} of {outcome.events_read} events ({rate:.2%}) were quarantined, "
            f"above {max_rate:.2%}: {_counts(outcome.result.rejects_per_code)}. Next: read "
            f"{outcome.quarantine_key} for the reasons, fix the schema or the sender; see "
            f"{OPERATIONS_DOC}"
        )
        return CheckOutcome("quarantine_rate", False, "ERROR", description, metadata)
    return CheckOutcome(
        "quarantine_rate", True, "ERROR", f"{rate:.2%} quarantined (limit {max_rate:.2%})", metadata
    )


def curated_ids(store: Store, subject: str, hour: datetime) -> pa.ChunkedArray:
    """The `_event_id`s of an hour's curated files, read back as a consumer would."""
    tables = [
        read_parquet(store.get(info.key), columns=["_event_id"])
        for info in store.list(hour_prefix(CURATED, subject, hour))
    ]
    if not tables:
        return pa.chunked_array([], pa.string())
    return pa.concat_tables(tables).column("_event_id")


def check_unique_event_ids(
    store: Store, subject: str, hour: datetime, horizon_hours: int = 0
) -> CheckOutcome:
    """Look for ids repeated in the hour's curated files, or also curated in a neighbour hour
    within the dedupe horizon (counted in Arrow: an hour may hold millions of ids)."""
    ids = curated_ids(store, subject, hour)
    repeated: dict[str, int] = {}
    if len(pc.unique(ids)) < len(ids):  # counted only when some id repeats
        counts = pc.value_counts(ids)
        several = pc.greater(counts.field("counts"), 1)
        values, numbers = counts.field("values"), counts.field("counts")
        repeated = dict(
            zip(
                values.filter(several).to_pylist(), numbers.filter(several).to_pylist(), strict=True
            )
        )
    elsewhere: dict[str, int] = {}
    for offset in (*range(-horizon_hours, 0), *range(1, horizon_hours + 1)):
        neighbour = curated_ids(store, subject, hour + timedelta(hours=offset))
        for event_id in pc.unique(neighbour.filter(pc.is_in(neighbour, ids))).to_pylist():
            elsewhere[event_id] = elsewhere.get(event_id, 0) + 1
    total = len(ids)
    metadata: dict[str, Any] = {
        "rows": total,
        "duplicate_ids": len(repeated),
        "ids_also_in_neighbour_hours": len(elsewhere),
        "horizon_hours": horizon_hours,
    }
    if repeated or elsewhere:
        sample = dict(sorted(repeated.items())[:20])
        shared = sorted(elsewhere)[:20]
        found = {**sample, **{event_id: "neighbour hour" for event_id in shared}}
        metadata["sample"] = {plain(event_id): n for event_id, n in found.items()}
        description = (
            f"{len(repeated)} _event_id value(s) occur more than once in "
            f"{hour_prefix(CURATED, subject, hour)} and {len(elsewhere)} are also curated in an "
            f"hour within {horizon_hours} hour(s) of it. Next: re-materialize the partition and "
            f"its neighbours (a stale part file, or a neighbour curated before this hour's "
            f"staging changed); see {OPERATIONS_DOC}"
        )
        return CheckOutcome("unique_event_ids", False, "ERROR", description, metadata)
    return CheckOutcome("unique_event_ids", True, "ERROR", f"{total} distinct _event_id", metadata)


# Planning -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    """What a partition's last materialization recorded about its inputs."""

    manifest_digest: str
    registry_fingerprint: str
    quarantined: int


def sensor_hours(
    now: datetime,
    lookback_hours: int,
    close_grace: timedelta,
    open_hour_due: bool,
    first_hour: datetime,
) -> list[datetime]:
    """Hours the staging sensor looks at: closed hours of the look-back window once their grace
    period is over, and the open hour when its refresh is due; none before the first partition.
    Oldest first."""
    open_hour = hour_floor(now)
    hours = [
        hour
        for hour in (open_hour - timedelta(hours=n) for n in range(lookback_hours, 0, -1))
        if now >= hour + timedelta(hours=1) + close_grace
    ]
    if open_hour_due:
        hours.append(open_hour)
    return [hour for hour in hours if hour >= first_hour]


# Markers are re-read this far back at each tick: a writer stamps its marker before its
# write completes, and writers' clocks differ a little.
MARKER_OVERLAP = timedelta(minutes=10)
# Hours one sensor tick compares at most per subject (each costs a listing and an event-log
# read): far inside Dagster's 60 s sensor timeout even on S3.
MAX_HOURS_PER_TICK = 200


@dataclass(frozen=True)
class SensorPlan:
    """The hours of one subject the sensor compares with their last materialization."""

    hours: list[datetime]  # oldest first
    waiting: list[datetime]  # hours markers named that are not closed (plus grace) yet
    last_marker: str | None  # the newest change marker read
    markers_read: int


def plan_sensor_hours(
    store: Store,
    schemas: SubjectSchemas,
    now: datetime,
    *,
    lookback_hours: int,
    close_grace: timedelta,
    open_hour_due: bool,
    first_hour: datetime,
    last_marker: str | None,
    waiting: list[datetime],
    most: int = MAX_HOURS_PER_TICK,
) -> SensorPlan:
    """The look-back window, the hours change markers name since `last_marker` (however old:
    late events, imports, pulls), and their neighbours within the dedupe horizon, whose
    outcome may depend on them. Marker hours wait until closed and past the grace period.

    At most `most` hours per tick, so a tick stays far inside Dagster's sensor timeout however
    many hours an import or a sender touched: the look-back window first, then marker hours
    oldest first; the others wait in `waiting` for the next ticks."""
    start = None
    if last_marker is not None and (marker := parse_change_marker(last_marker)) is not None:
        # Bounded by now: a writer whose clock runs fast must not move the start past markers
        # that writers with a right clock are still leaving.
        read_from = min(marker.written_at, now) - MARKER_OVERLAP
        start = change_marker_after(schemas.name, read_from)
    markers = [
        found
        for info in store.list(zone_prefix(CHANGES, schemas.name), start_after=start)
        if (found := parse_change_marker(info.key)) is not None
    ]
    named = {h for h in set(waiting) | {m.hour for m in markers} if h >= first_hour}
    closed = {h for h in named if now >= h + timedelta(hours=1) + close_grace}
    horizon = schemas.rules.horizon_hours

    def with_neighbours(hour: datetime) -> list[datetime]:
        near = (hour + timedelta(hours=offset) for offset in range(-horizon, horizon + 1))
        return [h for h in near if now >= h + timedelta(hours=1) + close_grace or h == hour]

    hours: set[datetime] = set()
    for hour in sensor_hours(now, lookback_hours, close_grace, open_hour_due, first_hour):
        hours.update(with_neighbours(hour) if hour < hour_floor(now) else [hour])
    later = []
    for hour in sorted(closed):
        if len(hours) >= most:
            later.append(hour)
            continue
        hours.update(with_neighbours(hour))
    newest = max((m.key for m in markers), default=last_marker)
    return SensorPlan(
        hours=sorted(h for h in hours if h >= first_hour),
        waiting=sorted((named - closed) | set(later)),
        last_marker=newest,
        markers_read=len(markers),
    )


def prune_change_markers(store: Store, subject: str, before: datetime, limit: int = 1000) -> int:
    """Delete up to `limit` change markers written before `before`; returns how many."""
    end = change_marker_after(subject, before)
    deleted = 0
    for info in store.list(zone_prefix(CHANGES, subject)):
        if info.key >= end or deleted >= limit:
            break
        store.delete(info.key)
        deleted += 1
    return deleted


def reconcile_hours(now: datetime, days: int, first_hour: datetime) -> list[datetime]:
    """The closed hours of the last `days` days from the first partition on, oldest first."""
    last_closed = hour_floor(now) - timedelta(hours=1)
    hours = (last_closed - timedelta(hours=n) for n in range(days * 24 - 1, -1, -1))
    return [hour for hour in hours if hour >= first_hour]


def staging_changed(window: Window, recorded: Recorded | None, schemas: SubjectSchemas) -> bool:
    """Whether the hour's window differs from what its last materialization read."""
    if recorded is None:
        return window.own.count > 0
    with_later = counts_later_hours(schemas, recorded.quarantined)
    return recorded.manifest_digest != window.digest(with_later)


def run_reason(window: Window, recorded: Recorded | None, schemas: SubjectSchemas) -> str | None:
    """Why the reconcile schedule should re-run an hour, or None when it is up to date."""
    registry_fingerprint = schemas.fingerprint
    if staging_changed(window, recorded, schemas):
        return "staging_changed"
    if (
        recorded is not None
        and recorded.quarantined
        and recorded.registry_fingerprint != registry_fingerprint
    ):
        return "registry_changed"
    return None
