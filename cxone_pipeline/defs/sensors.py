"""`staging_sensor`: request a run for each hour whose staging window changed."""

import json
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from dagster import (
    AssetKey,
    AssetSelection,
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from cxone_pipeline.curate import (
    MARKER_OVERLAP,
    Manifest,
    plan_sensor_hours,
    prune_change_markers,
    staging_changed,
    staging_window,
)
from cxone_pipeline.defs.assets import asset_key, recorded_inputs
from cxone_pipeline.defs.resources import CurationSettings, LakeResource
from cxone_pipeline.lake.layout import (
    CURATED,
    QUARANTINE,
    hour_floor,
    parse_change_marker,
    partition_hour,
    partition_key,
)

# Markers older than this have been read long ago (the cursor only looks back minutes); they
# are deleted at most once an hour, so a tick costs one listing of the markers per subject.
MARKER_RETENTION = timedelta(days=1)
PRUNE_EVERY = timedelta(hours=1)


def run_key(subject: str, partition: str, window_digest: str) -> str:
    """Same subject, hour and staging window give the same key, so a re-tick never doubles."""
    return f"{subject}:{partition}:{window_digest[:16]}"


def subject_assets(subject: str) -> list[AssetKey]:
    return [asset_key(CURATED, subject), asset_key(QUARANTINE, subject)]


def _read_cursor(cursor: str | None) -> dict[str, dict[str, Any]]:
    state = json.loads(cursor) if cursor else {}
    if state and "open" not in state:  # the cursor of earlier releases: open-hour times only
        state = {"open": state}
    return {part: state.get(part, {}) for part in ("open", "markers", "waiting", "pruned")}


def open_hour_due(last: str | None, now: datetime, refresh_seconds: int) -> bool:
    if refresh_seconds <= 0:
        return False
    return last is None or now - datetime.fromisoformat(last) >= timedelta(seconds=refresh_seconds)


def waiting_for(
    now: datetime, opened: dict[str, str], refresh_seconds: int, grace_seconds: int
) -> str:
    """What the sensor waits for, in words, for its skip reason."""
    closes = hour_floor(now) + timedelta(hours=1, seconds=grace_seconds)
    parts = [f"the open hour {partition_key(now)} is curated once closed, at {closes:%H:%M} UTC"]
    if refresh_seconds > 0 and opened:
        next_refresh = min(datetime.fromisoformat(t) for t in opened.values()) + timedelta(
            seconds=refresh_seconds
        )
        if next_refresh < closes:
            parts[0] = f"the open hour {partition_key(now)} refreshes at {next_refresh:%H:%M} UTC"
    return "; ".join(parts)


def build_staging_sensor(
    subjects: Sequence[str], interval_seconds: int, first_hour: datetime
) -> SensorDefinition:
    @sensor(
        name="staging_sensor",
        minimum_interval_seconds=interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        asset_selection=AssetSelection.assets(*(k for s in subjects for k in subject_assets(s))),
        description=(
            "Requests a run for each hour whose staging window (the hour's objects and those "
            "of the neighbour hours within the subject's dedupe horizon) differs from what its "
            "last materialization read. Looks at the open hour (at most every "
            "CXONE_PIPELINE_OPEN_HOUR_REFRESH_SECONDS), the CXONE_PIPELINE_SENSOR_LOOKBACK_HOURS "
            "closed hours, and any hour a change marker names (late events, imports, pulls), "
            "however old. Closed hours wait CXONE_PIPELINE_CLOSE_GRACE_SECONDS past the hour."
        ),
    )
    def staging_sensor(
        context: SensorEvaluationContext, lake: LakeResource, curation: CurationSettings
    ) -> SensorResult:
        now = datetime.now(timezone.utc)
        store = lake.store()
        registry = curation.registry()
        cursor = _read_cursor(context.cursor)
        opened, requests, checked = cursor["open"], [], 0
        for subject in subjects:
            if subject not in registry:
                continue
            schemas = registry[subject]
            open_due = open_hour_due(opened.get(subject), now, curation.open_hour_refresh_seconds)
            read_before = cursor["markers"].get(subject)  # what the saved cursor has read
            plan = plan_sensor_hours(
                store,
                schemas,
                now,
                lookback_hours=curation.lookback_hours,
                close_grace=timedelta(seconds=curation.close_grace_seconds),
                open_hour_due=open_due,
                first_hour=first_hour,
                last_marker=read_before,
                waiting=[partition_hour(k) for k in cursor["waiting"].get(subject, [])],
            )
            cursor["markers"][subject] = plan.last_marker
            cursor["waiting"][subject] = [partition_key(h) for h in plan.waiting]
            pruned = cursor["pruned"].get(subject)
            if pruned is None or now - datetime.fromisoformat(pruned) >= PRUNE_EVERY:
                # Only markers a saved cursor has read: if this tick fails before its cursor is
                # saved, the next one still finds what this one read.
                read = parse_change_marker(read_before) if read_before else None
                if read is not None:
                    before = min(now - MARKER_RETENTION, read.written_at - MARKER_OVERLAP)
                    prune_change_markers(store, subject, before)
                cursor["pruned"][subject] = now.isoformat()
            checked += len(plan.hours)
            listed: dict[datetime, Manifest] = {}
            for hour in plan.hours:
                partition = partition_key(hour)
                window = staging_window(store, schemas, hour, now, listed)
                recorded = recorded_inputs(context.instance, subject, partition)
                if not staging_changed(window, recorded, schemas):
                    continue
                requests.append(
                    RunRequest(
                        run_key=run_key(subject, partition, window.digest(True)),
                        partition_key=partition,
                        asset_selection=subject_assets(subject),
                        tags={
                            "cxone/trigger": "staging_sensor",
                            "cxone/staging_objects": str(window.own.count),
                        },
                    )
                )
                if hour == hour_floor(now):  # the refresh throttle starts with a run
                    opened[subject] = now.isoformat()
        state = json.dumps(cursor, sort_keys=True)
        if not requests:
            waiting = waiting_for(
                now, opened, curation.open_hour_refresh_seconds, curation.close_grace_seconds
            )
            return SensorResult(
                skip_reason=f"{checked} hour(s) checked, none changed; {waiting}", cursor=state
            )
        return SensorResult(run_requests=requests, cursor=state)

    return staging_sensor
