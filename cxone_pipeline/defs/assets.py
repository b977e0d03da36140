"""Per-subject assets: external `staging/<S>`; `curated/<S>` and `quarantine/<S>` built per hour."""

from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    AssetsDefinition,
    AssetSpec,
    BackfillPolicy,
    DagsterInstance,
    HourlyPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableColumnConstraints,
    TableSchema,
    multi_asset,
)

from cxone_pipeline.curate import CheckOutcome, HourOutcome, Recorded, curate_hour
from cxone_pipeline.defs.catalog import (
    DUPLICATES_ACROSS_HOURS,
    DUPLICATES_DROPPED,
    QUARANTINED,
    SUPERSEDED,
    staging_observation,
    zone_attributes,
)
from cxone_pipeline.defs.checks import (
    check_events,
    check_outcomes,
    check_specs,
    recent_quarantine,
    recent_summary,
)
from cxone_pipeline.defs.curated_io import CURATED_IO_MANAGER
from cxone_pipeline.defs.resources import CurationSettings, LakeResource
from cxone_pipeline.display import top_counts
from cxone_pipeline.lake.layout import (
    CURATED,
    PARTITION_KEY_FORMAT,
    QUARANTINE,
    STAGING,
    partition_hour,
)
from cxone_pipeline.registry import SubjectSchemas
from cxone_pipeline.report import sample_records, top_reasons
from cxone_pipeline.resolve import canonical_arrow_schema
from cxone_pipeline.resolve.arrow_schema import METADATA_DOCS

MANIFEST_DIGEST = "staging_manifest_digest"
REGISTRY_FINGERPRINT = "registry_fingerprint"


def asset_key(zone: str, subject: str) -> AssetKey:
    return AssetKey([zone, subject])


def hourly_partitions(start: str) -> HourlyPartitionsDefinition:
    # end_offset=1 adds the open hour, so the sensor can refresh it before it closes.
    return HourlyPartitionsDefinition(
        start_date=start, timezone="UTC", fmt=PARTITION_KEY_FORMAT, end_offset=1
    )


def staging_spec(subject: str) -> AssetSpec:
    return AssetSpec(asset_key(STAGING, subject), **zone_attributes(STAGING, subject))


def _table_schema(schema: pa.Schema, docs: Mapping[str, str] | None = None) -> TableSchema:
    """Columns with their types and, where `docs` has one, their description."""
    docs = docs or {}
    return TableSchema(
        columns=[
            TableColumn(
                name=f.name,
                type=str(f.type),
                description=docs.get(f.name),
                constraints=TableColumnConstraints(nullable=f.nullable),
            )
            for f in schema
        ]
    )


def column_docs(schemas: SubjectSchemas) -> dict[str, str]:
    """What each curated column means: canonical.avsc's docs, then the pipeline's columns'."""
    docs = {f["name"]: f["doc"] for f in schemas.canonical.document["fields"] if f.get("doc")}
    return {**docs, **METADATA_DOCS}


def _counts(counts: dict[str, int]) -> MetadataValue:
    return MetadataValue.json(dict(sorted(counts.items())))


def _curated_metadata(outcome: HourOutcome, url: str) -> dict[str, Any]:
    result = outcome.result
    # Numbers are plotted across hours: only the ones worth a plot are numbers, per-version and
    # per-code counts are one JSON entry each.
    return {
        "dagster/row_count": outcome.rows,
        "rows_per_version": _counts(result.rows_per_version),
        "rejects_per_code": _counts(result.rejects_per_code),
        QUARANTINED: outcome.rejected,
        DUPLICATES_DROPPED: result.duplicates_dropped,
        DUPLICATES_ACROSS_HOURS: result.duplicates_across_hours,
        SUPERSEDED: result.superseded,
        "event_time_fallbacks": outcome.event_time_fallbacks,
        "unmapped_field_count": sum(result.unmapped_fields.values()),
        # Names chosen by senders: the largest counts only, names bounded (display.py).
        "unmapped_fields": MetadataValue.json(top_counts(result.unmapped_fields)),
        "unknown_versions": MetadataValue.json(top_counts(result.unknown_versions)),
        REGISTRY_FINGERPRINT: outcome.registry_fingerprint,
        MANIFEST_DIGEST: outcome.window_digest,
        "staging_object_count": outcome.manifest.count,
        "files": MetadataValue.json([f"{url}/{key}" for key in outcome.curated_keys]),
    }


def _quarantine_metadata(outcome: HourOutcome, url: str) -> dict[str, Any]:
    rejects = outcome.result.rejects
    return {
        "dagster/row_count": outcome.rejected,
        "rejects_per_code": _counts(outcome.result.rejects_per_code),
        "top_reasons": MetadataValue.json(top_reasons(rejects)),
        "sample_records": MetadataValue.json(sample_records(rejects)),
        "file": f"{url}/{outcome.quarantine_key}" if outcome.quarantine_key else "none",
        REGISTRY_FINGERPRINT: outcome.registry_fingerprint,
    }


def curate_assets(
    subject: str, partitions: HourlyPartitionsDefinition, hours_per_run: int
) -> AssetsDefinition:
    curated = asset_key(CURATED, subject)
    quarantine = asset_key(QUARANTINE, subject)
    staging = asset_key(STAGING, subject)

    @multi_asset(
        name=f"curate_{subject}",
        specs=[
            AssetSpec(
                curated, deps=[staging], **zone_attributes(CURATED, subject)
            ).with_io_manager_key(CURATED_IO_MANAGER),
            AssetSpec(quarantine, deps=[staging], **zone_attributes(QUARANTINE, subject)),
        ],
        check_specs=check_specs(curated, partitions),
        partitions_def=partitions,
        backfill_policy=BackfillPolicy.multi_run(hours_per_run),
        can_subset=False,
    )
    def curate(
        context: AssetExecutionContext, lake: LakeResource, curation: CurationSettings
    ) -> Iterator[Any]:
        store = lake.store()
        url = store.url.rstrip("/")
        schemas = curation.subject(subject)
        column_schema = _table_schema(canonical_arrow_schema(schemas), column_docs(schemas))
        checks: dict[str, list[CheckOutcome]] = {}
        # Each hour is read, written, recorded and checked on its own, also in a backfill run
        # of many hours; only the small check outcomes are kept until the end of the run.
        for key in context.partition_keys:
            outcome = curate_hour(store, schemas, partition_hour(key))
            context.add_asset_metadata(
                {
                    **_curated_metadata(outcome, url),
                    "dagster/column_schema": column_schema,
                },
                asset_key=curated,
                partition_key=key,
            )
            context.add_asset_metadata(
                _quarantine_metadata(outcome, url), asset_key=quarantine, partition_key=key
            )
            context.log.info(
                f"{subject} {key}: {outcome.rows} rows, {outcome.rejected} quarantined, "
                f"{outcome.result.duplicates_dropped} duplicates, "
                f"{outcome.result.duplicates_across_hours} copies kept in another hour, "
                f"{outcome.result.superseded} superseded from "
                f"{outcome.manifest.count} staging objects"
            )
            yield staging_observation(subject, key, outcome.manifest)
            checks[key] = check_outcomes(
                outcome, store, curation.quarantine_rate_max, schemas.rules.horizon_hours
            )
        recent = recent_quarantine(context.instance, curated, checks, curation.quarantine_rate_max)
        context.add_asset_metadata(
            recent_summary(recent), asset_key=curated, partition_key=context.partition_keys[-1]
        )
        yield MaterializeResult(asset_key=curated)
        yield MaterializeResult(asset_key=quarantine)
        yield from check_events(context, curated, checks, recent, curation)

    return curate


def recorded_inputs(instance: DagsterInstance, subject: str, partition: str) -> Recorded | None:
    """What the partition's last materialization of `curated/<subject>` read, or None."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=asset_key(CURATED, subject), asset_partitions=[partition]),
        limit=1,
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    metadata = records[0].asset_materialization.metadata
    digest, fingerprint = metadata.get(MANIFEST_DIGEST), metadata.get(REGISTRY_FINGERPRINT)
    quarantined = metadata.get(QUARANTINED)
    if digest is None or fingerprint is None:
        return None
    return Recorded(
        manifest_digest=str(digest.value),
        registry_fingerprint=str(fingerprint.value),
        quarantined=int(quarantined.value) if quarantined is not None else 0,
    )
