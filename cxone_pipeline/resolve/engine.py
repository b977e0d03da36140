"""Staged envelopes of any schema version to one canonical, typed Arrow table plus rejects."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from cxone_pipeline.registry import (
    CONTROL_FIELDS,
    PayloadError,
    SchemaVersion,
    SubjectSchemas,
    UnknownSchemaVersion,
    detect_version,
)
from cxone_pipeline.resolve.arrow_schema import (
    EVENT_ID,
    RECEIVED_AT,
    SCHEMA_VERSION,
    UNMAPPED_FIELDS,
    canonical_arrow_schema,
)
from cxone_pipeline.resolve.envelopes import (
    NOT_AN_OBJECT,
    Envelope,
    parse_timestamps,
    read_envelopes,
)
from cxone_pipeline.resolve.records import resolve_record
from cxone_pipeline.resolve.rejects import Reject


@dataclass
class TransformResult:
    table: pa.Table
    rejects: list[Reject]
    rows_per_version: dict[str, int]
    rejects_per_code: dict[str, int]
    duplicates_dropped: int
    unmapped_fields: dict[str, int]
    unmapped_by_version: dict[str, dict[str, int]]
    unknown_versions: dict[str, int]


@dataclass
class _Outcome:
    """What resolving a call's envelopes produced, accumulated before the table is assembled."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[tuple[int, Reject]] = field(default_factory=list)
    unmapped_by_version: dict[str, Counter[str]] = field(default_factory=dict)
    unknown_versions: Counter[str] = field(default_factory=Counter)

    def reject(self, staged: Envelope, code: str, message: str) -> None:
        self.rejects.append((staged.seq, Reject(staged.envelope, code, message)))

    def unmapped_json(self, staged: Envelope, writer: SchemaVersion) -> str | None:
        """The payload keys `writer` does not declare, with their values, as JSON text."""
        declared = declared_names(writer)
        extra = sorted(key for key in staged.payload if key not in declared)
        if not extra:
            return None
        self.unmapped_by_version.setdefault(writer.version, Counter()).update(extra)
        return json.dumps(
            {key: staged.payload[key] for key in extra}, ensure_ascii=False, separators=(",", ":")
        )


def declared_names(writer: SchemaVersion) -> frozenset[str]:
    """Payload keys that are not unmapped for `writer`: its fields and the control fields."""
    return frozenset(f["name"] for f in writer.fields) | CONTROL_FIELDS


def transform(staged_objects: Iterable[bytes], subject: SubjectSchemas) -> TransformResult:
    """Resolve staged objects' envelopes into the subject's canonical table and rejects.

    Within the call, one row per event id (earliest received_at, ties: first seen), sorted by
    received_at then event id; every line not in the table is among the rejects or duplicates.
    """
    envelopes, line_rejects = read_envelopes(staged_objects)
    outcome = _Outcome(rejects=line_rejects)
    kept, duplicates = _dedupe(envelopes, outcome)
    for staged, received_us in kept:
        _resolve_one(staged, received_us, subject, outcome)
    return _result(subject, outcome, duplicates)


def _dedupe(envelopes: list[Envelope], outcome: _Outcome) -> tuple[list[tuple[Envelope, int]], int]:
    """The first envelope per event id by (received_at, input order), with parsed received_at."""
    received = parse_timestamps([e.received_at for e in envelopes])
    timed = []
    for staged, received_us in zip(envelopes, received, strict=True):
        if received_us is None:
            message = f"received_at {staged.received_at[:64]!r} is not an ISO-8601 time with zone"
            outcome.reject(staged, NOT_AN_OBJECT, message)
        else:
            timed.append((received_us, staged.seq, staged))
    timed.sort(key=lambda item: (item[0], item[1]))
    seen: set[str] = set()
    kept = []
    for received_us, _, staged in timed:
        if staged.event_id not in seen:
            seen.add(staged.event_id)
            kept.append((staged, received_us))
    return kept, len(timed) - len(kept)


def _resolve_one(
    staged: Envelope, received_us: int, subject: SubjectSchemas, outcome: _Outcome
) -> None:
    try:
        writer = detect_version(subject, staged.payload, staged.envelope.get("schema_version"))
        row = resolve_record(staged.payload, writer, subject.canonical)
    except UnknownSchemaVersion as exc:
        outcome.unknown_versions[str(exc.declared)] += 1
        outcome.reject(staged, exc.code, str(exc))
        return
    except PayloadError as exc:
        outcome.reject(staged, exc.code, str(exc))
        return
    row[EVENT_ID] = staged.event_id
    row[SCHEMA_VERSION] = writer.version
    row[RECEIVED_AT] = received_us
    row[UNMAPPED_FIELDS] = outcome.unmapped_json(staged, writer)
    outcome.rows.append(row)


def _result(subject: SubjectSchemas, outcome: _Outcome, duplicates: int) -> TransformResult:
    schema = canonical_arrow_schema(subject)
    table = pa.Table.from_pylist(outcome.rows, schema=schema).sort_by(
        [(RECEIVED_AT, "ascending"), (EVENT_ID, "ascending")]
    )
    rejects = [reject for _, reject in sorted(outcome.rejects, key=lambda item: item[0])]
    versions = table.column(SCHEMA_VERSION).to_pylist()
    unmapped = Counter[str]()
    for counts in outcome.unmapped_by_version.values():
        unmapped.update(counts)
    return TransformResult(
        table=table,
        rejects=rejects,
        rows_per_version=dict(sorted(Counter(versions).items())),
        rejects_per_code=dict(sorted(Counter(r.code for r in rejects).items())),
        duplicates_dropped=duplicates,
        unmapped_fields=dict(sorted(unmapped.items())),
        unmapped_by_version={
            version: dict(sorted(counts.items()))
            for version, counts in sorted(outcome.unmapped_by_version.items())
        },
        unknown_versions=dict(sorted(outcome.unknown_versions.items())),
    )
