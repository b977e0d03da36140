"""Proof that each subject's canonical schema reads every writer version (Apache Avro's checker).

Also reports, for information, the Confluent compatibility mode each version keeps with the
previous one: a rename is NONE there, which is why the canonical reader with aliases exists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import avro.errors
import avro.schema
from avro.compatibility import (
    ReaderWriterCompatibilityChecker,
    SchemaCompatibilityResult,
    SchemaCompatibilityType,
    lookup_writer_field,
    schema_name_equals,
)

from cxone_pipeline.registry import load_registry
from cxone_pipeline.registry.extensions import effective_document
from cxone_pipeline.registry.schemas import SchemaError, SchemaVersion, SubjectSchemas
from cxone_pipeline.resolve.arrow_schema import canonical_arrow_schema

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
    canonical = _apache_schema(subject.canonical)
    checks = []
    previous: avro.schema.Schema | None = None
    for version in subject.versions:
        writer = _apache_schema(version)
        problems = tuple(_problems(canonical, writer, version.version))
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
        return avro.schema.parse(json.dumps(effective_document(version.document)))
    except (avro.errors.AvroException, ValueError) as exc:
        raise SchemaError(f"{version.path}: Apache Avro cannot parse it: {exc}") from exc


def _problems(
    canonical: avro.schema.RecordSchema, writer: avro.schema.RecordSchema, version: str
) -> list[str]:
    """Field by field, why the canonical reader cannot resolve `writer` (empty when it can)."""
    problems = []
    if not schema_name_equals(canonical, writer):
        problems.append(
            f"record {writer.fullname} is neither named {canonical.fullname} nor among its aliases"
        )
    checker = ReaderWriterCompatibilityChecker()
    for field in canonical.fields:
        source = lookup_writer_field(writer, field)
        if source is None:
            if not field.has_default:
                names = ", ".join([field.name, *field.props.get("aliases", [])])
                problems.append(
                    f"canonical field {field.name!r}: {version} has no field named {names} and "
                    "the canonical field has no default: add an alias naming the writer's "
                    "field, or a default"
                )
            continue
        result = checker.get_compatibility(field.type, source.type)
        if not _compatible(result):
            problems.append(
                f"canonical field {field.name!r} cannot read {version} field {source.name!r}: "
                + "; ".join(sorted(result.messages))
            )
    return problems
