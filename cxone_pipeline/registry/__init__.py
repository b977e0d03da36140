"""Schema registry: the subjects and writer/canonical schema versions under `schemas/`."""

from __future__ import annotations

from pathlib import Path

from cxone_pipeline.lake.layout import is_valid_subject
from cxone_pipeline.registry.detection import (
    CONTROL_FIELDS,
    InvalidRecord,
    NearMiss,
    NoMatchingSchema,
    PayloadError,
    UnknownSchemaVersion,
    declared_version,
    detect_version,
    find_version,
    near_miss,
    payload_problem,
)
from cxone_pipeline.registry.schemas import SchemaError, SchemaVersion, SubjectSchemas, load_subject

__all__ = [
    "CONTROL_FIELDS",
    "InvalidRecord",
    "NearMiss",
    "NoMatchingSchema",
    "PayloadError",
    "SchemaError",
    "SchemaVersion",
    "SubjectSchemas",
    "UnknownSchemaVersion",
    "declared_version",
    "detect_version",
    "discover_subjects",
    "find_version",
    "load_registry",
    "load_subject",
    "near_miss",
    "payload_problem",
]


def discover_subjects(schemas_dir: Path) -> list[str]:
    """Subject names: folders of `schemas_dir` with a valid name and a `canonical.avsc`."""
    if not schemas_dir.is_dir():
        return []
    return sorted(
        entry.name
        for entry in schemas_dir.iterdir()
        if entry.is_dir() and is_valid_subject(entry.name) and (entry / "canonical.avsc").is_file()
    )


def load_registry(schemas_dir: Path) -> dict[str, SubjectSchemas]:
    return {
        subject: load_subject(schemas_dir, subject) for subject in discover_subjects(schemas_dir)
    }
