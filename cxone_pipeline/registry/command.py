"""`cxone-pipeline schemas check`: prove every subject's canonical schema reads every version."""

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
    check.add_argument(
        "--schemas-dir",
        type=Path,
        default=None,
        help="registry folder (default: CXONE_PIPELINE_SCHEMAS_DIR, else the project's schemas/)",
    )
    check.set_defaults(handler=check_command)


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
