"""The two set-up commands, standard library only: `up` runs the stack, `test` runs the suite.

Run from a clone with any Python 3.10+: `python3 -m cxone_pipeline.devenv up|test`.
Everything installs into `.venv/` from the committed `uv.lock`; nothing global.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
UV_VERSION = "0.13.9"
LOCK_STAMP = VENV / ".uv-lock-sha256"
LOOPBACK = "127.0.0.1"

# A laptop's stack shows the open hour within two sensor ticks, and no year of empty partitions.
# The open-hour refresh equals the sensor interval, so the refresh time a previous session left
# in the sensor's cursor delays nothing: every tick may refresh the open hour.
DEV_DEFAULTS = {
    "CXONE_PIPELINE_SENSOR_INTERVAL_SECONDS": "30",
    "CXONE_PIPELINE_OPEN_HOUR_REFRESH_SECONDS": "30",
}
DEV_PARTITION_DAYS = 7
SAMPLE_EVENT = '{"customerId":"C-1001","duration":42,"agentId":"A-7","transcript":"hello"}'


def run(*args: str | Path, env: dict[str, str] | None = None) -> None:
    subprocess.run([str(a) for a in args], check=True, cwd=ROOT, env=env)


def ensure_environment() -> None:
    """Create `.venv` and install exactly what `uv.lock` pins (skipped when already in sync)."""
    if sys.version_info < (3, 10):  # noqa: UP036 (this file runs before the venv exists)
        sys.exit("cxone-pipeline needs Python 3.10 or newer")
    lock_digest = hashlib.sha256((ROOT / "uv.lock").read_bytes()).hexdigest()
    if LOCK_STAMP.exists() and LOCK_STAMP.read_text() == lock_digest:
        return
    if not (BIN / "python").exists():
        print("creating .venv", flush=True)
        run(sys.executable, "-m", "venv", VENV)
    if not (BIN / "uv").exists():
        run(BIN / "python", "-m", "pip", "install", "--quiet", f"uv=={UV_VERSION}")
    print("installing the locked dependencies into .venv (uv sync --frozen)", flush=True)
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(VENV)}
    # Compiled once here: test subprocesses then start fast even with PYTHONDONTWRITEBYTECODE.
    run(BIN / "uv", "sync", "--frozen", "--inexact", "--compile-bytecode", env=env)
    LOCK_STAMP.write_text(lock_digest)


def ensure_debian_packages(what: str, packages: list[str], present: bool) -> None:
    """Install Debian packages a test needs when `present` is false (CI runs as root)."""
    if present:
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        print(f"{what} not found: install {' '.join(packages)}", file=sys.stderr)
        return
    print(f"installing {what} from the distribution's packages", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run("apt-get", "update", "-qq", env=env)
    run("apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages, env=env)


def ensure_test_servers() -> None:
    """Server binaries the suite drives: PostgreSQL (the PostgreSQL instance test) and headless
    Chromium with its WebDriver (the on-call UI test)."""
    ensure_debian_packages(
        "PostgreSQL server binaries",
        ["postgresql"],
        bool(shutil.which("initdb") or list(Path("/usr/lib/postgresql").glob("*/bin/initdb"))),
    )
    ensure_debian_packages(
        "Chromium and its WebDriver",
        ["chromium", "chromium-driver"],
        Path("/usr/bin/chromium").exists() and Path("/usr/bin/chromedriver").exists(),
    )


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url} did not start: its process exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (loopback URL we built)
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {timeout:.0f}s")


def create_instance_storage(env: dict[str, str]) -> None:
    """Create a new DAGSTER_HOME's SQLite storage before the webserver and the daemon start:
    creating it at the same time, they can stamp two schema revisions, after which neither
    loads the code location ("alembic_version has more than one head", dagster#27390)."""
    command = [str(BIN / "dagster"), "instance", "migrate"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"`{' '.join(command[1:])}` failed: cannot create the Dagster instance")


def dev_settings(environ: dict[str, str], now: datetime) -> dict[str, str]:
    """What `up` sets unless the environment already does: a short open-hour refresh and
    partitions from DEV_PARTITION_DAYS days before today."""
    start = (now.astimezone(timezone.utc) - timedelta(days=DEV_PARTITION_DAYS)).strftime(
        "%Y-%m-%d-00:00"
    )
    defaults = {**DEV_DEFAULTS, "CXONE_PIPELINE_PARTITIONS_START": start}
    return {name: value for name, value in defaults.items() if not environ.get(name)}


def stack_commands(landing_port: int, dagster_port: int) -> dict[str, list[str | Path]]:
    """The processes of `up`, each bound to loopback: Dagster's webserver has no login, so
    it must not be reachable from the network (docs/setup.md shows how to publish it)."""
    return {
        "landing": [
            *(BIN / "cxone-pipeline", "serve"),
            *("--host", LOOPBACK, "--port", str(landing_port)),
        ],
        "dagster-webserver": [
            BIN / "dagster-webserver",
            *("-w", ROOT / "workspace.yaml", "-h", LOOPBACK, "-p", str(dagster_port)),
        ],
        "dagster-daemon": [BIN / "dagster-daemon", "run", "-w", ROOT / "workspace.yaml"],
    }


def up(args: argparse.Namespace) -> int:
    ensure_environment()
    dagster_home = Path(os.environ.get("DAGSTER_HOME") or ROOT / ".dagster_home").resolve()
    dagster_home.mkdir(parents=True, exist_ok=True)
    fresh_home = not (dagster_home / "dagster.yaml").exists()
    if fresh_home:
        shutil.copy(ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    configured = os.environ.get("CXONE_PIPELINE_INGEST_TOKEN", "").strip(", ")
    generated = None if configured else secrets.token_urlsafe(24)
    # A token the user configured is never printed: the curl below names its variable.
    shown = generated or "$CXONE_PIPELINE_INGEST_TOKEN (first of the tokens you set)"
    bearer = generated or "${CXONE_PIPELINE_INGEST_TOKEN%%,*}"  # shell: the first token
    env = {
        **dev_settings(dict(os.environ), datetime.now(timezone.utc)),
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "CXONE_PIPELINE_LAKE_URL": os.environ.get("CXONE_PIPELINE_LAKE_URL") or str(ROOT / ".lake"),
        "CXONE_PIPELINE_INGEST_TOKEN": configured or str(generated),
    }
    if fresh_home:
        create_instance_storage(env)
    landing_url = f"http://{LOOPBACK}:{args.landing_port}"
    dagster_url = f"http://{LOOPBACK}:{args.dagster_port}"
    commands = stack_commands(args.landing_port, args.dagster_port)
    processes: dict[str, subprocess.Popen] = {}
    try:
        for name, command in commands.items():
            processes[name] = subprocess.Popen([str(c) for c in command], cwd=ROOT, env=env)
        wait_until_up(f"{landing_url}/healthz", processes["landing"])
        wait_until_up(f"{dagster_url}/server_info", processes["dagster-webserver"])
        print(
            f"""
cxone-pipeline is running (Ctrl-C stops it)
  landing     {landing_url}/ingest/{{subject}}
  Dagster UI  {dagster_url}
  lake        {env["CXONE_PIPELINE_LAKE_URL"]}
  partitions  hourly from {env["CXONE_PIPELINE_PARTITIONS_START"]} (UTC)
  open hour   curated every {env["CXONE_PIPELINE_OPEN_HOUR_REFRESH_SECONDS"]} s (sensor every \
{env["CXONE_PIPELINE_SENSOR_INTERVAL_SECONDS"]} s)
  token       {shown}

Post a sample event:
  curl -X POST {landing_url}/ingest/call_event \\
    -H "Authorization: Bearer {bearer}" \\
    -H 'Content-Type: application/json' \\
    -d '{SAMPLE_EVENT}'
""",
            flush=True,
        )
        if args.demo:
            run(BIN / "cxone-pipeline", "demo", "--url", landing_url, env=env)
        while all(p.poll() is None for p in processes.values()):
            time.sleep(1)
        failed = [name for name, p in processes.items() if p.poll() is not None]
        print(f"stopping: {', '.join(failed)} exited", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def test(args: argparse.Namespace) -> int:
    ensure_environment()
    ensure_test_servers()
    env = {**os.environ, "DAGSTER_DISABLE_TELEMETRY": "1"}
    steps = [
        [BIN / "ruff", "check", "."],
        [BIN / "cxone-pipeline", "schemas", "check"],
        [BIN / "pytest", *args.pytest_args],
    ]
    for step in steps:
        code = subprocess.run([str(s) for s in step], cwd=ROOT, env=env).returncode
        if code == 5:  # pytest: no tests collected
            print("no tests were collected: failing", file=sys.stderr)
            return 1
        if code != 0:
            return code
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python3 -m cxone_pipeline.devenv")
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up", help="install, then run the landing and Dagster")
    up_parser.add_argument("--landing-port", type=int, default=8000)
    up_parser.add_argument("--dagster-port", type=int, default=3000)
    up_parser.add_argument(
        "--demo", action="store_true", help="also post demo events of every version"
    )
    up_parser.set_defaults(handler=up)
    test_parser = commands.add_parser(
        "test", help="install, then run lint, the schema check and the tests (extra args: pytest)"
    )
    test_parser.set_defaults(handler=test)
    args, extra = parser.parse_known_args()
    if extra and args.command != "test":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.pytest_args = extra  # anything else goes to pytest, e.g. `test -k landing -x`
    return args.handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
