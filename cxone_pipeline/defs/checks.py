"""Asset checks on `curated/<subject>`, evaluated per hour partition inside the curating run."""

import warnings
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import datetime, timezone

from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    DagsterInstance,
    Failure,
    MetadataValue,
    Output,
    PartitionsDefinition,
    PreviewWarning,
)

# Not exported by `dagster`, but the only way to say which materialization an evaluation checks.
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from cxone_pipeline.curate import (
    OPERATIONS_DOC,
    CheckOutcome,
    HourOutcome,
    check_quarantine_rate,
    check_schema_drift,
    check_unique_event_ids,
)
from cxone_pipeline.defs.catalog import COPIES_DROPPED, QUARANTINED, RECENT_FAILING_HOURS
from cxone_pipeline.defs.resources import CurationSettings
from cxone_pipeline.lake.layout import partition_key
from cxone_pipeline.lake.store import Store
from cxone_pipeline.registry.propose import pending_proposal
from cxone_pipeline.report import (
    RECENT_HOURS,
    RECENT_QUARANTINE_RATE,
    HourTally,
    check_recent_quarantine,
    quarantine_verdict,
    recent_window,
)


def check_descriptions(subject: str) -> dict[str, str]:
    """Each check's description, in Markdown as the UI renders it: names are in code spans,
    and the subject is named (a `<subject>` placeholder would be swallowed as an HTML tag)."""
    return {
        "schema_drift": (
            "WARN when payloads carry fields no schema declares (kept in `_unmapped_fields`); "
            "ERROR when events name an unknown schema version or match no writer schema. Fix: "
            f"add `schemas/{subject}/vN.avsc` (`cxone-pipeline schemas propose` or the "
            "`propose_schema` job drafts it), then let `nightly_reconcile` re-run the hours; "
            f"`{OPERATIONS_DOC}`"
        ),
        "quarantine_rate": (
            "ERROR when the share of quarantined events in the hour exceeds "
            "`CXONE_PIPELINE_QUARANTINE_RATE_MAX` (default 1%); the run is then tagged or failed "
            f"as `CXONE_PIPELINE_QUARANTINE_RATE_ACTION` says. Read `quarantine/{subject}`; "
            f"`{OPERATIONS_DOC}`"
        ),
        "unique_event_ids": (
            "ERROR when an `_event_id` occurs twice in the hour's curated Parquet, or is also "
            "curated in a neighbour hour within the subject's dedupe horizon, read back from the "
            f"lake. Re-materialize the partition and its neighbours; `{OPERATIONS_DOC}`"
        ),
        RECENT_QUARANTINE_RATE: (
            f"ERROR while any of the last {RECENT_HOURS} hours, as last materialized, quarantined "
            "more than `CXONE_PIPELINE_QUARANTINE_RATE_MAX`; names those hours. Evaluated by "
            "every curating run, so the asset overview shows a failing hour even when the latest "
            f"hour is fine. `{OPERATIONS_DOC}`"
        ),
    }


def check_specs(
    asset_key: AssetKey,
    partitions_def: PartitionsDefinition,
    descriptions: Mapping[str, str] | None = None,
) -> list[AssetCheckSpec]:
    """The checks of `asset_key`: `descriptions` by name, by default the curated checks'."""
    if descriptions is None:
        descriptions = check_descriptions(asset_key.path[-1])
    # Partitioned checks are a preview in Dagster 1.13, and what lets the UI show a result per
    # hour; the preview notice is silenced here rather than printed at every definitions load.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PreviewWarning)
        return [
            AssetCheckSpec(
                name,
                asset=asset_key,
                description=description,
                # The rolling check looks across hours: one result for the asset, not per hour.
                partitions_def=None if name == RECENT_QUARANTINE_RATE else partitions_def,
            )
            for name, description in descriptions.items()
        ]


def check_outcomes(
    outcome: HourOutcome, store: Store, quarantine_rate_max: float, horizon_hours: int
) -> list[CheckOutcome]:
    return [
        with_pending_proposal(check_schema_drift(outcome), outcome, store),
        check_quarantine_rate(outcome, quarantine_rate_max),
        check_unique_event_ids(store, outcome.subject, outcome.hour, horizon_hours),
    ]


def with_pending_proposal(drift: CheckOutcome, outcome: HourOutcome, store: Store) -> CheckOutcome:
    """Drift flagged: say whether a proposal against the current registry waits in the lake."""
    if drift.passed:
        return drift
    pending = pending_proposal(store, outcome.subject, outcome.registry_fingerprint)
    found = f"{store.url.rstrip('/')}/{pending}" if pending else "none"
    return replace(drift, metadata={**drift.metadata, "pending_proposal": found})


def target_materialization(
    instance: DagsterInstance, asset_key: AssetKey, partition: str
) -> AssetCheckEvaluationTargetMaterializationData | None:
    """The partition's latest materialization, which an evaluation must name: Dagster counts a
    partition's check result only while it targets the partition's latest materialization, and
    shows every other partition as missing (the Partitions tab read "Passed 0, Failed 0")."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition]), limit=1
    ).records
    if not records:
        return None
    return AssetCheckEvaluationTargetMaterializationData(
        storage_id=records[0].storage_id,
        run_id=records[0].run_id,
        timestamp=records[0].timestamp,
    )


def _evaluation(
    asset_key: AssetKey,
    result: CheckOutcome,
    target: AssetCheckEvaluationTargetMaterializationData | None,
    partition: str | None,
) -> AssetCheckEvaluation:
    return AssetCheckEvaluation(
        asset_key=asset_key,
        check_name=result.name,
        passed=result.passed,
        metadata=result.metadata,
        target_materialization_data=target,
        severity=AssetCheckSeverity(result.severity),
        description=result.description,
        partition=partition,
    )


def _recorded_tally(
    instance: DagsterInstance, asset_key: AssetKey, partition: str
) -> HourTally | None:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    metadata = records[0].asset_materialization.metadata

    def number(key: str) -> int:
        entry = metadata.get(key)
        return int(entry.value) if entry is not None else 0

    # Every staged line of the hour is a row, a reject or a copy that lost to another.
    quarantined = number(QUARANTINED)
    read = quarantined + sum(map(number, ("dagster/row_count", *COPIES_DROPPED)))
    return HourTally(partition, quarantined, read)


def _checked_tally(partition: str, results: list[CheckOutcome]) -> HourTally | None:
    for result in results:
        if result.name == "quarantine_rate":
            metadata = result.metadata
            return HourTally(partition, metadata["quarantined"], metadata["events_read"])
    return None


def recent_quarantine(
    instance: DagsterInstance,
    asset_key: AssetKey,
    results_by_partition: Mapping[str, list[CheckOutcome]],
    max_rate: float,
) -> CheckOutcome:
    """The rolling check over the last RECENT_HOURS hours: this run's hours as just checked,
    the others as their latest materialization recorded them."""
    tallies = []
    for hour in recent_window(datetime.now(timezone.utc)):
        partition = partition_key(hour)
        if partition in results_by_partition:
            tally = _checked_tally(partition, results_by_partition[partition])
        else:
            tally = _recorded_tally(instance, asset_key, partition)
        if tally is not None:
            tallies.append(tally)
    return check_recent_quarantine(asset_key.path[-1], tallies, max_rate)


def recent_summary(recent: CheckOutcome) -> dict[str, MetadataValue]:
    """The rolling check's finding as materialization metadata: the asset overview shows the
    latest materialization's metadata, so a failing hour is named there."""
    failing = recent.metadata["failing_hours"]
    text = ", ".join(f"{partition}: {rate}" for partition, rate in failing.items())
    return {RECENT_FAILING_HOURS: MetadataValue.text(text or f"none in the last {RECENT_HOURS}")}


def check_events(
    context: AssetExecutionContext,
    asset_key: AssetKey,
    results_by_partition: Mapping[str, list[CheckOutcome]],
    recent: CheckOutcome,
    curation: CurationSettings,
) -> Iterator[AssetCheckEvaluation | Output]:
    """One evaluation per check and hour, the rolling check over recent hours, the checks' step
    outputs; then the run is tagged or failed for hours whose quarantine rate failed.

    `AssetCheckResult` can only target the run's single partition; a backfill run covers many
    hours, so evaluations are emitted with their partition and the hour's materialization (yielded
    before, so already stored), and the outputs closed explicitly. The run is failed last, once
    every hour is written and checked: a failed run has lost nothing.
    """
    selected = {key.name for key in context.selected_asset_check_keys}
    target = None
    for partition, results in results_by_partition.items():
        target = target_materialization(context.instance, asset_key, partition)
        for result in results:
            if result.name in selected:
                yield _evaluation(asset_key, result, target, partition)
    if recent.name in selected:
        yield _evaluation(asset_key, recent, target, None)
    for name in sorted(selected):
        output_name = context.assets_def.get_output_name_for_asset_check_key(
            AssetCheckKey(asset_key, name)
        )
        yield Output(None, output_name=output_name)

    verdict = quarantine_verdict(
        asset_key.path[-1], results_by_partition, curation.quarantine_rate_action
    )
    if verdict.tags:
        context.instance.add_run_tags(context.run.run_id, verdict.tags)
    if verdict.failure:
        raise Failure(description=verdict.failure)
