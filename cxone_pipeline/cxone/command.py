"""`cxone-pipeline register-webhook`: tell CXone to deliver events to the landing endpoint."""

from __future__ import annotations

import argparse
from typing import Any

from cxone_pipeline.cli import CommandError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "register-webhook",
        help="create or update the CXone data action that POSTs events to the landing",
        description=(
            "Create the CXone data action that forwards events to WEBHOOK_URL, update it if "
            "its URL, headers or body differ, or leave it unchanged. Credentials come from "
            "CXONE_* variables; CXone is given the first CXONE_PIPELINE_INGEST_TOKEN."
        ),
    )
    parser.add_argument(
        "--webhook-url",
        required=True,
        help="full landing URL CXone will POST to, used as given, e.g. https://host/ingest/call_event",
    )
    parser.add_argument(
        "--subject",
        help="event subject; names the action and must match an /ingest/<subject> URL "
        "(default: the landing's default subject, call_event)",
    )
    parser.add_argument("--name", help="data action name (default cxone-pipeline-<subject>)")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the requests that would be sent, token masked, and send nothing",
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    import asyncio

    from cxone_pipeline.cxone.config import CXoneConfig
    from cxone_pipeline.cxone.errors import CXoneError
    from cxone_pipeline.cxone.registration import (
        describe_registration,
        register_webhook,
        webhook_spec,
    )
    from cxone_pipeline.lake.layout import DEFAULT_SUBJECT
    from cxone_pipeline.settings import Settings, SettingsError

    try:
        settings = Settings.from_env()
        spec = webhook_spec(
            args.webhook_url,
            settings.ingest_tokens,
            subject=args.subject or DEFAULT_SUBJECT,
            action_name=args.name,
            allow_http=settings.allow_http,
        )
        config = CXoneConfig.from_settings(settings)
        if args.dry_run:
            print(describe_registration(config, spec))
            return 0
        result = asyncio.run(register_webhook(config, spec))
    except (CXoneError, SettingsError) as exc:
        raise CommandError(str(exc)) from None
    print(
        f"{result.outcome.value}: data action {result.action_name!r} "
        f"(id {result.action_id}) -> {spec.webhook_url}"
    )
    return 0
