"""Landing events/s and p50/p99 under wrk on loopback: bare Starlette, LocalStore, S3 (moto)."""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cxone_pipeline.lake.store import Store, open_store
from cxone_pipeline.settings import PROJECT_ROOT, Settings
from cxone_pipeline_tests.landing_fixtures import staged_objects
from cxone_pipeline_tests.servers import (
    cli_process,
    free_port,
    start_moto,
    stop_process,
    wait_for_http,
)

SUBJECT = "call_event"
CONFIGS = {
    "bare": "(a) bare Starlette, reads the body",
    "local": "(b) landing, LocalStore (fsync)",
    "s3": "(c) landing, S3 (moto server)",
}
DOCS_PATH = PROJECT_ROOT / "docs" / "benchmarks.md"
DOCS_INTRO = (
    "# Benchmarks\n\n"
    "Figures measured on loopback with the scripts in `benchmarks/`; each section "
    "names the exact command and the machine it ran on.\n"
)
SECTION = "## Landing"
BASELINE_EVENTS_PER_S = 140  # the design this replaces: one blocking S3 PUT per event
GOAL_SPEEDUP = 50
TARGET_RATIO_LOCAL = 0.60
TARGET_S3_EVENTS_PER_S = 5_000
TARGET_S3_P99_MS = 100.0
TARGET_CONNECTIONS = 64
TOKEN = "bench-" + secrets.token_hex(12)

# Per wrk thread: globals `id` (set in setup), `counter` and `non202` (read back in done).
WRK_SCRIPT = r"""
local threads = {}
counter = 0
non202 = 0

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

function init(args)
  run_id = args[1]
  per_request = tonumber(args[2])
  wrk.method = "POST"
  wrk.headers["Authorization"] = "Bearer " .. args[3]
  wrk.headers["Content-Type"] = "application/json"
end

local function event()
  counter = counter + 1
  return string.format(
    '{"eventId":"%s-%d-%d","contactId":%d,"customerId":"cust-%d","duration":%d,' ..
    '"agentId":"agent-%d","transcript":null,"direction":"INBOUND","skillId":%d,' ..
    '"startedAt":%d,"tags":["benchmark","loopback"]}',
    run_id, id, counter, 4000000000 + counter, counter % 9973, counter % 3600,
    counter % 250, 100 + counter % 40, 1795000000000 + counter)
end

function request()
  if per_request == 1 then
    return wrk.format(nil, nil, nil, event())
  end
  local events = {}
  for i = 1, per_request do events[i] = event() end
  return wrk.format(nil, nil, nil, "[" .. table.concat(events, ",") .. "]")
end

function response(status, headers, body)
  if status ~= 202 then non202 = non202 + 1 end
end

function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do bad = bad + thread:get("non202") end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"non202":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, bad, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def create_bare_app() -> Starlette:
    """The baseline: the same framework and server, a handler that only reads the body."""

    async def ingest(request: Request) -> Response:
        await request.body()
        return JSONResponse({"status": "accepted"}, status_code=202)

    return Starlette(routes=[Route("/ingest/{subject:path}", ingest, methods=["POST"])])


def serve_bare(port: int) -> int:
    """Run the bare app through `cxone-pipeline serve` itself, so it gets the landing's
    uvicorn options exactly, now and after any change to them."""
    import uvicorn

    from cxone_pipeline.cli import main

    run = uvicorn.run

    def run_bare(app: object, **options: object) -> None:
        run(create_bare_app, **options)

    uvicorn.run = run_bare
    return main(["serve", "--port", str(port)])


@dataclass
class WrkResult:
    requests: int
    duration_us: int
    non202: int
    connect_errors: int
    read_errors: int
    write_errors: int
    timeouts: int
    p50_us: int
    p99_us: int

    @property
    def seconds(self) -> float:
        return self.duration_us / 1e6

    @property
    def socket_errors(self) -> int:
        return self.connect_errors + self.read_errors + self.write_errors + self.timeouts


def run_wrk(
    url: str, script: Path, connections: int, threads: int, seconds: int, run_id: str, per: int
) -> WrkResult:
    command = [
        "wrk",
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        f"{url}/ingest/{SUBJECT}",
        "--",
        run_id,
        str(per),
        TOKEN,
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    match = re.search(r"^BENCH_RESULT (\{.*\})$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout}")
    return WrkResult(**json.loads(match.group(1)))


@dataclass
class Server:
    config: str
    url: str
    pid: int
    store: Store | None = None  # where the landing stages; None for the bare app
    store_pid: int | None = None  # the S3-compatible server's process
    seen_keys: set[str] = field(default_factory=set)
    event_ids: set[str] = field(default_factory=set)


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process, all threads, from /proc."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def landing_metrics(url: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    request = urllib.request.Request(url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def settled_metrics(url: str, timeout: float = 30.0) -> dict[str, float]:
    """Metrics once no event is waiting for its staging write (in-flight requests finished)."""
    deadline = time.monotonic() + timeout
    while True:
        metrics = landing_metrics(url)
        if metrics.get("cxone_landing_pending_events", 0.0) == 0 or time.monotonic() > deadline:
            return metrics
        time.sleep(0.05)


def new_staged_ids(server: Server) -> list[str]:
    """Event ids in staging objects written since the last call."""
    assert server.store is not None
    ids = []
    for key in staged_objects(server.store, SUBJECT):
        if key in server.seen_keys:
            continue
        server.seen_keys.add(key)
        for line in gzip.decompress(server.store.get(key)).splitlines():
            ids.append(json.loads(line)["event_id"])
    return ids


@dataclass
class Run:
    config: str
    connections: int
    per_request: int
    repeat: int
    wrk: WrkResult
    server_cpu: float  # cores busy in the server process during the run (1.0 = one core)
    store_cpu: float  # same for the S3-compatible server
    events_per_object: float | None = None
    flush_ms: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def events_per_s(self) -> float:
        return (self.wrk.requests - self.wrk.non202) * self.per_request / self.seconds

    @property
    def cpu_us_per_event(self) -> float:
        return 1e6 * self.server_cpu / self.events_per_s if self.events_per_s else float("nan")

    @property
    def requests_per_s(self) -> float:
        return self.wrk.requests / self.seconds

    @property
    def seconds(self) -> float:
        return self.wrk.seconds


def delta(after: dict[str, float], before: dict[str, float], name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


def verify(server: Server, run: Run, before: dict[str, float], after: dict[str, float]) -> None:
    """Everything acknowledged is staged, once; the landing's counter matches the lake."""
    ids = new_staged_ids(server)
    accepted = delta(after, before, "cxone_landing_events_accepted_total")
    acknowledged = (run.wrk.requests - run.wrk.non202) * run.per_request
    # Requests in flight when wrk stops are staged (the write is shielded) but not counted by wrk.
    in_flight = run.connections * run.per_request
    if len(ids) != accepted:
        run.problems.append(f"staged {len(ids)} events but the landing counted {accepted:.0f}")
    if not acknowledged <= len(ids) <= acknowledged + in_flight:
        run.problems.append(f"staged {len(ids)} events for {acknowledged} acknowledged by 202")
    fresh = set(ids)
    if len(fresh) != len(ids) or fresh & server.event_ids:
        run.problems.append("an event id was staged twice")
    server.event_ids |= fresh
    objects = delta(after, before, "cxone_landing_batch_events_count")
    if objects:
        run.events_per_object = delta(after, before, "cxone_landing_batch_events_sum") / objects
        run.flush_ms = 1000 * delta(after, before, "cxone_landing_flush_seconds_sum") / objects


def measure(
    server: Server,
    script: Path,
    args: argparse.Namespace,
    connections: int,
    per: int,
    repeat: int,
) -> Run:
    run_id = f"{server.config}-r{repeat}-c{connections}-e{per}-{secrets.token_hex(3)}"
    run_wrk(server.url, script, connections, args.wrk_threads, args.warmup, run_id + "w", per)
    before: dict[str, float] = {}
    if server.store is not None:
        before = settled_metrics(server.url)
        new_staged_ids(server)  # the warm-up's objects are not part of this run
    server_cpu, store_cpu = cpu_seconds(server.pid), cpu_seconds(server.store_pid)
    result = run_wrk(server.url, script, connections, args.wrk_threads, args.seconds, run_id, per)
    run = Run(
        server.config,
        connections,
        per,
        repeat,
        result,
        server_cpu=(cpu_seconds(server.pid) - server_cpu) / result.seconds,
        store_cpu=(cpu_seconds(server.store_pid) - store_cpu) / result.seconds,
    )
    if result.non202:
        run.problems.append(f"{result.non202} responses were not 202")
    if result.socket_errors:
        run.problems.append(f"{result.socket_errors} socket errors or timeouts")
    if server.store is not None:
        verify(server, run, before, settled_metrics(server.url))
    return run


def landing_env(lake_url: str, **extra: str) -> dict[str, str]:
    return {"CXONE_PIPELINE_INGEST_TOKEN": TOKEN, "CXONE_PIPELINE_LAKE_URL": lake_url, **extra}


def serving(stack: ExitStack, process: subprocess.Popen, port: int) -> str:
    """The server's base URL once it answers; stopped when `stack` closes."""
    stack.callback(stop_process, process)
    url = f"http://127.0.0.1:{port}"
    wait_for_http(url + "/healthz", process=process)
    return url


def start_bare(stack: ExitStack) -> Server:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve-bare", "--port", str(port)],
        env={**os.environ, "CXONE_PIPELINE_INGEST_TOKEN": TOKEN},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return Server("bare", serving(stack, process, port), process.pid)


def start_landing(
    stack: ExitStack, config: str, env: dict[str, str], store_pid: int | None = None
) -> Server:
    port = free_port()
    process = cli_process(
        ["serve", "--port", str(port)],
        env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = serving(stack, process, port)
    store = open_store(Settings.from_env({**os.environ, **env}))
    return Server(config, url, process.pid, store, store_pid)


def start_s3_landing(stack: ExitStack) -> Server:
    import boto3

    port = free_port()
    moto = start_moto(port)
    stack.callback(stop_process, moto)
    endpoint = f"http://127.0.0.1:{port}"
    aws = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    os.environ.update(aws)  # for the boto3 clients of this process (bucket, verification)
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
    env = landing_env("s3://bench/lake", CXONE_PIPELINE_S3_ENDPOINT_URL=endpoint, **aws)
    return start_landing(stack, "s3", env, moto.pid)


def start_servers(stack: ExitStack, configs: Sequence[str]) -> list[Server]:
    lake = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="landing-bench-")))
    starters = {
        "bare": lambda: start_bare(stack),
        "local": lambda: start_landing(stack, "local", landing_env(str(lake))),
        "s3": lambda: start_s3_landing(stack),
    }
    return [starters[config]() for config in configs]


@dataclass
class Row:
    config: str
    connections: int
    per_request: int
    runs: list[Run]

    def median(self, value: str) -> float:
        return statistics.median(getattr(run, value) for run in self.runs)

    def median_ms(self, value: str) -> float:
        return statistics.median(getattr(run.wrk, value) for run in self.runs) / 1000

    def median_of(self, value: str) -> float | None:
        values = [getattr(run, value) for run in self.runs if getattr(run, value) is not None]
        return statistics.median(values) if values else None

    @property
    def problems(self) -> list[str]:
        return [f"repeat {run.repeat}: {p}" for run in self.runs for p in run.problems]


def rows_of(runs: list[Run]) -> list[Row]:
    keys = sorted(
        {(r.per_request, r.connections, r.config) for r in runs},
        key=lambda k: (k[0], k[1], list(CONFIGS).index(k[2])),
    )
    return [
        Row(
            config,
            conns,
            per,
            [r for r in runs if (r.config, r.connections, r.per_request) == (config, conns, per)],
        )
        for per, conns, config in keys
    ]


def find_row(rows: list[Row], config: str, connections: int, per: int) -> Row | None:
    return next(
        (r for r in rows if (r.config, r.connections, r.per_request) == (config, connections, per)),
        None,
    )


def optional(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def table(rows: list[Row]) -> str:
    lines = [
        "| configuration | conns | events/req | events/s | req/s | p50 ms | p99 ms | vs (a) "
        "| events/object | flush ms | server CPU | CPU µs/event | moto CPU | verified |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for row in rows:
        bare = find_row(rows, "bare", row.connections, row.per_request)
        ratio = row.median("events_per_s") / bare.median("events_per_s") if bare else None
        verified = (
            "-"
            if row.config == "bare" and not row.problems
            else ("no: " + "; ".join(row.problems) if row.problems else "yes")
        )
        lines.append(
            f"| {CONFIGS[row.config]} | {row.connections} | {row.per_request} "
            f"| {row.median('events_per_s'):,.0f} | {row.median('requests_per_s'):,.0f} "
            f"| {row.median_ms('p50_us'):.1f} | {row.median_ms('p99_us'):.1f} "
            f"| {optional(ratio, '.0%')} | {optional(row.median_of('events_per_object'), '.1f')} "
            f"| {optional(row.median_of('flush_ms'), '.1f')} | {row.median('server_cpu'):.0%} "
            f"| {row.median('cpu_us_per_event'):.0f} "
            f"| {optional(row.median('store_cpu') if row.config == 's3' else None, '.0%')} "
            f"| {verified} |"
        )
    return "\n".join(lines)


def targets(rows: list[Row], per_values: Sequence[int]) -> list[str]:
    verdicts = []
    for per in per_values:
        local = find_row(rows, "local", TARGET_CONNECTIONS, per)
        bare = find_row(rows, "bare", TARGET_CONNECTIONS, per)
        if local and bare:
            ratio = local.median("events_per_s") / bare.median("events_per_s")
            met = "met" if ratio >= TARGET_RATIO_LOCAL else "NOT met"
            verdicts.append(
                f"- (b) ≥ {TARGET_RATIO_LOCAL:.0%} of (a) at {TARGET_CONNECTIONS} connections, "
                f"{per} event(s)/request: {ratio:.0%}, **{met}**"
            )
        s3 = find_row(rows, "s3", TARGET_CONNECTIONS, per)
        if s3:
            rate, p99 = s3.median("events_per_s"), s3.median_ms("p99_us")
            met = rate >= TARGET_S3_EVENTS_PER_S and p99 <= TARGET_S3_P99_MS
            verdicts.append(
                f"- (c) ≥ {TARGET_S3_EVENTS_PER_S:,} events/s with p99 ≤ {TARGET_S3_P99_MS:.0f} ms "
                f"at {TARGET_CONNECTIONS} connections, {per} event(s)/request: {rate:,.0f} "
                f"events/s, p99 {p99:.1f} ms, **{'met' if met else 'NOT met'}** "
                f"({rate / BASELINE_EVENTS_PER_S:.0f}x the {BASELINE_EVENTS_PER_S} events/s "
                f"of one blocking PUT per event; goal {GOAL_SPEEDUP}x)"
            )
    return verdicts


def machine_notes(load_before: tuple[float, float, float]) -> str:
    import uvicorn

    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    load_after = os.getloadavg()
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    return (
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs ({cpu}), "
        f"load average {' '.join(f'{x:.2f}' for x in load_before)} before and "
        f"{' '.join(f'{x:.2f}' for x in load_after)} after, "
        f"Python {sys.version.split()[0]}, uvicorn {uvicorn.__version__}, "
        f"{(wrk.stdout or wrk.stderr).split('[')[0].strip()}."
    )


def report(rows: list[Row], args: argparse.Namespace, notes: str) -> str:
    command = shlex.join([".venv/bin/python", "benchmarks/landing.py", *args.argv])
    return "\n".join(
        [
            SECTION,
            "",
            f"Command: `{command}`",
            "",
            f"Machine: {notes}",
            "",
            "Each server is its own process with the uvicorn options of `cxone-pipeline serve` "
            "(one worker, uvloop + httptools, no access log); the bare app is served through "
            f"that same command. wrk ({args.wrk_threads} thread) on the same machine posts "
            "distinct ~230-byte JSON events with `Authorization: Bearer`; "
            f"{args.seconds} s per run after a {args.warmup} s warm-up, configurations "
            f"interleaved, medians of {args.repeats} repeats. events/s: events acknowledged "
            "with 202; events/object and flush ms: the landing's group-commit metrics over the "
            "run; CPU: the server process's CPU time (100% = one core) and per event; verified: "
            "no non-202 or socket error, every acknowledged event staged exactly once, staged "
            "lines = `cxone_landing_events_accepted_total`.",
            "",
            table(rows),
            "",
            "Targets:",
            "",
            *(
                targets(rows, args.events_per_request)
                or [f"- not measured: the targets are at {TARGET_CONNECTIONS} connections"]
            ),
            "",
        ]
    )


def write_docs(section: str, path: Path = DOCS_PATH) -> None:
    """Replace (or append) the generated part of the `## Landing` section, nothing else."""
    text = path.read_text() if path.exists() else DOCS_INTRO
    # Up to the next heading: hand-written `###` notes under the section survive a rerun.
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^##|\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Load the landing with wrk on loopback and report events/s and p50/p99 "
        "latency for a bare Starlette endpoint, the landing on LocalStore and on S3 (moto).",
    )
    parser.add_argument("--seconds", type=int, default=5, help="measured seconds per run")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up seconds before each run")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (median)")
    parser.add_argument(
        "--connections", type=int, nargs="+", default=[16, 64], help="concurrent connections"
    )
    parser.add_argument(
        "--events-per-request",
        type=int,
        nargs="+",
        default=[1],
        help="events per body: 1 is a single object (CXone's default), more is a JSON array",
    )
    parser.add_argument(
        "--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS), help="what to load"
    )
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument(
        "--write-docs", action="store_true", help=f"write the {SECTION!r} section of docs"
    )
    parser.add_argument("--serve-bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = list(argv)
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    if args.serve_bare:
        return serve_bare(args.port)
    if shutil.which("wrk") is None:
        print("install wrk: apt-get install wrk", file=sys.stderr)
        return 2
    load_before = os.getloadavg()
    runs: list[Run] = []
    with ExitStack() as stack, tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch) / "events.lua"
        script.write_text(WRK_SCRIPT)
        servers = start_servers(stack, args.configs)
        for repeat in range(1, args.repeats + 1):
            for per in args.events_per_request:
                for connections in args.connections:
                    for server in servers:
                        run = measure(server, script, args, connections, per, repeat)
                        runs.append(run)
                        print(
                            f"repeat {repeat} {server.config:5} c={connections:<3} e={per:<3} "
                            f"{run.events_per_s:9,.0f} events/s p50 {run.wrk.p50_us / 1000:6.1f} "
                            f"ms p99 {run.wrk.p99_us / 1000:6.1f} ms "
                            + ("; ".join(run.problems) or "ok"),
                            file=sys.stderr,
                            flush=True,
                        )
    section = report(rows_of(runs), args, machine_notes(load_before))
    print(section)
    if args.write_docs:
        write_docs(section)
    return 1 if any(run.problems for run in runs) else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
