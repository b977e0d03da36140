"""Which writer version a payload is, and whether it is valid for it (one record at a time)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastavro.validation import ValidationError, validate

from cxone_pipeline.registry.extensions import ExtensionError
from cxone_pipeline.registry.schemas import SchemaVersion, SubjectSchemas

# Envelope-level fields carried inside payloads: never unmapped, never given to Avro.
CONTROL_FIELDS = frozenset({"_schema_version", "eventId", "event_id"})


class PayloadError(Exception):
    """A payload that cannot be resolved; `code` is its quarantine code."""

    code = "invalid_record"


class UnknownSchemaVersion(PayloadError):
    code = "unknown_schema_version"

    def __init__(self, message: str, declared: object) -> None:
        super().__init__(message)
        self.declared = declared


class NoMatchingSchema(PayloadError):
    code = "no_matching_schema"


class InvalidRecord(PayloadError):
    code = "invalid_record"


def declared_version(payload: Mapping[str, Any], envelope_version: object = None) -> object:
    """The payload's `_schema_version`, else the envelope's (the X-Schema-Version header)."""
    declared = payload.get("_schema_version")
    if declared is None or declared == "":
        declared = envelope_version
    return None if declared == "" else declared


def find_version(subject: SubjectSchemas, declared: object) -> SchemaVersion | None:
    """The registry version a declared value names; "v2", "2" and 2 all name `v2.avsc`."""
    if isinstance(declared, bool) or not isinstance(declared, (str, int)):
        return None
    text = str(declared).strip()
    for name in (text, text.lower(), f"v{text}"):
        found = subject.version(name)
        if found is not None:
            return found
    return None


def avro_datum(payload: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k not in CONTROL_FIELDS}


def prepare(payload: Mapping[str, Any], version: SchemaVersion) -> Mapping[str, Any]:
    """The payload as `version`'s extensions read it (ISO-8601 times, lenient numbers);
    InvalidRecord naming the field when a value does not convert."""
    if version.convert is None:
        return payload
    try:
        return version.convert(payload, "")
    except ExtensionError as exc:
        raise InvalidRecord(f"{version.subject} {version.version}: {exc}") from None


def payload_problem(payload: Mapping[str, Any], version: SchemaVersion) -> str | None:
    """Why `payload` is not valid for `version`, or None when it is.

    Valid means: every field without a default is present with a valid value and every
    present field is valid; fields with defaults may be absent (CXone omits nulls).
    """
    missing = [f["name"] for f in version.fields if "default" not in f and f["name"] not in payload]
    if missing:
        return (
            f"{version.subject} {version.version}: missing required field(s) {', '.join(missing)}"
        )
    try:
        datum = avro_datum(prepare(payload, version))
    except InvalidRecord as exc:
        return str(exc)
    # fastavro builds an error object for every union branch a value does not take when it
    # raises errors (17x slower on CXone's nullable fields): ask yes or no first.
    if validate(datum, version.schema, raise_errors=False):
        return None
    try:
        validate(datum, version.schema, raise_errors=True)
    except ValidationError as exc:
        errors = "; ".join(str(error) for error in exc.errors)
        return f"{version.subject} {version.version}: {errors}"
    return None


def detect_version(
    subject: SubjectSchemas, payload: Mapping[str, Any], envelope_version: object = None
) -> SchemaVersion:
    """The payload's writer version, checked valid; raises a PayloadError naming the reason."""
    declared = declared_version(payload, envelope_version)
    if declared is not None:
        version = find_version(subject, declared)
        if version is None:
            known = ", ".join(v.version for v in subject.versions)
            raise UnknownSchemaVersion(
                f"{subject.name}: schema version {declared!r} is not in the registry ({known})",
                declared,
            )
        problem = payload_problem(payload, version)
        if problem is not None:
            raise InvalidRecord(problem)
        return version
    for version in reversed(subject.versions):
        if payload_problem(payload, version) is None:
            return version
    versions = ", ".join(v.version for v in subject.versions)
    keys = ", ".join(sorted(payload))[:200]
    raise NoMatchingSchema(f"{subject.name}: payload matches none of {versions} (keys: {keys})")
