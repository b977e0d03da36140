"""Curated tables to and from Parquet bytes, deterministically (same rows, same bytes)."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq


def write_parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", write_statistics=True)
    return sink.getvalue()


def read_parquet(data: bytes, columns: list[str] | None = None) -> pa.Table:
    return pq.read_table(pa.BufferReader(data), columns=columns)
