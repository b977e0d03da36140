"""`staging_sensor`: request a run for each recent hour whose staging objects changed."""

import json
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

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

from cxone_pipeline.curate import sensor_hours, staging_changed, staging_manifest
from cxone_pipeline.defs.assets import asset_key, recorded_inputs
from cxone_pipeline.defs.resources import CurationSettings, LakeResource
from cxone_pipeline.lake.layout import CURATED, QUARANTINE, hour_floor, partition_key


def run_key(subject: str, partition: str, manifest_digest: str) -> str:
    """Same subject, hour and staging contents give the same key, so a re-tick never doubles."""
    return f"{subject}:{partition}:{manifest_digest[:16]}"


def subject_assets(subject: str) -> list[AssetKey]:
    return [asset_key(CURATED, subject), asset_key(QUARANTINE, subject)]


def build_staging_sensor(
    subjects: Sequence[str], interval_seconds: int, first_hour: datetime
) -> SensorDefinition:
    @sensor(
        name="staging_sensor",
        minimum_interval_seconds=interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        asset_selection=AssetSelection.assets(*(k for s in subjects for k in subject_assets(s))),
        description=(
            "Lists only the staging hour prefixes of the look-back window (the open hour and "
            "CXONE_PIPELINE_SENSOR_LOOKBACK_HOURS closed hours) and requests a run for each hour "
            "whose staging manifest differs from the one its last materialization recorded. "
            "Closed hours wait CXONE_PIPELINE_CLOSE_GRACE_SECONDS past the hour; the open hour "
            "runs at most every CXONE_PIPELINE_OPEN_HOUR_REFRESH_SECONDS (0: never)."
        ),
    )
    def staging_sensor(
        context: SensorEvaluationContext, lake: LakeResource, curation: CurationSettings
    ) -> SensorResult:
        now = datetime.now(timezone.utc)
        store = lake.store()
        # The cursor remembers, per subject, when the open hour was last requested: the throttle.
        open_requested: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        refresh = timedelta(seconds=curation.open_hour_refresh_seconds)
        open_hour = hour_floor(now)
        requests = []
        for subject in subjects:
            last = open_requested.get(subject)
            open_due = curation.open_hour_refresh_seconds > 0 and (
                last is None or now - datetime.fromisoformat(last) >= refresh
            )
            hours = sensor_hours(
                now,
                curation.lookback_hours,
                timedelta(seconds=curation.close_grace_seconds),
                open_due,
                first_hour,
            )
            for hour in hours:
                partition = partition_key(hour)
                manifest = staging_manifest(store, subject, hour)
                if not staging_changed(
                    manifest, recorded_inputs(context.instance, subject, partition)
                ):
                    continue
                requests.append(
                    RunRequest(
                        run_key=run_key(subject, partition, manifest.digest),
                        partition_key=partition,
                        asset_selection=subject_assets(subject),
                        tags={
                            "cxone/trigger": "staging_sensor",
                            "cxone/staging_objects": str(manifest.count),
                        },
                    )
                )
                if hour == open_hour:
                    open_requested[subject] = now.isoformat()
        if not requests:
            return SensorResult(
                skip_reason=f"no staging changes in the last {curation.lookback_hours} hours",
                cursor=json.dumps(open_requested, sort_keys=True),
            )
        return SensorResult(
            run_requests=requests, cursor=json.dumps(open_requested, sort_keys=True)
        )

    return staging_sensor
