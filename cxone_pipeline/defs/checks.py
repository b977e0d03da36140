"""Asset checks on `curated/<subject>`, evaluated per hour partition inside the curating run."""

import warnings
from collections.abc import Iterator, Mapping
from dataclasses import replace

from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    Output,
    PartitionsDefinition,
    PreviewWarning,
)

from cxone_pipeline.curate import (
    OPERATIONS_DOC,
    CheckOutcome,
    HourOutcome,
    check_quarantine_rate,
    check_schema_drift,
    check_unique_event_ids,
)
from cxone_pipeline.lake.store import Store
from cxone_pipeline.registry.propose import pending_proposal

CHECK_DESCRIPTIONS = {
    "schema_drift": (
        "WARN when payloads carry fields no schema declares (kept in _unmapped_fields); ERROR "
        "when events name an unknown schema version or match no writer schema. Fix: add "
        "schemas/<subject>/vN.avsc (`cxone-pipeline schemas propose` or the propose_schema job "
        f"drafts it), then let nightly_reconcile re-run the hours; {OPERATIONS_DOC}"
    ),
    "quarantine_rate": (
        "ERROR when the share of quarantined events in the hour exceeds "
        f"CXONE_PIPELINE_QUARANTINE_RATE_MAX (default 1%). Read quarantine/<subject>; "
        f"{OPERATIONS_DOC}"
    ),
    "unique_event_ids": (
        "ERROR when an _event_id occurs twice in the hour's curated Parquet, or is also curated "
        "in a neighbour hour within the subject's dedupe horizon, read back from the lake. "
        f"Re-materialize the partition and its neighbours; {OPERATIONS_DOC}"
    ),
}


def check_specs(
    asset_key: AssetKey,
    partitions_def: PartitionsDefinition,
    descriptions: Mapping[str, str] = CHECK_DESCRIPTIONS,
) -> list[AssetCheckSpec]:
    # Partitioned checks are a preview in Dagster 1.13, and what lets the UI show a result per
    # hour; the preview notice is silenced here rather than printed at every definitions load.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PreviewWarning)
        return [
            AssetCheckSpec(
                name, asset=asset_key, description=description, partitions_def=partitions_def
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


def check_evaluations(
    context: AssetExecutionContext,
    asset_key: AssetKey,
    results_by_partition: Mapping[str, list[CheckOutcome]],
) -> Iterator[AssetCheckEvaluation | Output]:
    """One evaluation per check and hour, then the checks' step outputs.

    `AssetCheckResult` can only target the run's single partition; a backfill run covers many
    hours, so evaluations are emitted with their partition and the outputs closed explicitly.
    """
    selected = {key.name for key in context.selected_asset_check_keys}
    for partition, results in results_by_partition.items():
        for result in results:
            if result.name not in selected:
                continue
            yield AssetCheckEvaluation(
                asset_key=asset_key,
                check_name=result.name,
                passed=result.passed,
                metadata=result.metadata,
                target_materialization_data=None,
                severity=AssetCheckSeverity(result.severity),
                description=result.description,
                partition=partition,
            )
    for name in sorted(selected):
        output_name = context.assets_def.get_output_name_for_asset_check_key(
            AssetCheckKey(asset_key, name)
        )
        yield Output(None, output_name=output_name)
