"""docs/operations.md's DuckDB query, run as written against a curated lake."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from cxone_pipeline.curate import curate_hour
from cxone_pipeline.lake.store import LocalStore
from cxone_pipeline.registry import load_subject
from cxone_pipeline.settings import DEFAULT_SCHEMAS_DIR, PROJECT_ROOT
from cxone_pipeline_tests.dagster_fixtures import call_events, closed_hour, stage


def documented_duckdb_query() -> str:
    text = (PROJECT_ROOT / "docs" / "operations.md").read_text()
    section = text.split("DuckDB (this query is run by the test suite", 1)[1]
    return re.search(r"```sql\n(.*?)```", section, re.S).group(1)


def test_duckdb_query_from_the_operations_guide(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / ".lake")
    schemas = load_subject(DEFAULT_SCHEMAS_DIR, "call_event")
    # A zero-padded hour (hour=09) is what DuckDB would read as text without hive_types.
    hours = [datetime(2026, 1, 5, 9, tzinfo=timezone.utc), closed_hour(2)]
    for n, hour in enumerate(hours):  # distinct ids: adjacent hours share events otherwise
        stage(store, "call_event", hour, call_events(hour, prefix=f"h{n}"))
    for hour in hours:
        curate_hour(store, schemas, hour)

    connection = duckdb.connect()
    connection.execute(f"SET file_search_path = '{tmp_path}'")
    query = documented_duckdb_query()
    rows = connection.execute(query).fetchall()
    types = {name: kind for name, kind, *_ in connection.execute(f"DESCRIBE {query}").fetchall()}
    assert [types[c] for c in ("year", "month", "day", "hour")] == ["INTEGER"] * 4

    # Per hour: v1 (two events: 61 s + 61 s), v2 (3,000,000,000 s), v3 (30 s); e-1's retry
    # was deduplicated.
    expected = []
    for hour in hours:
        parts = (hour.year, hour.month, hour.day, hour.hour)
        expected += [
            (*parts, "v1", 2, 122),
            (*parts, "v2", 1, 3_000_000_000),
            (*parts, "v3", 1, 30),
        ]
    assert rows == expected


def test_every_test_the_attack_table_names_exists() -> None:
    """The security table in docs/operations.md points at tests; they must exist."""
    text = (PROJECT_ROOT / "docs" / "operations.md").read_text()
    section = text.split("## Attacks we tested", 1)[1].split("\n## ", 1)[0]
    module = None
    named = 0
    for match in re.finditer(
        r"`(?:(test_\w+)\.py)?(?:::(test_\w+))?(?: \(all four tests\))?`", section
    ):
        module = match.group(1) or module
        if match.group(2):
            source = (PROJECT_ROOT / "cxone_pipeline_tests" / f"{module}.py").read_text()
            assert f"def {match.group(2)}(" in source, (module, match.group(2))
            named += 1
    assert named >= 20
