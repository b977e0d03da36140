"""How each zone's assets present themselves in the Dagster UI, so the UI reads itself.

Asset keys stay `<zone>/<subject>` (DESIGN.md); the zone also shows as the asset's group
(`<subject>/<zone>`, drawn as a labelled box in the lineage), the first words of its
description, and a `zone` tag the catalog can filter on. Column descriptions come from
`canonical.avsc` (`assets.column_docs`).
"""

from __future__ import annotations

from typing import Any

from dagster import AssetObservation, MetadataValue

from cxone_pipeline.curate import Manifest
from cxone_pipeline.lake.layout import CURATED, QUARANTINE, STAGING, zone_prefix

ZONE_TAG = "zone"
# Metadata keys of curated/<S> materializations that other code reads back.
QUARANTINED = "quarantined"
DUPLICATES_DROPPED = "duplicates_dropped"
DUPLICATES_ACROSS_HOURS = "duplicates_across_hours"
SUPERSEDED = "superseded_invalid_copies"
COPIES_DROPPED = (DUPLICATES_DROPPED, DUPLICATES_ACROSS_HOURS, SUPERSEDED)
RECENT_FAILING_HOURS = "recent_failing_hours"
_KINDS = {STAGING: {"json"}, CURATED: {"parquet"}, QUARANTINE: {"json"}}


def zone_group(subject: str, zone: str) -> str:
    return f"{subject}/{zone}"


def _description(zone: str, subject: str) -> str:
    prefix = f"`{zone_prefix(zone, subject)}`"
    if zone == STAGING:
        return (
            f"Staging zone of {subject}: raw events as the landing or an import staged them, "
            f"gzip NDJSON envelopes per UTC hour under {prefix}. Written outside Dagster, never "
            "modified; each curating run records the hour's objects and bytes as an observation."
        )
    if zone == CURATED:
        return (
            f"Curated zone of {subject}: one row per event in the shape of "
            f"`schemas/{subject}/canonical.avsc`, one Parquet file per UTC hour under {prefix}."
        )
    return (
        f"Quarantine zone of {subject}: events no schema version could resolve, with the "
        f"reason, per UTC hour under {prefix}. Adding the missing schema version and "
        "re-materializing the hour recovers them."
    )


def zone_attributes(zone: str, subject: str) -> dict[str, Any]:
    """AssetSpec keyword arguments that name the zone: group, description, tags and kinds."""
    return {
        "group_name": zone_group(subject, zone),
        "description": _description(zone, subject),
        "tags": {ZONE_TAG: zone},
        "kinds": _KINDS[zone],
    }


def staging_observation(subject: str, partition: str, manifest: Manifest) -> AssetObservation:
    """What a curating run read of one staging hour: its objects and bytes."""
    return AssetObservation(
        asset_key=[STAGING, subject],
        partition=partition,
        metadata={
            "hour": partition,
            "objects": manifest.count,
            "bytes": MetadataValue.int(sum(o.size for o in manifest.objects)),
            "manifest_digest": manifest.digest,
        },
    )
