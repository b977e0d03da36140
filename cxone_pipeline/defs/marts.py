"""The `marts` group: daily assets built on curated hours, and the sensor that keeps them fresh.

`marts/contact_kpis` is the shipped example (docs/dagster.md, "Building on the lake").
"""

import warnings
from collections.abc import Sequence
from datetime import datetime, timedelta

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetIn,
    AssetsDefinition,
    AssetSelection,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    BetaWarning,
    DailyPartitionsDefinition,
    DefaultSensorStatus,
    MaterializeResult,
    TimeWindowPartitionMapping,
    asset,
)

from cxone_pipeline.curate import CheckOutcome
from cxone_pipeline.defs.assets import _table_schema, asset_key
from cxone_pipeline.defs.checks import check_specs
from cxone_pipeline.defs.resources import LakeResource
from cxone_pipeline.lake.layout import CURATED, DAY_PARTITION_KEY_FORMAT, MARTS, partition_day
from cxone_pipeline.marts.contact_kpis import (
    CHECK_DESCRIPTIONS,
    CONTACT_KPIS,
    CONTACT_KPIS_SUBJECT,
    KPI_SCHEMA,
    SUBJECT_COLUMNS,
    refresh_contact_kpis,
)

MARTS_GROUP = "marts"

# A day reads the hours of that day. Hours the curated asset does not have are not read: the
# rest of today, and hours before CXONE_PIPELINE_PARTITIONS_START (the parameter is a beta in
# Dagster 1.13; its notice is silenced here rather than printed at every definitions load).
with warnings.catch_warnings():
    warnings.simplefilter("ignore", BetaWarning)
    HOURS_OF_THE_DAY = TimeWindowPartitionMapping(allow_nonexistent_upstream_partitions=True)

# Recompute today and yesterday when one of their hours is curated (again): the last hours of
# a day are curated after midnight, and late data re-curates recent hours. Unlike `eager`, hours
# that never got data (never materialized) do not hold a day back. Older days: backfill.
RECENT_DAYS_ON_CURATION = (
    AutomationCondition.in_latest_time_window(timedelta(days=2))
    & AutomationCondition.any_deps_updated().since_last_handled()
    & ~AutomationCondition.any_deps_in_progress()
    & ~AutomationCondition.in_progress()
).with_label("recent_days_on_curation")


def daily_partitions(first_hour: datetime) -> DailyPartitionsDefinition:
    # end_offset=1 adds today, filled in as its hours are curated.
    return DailyPartitionsDefinition(
        start_date=first_hour.strftime(DAY_PARTITION_KEY_FORMAT), timezone="UTC", end_offset=1
    )


def check_result(outcome: CheckOutcome) -> AssetCheckResult:
    return AssetCheckResult(
        check_name=outcome.name,
        passed=outcome.passed,
        severity=AssetCheckSeverity(outcome.severity),
        description=outcome.description,
        metadata=outcome.metadata,
    )


def contact_kpis_asset(subject: str, partitions: DailyPartitionsDefinition) -> AssetsDefinition:
    columns = SUBJECT_COLUMNS[subject]
    key = asset_key(MARTS, CONTACT_KPIS)

    @asset(
        key=key,
        ins={"contacts": AssetIn(asset_key(CURATED, subject), partition_mapping=HOURS_OF_THE_DAY)},
        partitions_def=partitions,
        check_specs=check_specs(key, partitions, CHECK_DESCRIPTIONS),
        automation_condition=RECENT_DAYS_ON_CURATION,
        group_name=MARTS_GROUP,
        kinds={"parquet", "pandas"},
        description=(
            f"Per skill and UTC day, from the day's curated/{subject} hours: contacts, abandoned "
            f"contacts and rate, average handle time ({' + '.join(columns.handle_seconds)} of "
            "answered contacts) and queue time (null where the subject does not carry the "
            f"fact). One Parquet file per day under marts/{CONTACT_KPIS}/. The example model: "
            "see docs/dagster.md, 'Building on the lake' (also for what handle time leaves out)."
        ),
    )
    def contact_kpis(
        context: AssetExecutionContext, lake: LakeResource, contacts: pd.DataFrame
    ) -> MaterializeResult:
        store = lake.store()
        outcome = refresh_contact_kpis(
            store, contacts, columns, partition_day(context.partition_key)
        )
        return MaterializeResult(
            metadata={
                "dagster/row_count": outcome.kpis.num_rows,
                "dagster/column_schema": _table_schema(KPI_SCHEMA),
                "contacts": outcome.contacts_read,
                "file": f"{store.url.rstrip('/')}/{outcome.key}",
            },
            check_results=[check_result(check) for check in outcome.checks],
        )

    return contact_kpis


def mart_assets(subjects: Sequence[str], first_hour: datetime) -> list[AssetsDefinition]:
    """The shipped marts whose subject is in the registry."""
    if CONTACT_KPIS_SUBJECT not in subjects:
        return []
    return [contact_kpis_asset(CONTACT_KPIS_SUBJECT, daily_partitions(first_hour))]


def build_marts_sensor(interval_seconds: int) -> AutomationConditionSensorDefinition:
    return AutomationConditionSensorDefinition(
        "marts_sensor",
        target=AssetSelection.groups(MARTS_GROUP),
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=interval_seconds,
        description=(
            "Evaluates the automation conditions of the marts group: a day is recomputed when "
            "one of its curated hours is materialized (today and yesterday; older days by "
            "backfill)."
        ),
    )
