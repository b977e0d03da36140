"""Reading curated hours back, as a consumer would: one Arrow table, or a pandas frame.

Every hour is read in the subject's current canonical schema, so hours curated before a
canonical field was added line up with newer ones (the field is null there).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import pandas as pd
import pyarrow as pa
from pandas.api.extensions import ExtensionDtype

from cxone_pipeline.lake.layout import CURATED, hour_prefix
from cxone_pipeline.lake.store import ObjectInfo, Store
from cxone_pipeline.resolve import read_parquet


class CuratedReadError(Exception):
    """Curated hours that cannot be read as the subject's canonical table."""


def curated_files(store: Store, subject: str, hours: Iterable[datetime]) -> list[ObjectInfo]:
    """The Parquet files of the hours, hour by hour; an hour without rows has none."""
    return [
        info
        for hour in hours
        for info in store.list(hour_prefix(CURATED, subject, hour))
        if info.key.endswith(".parquet")
    ]


def read_curated(
    store: Store,
    subject: str,
    hours: Iterable[datetime],
    schema: pa.Schema,
    max_bytes: int,
) -> pa.Table:
    """The rows of `hours` of `subject` in `schema` (the canonical Arrow schema), in hour order.

    The files are listed first and refused, before any is fetched, when together they exceed
    `max_bytes`: a range that large belongs in a query engine, not in one process's memory.
    """
    files = curated_files(store, subject, hours)
    size = sum(info.size for info in files)
    if size > max_bytes:
        raise CuratedReadError(
            f"curated/{subject}: {len(files)} files of {size:,} bytes exceed the input limit "
            f"of {max_bytes:,} bytes; read fewer hours per run (a shorter partition), raise "
            "max_read_bytes of the curated IO manager, or query the lake with DuckDB or Athena"
        )
    tables = [conform(read_parquet(store.get(info.key)), schema, info.key) for info in files]
    return pa.concat_tables(tables) if tables else schema.empty_table()


def conform(table: pa.Table, schema: pa.Schema, source: str) -> pa.Table:
    """`table` with exactly the columns of `schema`: missing ones null, the others cast."""
    columns = []
    for field in schema:
        if field.name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        try:
            columns.append(table.column(field.name).cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise CuratedReadError(
                f"{source}: column {field.name!r} ({table.schema.field(field.name).type}) cannot "
                f"be read as {field.type}: {exc}. Re-materialize that hour with the current "
                "schemas"
            ) from None
    return pa.Table.from_arrays(columns, schema=schema)


_NULLABLE_DTYPES: dict[pa.DataType, ExtensionDtype] = {
    pa.int8(): pd.Int8Dtype(),
    pa.int16(): pd.Int16Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(),
    pa.uint8(): pd.UInt8Dtype(),
    pa.uint16(): pd.UInt16Dtype(),
    pa.uint32(): pd.UInt32Dtype(),
    pa.uint64(): pd.UInt64Dtype(),
    pa.float32(): pd.Float32Dtype(),
    pa.float64(): pd.Float64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
    pa.string(): pd.StringDtype(),
    pa.large_string(): pd.StringDtype(),
}


def _pandas_dtype(arrow_type: pa.DataType) -> ExtensionDtype | None:
    """pandas' nullable dtype for an Arrow type; None keeps pyarrow's own conversion."""
    if arrow_type in _NULLABLE_DTYPES:
        return _NULLABLE_DTYPES[arrow_type]
    if pa.types.is_timestamp(arrow_type) and arrow_type.tz is not None:
        return pd.DatetimeTZDtype(arrow_type.unit, "UTC")
    if pa.types.is_nested(arrow_type):
        # Lists, maps and structs stay Arrow-typed: elements read back as Python lists/dicts.
        return pd.ArrowDtype(arrow_type)
    return None


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """A frame that keeps the table's types: nullable integers, floats, booleans and strings
    (missing values are `pd.NA`), timestamps in UTC, lists as Arrow-backed list columns."""
    dtypes = {field.type: _pandas_dtype(field.type) for field in table.schema}
    return table.to_pandas(types_mapper=dtypes.get)
