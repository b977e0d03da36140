"""Which writer version a payload is, and whether it is valid for it (one record at a time)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cxone_pipeline.registry.extensions import ExtensionError
from cxone_pipeline.registry.schemas import SchemaVersion, SubjectSchemas
from cxone_pipeline.registry.validation import IdentityCache, WriterChecks

# Envelope-level fields carried inside payloads: never unmapped. A writer schema that declares
# one reads it as any other field.
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


def prepare(payload: Mapping[str, Any], version: SchemaVersion) -> Mapping[str, Any]:
    """The payload as `version`'s extensions read it (ISO-8601 times, lenient numbers);
    InvalidRecord naming the field when a value does not convert."""
    if version.convert is None:
        return payload
    try:
        return version.convert(payload, "")
    except ExtensionError as exc:
        raise InvalidRecord(f"{version.subject} {version.version}: {exc}") from None


def writer_checks(version: SchemaVersion) -> WriterChecks:
    """The compiled validity checks of a writer version."""
    return _CHECKS.get((version,), lambda: WriterChecks(version.schema))


_CHECKS: IdentityCache[WriterChecks] = IdentityCache()


def payload_problem(payload: Mapping[str, Any], version: SchemaVersion) -> str | None:
    """Why `payload` is not valid for `version`, or None when it is.

    Valid means: every field without a default is present with a valid value and every
    present field is valid; fields with defaults may be absent (CXone omits nulls).
    """
    problem = _problem(payload, version)
    return None if problem is None else f"{version.subject} {version.version}: {problem}"


def _problem(payload: Mapping[str, Any], version: SchemaVersion) -> str | None:
    if _valid(payload, version):
        return None
    missing = [f["name"] for f in version.fields if "default" not in f and f["name"] not in payload]
    if missing:
        return f"missing required field(s) {', '.join(missing)}"
    try:
        prepared = prepare(payload, version)
    except InvalidRecord as exc:
        return str(exc).removeprefix(f"{version.subject} {version.version}: ")
    return writer_checks(version).problem(prepared, version.schema, "")


def _valid(payload: Mapping[str, Any], version: SchemaVersion) -> bool:
    """payload_problem(...) is None, without composing the reason."""
    if any("default" not in f and f["name"] not in payload for f in version.fields):
        return False
    try:
        prepared = prepare(payload, version)
    except InvalidRecord:
        return False
    return writer_checks(version).root(prepared)


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
        if _valid(payload, version):
            return version
    versions = ", ".join(v.version for v in subject.versions)
    message = f"{subject.name}: payload matches none of {versions}"
    nearest = _nearest(subject.versions, payload)
    if nearest is None:
        keys = ", ".join(sorted(payload))[:200]
        raise NoMatchingSchema(f"{message} and none declares any of its keys ({keys})")
    version, declared_keys = nearest
    raise NoMatchingSchema(
        f"{message}; nearest is {version.version}, declaring {len(declared_keys)} of its "
        f"{len(payload)} keys, but {_problem(payload, version)}"
    )


def _nearest(
    versions: Iterable[SchemaVersion], keys: Iterable[str]
) -> tuple[SchemaVersion, list[str]] | None:
    """The version declaring most of `keys` (the newest of equals) and those it declares;
    None when none declares any."""
    wanted = set(keys)
    best: tuple[SchemaVersion, list[str]] | None = None
    for version in reversed(list(versions)):
        declared = sorted(wanted.intersection(f["name"] for f in version.fields))
        if declared and (best is None or len(declared) > len(best[1])):
            best = (version, declared)
    return best


@dataclass(frozen=True)
class NearMiss:
    """Rows resolved as one version whose unmapped keys a newer version declares: which one,
    and why a sample payload of those rows is not valid for it."""

    matched: str
    unmapped: tuple[str, ...]
    rows: int
    version: str
    declared: tuple[str, ...]
    problem: str | None  # None: the sample is valid for `version` (its declared version won)

    def describe(self) -> str:
        declared = ", ".join(self.declared)
        head = f"{self.rows} row(s) read as {self.matched}: {self.version} declares {declared}"
        if self.problem is None:
            return f"{head} and the payload is valid for it, but declared {self.matched}"
        return f"{head} but failed: {self.problem}"


def near_miss(
    subject: SubjectSchemas,
    matched: str,
    unmapped: Iterable[str],
    payload: Mapping[str, Any],
    rows: int,
) -> NearMiss | None:
    """Why rows read as `matched` with these unmapped keys were not read as the newer version
    that declares most of them; None when no newer version declares any."""
    names = [v.version for v in subject.versions]
    if matched not in names:
        return None
    unmapped = tuple(sorted(unmapped))
    nearest = _nearest(subject.versions[names.index(matched) + 1 :], unmapped)
    if nearest is None:
        return None
    version, declared = nearest
    problem = _problem(payload, version)
    return NearMiss(matched, unmapped, rows, version.version, tuple(declared), problem)
