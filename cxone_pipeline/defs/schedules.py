"""`nightly_reconcile`: re-run recent hours with changed staging or quarantine that may resolve."""

from collections.abc import Sequence
from datetime import datetime, timezone

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from cxone_pipeline.curate import Manifest, reconcile_hours, run_reason, staging_window
from cxone_pipeline.defs.assets import recorded_inputs
from cxone_pipeline.defs.resources import CurationSettings, LakeResource
from cxone_pipeline.defs.sensors import subject_assets
from cxone_pipeline.lake.layout import partition_key


def build_reconcile_schedule(
    subjects: Sequence[str], cron: str, first_hour: datetime
) -> ScheduleDefinition:
    @schedule(
        name="nightly_reconcile",
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING,
        target=AssetSelection.assets(*(k for s in subjects for k in subject_assets(s))),
        description=(
            "For the closed hours of the last CXONE_PIPELINE_RECONCILE_DAYS days (default 2), "
            "requests a run for each hour whose staging objects changed since its last "
            "materialization, and for each hour holding quarantined records whose subject's "
            "registry fingerprint changed since (a schema version was added: they may resolve)."
        ),
    )
    def nightly_reconcile(
        context: ScheduleEvaluationContext, lake: LakeResource, curation: CurationSettings
    ) -> list[RunRequest] | SkipReason:
        store = lake.store()
        registry = curation.registry()
        now = context.scheduled_execution_time or datetime.now(timezone.utc)
        hours = reconcile_hours(now, curation.reconcile_days, first_hour)
        requests = []
        for subject in subjects:
            if subject not in registry:
                continue
            schemas = registry[subject]
            fingerprint = schemas.fingerprint
            listed: dict[datetime, Manifest] = {}
            for hour in hours:
                partition = partition_key(hour)
                window = staging_window(store, schemas, hour, now, listed)
                recorded = recorded_inputs(context.instance, subject, partition)
                reason = run_reason(window, recorded, schemas)
                if reason is None:
                    continue
                digest = window.digest(True)
                requests.append(
                    RunRequest(
                        run_key=f"{subject}:{partition}:{digest[:16]}:{fingerprint[:16]}",
                        partition_key=partition,
                        asset_selection=subject_assets(subject),
                        tags={"cxone/trigger": "nightly_reconcile", "cxone/reason": reason},
                    )
                )
        if not requests:
            return SkipReason(f"{len(hours)} hours of {', '.join(subjects)} are up to date")
        return requests

    return nightly_reconcile
