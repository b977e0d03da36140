"""Sets of UTC hours as a person reads them: runs of consecutive hours, in compact text."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from cxone_pipeline.lake.layout import partition_key


def hour_ranges(hours: Iterable[datetime]) -> list[tuple[datetime, datetime]]:
    """Distinct hours as runs of consecutive hours (first, last), oldest first."""
    runs: list[tuple[datetime, datetime]] = []
    for hour in sorted(set(hours)):
        if runs and hour - runs[-1][1] == timedelta(hours=1):
            runs[-1] = (runs[-1][0], hour)
        else:
            runs.append((hour, hour))
    return runs


def describe_hours(hours: Iterable[datetime], limit: int = 8) -> str:
    """'2026-11-27-19:00', '2026-11-27-19:00 to 2026-11-27-21:00 (3 hours)', ranges joined by
    ', ': what to select in a backfill, never a min-max span over hours that hold nothing."""
    runs = hour_ranges(hours)
    shown = [
        partition_key(first)
        if first == last
        else f"{partition_key(first)} to {partition_key(last)} "
        f"({(last - first) // timedelta(hours=1) + 1} hours)"
        for first, last in runs[:limit]
    ]
    if len(runs) > limit:
        shown.append(f"and {len(runs) - limit} more ranges")
    return ", ".join(shown)


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"
