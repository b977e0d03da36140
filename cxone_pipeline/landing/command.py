"""`cxone-pipeline serve`: run the landing endpoint under uvicorn."""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
from typing import TYPE_CHECKING, Any

from cxone_pipeline.cli import CommandError

if TYPE_CHECKING:
    from cxone_pipeline.settings import Settings

LOOPBACK_NAMES = frozenset({"localhost"})
KEEP_ALIVE_SECONDS = 75
# By import path: each worker process imports it and reads the limits from its environment.
PROTOCOL = "cxone_pipeline.landing.connections:GuardedHttpProtocol"


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the landing endpoint (POST /ingest/{subject})",
        description="Run the landing endpoint. Refuses to start without "
        "CXONE_PIPELINE_INGEST_TOKEN or CXONE_PIPELINE_WEBHOOK_SECRETS, except with --dev "
        "on a loopback address, which generates a token and prints it.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="log every request line (off by default: it costs ~15%% of the CPU per request; "
        "/metrics counts requests by outcome)",
    )
    parser.add_argument(
        "--dev",
        action="store_true",
        help="development mode: loopback only; generates an ingest token if none is set",
    )
    parser.set_defaults(handler=serve)


def prepare_auth(dev: bool, host: str, env: dict[str, str] | os._Environ[str]) -> str | None:
    """Check the auth configuration; in dev mode, generate a token. Returns a generated token."""
    configured = bool(
        env.get("CXONE_PIPELINE_INGEST_TOKEN", "").strip(", ")
        or env.get("CXONE_PIPELINE_WEBHOOK_SECRETS", "").strip(", ")
    )
    if dev and not is_loopback(host):
        raise CommandError(f"--dev only binds to a loopback address, not {host!r}")
    if configured:
        return None
    if not dev:
        raise CommandError(
            "refusing to run unauthenticated: set CXONE_PIPELINE_INGEST_TOKEN (or "
            "CXONE_PIPELINE_WEBHOOK_SECRETS), or use --dev on 127.0.0.1"
        )
    token = secrets.token_urlsafe(24)
    env["CXONE_PIPELINE_INGEST_TOKEN"] = token
    return token


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How uvicorn runs the landing (the tests' in-process servers use the same options)."""
    return {
        # Longer than load balancers' idle timeouts (ALB: 60 s), so the balancer, not the
        # landing, closes idle connections and never sends a request onto a closing one.
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
        "timeout_graceful_shutdown": int(settings.store_deadline_seconds) + 10,
        # Header deadline, header size and connection cap (landing/connections.py).
        "http": PROTOCOL,
    }


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from cxone_pipeline.settings import Settings, SettingsError

    if args.workers < 1:
        raise CommandError("--workers must be at least 1")
    generated = prepare_auth(args.dev, args.host, os.environ)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        raise CommandError(str(exc)) from None
    if generated:
        print(f"dev mode: ingest token {generated}", flush=True)
    print(
        f"landing on http://{args.host}:{args.port}/ingest/{{subject}} -> {settings.lake_url}",
        flush=True,
    )
    uvicorn.run(
        "cxone_pipeline.landing.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="info",
        access_log=args.access_log,
        **uvicorn_options(settings),
    )
    return 0
