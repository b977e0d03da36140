"""What drifted in a subject's hours, read back from the lake: quarantined records, curated rows
with `_unmapped_fields` (and their staged envelopes), and the values curated columns hold."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from cxone_pipeline.lake.envelope import ReservedEventId
from cxone_pipeline.lake.envelope import event_id as derive_event_id
from cxone_pipeline.lake.layout import (
    CURATED,
    STAGING,
    hour_floor,
    hour_prefix,
    parse_staging_key,
    quarantine_key,
)
from cxone_pipeline.lake.store import ObjectNotFound, Store
from cxone_pipeline.registry import CONTROL_FIELDS, SubjectSchemas, declared_version
from cxone_pipeline.registry.inference import VALUE_SAMPLE, value_text
from cxone_pipeline.resolve import read_parquet, read_rejects
from cxone_pipeline.resolve.arrow_schema import EVENT_ID, SCHEMA_VERSION, UNMAPPED_FIELDS
from cxone_pipeline.resolve.envelopes import MalformedEnvelope, parse_envelope, staged_lines

QUARANTINED = "quarantined"
UNMAPPED = "unmapped"
MAX_HOURS = 31 * 24
DEFAULT_LIMIT = 20_000


@dataclass(frozen=True)
class Drifted:
    """One record no schema fully declares: quarantined, or curated with unmapped fields."""

    source: str  # QUARANTINED or UNMAPPED
    hour: datetime
    event_id: str
    envelope: dict[str, Any] | None  # as staged; None when it could not be found
    fields: dict[str, Any]  # what to type: the payload, or only its unmapped fields
    code: str  # the quarantine code, or UNMAPPED
    message: str
    base: str | None = None  # the version an unmapped row resolved with
    declared: str | None = None  # the version the record declares, if it does


@dataclass
class DriftSample:
    subject: str
    hours: tuple[datetime, ...]
    records: list[Drifted] = field(default_factory=list)
    # Distinct values of each curated column (as text), evidence for rename suggestions.
    curated_values: dict[str, set[str]] = field(default_factory=dict)
    truncated: bool = False

    def count(self, source: str) -> int:
        return sum(1 for r in self.records if r.source == source)


def last_hours(now: datetime, count: int) -> tuple[datetime, ...]:
    """The `count` hours up to and including the one `now` is in, oldest first."""
    if not 1 <= count <= MAX_HOURS:
        raise ValueError(f"between 1 and {MAX_HOURS} hours, not {count}")
    open_hour = hour_floor(now)
    return tuple(open_hour - timedelta(hours=n) for n in range(count - 1, -1, -1))


def read_drift(
    store: Store, schemas: SubjectSchemas, hours: Iterable[datetime], limit: int = DEFAULT_LIMIT
) -> DriftSample:
    """Quarantined records and unmapped rows of `hours`, at most `limit` of them (the sample
    says when it stopped short)."""
    sample = DriftSample(schemas.name, tuple(sorted(set(map(hour_floor, hours)))))
    for hour in sample.hours:
        for record in _quarantined(store, schemas.name, hour):
            if len(sample.records) >= limit:
                sample.truncated = True
                return sample
            sample.records.append(record)
        unmapped = _unmapped_rows(store, schemas, hour, sample.curated_values)
        if len(sample.records) + len(unmapped) > limit:
            unmapped = unmapped[: limit - len(sample.records)]
            sample.truncated = True
        sample.records += _with_envelopes(store, schemas.name, hour, unmapped)
        if sample.truncated:
            return sample
    return sample


def envelope_event_id(envelope: dict[str, Any]) -> str:
    """The id the engine gives an envelope: its `event_id`, else one derived from the payload."""
    event_id = envelope.get("event_id")
    if isinstance(event_id, str) and event_id:
        return event_id
    payload = envelope.get("payload")
    try:
        return derive_event_id(payload) if isinstance(payload, dict) else ""
    except ReservedEventId:
        return ""


def _declared(payload: dict[str, Any], envelope: dict[str, Any]) -> str | None:
    declared = declared_version(payload, envelope.get("schema_version"))
    return None if declared is None else str(declared)


def _quarantined(store: Store, subject: str, hour: datetime) -> list[Drifted]:
    try:
        data = store.get(quarantine_key(subject, hour))
    except ObjectNotFound:
        return []
    records = []
    for line in read_rejects(data):
        error = line.pop("error", None) or {}
        payload = line.get("payload")
        payload = payload if isinstance(payload, dict) else {}
        records.append(
            Drifted(
                source=QUARANTINED,
                hour=hour,
                event_id=envelope_event_id(line),
                envelope=line,
                fields={k: v for k, v in payload.items() if k not in CONTROL_FIELDS},
                code=str(error.get("code", "")),
                message=str(error.get("message", "")),
                declared=_declared(payload, line),
            )
        )
    return records


def _unmapped_rows(
    store: Store, schemas: SubjectSchemas, hour: datetime, values: dict[str, set[str]]
) -> list[Drifted]:
    """Curated rows of the hour with unmapped fields (their envelopes still to be found); the
    curated columns' values are added to `values` on the way."""
    columns = [f["name"] for f in schemas.canonical.fields]
    rows = []
    for info in store.list(hour_prefix(CURATED, schemas.name, hour)):
        if not info.key.endswith(".parquet"):
            continue
        table = read_parquet(store.get(info.key))
        for name in columns:
            if name in table.column_names:
                _add_values(values.setdefault(name, set()), table.column(name))
        if UNMAPPED_FIELDS not in table.column_names:
            continue
        drifted = table.filter(pc.is_valid(table.column(UNMAPPED_FIELDS)))
        for event_id, version, unmapped in zip(
            drifted.column(EVENT_ID).to_pylist(),
            drifted.column(SCHEMA_VERSION).to_pylist(),
            drifted.column(UNMAPPED_FIELDS).to_pylist(),
            strict=True,
        ):
            fields = json.loads(unmapped)
            rows.append(
                Drifted(
                    source=UNMAPPED,
                    hour=hour,
                    event_id=event_id,
                    envelope=None,
                    fields=fields if isinstance(fields, dict) else {},
                    code=UNMAPPED,
                    message=f"resolved with {version}; unmapped: {', '.join(sorted(fields))}",
                    base=version,
                )
            )
    return rows


def _add_values(values: set[str], column: pa.ChunkedArray) -> None:
    if len(values) >= VALUE_SAMPLE or not (
        pa.types.is_integer(column.type) or pa.types.is_string(column.type)
    ):
        return
    for value in pc.unique(column).to_pylist():
        text = value_text(value)
        if text is not None:
            values.add(text)
            if len(values) >= VALUE_SAMPLE:
                return


def _with_envelopes(
    store: Store, subject: str, hour: datetime, rows: list[Drifted]
) -> list[Drifted]:
    """The rows with their staged envelopes (the earliest copy of each event id) and the
    version each declares, read from the hour's staging objects."""
    wanted = {row.event_id for row in rows}
    found: dict[str, dict[str, Any]] = {}
    if wanted:
        for info in store.list(hour_prefix(STAGING, subject, hour)):
            if parse_staging_key(info.key) is None:
                continue
            for line in staged_lines(store.get(info.key)):
                try:
                    staged = parse_envelope(0, line)
                except MalformedEnvelope:
                    continue
                if staged.event_id in wanted and (
                    staged.event_id not in found
                    or staged.received_at < found[staged.event_id]["received_at"]
                ):
                    found[staged.event_id] = staged.envelope
    result = []
    for row in rows:
        envelope = found.get(row.event_id)
        declared = None if envelope is None else _declared(envelope["payload"], envelope)
        result.append(replace(row, envelope=envelope, declared=declared))
    return result
