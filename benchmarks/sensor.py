"""Sensor benchmark: one `staging_sensor` tick over a lake holding many historical staged objects.

    .venv/bin/python benchmarks/sensor.py [--objects 50000] [--ticks 20]

Writes `--objects` small staging objects spread over past hours (100 per hour) plus one object
in each look-back hour, materializes nothing, then times ticks on an ephemeral instance:
  changed    every look-back hour has objects its (absent) materialization did not record
  unchanged  the look-back hours were materialized: the tick lists, compares and skips
Target: well under 1 s per tick on the local lake, independent of the history's size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dagster import DagsterInstance, build_sensor_context, materialize  # noqa: E402

from cxone_pipeline.defs.assets import curate_assets, hourly_partitions  # noqa: E402
from cxone_pipeline.defs.sensors import build_staging_sensor  # noqa: E402
from cxone_pipeline.lake.layout import hour_floor, hour_prefix, partition_key  # noqa: E402
from cxone_pipeline_tests.dagster_fixtures import (  # noqa: E402
    call_events,
    local_lake,
    stage,
)

SUBJECTS = ["agent_state", "call_event"]
FIRST = datetime(2025, 1, 1, tzinfo=timezone.utc)


def write_history(root: Path, objects: int) -> None:
    first = datetime(2025, 1, 1, tzinfo=timezone.utc)
    for n in range(objects):
        hour = first + timedelta(hours=n // 100)
        folder = root / hour_prefix("staging", "call_event", hour)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"import-{n:032x}.jsonl.gz").write_bytes(b"{}\n")


def time_ticks(sensor, lake, instance: DagsterInstance, ticks: int) -> list[float]:
    seconds = []
    for _ in range(ticks):
        with build_sensor_context(instance=instance, resources=lake.resources()) as context:
            start = time.perf_counter()
            sensor(context)
            seconds.append(time.perf_counter() - start)
    return seconds


def report(label: str, seconds: list[float]) -> None:
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[max(0, round(len(ms) * 0.95) - 1)]
    median = statistics.median(ms)
    print(f"{label:10} median {median:7.1f} ms   p95 {p95:7.1f} ms   max {ms[-1]:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=50_000)
    parser.add_argument("--ticks", type=int, default=20)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        lake = local_lake(Path(tmp) / "lake")
        start = time.perf_counter()
        write_history(lake.store.root, args.objects)
        print(f"{args.objects} historical objects written in {time.perf_counter() - start:.1f} s")
        open_hour = hour_floor(datetime.now(timezone.utc))
        window = [open_hour - timedelta(hours=n) for n in (3, 2)]
        for hour in window:
            stage(lake.store, "call_event", hour, call_events(hour))

        sensor = build_staging_sensor(SUBJECTS, interval_seconds=30, first_hour=FIRST)
        with DagsterInstance.ephemeral() as instance:
            time_ticks(sensor, lake, instance, 1)  # warm-up: imports, first queries
            report("changed", time_ticks(sensor, lake, instance, args.ticks))
            curate = curate_assets("call_event", hourly_partitions("2025-01-01-00:00"), 24)
            for hour in window:
                materialize(
                    [curate],
                    partition_key=partition_key(hour),
                    resources=lake.resources(),
                    instance=instance,
                    raise_on_error=True,
                )
            report("unchanged", time_ticks(sensor, lake, instance, args.ticks))


if __name__ == "__main__":
    main()
