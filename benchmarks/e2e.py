"""End-to-end latency: a staged object in a closed hour until its row is in curated Parquet.

    .venv/bin/python benchmarks/e2e.py [--interval 30] [--samples 3]

Runs the real `dagster-daemon` (sensor, run queue, run launcher) on a temporary DAGSTER_HOME
and local lake. Each sample writes one staging object holding a new event into the previous,
closed hour (past its grace period), as a late POST or an import would, and polls the hour's
curated Parquet until the event's row appears. The latency is what the sensor adds to a
closed hour: up to one sensor interval, plus queueing and the run itself.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cxone_pipeline.lake.layout import curated_key, hour_floor  # noqa: E402
from cxone_pipeline.lake.store import LocalStore, ObjectNotFound  # noqa: E402
from cxone_pipeline.resolve import read_parquet  # noqa: E402
from cxone_pipeline_tests.dagster_fixtures import CALL_PAYLOADS, envelope, stage  # noqa: E402

BIN = Path(sys.executable).parent


def curated_ids(store: LocalStore, hour: datetime) -> set[str]:
    try:
        table = read_parquet(store.get(curated_key("call_event", hour, 0)))
    except ObjectNotFound:
        return set()
    return set(table.column("_event_id").to_pylist())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=int, default=30, help="sensor interval, seconds")
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        home, lake = Path(tmp) / "dagster_home", Path(tmp) / "lake"
        home.mkdir()
        shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "CXONE_PIPELINE_LAKE_URL": str(lake),
            "CXONE_PIPELINE_SENSOR_INTERVAL_SECONDS": str(args.interval),
            "CXONE_PIPELINE_OPEN_HOUR_REFRESH_SECONDS": "0",
        }
        daemon = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        store = LocalStore(lake)
        latencies = []
        try:
            # Sample 0 also waits for the daemon to load the code location: reported apart.
            for n in range(args.samples + 1):
                hour = hour_floor(datetime.now(timezone.utc)) - timedelta(hours=1)
                event_id = f"bench-{n}"
                start = time.monotonic()
                stage(store, "call_event", hour, [envelope(event_id, hour, CALL_PAYLOADS["v2"])])
                while event_id not in curated_ids(store, hour):
                    if time.monotonic() - start > args.timeout or daemon.poll() is not None:
                        sys.exit(f"no curated row for {event_id} after {args.timeout}s")
                    time.sleep(0.2)
                elapsed = time.monotonic() - start
                print(f"{'warm-up' if n == 0 else f'sample {n}'}: {elapsed:.1f} s", flush=True)
                if n:
                    latencies.append(elapsed)
        finally:
            daemon.terminate()
            daemon.wait(60)
    print(
        f"interval {args.interval}s: median {statistics.median(latencies):.1f} s, "
        f"min {min(latencies):.1f} s, max {max(latencies):.1f} s over {len(latencies)} samples"
    )


if __name__ == "__main__":
    main()
