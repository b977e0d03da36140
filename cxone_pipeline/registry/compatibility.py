"""Proof that each subject's canonical schema reads every writer version, as the engine does.

The problems come from the engine's own compiled resolution (`resolve.records`), so what
`schemas check` accepts is exactly what the engine resolves; writer types no JSON payload can
be valid for are refused too. Also reports, for information, the Confluent compatibility mode
each version keeps with the previous one (Apache Avro's checker): a rename is NONE there,
which is why the canonical reader with aliases exists.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import avro.errors
import avro.schema
from avro.compatibility import (
    ReaderWriterCompatibilityChecker,
    SchemaCompatibilityResult,
    SchemaCompatibilityType,
)

from cxone_pipeline.registry import load_registry
from cxone_pipeline.registry.extensions import effective_document
from cxone_pipeline.registry.schemas import SchemaError, SchemaVersion, SubjectSchemas
from cxone_pipeline.registry.validation import type_name
from cxone_pipeline.resolve.arrow_schema import canonical_arrow_schema
from cxone_pipeline.resolve.records import resolution

OK = "ok"
FAILED = "incompatible"


@dataclass(frozen=True)
class VersionCheck:
    subject: str
    version: str
    fingerprint: str
    mode: str | None  # Confluent mode against the previous version; None for the first
    problems: tuple[str, ...]  # why the canonical schema cannot read this version

    @property
    def status(self) -> str:
        return FAILED if self.problems else OK


@dataclass(frozen=True)
class RegistryCheck:
    """What `cxone-pipeline schemas check` proves about one registry folder."""

    schemas_dir: Path
    registry: dict[str, SubjectSchemas]
    checks: list[VersionCheck]

    @property
    def failures(self) -> list[str]:
        return [f"{c.subject} {c.version}: {p}" for c in self.checks for p in c.problems]


def check_registry(schemas_dir: Path) -> RegistryCheck:
    """Load every subject, map every canonical type to Parquet, and check every version;
    SchemaError names the file at fault when a schema cannot even be loaded."""
    registry = load_registry(schemas_dir)
    if not registry:
        raise SchemaError(f"no subject (a folder with canonical.avsc) in {schemas_dir}")
    for subject in registry.values():
        canonical_arrow_schema(subject)  # every canonical type must have a Parquet type
    checks = [check for subject in registry.values() for check in check_subject(subject)]
    return RegistryCheck(schemas_dir, registry, checks)


def check_subject(subject: SubjectSchemas) -> list[VersionCheck]:
    """One check per writer version, in order: can canonical.avsc resolve it, and its mode."""
    checks = []
    previous: avro.schema.Schema | None = None
    for version in subject.versions:
        writer = _apache_schema(version)
        problems = (*_bytes_fields(version), *resolution(version, subject.canonical).problems)
        mode = None if previous is None else confluent_mode(previous, writer)
        checks.append(
            VersionCheck(subject.name, version.version, version.fingerprint, mode, problems)
        )
        previous = writer
    return checks


def confluent_mode(old: avro.schema.Schema, new: avro.schema.Schema) -> str:
    """FULL, BACKWARD (new reads old), FORWARD (old reads new) or NONE."""
    backward = _compatible(_compatibility(new, old))
    forward = _compatible(_compatibility(old, new))
    if backward and forward:
        return "FULL"
    return "BACKWARD" if backward else "FORWARD" if forward else "NONE"


def _compatibility(
    reader: avro.schema.Schema, writer: avro.schema.Schema
) -> SchemaCompatibilityResult:
    return ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)


def _compatible(result: SchemaCompatibilityResult) -> bool:
    return result.compatibility is SchemaCompatibilityType.compatible


def _apache_schema(version: SchemaVersion) -> avro.schema.RecordSchema:
    # The effective schema: ISO-8601 text fields are checked as the timestamps they encode.
    try:
        with warnings.catch_warnings():  # it only knows some logical types; modes ignore them
            warnings.simplefilter("ignore", avro.errors.IgnoredLogicalType)
            return avro.schema.parse(json.dumps(effective_document(version.document)))
    except (avro.errors.AvroException, ValueError) as exc:
        raise SchemaError(f"{version.path}: Apache Avro cannot parse it: {exc}") from exc


def _bytes_fields(version: SchemaVersion) -> list[str]:
    """Fields of bytes, fixed or decimal type: JSON has no bytes, so no payload is valid."""
    named = version.schema.get("__named_schemas", {})
    problems: list[str] = []
    seen: set[str] = set()

    def walk(avro_type: Any, path: str) -> None:
        if isinstance(avro_type, list):
            for branch in avro_type:
                walk(branch, path)
            return
        if isinstance(avro_type, str) and avro_type in named:
            if avro_type not in seen:
                seen.add(avro_type)
                walk(named[avro_type], path)
            return
        kind = avro_type if isinstance(avro_type, str) else avro_type["type"]
        if kind in ("bytes", "fixed"):
            problems.append(
                f"field {path!r} is {type_name(avro_type)}: JSON has no bytes, so no payload "
                "can be valid; declare a string (a canonical bytes field reads it as UTF-8)"
            )
        elif kind == "array":
            walk(avro_type["items"], f"{path}[]")
        elif kind == "map":
            walk(avro_type["values"], f"{path}{{}}")
        elif kind in ("record", "error"):
            seen.add(avro_type["name"])
            for field in avro_type["fields"]:
                walk(field["type"], f"{path}.{field['name']}" if path else field["name"])

    walk(version.schema, "")
    return problems
