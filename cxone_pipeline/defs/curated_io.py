"""The IO manager of `curated/<S>`: downstream assets get the hours they map to as a frame.

The curate run writes the lake itself (its output is `MaterializeResult`, nothing to store);
this IO manager only loads. The input's type annotation picks the shape: `pa.Table`, or
`pd.DataFrame` (also when the input is not annotated).
"""

from typing import Any

import pandas as pd
import pyarrow as pa
from dagster import (
    ConfigurableIOManager,
    DagsterInvariantViolationError,
    InputContext,
    OutputContext,
    ResourceDependency,
)

from cxone_pipeline.defs.resources import CurationSettings, LakeResource
from cxone_pipeline.lake.layout import CURATED, partition_hour
from cxone_pipeline.lake.read import read_curated, to_pandas
from cxone_pipeline.resolve import canonical_arrow_schema

CURATED_IO_MANAGER = "curated_io_manager"


class CuratedIOManager(ConfigurableIOManager):
    """Reads the curated Parquet of the input's hour partitions through the lake store."""

    lake: ResourceDependency[LakeResource]
    curation: ResourceDependency[CurationSettings]
    # Parquet bytes one input may load; more is refused before anything is fetched.
    max_read_bytes: int = 1 << 30

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        if obj is not None:
            raise DagsterInvariantViolationError(
                f"{context.asset_key.to_user_string()} is written to the lake by its curate "
                f"run; yield MaterializeResult instead of returning a {type(obj).__name__}"
            )

    def load_input(self, context: InputContext) -> pd.DataFrame | pa.Table:
        zone, subject = context.asset_key.path
        if zone != CURATED:
            raise DagsterInvariantViolationError(
                f"{CURATED_IO_MANAGER} loads curated/<subject> assets, not "
                f"{context.asset_key.to_user_string()}"
            )
        keys = context.asset_partition_keys
        schema = canonical_arrow_schema(self.curation.subject(subject))
        table = read_curated(
            self.lake.store(),
            subject,
            [partition_hour(key) for key in keys],
            schema,
            self.max_read_bytes,
        )
        if keys:
            context.log.info(
                f"curated/{subject}: {table.num_rows} rows from {len(keys)} hours, "
                f"{keys[0]} to {keys[-1]}"
            )
        wanted = context.dagster_type.typing_type
        if wanted is pa.Table:
            return table
        if wanted in (pd.DataFrame, Any, object):
            return to_pandas(table)
        raise DagsterInvariantViolationError(
            f"input {context.name!r} ({context.asset_key.to_user_string()}) is annotated "
            f"{wanted!r}: annotate it pd.DataFrame or pa.Table"
        )


def curated_io_managers(
    lake: LakeResource, curation: CurationSettings
) -> dict[str, CuratedIOManager]:
    """The IO manager resources every code location with curate assets must provide."""
    return {CURATED_IO_MANAGER: CuratedIOManager(lake=lake, curation=curation)}
