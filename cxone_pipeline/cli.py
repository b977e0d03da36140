"""`cxone-pipeline` command line: each command lives beside the code it drives."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cxone_pipeline.registry import SubjectSchemas

# Each module exposes `register(subparsers)`; heavy imports stay inside its handlers.
COMMAND_MODULES = (
    "cxone_pipeline.landing.command",
    "cxone_pipeline.cxone.command",
    "cxone_pipeline.cxone.studio",
    "cxone_pipeline.registry.command",
    "cxone_pipeline.importer",
    "cxone_pipeline.demo",
)


class CommandError(Exception):
    """A command failed for a reason the user can act on; printed as one line."""


def command_subject(schemas_dir: Path, subject: str) -> SubjectSchemas:
    """The registry subject a command names; CommandError listing the known ones if none."""
    from cxone_pipeline.registry import discover_subjects, load_subject

    known = discover_subjects(schemas_dir)
    if subject not in known:
        raise CommandError(f"unknown subject {subject[:64]!r}; known: {', '.join(known) or 'none'}")
    return load_subject(schemas_dir, subject)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxone-pipeline",
        description="Land NICE CXone events in a typed, hourly partitioned data lake.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except CommandError as exc:
        print(f"cxone-pipeline {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
