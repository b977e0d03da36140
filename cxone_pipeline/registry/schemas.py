"""Loading one subject's schema files: parsing, natural version order and fingerprints."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import SchemaParseException, UnknownType, to_parsing_canonical_form

from cxone_pipeline.registry.extensions import (
    Convert,
    effective_document,
    payload_converter,
    uses_extensions,
)
from cxone_pipeline.registry.subject import RULES_FILE, RulesError, SubjectRules, load_rules

CANONICAL_STEM = "canonical"
SCHEMA_SUFFIX = ".avsc"


class SchemaError(Exception):
    """A schema file is missing, unreadable or not a valid Avro record schema; names the file."""


@dataclass(frozen=True)
class SchemaVersion:
    """One schema file. `schema` is what Avro resolves with: for a writer using the project's
    extensions (`registry.extensions`), the effective schema, and `convert` prepares payloads."""

    subject: str
    version: str
    path: Path
    schema: dict
    fingerprint: str
    document: dict = field(repr=False, compare=False, default_factory=dict)
    convert: Convert | None = field(repr=False, compare=False, default=None)

    @property
    def fields(self) -> list[dict[str, Any]]:
        return self.schema["fields"]


@dataclass(frozen=True)
class SubjectSchemas:
    name: str
    canonical: SchemaVersion
    versions: tuple[SchemaVersion, ...]
    fingerprint: str
    rules: SubjectRules = field(default_factory=SubjectRules)

    def version(self, name: str) -> SchemaVersion | None:
        return next((v for v in self.versions if v.version == name), None)


def natural_key(stem: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key under which v2 < v10: digit runs compare as numbers."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", stem) if part
    )


def load_subject(schemas_dir: Path, subject: str) -> SubjectSchemas:
    folder = schemas_dir / subject
    canonical_path = folder / f"{CANONICAL_STEM}{SCHEMA_SUFFIX}"
    if not canonical_path.is_file():
        raise SchemaError(f"{canonical_path}: no canonical schema for subject {subject!r}")
    writer_paths = sorted(
        (p for p in folder.glob(f"*{SCHEMA_SUFFIX}") if p.stem != CANONICAL_STEM),
        key=lambda p: natural_key(p.stem),
    )
    if not writer_paths:
        raise SchemaError(f"{folder}: subject {subject!r} has no writer schema (v1.avsc, …)")
    documents = {path: _read_json(path) for path in (canonical_path, *writer_paths)}
    canonical = _schema_version(subject, canonical_path, documents[canonical_path])
    if uses_extensions(documents[canonical_path]):
        raise SchemaError(
            f"{canonical_path}: iso-timestamp-* and lenient are writer extensions: declare "
            "timestamp-millis (or -micros) and plain types in the canonical schema"
        )
    versions = tuple(_schema_version(subject, p, documents[p]) for p in writer_paths)
    try:
        rules = load_rules(folder, canonical.schema, [v.version for v in versions])
    except RulesError as exc:
        raise SchemaError(str(exc)) from None
    rules_path = folder / RULES_FILE
    if rules_path.is_file():
        documents[rules_path] = _read_json(rules_path)
    return SubjectSchemas(
        name=subject,
        canonical=canonical,
        versions=versions,
        fingerprint=_registry_fingerprint(documents),
        rules=rules,
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SchemaError(f"{path}: cannot be read: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError(f"{path}: not valid JSON: {exc}") from exc


def _schema_version(subject: str, path: Path, document: Any) -> SchemaVersion:
    if not isinstance(document, dict) or document.get("type") != "record":
        raise SchemaError(f"{path}: the top-level schema must be an Avro record")
    if not isinstance(document.get("fields"), list):
        raise SchemaError(f"{path}: the record has no 'fields' list")
    try:
        convert = payload_converter(document)
        schema = parse_schema(effective_document(document))
    except UnknownType as exc:
        raise SchemaError(f"{path}: invalid Avro schema: unknown type {exc}") from exc
    except (SchemaParseException, ValueError, TypeError, KeyError) as exc:
        raise SchemaError(f"{path}: invalid Avro schema: {exc}") from exc
    canonical_form = to_parsing_canonical_form(parse_schema(document))
    return SchemaVersion(
        subject=subject,
        version=path.stem,
        path=path,
        schema=schema,
        fingerprint=hashlib.sha256(canonical_form.encode()).hexdigest(),
        document=document,
        convert=convert,
    )


def _registry_fingerprint(documents: dict[Path, Any]) -> str:
    # Over the full documents, not the Parsing Canonical Form: aliases and defaults
    # change the output, so adding one must change the subject's fingerprint.
    digest = hashlib.sha256()
    for path, document in documents.items():
        digest.update(path.name.encode())
        digest.update(b"\0")
        digest.update(json.dumps(document, sort_keys=True, separators=(",", ":")).encode())
        digest.update(b"\n")
    return digest.hexdigest()
