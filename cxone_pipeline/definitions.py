"""The Dagster code location: assembles assets, checks, sensor, schedule, job and resources."""

from __future__ import annotations

from dagster import Definitions, in_process_executor

from cxone_pipeline.defs.assets import curate_assets, hourly_partitions, staging_spec
from cxone_pipeline.defs.curated_io import curated_io_managers
from cxone_pipeline.defs.cxone import CXoneResource, register_webhook_job
from cxone_pipeline.defs.marts import build_marts_sensor, mart_assets
from cxone_pipeline.defs.proposals import propose_schema_job
from cxone_pipeline.defs.pulls import build_cxone_sync_sensor, pull_asset, pulled_subjects
from cxone_pipeline.defs.resources import build_resources, locked
from cxone_pipeline.defs.schedules import build_reconcile_schedule
from cxone_pipeline.defs.sensors import build_staging_sensor
from cxone_pipeline.lake.layout import partition_hour
from cxone_pipeline.registry import discover_subjects
from cxone_pipeline.settings import Settings


def build_definitions(settings: Settings) -> Definitions:
    """Everything for the subjects found in `settings.schemas_dir`: a new folder needs no code."""
    subjects = discover_subjects(settings.schemas_dir)
    pulled = pulled_subjects(settings.schemas_dir)
    partitions = hourly_partitions(settings.partitions_start)
    first_hour = partition_hour(settings.partitions_start)
    sync = build_cxone_sync_sensor(
        pulled,
        settings.cxone_sync_interval_seconds,
        settings.cxone_sync_lookback_hours,
        settings.cxone_sync_max_pages,
        first_hour,
        running=settings.cxone_client_id is not None,
    )
    marts = mart_assets(subjects, first_hour)
    resources = build_resources(settings)
    return Definitions(
        assets=[
            *(staging_spec(subject) for subject in subjects if subject not in pulled),
            *(
                pull_asset(subject, partitions, settings.backfill_hours_per_run)
                for subject in pulled
            ),
            *(
                curate_assets(subject, partitions, settings.backfill_hours_per_run)
                for subject in subjects
            ),
            *marts,
        ],
        sensors=[
            build_staging_sensor(subjects, settings.sensor_interval_seconds, first_hour),
            *([build_marts_sensor(settings.sensor_interval_seconds)] if marts else []),
            *([sync] if pulled else []),
        ],
        schedules=[build_reconcile_schedule(subjects, settings.reconcile_cron, first_hour)],
        jobs=[register_webhook_job(subjects), propose_schema_job(subjects)],
        # Each run is one step (an hour range of one subject): a step subprocess would only
        # import the code location a second time.
        executor=in_process_executor,
        resources=locked(
            {
                **resources,
                **curated_io_managers(resources["lake"], resources["curation"]),
                "cxone": CXoneResource(),
            }
        ),
    )


defs = build_definitions(Settings.from_env())
