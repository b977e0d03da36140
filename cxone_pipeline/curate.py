"""Curate one staging hour into canonical Parquet and quarantine, and decide which hours need it.

Plain functions over the lake store and the resolution engine; `cxone_pipeline.defs` calls them.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from cxone_pipeline.lake.layout import (
    CURATED,
    STAGING,
    curated_key,
    hour_floor,
    hour_prefix,
    parse_staging_key,
    quarantine_key,
)
from cxone_pipeline.lake.store import ObjectInfo, Store
from cxone_pipeline.registry import SubjectSchemas
from cxone_pipeline.resolve import (
    TransformResult,
    read_parquet,
    rejects_to_bytes,
    transform,
    write_parquet,
)

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
class HourOutcome:
    """What curating one hour read, produced and wrote."""

    subject: str
    hour: datetime
    manifest: Manifest
    registry_fingerprint: str
    result: TransformResult
    curated_keys: tuple[str, ...]
    quarantine_key: str | None

    @property
    def rows(self) -> int:
        return self.result.table.num_rows

    @property
    def rejected(self) -> int:
        return len(self.result.rejects)

    @property
    def events_read(self) -> int:
        return self.rows + self.rejected + self.result.duplicates_dropped


def curate_hour(store: Store, schemas: SubjectSchemas, hour: datetime) -> HourOutcome:
    """Resolve every staged event of `hour` and replace the hour's curated and quarantine files.

    Reads exactly the objects of the manifest it records, so an object landing meanwhile shows
    up as a manifest change on the next sensor tick. New files are written before stale ones are
    deleted: a reader never sees the hour empty while it is being replaced.
    """
    hour = hour_floor(hour)
    subject = schemas.name
    manifest = staging_manifest(store, subject, hour)
    result = transform((store.get(o.key) for o in manifest.objects), schemas)

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
    return HourOutcome(subject, hour, manifest, schemas.fingerprint, result, written, rejects_key)


# Checks ---------------------------------------------------------------------------------------

Severity = Literal["WARN", "ERROR"]


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    severity: Severity
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} ({n})" for name, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def check_schema_drift(outcome: HourOutcome) -> CheckOutcome:
    """ERROR for events no schema can read; WARN for payload fields no schema declares."""
    result, subject = outcome.result, outcome.subject
    unmatched = result.rejects_per_code.get("no_matching_schema", 0)
    # Versions without unmapped fields say nothing about drift.
    unmapped_by_version = {v: dict(f) for v, f in result.unmapped_by_version.items() if f}
    metadata: dict[str, Any] = {
        "unknown_versions": dict(result.unknown_versions),
        "no_matching_schema": unmatched,
        "unmapped_fields": dict(result.unmapped_fields),
        "unmapped_by_version": unmapped_by_version,
        "registry_fingerprint": outcome.registry_fingerprint,
    }
    if result.unknown_versions or unmatched:
        actions = [
            f"add schemas/{subject}/{version}.avsc" for version in sorted(result.unknown_versions)
        ]
        if unmatched:
            actions.append(
                f"inspect quarantine/{subject} (code no_matching_schema) and add the writer "
                f"schema those payloads follow under schemas/{subject}/"
            )
        description = (
            f"{sum(result.unknown_versions.values()) + unmatched} event(s) match no schema "
            f"(unknown versions: {_counts(result.unknown_versions) or 'none'}; "
            f"no matching schema: {unmatched}). Next: {'; '.join(actions)}, run "
            f"`cxone-pipeline schemas check`, then the nightly_reconcile schedule recovers "
            f"them; see {OPERATIONS_DOC}"
        )
        return CheckOutcome("schema_drift", False, "ERROR", description, metadata)
    if result.unmapped_fields:
        versions = ", ".join(sorted(unmapped_by_version))
        description = (
            f"payloads carry fields no schema declares: {_counts(result.unmapped_fields)} "
            f"(versions {versions}). They are kept in _unmapped_fields. Next: if they are "
            f"real, add a new schemas/{subject}/vN.avsc declaring them and map them in "
            f"canonical.avsc; see {OPERATIONS_DOC}"
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


def check_unique_event_ids(store: Store, subject: str, hour: datetime) -> CheckOutcome:
    """Read back the hour's curated files, as a consumer would, and look for repeated ids."""
    counts = Counter(
        event_id
        for info in store.list(hour_prefix(CURATED, subject, hour))
        for event_id in read_parquet(store.get(info.key)).column("_event_id").to_pylist()
    )
    repeated = {event_id: n for event_id, n in counts.items() if n > 1}
    total = counts.total()
    metadata: dict[str, Any] = {"rows": total, "duplicate_ids": len(repeated)}
    if repeated:
        sample = dict(sorted(repeated.items())[:20])
        metadata["sample"] = sample
        description = (
            f"{len(repeated)} _event_id value(s) occur more than once in "
            f"{hour_prefix(CURATED, subject, hour)}: {_counts(sample)}. Next: re-materialize the "
            f"partition (a stale part file may be left over); see {OPERATIONS_DOC}"
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


def reconcile_hours(now: datetime, days: int, first_hour: datetime) -> list[datetime]:
    """The closed hours of the last `days` days from the first partition on, oldest first."""
    last_closed = hour_floor(now) - timedelta(hours=1)
    hours = (last_closed - timedelta(hours=n) for n in range(days * 24 - 1, -1, -1))
    return [hour for hour in hours if hour >= first_hour]


def staging_changed(manifest: Manifest, recorded: Recorded | None) -> bool:
    if recorded is None:
        return manifest.count > 0
    return recorded.manifest_digest != manifest.digest


def run_reason(
    manifest: Manifest, recorded: Recorded | None, registry_fingerprint: str
) -> str | None:
    """Why the reconcile schedule should re-run an hour, or None when it is up to date."""
    if staging_changed(manifest, recorded):
        return "staging_changed"
    if (
        recorded is not None
        and recorded.quarantined
        and recorded.registry_fingerprint != registry_fingerprint
    ):
        return "registry_changed"
    return None
