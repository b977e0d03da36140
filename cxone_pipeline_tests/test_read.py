"""Reading curated hours back: canonical alignment, the size limit, pandas dtypes."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from cxone_pipeline.lake.layout import curated_key
from cxone_pipeline.lake.read import CuratedReadError, read_curated, to_pandas
from cxone_pipeline.lake.store import LocalStore
from cxone_pipeline.resolve import write_parquet

HOUR = datetime(2026, 11, 27, 3, tzinfo=timezone.utc)
SCHEMA = pa.schema(
    [
        pa.field("customer_id", pa.string(), nullable=False),
        pa.field("duration_seconds", pa.int64(), nullable=False),
        pa.field("skill_id", pa.int64()),
    ]
)


class CountingStore(LocalStore):
    """A local store that counts object reads."""

    gets = 0

    def get(self, key: str) -> bytes:
        self.gets += 1
        return super().get(key)


@pytest.fixture
def store(tmp_path: Path) -> CountingStore:
    return CountingStore(tmp_path / "lake")


def test_an_hour_curated_before_a_column_was_added_reads_it_as_null(store: CountingStore) -> None:
    older = pa.table({"customer_id": ["c-1"], "duration_seconds": pa.array([5], pa.int32())})
    newer = pa.table(
        {"customer_id": ["c-2"], "duration_seconds": [7], "skill_id": [3]}, schema=SCHEMA
    )
    later = HOUR.replace(hour=4)
    store.put(curated_key("call_event", HOUR, 0), write_parquet(older))
    store.put(curated_key("call_event", later, 0), write_parquet(newer))

    table = read_curated(store, "call_event", [HOUR, later], SCHEMA, max_bytes=1 << 20)
    assert table.schema == SCHEMA
    assert table.to_pylist() == [
        {"customer_id": "c-1", "duration_seconds": 5, "skill_id": None},
        {"customer_id": "c-2", "duration_seconds": 7, "skill_id": 3},
    ]


def test_a_column_that_cannot_become_its_canonical_type_names_the_file(
    store: CountingStore,
) -> None:
    key = curated_key("call_event", HOUR, 0)
    store.put(key, write_parquet(pa.table({"duration_seconds": ["soon"]})))
    with pytest.raises(CuratedReadError, match=f"{key}: column 'duration_seconds'"):
        read_curated(store, "call_event", [HOUR], SCHEMA, max_bytes=1 << 20)


def test_too_many_bytes_are_refused_before_any_file_is_read(store: CountingStore) -> None:
    table = pa.table({"customer_id": ["c"] * 100, "duration_seconds": list(range(100))})
    store.put(curated_key("call_event", HOUR, 0), write_parquet(table))
    with pytest.raises(CuratedReadError, match="exceed the input limit of 100 bytes"):
        read_curated(store, "call_event", [HOUR], SCHEMA, max_bytes=100)
    assert store.gets == 0


def test_no_files_give_an_empty_table_of_the_schema(store: CountingStore) -> None:
    table = read_curated(store, "call_event", [HOUR], SCHEMA, max_bytes=1)
    assert table.num_rows == 0
    assert table.schema == SCHEMA


def test_pandas_columns_keep_their_types() -> None:
    table = pa.table(
        {
            "i32": pa.array([1, None], pa.int32()),
            "u8": pa.array([1, None], pa.uint8()),
            "f32": pa.array([0.5, None], pa.float32()),
            "f64": pa.array([0.25, None], pa.float64()),
            "flag": pa.array([True, None]),
            "text": pa.array(["a", None]),
            "at": pa.array([1_764_000_000_000, None], pa.timestamp("ms", tz="UTC")),
            "local": pa.array([1, None], pa.timestamp("us")),
            "day": pa.array([1, None], pa.date32()),
            "tags": pa.array([["x", "y"], None], pa.list_(pa.string())),
            "attrs": pa.array([[("k", 1)], None], pa.map_(pa.string(), pa.int64())),
            "who": pa.array([{"id": 1}, None], pa.struct([("id", pa.int64())])),
        }
    )
    frame = to_pandas(table)
    assert dict(frame.dtypes.astype(str)) == {
        "i32": "Int32",
        "u8": "UInt8",
        "f32": "Float32",
        "f64": "Float64",
        "flag": "boolean",
        "text": "string",
        "at": "datetime64[ms, UTC]",
        "local": "datetime64[us]",
        "day": "object",
        "tags": "list<item: string>[pyarrow]",
        "attrs": "map<string, int64>[pyarrow]",
        "who": "struct<id: int64>[pyarrow]",
    }
    first, second = frame.iloc[0], frame.iloc[1]
    assert first["at"] == pd.Timestamp("2025-11-24T16:00:00Z")
    assert first["tags"] == ["x", "y"]
    assert first["attrs"] == [("k", 1)]
    assert first["who"] == {"id": 1}
    for column in ("i32", "u8", "f32", "f64", "flag", "text", "tags", "who"):
        assert second[column] is pd.NA, column
    assert second["at"] is pd.NaT
    # Back to Arrow: the same values, so a model can hand a frame on without losing types.
    assert (
        pa.Table.from_pandas(frame[["i32", "tags", "at"]]).to_pylist()
        == table.select(["i32", "tags", "at"]).to_pylist()
    )
