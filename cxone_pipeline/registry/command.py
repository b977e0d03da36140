"""`cxone-pipeline schemas check` proves every subject's canonical schema reads every version;
`schemas propose` drafts the next versions from what drifted in the lake."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cxone_pipeline.cli import CommandError

if TYPE_CHECKING:
    from cxone_pipeline.registry.compatibility import RegistryCheck


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "schemas",
        help="inspect the schema registry",
        description="Inspect the schema registry (schemas/<subject>/*.avsc).",
    )
    commands = parser.add_subparsers(dest="schemas_command", required=True, metavar="SUBCOMMAND")
    check = commands.add_parser(
        "check",
        help="prove each canonical schema resolves every writer version",
        description="For every subject, prove that canonical.avsc resolves every writer version "
        "under Avro's rules (aliases, defaults, promotions, enum defaults), and report the "
        "Confluent compatibility mode of each version against the previous one. Exits 1 "
        "naming the subject, version and field at fault.",
    )
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    _schemas_dir_argument(check)
    check.set_defaults(handler=check_command)

    propose = commands.add_parser(
        "propose",
        help="propose the next schema versions from quarantined and unmapped records",
        description="Read the subject's quarantined records and the _unmapped_fields of its "
        "curated rows in the chosen hours (the lake of CXONE_PIPELINE_LAKE_URL), group them by "
        "shape and propose a writer version per new shape with the canonical additions reading "
        "it. Every proposal is checked as `schemas check` does and run through the engine on a "
        "copy of the registry: the summary says what each version resolves and what still "
        "fails. Renames are suggested for review and applied only with --accept-rename.",
    )
    propose.add_argument("--subject", required=True, help="the subject, e.g. call_event")
    hours = propose.add_mutually_exclusive_group()
    hours.add_argument(
        "--since",
        type=int,
        metavar="HOURS",
        help="the last HOURS hours, the open one included (default: the reconcile window, "
        "CXONE_PIPELINE_RECONCILE_DAYS x 24)",
    )
    hours.add_argument(
        "--partition",
        nargs="+",
        default=[],
        metavar="KEY",
        help="these hourly partitions (YYYY-MM-DD-HH:00)",
    )
    propose.add_argument(
        "--write",
        action="store_true",
        help="write the files into the registry; refused unless the registry with them passes "
        "schemas check",
    )
    propose.add_argument("--json", action="store_true", help="print the proposal as JSON")
    propose.add_argument(
        "--enum",
        action="append",
        default=[],
        metavar="FIELD",
        help="type this sender field as an enum of the values seen (repeatable)",
    )
    propose.add_argument(
        "--accept-rename",
        action="append",
        default=[],
        metavar="FIELD",
        help="apply the suggested rename of this sender field: an alias on the canonical field "
        "instead of a new column (repeatable)",
    )
    propose.add_argument(
        "--limit",
        type=int,
        default=None,
        help="read at most this many records (default 20000)",
    )
    _schemas_dir_argument(propose)
    propose.set_defaults(handler=propose_command)


def _schemas_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--schemas-dir",
        type=Path,
        default=None,
        help="registry folder (default: CXONE_PIPELINE_SCHEMAS_DIR, else the project's schemas/)",
    )


def check_command(args: argparse.Namespace) -> int:
    from cxone_pipeline.registry import SchemaError
    from cxone_pipeline.settings import Settings

    try:
        from cxone_pipeline.registry.compatibility import check_registry
    except ImportError as exc:  # Apache Avro's checker ships in the `avro` package
        raise CommandError(f"schemas check needs the 'avro' package: {exc}") from None

    schemas_dir: Path = args.schemas_dir or Settings.from_env().schemas_dir
    try:
        report = check_registry(schemas_dir)
    except SchemaError as exc:
        raise CommandError(str(exc)) from None
    print_check(report, args.json)
    return 1 if report.failures else 0


def print_check(report: RegistryCheck, as_json: bool) -> None:
    """The check's table (or JSON) on stdout, each failure on stderr."""
    checks = report.checks
    if as_json:
        document = {
            "schemas_dir": str(report.schemas_dir),
            "ok": not report.failures,
            "subjects": {
                name: {
                    "fingerprint": subject.fingerprint,
                    "canonical_fingerprint": subject.canonical.fingerprint,
                    "versions": [
                        {
                            "version": c.version,
                            "fingerprint": c.fingerprint,
                            "mode": c.mode,
                            "status": c.status,
                            "problems": list(c.problems),
                        }
                        for c in checks
                        if c.subject == name
                    ],
                }
                for name, subject in report.registry.items()
            },
        }
        print(json.dumps(document, indent=2))
    else:
        rows = [("SUBJECT", "VERSION", "FINGERPRINT", "MODE", "STATUS")]
        rows += [
            (c.subject, c.version, c.fingerprint[:16], c.mode or "-", c.status) for c in checks
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            print("  ".join(cells).rstrip())
    for failure in report.failures:
        print(f"cxone-pipeline schemas check: {failure}", file=sys.stderr)


def propose_command(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from cxone_pipeline.lake.layout import InvalidName, partition_hour, validate_subject
    from cxone_pipeline.lake.store import StoreError, open_store
    from cxone_pipeline.registry import SchemaError, load_subject
    from cxone_pipeline.registry.drift import DEFAULT_LIMIT, last_hours, read_drift
    from cxone_pipeline.registry.propose import (
        ProposalError,
        describe,
        propose,
        write_proposal,
    )
    from cxone_pipeline.settings import Settings, SettingsError

    limit = DEFAULT_LIMIT if args.limit is None else args.limit
    if limit < 1:
        raise CommandError(f"--limit {limit}: must be at least 1")
    try:
        settings = Settings.from_env()
        schemas_dir: Path = args.schemas_dir or settings.schemas_dir
        subject = validate_subject(args.subject)
        if args.partition:
            hours = [partition_hour(key) for key in args.partition]
        else:
            since = args.since if args.since is not None else settings.reconcile_days * 24
            hours = list(last_hours(datetime.now(timezone.utc), since))
        sample = read_drift(open_store(settings), load_subject(schemas_dir, subject), hours, limit)
        proposal = propose(schemas_dir, sample, args.enum, args.accept_rename)
        report = write_proposal(schemas_dir, proposal) if args.write and proposal.files else None
    except (SettingsError, InvalidName, SchemaError, StoreError, ProposalError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    if args.json:
        document = proposal.to_json()
        if args.write:
            document["written"] = sorted(proposal.files) if report else []
            document["check"] = {"ok": not report.failures} if report else None
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        print(describe(proposal), end="")
        if args.write:
            print()
            if report is None:
                print("nothing written")
            else:
                names = ", ".join(f"{schemas_dir / subject / name}" for name in proposal.files)
                print(f"wrote {names}; cxone-pipeline schemas check:")
                print_check(report, as_json=False)
    return 1 if report is not None and report.failures else 0
