"""Marts: daily tables built from curated hours, one Parquet file per day under `marts/<name>/`.

Each mart is a plain module (a function from curated rows to a table, and its checks);
`cxone_pipeline.defs.marts` turns it into a daily Dagster asset.
"""

from __future__ import annotations

from datetime import date

import pyarrow as pa

from cxone_pipeline.lake.layout import mart_key
from cxone_pipeline.lake.store import Store
from cxone_pipeline.resolve import read_parquet, write_parquet


def write_mart(store: Store, mart: str, day: date, table: pa.Table) -> str:
    """Replace the day's file, also with no rows (the day was computed: nothing happened)."""
    key = mart_key(mart, day, 0)
    store.put(key, write_parquet(table))
    return key


def read_mart(store: Store, mart: str, day: date) -> pa.Table:
    return read_parquet(store.get(mart_key(mart, day, 0)))
