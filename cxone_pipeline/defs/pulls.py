"""Dagster wiring for CXone pulls: `staging/<S>` pulled hour by hour, and the `cxone_sync` sensor.

What a pull does lives in `cxone_pipeline.pull`; curated follows a pulled hour through the
change markers the pull leaves, which `staging_sensor` reads.
"""

import json
import warnings
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    BackfillPolicy,
    BetaWarning,
    DefaultSensorStatus,
    Failure,
    HourlyPartitionsDefinition,
    MaterializeResult,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    asset,
    sensor,
)

from cxone_pipeline.cxone.errors import CXoneError
from cxone_pipeline.cxone.reporting import utc_z
from cxone_pipeline.defs.assets import asset_key
from cxone_pipeline.defs.catalog import ZONE_TAG, zone_group
from cxone_pipeline.defs.cxone import CXoneResource
from cxone_pipeline.defs.resources import CurationSettings, LakeResource
from cxone_pipeline.lake.layout import STAGING, partition_hour, partition_key, zone_prefix
from cxone_pipeline.pull import PullError, PullReport, pull_hours, sync_since, sync_updates
from cxone_pipeline.registry import SchemaError, discover_subjects
from cxone_pipeline.registry.subject import declares_pull
from cxone_pipeline.settings import SettingsError

# Every pull runs in this Dagster concurrency pool: its limit (dagster.yaml
# `concurrency.pools.default_limit`, or `dagster instance concurrency set cxone_reporting N`)
# is how many pulls may query CXone at once.
PULL_POOL = "cxone_reporting"
_FAILURES = (CXoneError, PullError, SchemaError, SettingsError)


def pulled_subjects(schemas_dir: Path) -> list[str]:
    """Subjects whose subject.json says where CXone's Reporting API serves them."""
    return [s for s in discover_subjects(schemas_dir) if declares_pull(schemas_dir / s)]


def pull_metadata(report: PullReport) -> dict[str, Any]:
    """What one pulled hour recorded; every key on every hour, so the UI can plot them."""
    return {
        "dagster/row_count": report.records_in_window,
        "records": report.records,
        "records_staged": report.records_in_window,
        "records_staged_in_other_hours": report.records - report.records_in_window,
        "total_records": report.total_records if report.total_records is not None else -1,
        "pages": report.pages,
        "api_version": report.api_version,
        "writer_version": report.writer_version,
        "window": f"{utc_z(report.start)} to {utc_z(report.end)}",
        "duration_seconds": round(report.seconds, 3),
        "objects_written": report.staged.objects_written,
        "objects_unchanged": report.staged.objects_skipped,
        "records_before_first_partition": report.staged.before_first_partition,
    }


def pull_asset(
    subject: str, partitions: HourlyPartitionsDefinition, hours_per_run: int
) -> AssetsDefinition:
    first_hour = partition_hour(partitions.get_first_partition_key() or "")
    # A backfill policy on a single asset is a beta parameter in Dagster 1.13 (the multi-asset
    # form used by curate is not flagged); the notice is silenced rather than printed at every
    # definitions load.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BetaWarning)
        return _pull_asset(subject, partitions, hours_per_run, first_hour)


def _pull_asset(
    subject: str, partitions: HourlyPartitionsDefinition, hours_per_run: int, first_hour: datetime
) -> AssetsDefinition:
    @asset(
        key=asset_key(STAGING, subject),
        partitions_def=partitions,
        backfill_policy=BackfillPolicy.multi_run(hours_per_run),
        pool=PULL_POOL,
        group_name=zone_group(subject, STAGING),
        tags={ZONE_TAG: STAGING},
        kinds={"cxone", "json"},
        description=(
            f"{subject} records pulled from CXone's Reporting API, one hour per partition (the "
            f"records whose event time lies in it), staged as one content-addressed object "
            f"per hour under {zone_prefix(STAGING, subject)}. Backfill a range of hours to "
            "import history; re-pulling unchanged records writes nothing. Studio pushes to "
            f"the landing are staged here too."
        ),
    )
    def pull(
        context: AssetExecutionContext,
        lake: LakeResource,
        curation: CurationSettings,
        cxone: CXoneResource,
    ) -> MaterializeResult:
        keys = context.partition_keys
        done = 0

        def progress(report: PullReport) -> None:
            nonlocal done
            done += 1
            key = partition_key(report.start)
            context.add_asset_metadata(pull_metadata(report), partition_key=key)
            context.log.info(
                f"{subject} {key} ({done}/{len(keys)} hours): {report.records:,} records in "
                f"{report.pages} page(s), CXone's totalRecords {report.total_records}; "
                f"{report.staged.objects_written} object(s) written, "
                f"{report.staged.objects_skipped} unchanged; {report.seconds:.1f} s"
            )

        try:
            pull_hours(
                cxone.config(),
                lake.store(),
                curation.subject(subject),
                [partition_hour(key) for key in keys],
                first_hour,
                progress,
            )
        except _FAILURES as exc:
            raise Failure(
                description=f"{subject}: pulled {done} of {len(keys)} hours, then: {exc}"
            ) from None
        return MaterializeResult()

    return pull


def build_cxone_sync_sensor(
    subjects: Sequence[str],
    interval_seconds: int,
    lookback_hours: int,
    max_pages: int,
    first_hour: datetime,
    running: bool,
) -> SensorDefinition:
    @sensor(
        name="cxone_sync",
        minimum_interval_seconds=interval_seconds,
        default_status=DefaultSensorStatus.RUNNING if running else DefaultSensorStatus.STOPPED,
        description=(
            "Keeps pulled subjects complete: every CXONE_SYNC_INTERVAL_SECONDS it asks CXone "
            "for the records updated since its cursor (updatedSince, ordered by the update "
            "time, at most CXONE_SYNC_MAX_PAGES pages per tick), stages them under their own "
            "event-time hours with a change marker, and moves its cursor to the newest update "
            "staged. The first tick looks CXONE_SYNC_LOOKBACK_HOURS back; the cursor is never "
            "older than CXone's 30-day updatedSince window. Curation follows through "
            "staging_sensor. Running by default when CXONE_CLIENT_ID is set."
        ),
    )
    def cxone_sync(
        context: SensorEvaluationContext,
        lake: LakeResource,
        curation: CurationSettings,
        cxone: CXoneResource,
    ) -> SensorResult:
        cursors: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        now = datetime.now(timezone.utc)
        store = lake.store()
        summary = []
        for subject in subjects:
            schemas = curation.subject(subject)
            if schemas.rules.pull is None or schemas.rules.pull.sync_by is None:
                continue
            cursor = cursors.get(subject)
            previous = datetime.fromisoformat(cursor) if cursor else None
            since = sync_since(previous, now, timedelta(hours=lookback_hours))
            if previous is not None and since > previous:
                context.log.warning(
                    f"{subject}: the cursor {cursor} is older than CXone's 30-day updatedSince "
                    f"window; updates before {since.isoformat()} are not polled: backfill "
                    f"staging/{subject} over the hours they may touch"
                )
            report = sync_updates(cxone.config(), store, schemas, since, max_pages, first_hour)
            cursors[subject] = report.cursor.isoformat()
            hours = len(report.staged.records_per_hour)
            summary.append(
                f"{subject}: {report.records} updated record(s) since {since.isoformat()} in "
                f"{report.pages} page(s), staged in {hours} hour(s) "
                f"({report.staged.objects_written} new object(s))"
                + (
                    f"; {report.staged.before_first_partition} started before "
                    "CXONE_PIPELINE_PARTITIONS_START and were not staged"
                    if report.staged.before_first_partition
                    else ""
                )
                + ("" if report.complete else "; more next tick")
            )
        return SensorResult(
            skip_reason="; ".join(summary) or "no subject is synced",
            cursor=json.dumps(cursors, sort_keys=True),
        )

    return cxone_sync
