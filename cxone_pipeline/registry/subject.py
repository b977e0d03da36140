"""A subject's identity rules, from `schemas/<S>/subject.json`: event id, event time, keep policy.

Fields are named by their canonical name; every writer spelling (the name and its aliases)
is looked up in payloads. A subject without the file keeps the default rules: the event id is
the payload's `eventId`/`event_id`, else the Idempotency-Key, else a content hash; the event's
hour is the hour it was received; the first copy received wins.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from cxone_pipeline.lake.envelope import event_id as default_event_id
from cxone_pipeline.registry.extensions import parse_iso8601
from cxone_pipeline.settings import api_version, api_version_key

RULES_FILE = "subject.json"
KEEP_FIRST = "first"
KEEP_LATEST = "latest"
ID_SEPARATOR = ":"
MAX_HORIZON_HOURS = 24
_TIMESTAMP_UNITS = {"timestamp-millis": 1000, "timestamp-micros": 1}
_KEYS = ("doc", "event_id", "event_time", "keep", "keep_by", "dedupe_horizon_hours", "pull")
_PULL_KEYS = ("endpoint", "records", "writer_by_api_version", "sync_by")
_ENDPOINT_RE = re.compile(r"[a-z][A-Za-z0-9-]*(?:/[a-z][A-Za-z0-9-]*)*")
_RECORDS_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


class RulesError(ValueError):
    """subject.json is malformed; the message names the file and the setting."""


@dataclass(frozen=True)
class Spelling:
    """A canonical field and every payload key that resolves to it."""

    name: str
    keys: tuple[str, ...]

    def value(self, payload: dict[str, Any]) -> Any:
        for key in self.keys:
            if key in payload:
                return payload[key]
        return None


@dataclass(frozen=True)
class PullSettings:
    """Where CXone's Reporting API serves the subject (`pull` in subject.json)."""

    endpoint: str  # under /incontactapi/services/vNN.0/, e.g. contacts/completed
    records: str  # the response's list of records, e.g. completedContacts
    writers: tuple[tuple[str, str], ...]  # (first API version, writer version), ascending
    sync_by: Spelling | None = None  # polled with updatedSince, ordered by this field

    def writer_for(self, version: str) -> str | None:
        """The writer version records of API `version` (NN.N) follow: the one listed for the
        greatest API version at or below it; None below the first."""
        chosen = None
        for first, writer in self.writers:
            if api_version_key(first) <= api_version_key(version):
                chosen = writer
        return chosen


@dataclass(frozen=True)
class SubjectRules:
    event_id_fields: tuple[Spelling, ...] = ()
    event_time_field: Spelling | None = None
    event_time_unit: int = 1000  # microseconds per unit of an integer event time
    keep: Literal["first", "latest"] = KEEP_FIRST
    keep_by: str | None = None
    dedupe_horizon_hours: int = 1
    pull: PullSettings | None = None

    @property
    def partitioned_by_event_time(self) -> bool:
        return self.event_time_field is not None

    @property
    def horizon_hours(self) -> int:
        """Neighbour hours whose copies of an event id count as the same event. Subjects
        partitioned by event time stage every copy in one hour, so they need none."""
        return 0 if self.partitioned_by_event_time else self.dedupe_horizon_hours

    def event_id(self, payload: dict[str, Any], idempotency_key: str | None = None) -> str:
        """The declared id fields' values as text, joined by ':'; the default rule when any is
        missing or not a string or integer."""
        parts = [id_text(spelling.value(payload)) for spelling in self.event_id_fields]
        if parts and all(part is not None for part in parts):
            return ID_SEPARATOR.join(part for part in parts if part is not None)
        return default_event_id(payload, idempotency_key)

    def event_time(self, payload: dict[str, Any]) -> datetime | None:
        """The event time as an aware UTC datetime, or None when absent or unreadable."""
        if self.event_time_field is None:
            return None
        value = self.event_time_field.value(payload)
        if isinstance(value, str):
            micros = parse_iso8601(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            micros = value * self.event_time_unit
        else:
            return None
        if micros is None:
            return None
        try:
            return datetime.fromtimestamp(micros / 1_000_000, timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None


def id_text(value: Any) -> str | None:
    """An id value as text, so 7000000001 and "7000000001" are the same id."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return str(int(value))
    if isinstance(value, str) and 0 < len(value.strip()) <= 256:
        return value.strip()
    return None


def declares_pull(folder: Path) -> bool:
    """Whether `folder/subject.json` has a `pull` setting, without validating it (a broken
    file is reported by `schemas check` and by the runs that load the subject)."""
    try:
        document = json.loads((folder / RULES_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(document, dict) and document.get("pull") is not None


def load_rules(
    folder: Path, canonical: dict[str, Any], writers: Collection[str] = ()
) -> SubjectRules:
    """The rules of `folder/subject.json` checked against the parsed canonical schema and the
    subject's writer versions; the default rules when the file is absent."""
    path = folder / RULES_FILE
    if not path.is_file():
        return SubjectRules()
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RulesError(f"{path}: not readable JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise RulesError(f"{path}: must be a JSON object")
    return _rules(path, document, {f["name"]: f for f in canonical["fields"]}, writers)


def _unknown_keys(document: dict[str, Any], known: tuple[str, ...], prefix: str = "") -> None:
    for key in document:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"
            raise RulesError(f"{prefix}{key}: unknown setting{hint}")


def _rules(
    path: Path,
    document: dict[str, Any],
    fields: dict[str, dict[str, Any]],
    writers: Collection[str],
) -> SubjectRules:
    def fail(setting: str, message: str) -> RulesError:
        return RulesError(f"{path}: {setting}: {message}")

    _unknown_keys(document, _KEYS, f"{path}: ")

    def spelling(setting: str, name: Any) -> Spelling:
        if not isinstance(name, str) or name not in fields:
            close = difflib.get_close_matches(str(name), fields, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise fail(setting, f"{name!r} is not a field of canonical.avsc{hint}")
        field = fields[name]
        return Spelling(name, (name, *field.get("aliases", ())))

    raw_ids = document.get("event_id", [])
    if isinstance(raw_ids, str):
        raw_ids = [raw_ids]
    if not isinstance(raw_ids, list):
        raise fail("event_id", "must be a canonical field name or a list of them")
    ids = tuple(spelling("event_id", name) for name in raw_ids)
    for item in ids:
        if fields[item.name].get("default") is not None:
            raise fail(
                "event_id",
                f"{item.name!r} has a default: every payload without it would get the same "
                "id; an id field takes no default",
            )
    for item in ids:
        if _base_type(fields[item.name]["type"]) not in ("string", "int", "long"):
            raise fail("event_id", f"{item.name!r} must be a string, int or long field")

    time_field, unit = None, 1000
    if document.get("event_time") is not None:
        time_field = spelling("event_time", document["event_time"])
        logical = _logical_type(fields[time_field.name]["type"])
        if logical not in _TIMESTAMP_UNITS:
            raise fail(
                "event_time",
                f"{time_field.name!r} must be a timestamp-millis or timestamp-micros field",
            )
        unit = _TIMESTAMP_UNITS[logical]

    keep = document.get("keep", KEEP_FIRST)
    if keep not in (KEEP_FIRST, KEEP_LATEST):
        raise fail("keep", f"{keep!r}: use {KEEP_FIRST!r} (earliest received) or {KEEP_LATEST!r}")
    keep_by = document.get("keep_by")
    if keep == KEEP_LATEST:
        if keep_by is None:
            raise fail(
                "keep_by", "keep 'latest' needs keep_by: the field whose greatest value wins"
            )
        keep_by = spelling("keep_by", keep_by).name
        if _base_type(fields[keep_by]["type"]) not in ("int", "long", "float", "double", "string"):
            raise fail("keep_by", f"{keep_by!r} must be a number, timestamp or string field")
    elif keep_by is not None:
        raise fail("keep_by", "only used with keep 'latest'")

    horizon = document.get("dedupe_horizon_hours", 1)
    if isinstance(horizon, bool) or not isinstance(horizon, int):
        raise fail("dedupe_horizon_hours", f"{horizon!r} is not a whole number of hours")
    if not 0 <= horizon <= MAX_HORIZON_HOURS:
        raise fail("dedupe_horizon_hours", f"{horizon} must be between 0 and {MAX_HORIZON_HOURS}")
    pull = None
    if document.get("pull") is not None:
        pull = _pull(document["pull"], fail, spelling, fields, writers)
    return SubjectRules(ids, time_field, unit, keep, keep_by, horizon, pull)


def _pull(
    document: Any,
    fail: Callable[[str, str], RulesError],
    spelling: Callable[[str, Any], Spelling],
    fields: dict[str, dict[str, Any]],
    writers: Collection[str],
) -> PullSettings:
    if not isinstance(document, dict):
        raise fail("pull", "must be an object with endpoint, records and writer_by_api_version")
    try:
        _unknown_keys(document, _PULL_KEYS, "pull.")
    except RulesError as exc:
        raise fail("pull", str(exc)) from None
    endpoint, records = document.get("endpoint"), document.get("records")
    if not isinstance(endpoint, str) or not _ENDPOINT_RE.fullmatch(endpoint):
        raise fail(
            "pull.endpoint",
            f"{endpoint!r} must be a Reporting API path under /incontactapi/services/vNN.0/, "
            "e.g. contacts/completed",
        )
    if not isinstance(records, str) or not _RECORDS_RE.fullmatch(records):
        raise fail(
            "pull.records",
            f"{records!r} must name the response's list of records, e.g. completedContacts",
        )
    table = document.get("writer_by_api_version")
    if not isinstance(table, dict) or not table:
        raise fail(
            "pull.writer_by_api_version",
            'must map the first API version of each writer to it, e.g. {"21.0": "v1"}',
        )
    pairs = []
    for first, writer in table.items():
        version = api_version(first)
        if version is None:
            raise fail("pull.writer_by_api_version", f"{first!r} is not an API version like 21.0")
        if writer not in writers:
            known = ", ".join(writers) or "none"
            raise fail(
                "pull.writer_by_api_version",
                f"{first}: {writer!r} is not a writer version of the subject ({known})",
            )
        pairs.append((version, writer))
    pairs.sort(key=lambda pair: api_version_key(pair[0]))
    sync_by = None
    if document.get("sync_by") is not None:
        sync_by = spelling("pull.sync_by", document["sync_by"])
        if _logical_type(fields[sync_by.name]["type"]) not in _TIMESTAMP_UNITS:
            raise fail("pull.sync_by", f"{sync_by.name!r} must be a timestamp field")
    return PullSettings(endpoint, records, tuple(pairs), sync_by)


def _non_null(avro_type: Any) -> Any:
    if isinstance(avro_type, list):
        branches = [b for b in avro_type if b != "null"]
        return branches[0] if len(branches) == 1 else None
    return avro_type


def _base_type(avro_type: Any) -> str | None:
    inner = _non_null(avro_type)
    if isinstance(inner, dict):
        inner = inner.get("type")
    return inner if isinstance(inner, str) else None


def _logical_type(avro_type: Any) -> str | None:
    inner = _non_null(avro_type)
    return inner.get("logicalType") if isinstance(inner, dict) else None
