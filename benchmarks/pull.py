"""Pull benchmark: a day of completed contacts pulled from the CXone simulator and curated,
against one blocking request per page.

    .venv/bin/python benchmarks/pull.py [--contacts 100000] [--page-cap 10000] [--repeats 3]

The simulator runs in its own process (uvicorn on loopback) holding one day of completed
contacts (current field names, with CXone's messy values), spread evenly over 24 hours.
Each repeat times, in this process:
  requests     one blocking GET per page, hour after hour (httpx.Client, one token, the
               JSON decoded): what fetching the day costs with nothing else done
  pull         cxone_pipeline.pull.pull_hours over the 24 hours into a fresh local lake
               (the same requests, then envelopes, gzip, content-addressed objects, markers)
  curate       cxone_pipeline.curate.curate_hour for each of the 24 hours (resolution of
               every record through the writer extensions, Parquet written)
  pull+curate  the two, back to back
records/s is contacts / seconds (median over the repeats); each step's time is divided by the
`requests` time of the same repeat and the median of those ratios is shown (the machine is
shared: ratios carry across runs, absolute figures less so).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from cxone_pipeline.curate import curate_hour  # noqa: E402
from cxone_pipeline.cxone.config import CXoneConfig  # noqa: E402
from cxone_pipeline.cxone.reporting import utc_z  # noqa: E402
from cxone_pipeline.lake.store import LocalStore  # noqa: E402
from cxone_pipeline.pull import HOUR, pull_hours  # noqa: E402
from cxone_pipeline.registry import load_subject  # noqa: E402
from cxone_pipeline.settings import DEFAULT_SCHEMAS_DIR, Settings  # noqa: E402

DAY = datetime(2026, 11, 27, tzinfo=timezone.utc)
HOURS = [DAY + timedelta(hours=n) for n in range(24)]
SCHEMAS = load_subject(DEFAULT_SCHEMAS_DIR, "completed_contact")


def serve(contacts: int, page_cap: int) -> None:
    """The simulator process: prints its CXONE_* variables, serves until stdin closes."""
    from cxone_pipeline_tests.cxone_simulator import completed_contacts, running_simulator

    with running_simulator() as sim:
        sim.page_cap = page_cap
        for n, hour in enumerate(HOURS):
            share = contacts // 24 + (1 if n < contacts % 24 else 0)
            sim.add_contacts(completed_contacts(hour, share, first_id=7_000_000_000 + n * 10**6))
        print(json.dumps(sim.env(password_grant=True, discover=False)), flush=True)
        sys.stdin.read()


def blocking_requests(env: dict[str, str], config: CXoneConfig) -> tuple[int, int]:
    """Every page of the day, one blocking GET at a time; (records, pages) read."""
    token = httpx.post(
        env["CXONE_TOKEN_ENDPOINT"],
        auth=(env["CXONE_CLIENT_ID"], env["CXONE_CLIENT_SECRET"]),
        data={
            "grant_type": "password",
            "username": env["CXONE_ACCESS_KEY_ID"],
            "password": env["CXONE_ACCESS_KEY_SECRET"],
        },
    ).json()["access_token"]
    url = f"{env['CXONE_API_BASE_URL']}/incontactapi/services/v{config.api_version}/"
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    records = pages = 0
    with httpx.Client(headers=headers, timeout=120) as client:
        for hour in HOURS:
            skip = 0
            while True:
                params = {
                    "startDate": utc_z(hour),
                    "endDate": utc_z(hour + HOUR),
                    "skip": str(skip),
                    "top": str(config.page_size),
                }
                response = client.get(url + "contacts/completed", params=params)
                pages += 1
                if response.status_code == 204:
                    break
                body = response.json()
                skip += len(body["completedContacts"])
                if skip >= body["totalRecords"]:
                    break
            records += skip
    return records, pages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--page-cap", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--serve-simulator", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_simulator:
        serve(args.contacts, args.page_cap)
        return

    simulator = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve-simulator",
            f"--contacts={args.contacts}",
            f"--page-cap={args.page_cap}",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert simulator.stdout is not None
        env = json.loads(simulator.stdout.readline())
        config = CXoneConfig.from_settings(Settings.from_env(env))
        run(args, env, config)
    finally:
        assert simulator.stdin is not None
        simulator.stdin.close()
        simulator.wait(30)


def run(args: argparse.Namespace, env: dict[str, str], config: CXoneConfig) -> None:
    print(
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}, Python {platform.python_version()}; "
        f"{args.contacts:,} contacts over 24 hours, page cap {args.page_cap:,}, "
        f"top {config.page_size:,}"
    )
    seconds: dict[str, list[float]] = {"requests": [], "pull": [], "curate": [], "total": []}
    for repeat in range(args.repeats):
        start = time.perf_counter()
        records, pages = blocking_requests(env, config)
        seconds["requests"].append(time.perf_counter() - start)
        assert records == args.contacts, records
        with tempfile.TemporaryDirectory() as tmp:
            store = LocalStore(Path(tmp) / "lake")
            start = time.perf_counter()
            reports = pull_hours(config, store, SCHEMAS, HOURS, DAY)
            seconds["pull"].append(time.perf_counter() - start)
            assert sum(r.records_in_window for r in reports) == args.contacts
            start = time.perf_counter()
            outcomes = [curate_hour(store, SCHEMAS, hour) for hour in HOURS]
            seconds["curate"].append(time.perf_counter() - start)
            assert sum(o.rows for o in outcomes) == args.contacts
            assert sum(o.rejected for o in outcomes) == 0
        seconds["total"].append(seconds["pull"][-1] + seconds["curate"][-1])
        print(
            f"repeat {repeat + 1}: requests {seconds['requests'][-1]:.2f} s ({pages} pages), "
            f"pull {seconds['pull'][-1]:.2f} s, curate {seconds['curate'][-1]:.2f} s",
            flush=True,
        )
    labels = {
        "requests": "one blocking request per page (fetch only)",
        "pull": "pull: fetch + stage (pull_hours)",
        "curate": "curate the 24 hours (curate_hour)",
        "total": "pull + curate",
    }
    print("\n| step | median s | records/s | time vs requests (median of repeats) |")
    print("|---|--:|--:|--:|")
    for name, label in labels.items():
        median = statistics.median(seconds[name])
        ratios = [t / r for t, r in zip(seconds[name], seconds["requests"], strict=True)]
        print(
            f"| {label} | {median:.2f} | {args.contacts / median:,.0f} | "
            f"{statistics.median(ratios):.2f}x |"
        )


if __name__ == "__main__":
    main()
