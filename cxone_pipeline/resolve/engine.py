"""Staged envelopes of any schema version to one canonical, typed Arrow table plus rejects.

Rows go through the columnar fast path (`columnar`) when it can prove its result equals
fastavro's; the rest, and every row that will be rejected, go one by one through fastavro.
"""

from __future__ import annotations

import json
import os
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cxone_pipeline.registry import (
    CONTROL_FIELDS,
    NearMiss,
    PayloadError,
    SchemaVersion,
    SubjectSchemas,
    UnknownSchemaVersion,
    detect_version,
    near_miss,
)
from cxone_pipeline.registry.validation import is_unicode
from cxone_pipeline.resolve import columnar
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
    MalformedEnvelope,
    line_reject,
    parse_envelope,
    parse_timestamps,
    staged_lines,
)
from cxone_pipeline.resolve.records import resolve_record
from cxone_pipeline.resolve.rejects import Reject

_RECEIVED_TYPE = pa.timestamp("us", tz="UTC")
_Parsed = columnar.ParsedObject | MalformedEnvelope


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
    # Rows read as a version whose unmapped keys a newer version declares, and why that one
    # failed (one sample payload per version and unmapped key set).
    near_misses: list[NearMiss] = field(default_factory=list)


@dataclass
class _ArrowBatch:
    """Rows Arrow parsed (from one or more staged objects) that the fast path may take."""

    seq: np.ndarray  # input position of each row
    lines: list[bytes]
    table: pa.Table
    received_us: pa.Array  # int64


@dataclass
class _Outcome:
    """Everything one call produces, accumulated before the table is assembled."""

    schema: pa.Schema
    exact: list[tuple[Envelope, int | None]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    parts: list[pa.Table] = field(default_factory=list)
    rejects: list[tuple[int, Reject]] = field(default_factory=list)
    unmapped_by_version: dict[str, Counter[str]] = field(default_factory=dict)
    unknown_versions: Counter[str] = field(default_factory=Counter)
    unmapped_samples: dict[tuple[str, tuple[str, ...]], tuple[dict[str, Any], int]] = field(
        default_factory=dict
    )

    def reject(self, staged: Envelope, code: str, message: str) -> None:
        self.rejects.append((staged.seq, Reject(staged.envelope, code, message)))

    def read_line(self, seq: int, line: bytes) -> None:
        """Queue a line for the per-record path, or reject it when it is not an envelope."""
        try:
            self.exact.append((parse_envelope(seq, line), None))
        except MalformedEnvelope as exc:
            self.rejects.append((seq, line_reject(line, str(exc))))

    def count_unmapped(self, version: str, keys: Iterable[str]) -> None:
        self.unmapped_by_version.setdefault(version, Counter()).update(keys)

    def sample_unmapped(self, version: str, keys: list[str], payload: dict[str, Any]) -> None:
        """Keep the first payload of each (version, unmapped keys) and count its rows."""
        key = (version, tuple(keys))
        sample, rows = self.unmapped_samples.get(key, (payload, 0))
        if rows or len(self.unmapped_samples) < _MAX_SAMPLES:
            self.unmapped_samples[key] = (sample, rows + 1)


_MAX_SAMPLES = 100


def _unmapped_json(payload: dict[str, Any], writer: SchemaVersion) -> tuple[str | None, list[str]]:
    """The payload keys `writer` does not declare, with their values, as JSON text; and the keys."""
    declared = {f["name"] for f in writer.fields} | CONTROL_FIELDS
    extra = sorted(key for key in payload if key not in declared)
    if not extra:
        return None, extra
    unmapped = {key: payload[key] for key in extra}
    text = json.dumps(unmapped, ensure_ascii=False, separators=(",", ":"))
    if not is_unicode(text):  # a lone surrogate: kept as the JSON escape it came as
        text = json.dumps(unmapped, separators=(",", ":"))
    return text, extra


def transform(staged_objects: Iterable[bytes], subject: SubjectSchemas) -> TransformResult:
    """Resolve staged objects' envelopes into the subject's canonical table and rejects.

    Within the call, one row per event id (earliest received_at, ties: first seen), sorted by
    received_at then event id; every input line is a row, a reject or a dropped duplicate.
    """
    outcome = _Outcome(canonical_arrow_schema(subject))
    batches = _read(staged_objects, subject, outcome)
    kept, duplicates = _dedupe(batches, outcome)
    plans = columnar.plan_versions(subject)
    while batches:  # popped: a resolved batch's lines and columns are freed at once
        _resolve_batch(batches.pop(), kept, subject, plans, outcome)
    for staged, received_us in outcome.exact:
        if received_us is not None and kept[staged.seq]:
            _resolve_record(staged, received_us, subject, outcome)
    return _result(outcome, duplicates, subject)


def _read(
    staged_objects: Iterable[bytes], subject: SubjectSchemas, outcome: _Outcome
) -> list[_ArrowBatch]:
    """Parse every staged object; Arrow-parsed rows are gathered into large batches (per-call
    costs of Arrow kernels are then paid per batch, not per object)."""
    payload_types = columnar.explicit_payload_types(subject)
    conflicts: set[bytes] = set()

    def parse(data: bytes) -> _Parsed:
        try:
            return columnar.parse_object(staged_lines(data), payload_types, conflicts)
        except MalformedEnvelope as exc:
            return exc

    objects = list(staged_objects)
    batches: list[_ArrowBatch] = []
    pending = _Pending()
    seq = 0
    with ThreadPoolExecutor(max_workers=_PARSE_THREADS) as pool:
        for number, (data, parsed) in enumerate(_in_order(pool, parse, objects)):
            if isinstance(parsed, MalformedEnvelope):
                raw = {"raw": data[:1024].decode("utf-8", errors="replace")}
                message = f"object {number}: {parsed}"
                outcome.rejects.append((seq, Reject(raw, NOT_AN_OBJECT, message)))
                seq += 1
                continue
            lines = parsed.staged.lines
            for index in parsed.leftovers:
                outcome.read_line(seq + index, lines[index])
            for run in parsed.runs:
                if not pending.accepts(run.table):
                    batches += pending.flush(outcome)
                run_lines = [lines[i] for i in run.rows]
                pending.add(run.table, run.rows + seq, run_lines, parsed.nulls[:, run.rows])
            seq += len(lines)
    return batches + pending.flush(outcome)


_PARSE_THREADS = min(8, os.cpu_count() or 1)


def _in_order(
    pool: ThreadPoolExecutor, parse: Callable[[bytes], _Parsed], objects: list[bytes]
) -> Iterator[tuple[bytes, _Parsed]]:
    """(object, parse result) in input order, with at most two parses per thread in flight,
    so parsed objects wait in memory only briefly."""
    window: deque[tuple[bytes, Future[_Parsed]]] = deque()
    for data in objects:
        window.append((data, pool.submit(parse, data)))
        if len(window) > 2 * _PARSE_THREADS:
            data, future = window.popleft()
            yield data, future.result()
    for data, future in window:
        yield data, future.result()


_BATCH_ROWS = 250_000


@dataclass
class _Pending:
    """Arrow runs waiting to become one batch: they must share (unifiable) column types."""

    tables: list[pa.Table] = field(default_factory=list)
    seqs: list[np.ndarray] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)
    nulls: list[np.ndarray] = field(default_factory=list)  # ObjectLines.null_counts per row
    schema: pa.Schema | None = None

    def accepts(self, table: pa.Table) -> bool:
        if self.schema is None:
            return True
        if len(self.lines) + table.num_rows > _BATCH_ROWS:
            return False
        try:
            pa.unify_schemas([self.schema, table.schema], promote_options="default")
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return False
        return True

    def add(self, table: pa.Table, seqs: np.ndarray, lines: list[bytes], nulls: np.ndarray) -> None:
        schemas = [table.schema] if self.schema is None else [self.schema, table.schema]
        self.schema = pa.unify_schemas(schemas, promote_options="default")
        self.tables.append(table)
        self.seqs.append(seqs)
        self.lines += lines
        self.nulls.append(nulls)

    def flush(self, outcome: _Outcome) -> list[_ArrowBatch]:
        if not self.tables:
            return []
        seqs, lines, nulls = np.concatenate(self.seqs), self.lines, np.hstack(self.nulls)
        try:
            table = pa.concat_tables(self.tables, promote_options="default")
            batch = _fast_rows(seqs, lines, nulls, table, outcome)
        except pa.ArrowException:  # an Arrow quirk on odd input: json reads these lines
            for seq, line in zip(seqs, lines, strict=True):
                outcome.read_line(int(seq), line)
            batch = None
        self.tables, self.seqs, self.lines, self.nulls, self.schema = [], [], [], [], None
        return [batch] if batch is not None else []


def _fast_rows(
    seqs: np.ndarray, lines: list[bytes], nulls: np.ndarray, table: pa.Table, outcome: _Outcome
) -> _ArrowBatch | None:
    """Keep the rows the fast path may take; send the others to the per-record reader."""
    payload = table.column("payload").combine_chunks()
    event_ids = table.column("event_id").combine_chunks()
    received_us = parse_timestamps(table.column("received_at").combine_chunks())
    eligible = columnar.null_free(nulls[0], nulls[1], payload)
    for column in (
        payload.is_valid(),
        received_us.is_valid(),
        pc.greater(pc.utf8_length(event_ids), 0),
    ):
        eligible &= columnar.as_mask(column)
    rows = np.flatnonzero(eligible)
    if len(rows) == len(lines):
        batch = _ArrowBatch(seqs, lines, table, received_us)
    else:
        batch = _ArrowBatch(
            seq=seqs[rows],
            lines=[lines[i] for i in rows],
            table=table.take(rows),
            received_us=received_us.take(rows),
        )
    # Only once every Arrow step succeeded, so a failure leaves nothing half queued.
    for index in np.flatnonzero(~eligible):
        outcome.read_line(int(seqs[index]), lines[index])
    return batch if len(rows) else None


def _dedupe(batches: list[_ArrowBatch], outcome: _Outcome) -> tuple[np.ndarray, int]:
    """Mask over input positions of the first envelope per event id by (received_at, position)."""
    exact_received = parse_timestamps(
        pa.array([e.received_at for e, _ in outcome.exact], pa.string())
    )
    timed = []
    for (staged, _), received in zip(outcome.exact, exact_received.to_pylist(), strict=True):
        if received is None:
            message = f"received_at {staged.received_at[:64]!r} is not an ISO-8601 time with zone"
            outcome.reject(staged, NOT_AN_OBJECT, message)
        else:
            timed.append((staged, received))
    outcome.exact = timed
    ids = [pa.array([e.event_id for e, _ in timed], pa.string())]
    received = [pa.array([r for _, r in timed], pa.int64())]
    seqs = [pa.array([e.seq for e, _ in timed], pa.int64())]
    for batch in batches:
        ids.append(batch.table.column("event_id").combine_chunks())
        received.append(batch.received_us)
        seqs.append(pa.array(batch.seq))
    order = pa.table(
        {
            "id": pa.concat_arrays(ids),
            "at": pa.concat_arrays(received),
            "seq": pa.concat_arrays(seqs),
        }
    ).sort_by([("at", "ascending"), ("seq", "ascending")])
    order = order.append_column("rank", pa.array(np.arange(order.num_rows, dtype=np.int64)))
    first = order.group_by("id", use_threads=False).aggregate([("rank", "min")])
    kept_seqs = order.column("seq").take(first.column("rank_min")).to_numpy()
    size = max((int(s.max()) + 1 for s in map(np.asarray, seqs) if len(s)), default=0)
    kept = np.zeros(size, dtype=bool)
    kept[kept_seqs] = True
    return kept, order.num_rows - first.num_rows


def _resolve_batch(
    batch: _ArrowBatch,
    kept: np.ndarray,
    subject: SubjectSchemas,
    plans: dict[str, columnar.VersionPlan],
    outcome: _Outcome,
) -> None:
    rows = np.flatnonzero(kept[batch.seq])
    if len(rows) == len(batch.seq):
        lines, seqs, received_us, table = batch.lines, batch.seq, batch.received_us, batch.table
    else:
        lines = [batch.lines[i] for i in rows]
        seqs, received_us = batch.seq[rows], batch.received_us.take(rows)
        table = batch.table.take(rows)
    try:
        parts, deferred, unmapped = _fast_parts(
            table, lines, received_us, subject, plans, outcome.schema
        )
    except pa.ArrowException:  # an Arrow quirk on odd input: every row goes per record
        parts, deferred, unmapped = [], np.ones(len(rows), dtype=bool), {}
    outcome.parts += parts
    for version, found in unmapped.items():
        outcome.count_unmapped(version, ())
        for keys, payload in found:
            outcome.count_unmapped(version, keys)
            outcome.sample_unmapped(version, keys, payload)
    for index in np.flatnonzero(deferred):
        try:
            staged = parse_envelope(int(seqs[index]), lines[index])
        except MalformedEnvelope as exc:  # Arrow and json disagree on the line: json decides
            outcome.rejects.append((int(seqs[index]), line_reject(lines[index], str(exc))))
            continue
        _resolve_record(staged, received_us[index].as_py(), subject, outcome)


def _fast_parts(
    table: pa.Table,
    lines: list[bytes],
    received_us: pa.Array,
    subject: SubjectSchemas,
    plans: dict[str, columnar.VersionPlan],
    schema: pa.Schema,
) -> tuple[list[pa.Table], np.ndarray, dict[str, list[tuple[list[str], dict[str, Any]]]]]:
    """Canonical table parts per writer version, the rows to defer, and the unmapped keys met
    with their payloads."""
    payload = table.column("payload").combine_chunks()
    present = columnar.present_masks(payload)
    assigned, deferred = columnar.assign_versions(table, subject, plans, present)
    event_ids = table.column("event_id").combine_chunks()
    parts, unmapped = [], {}
    for number, version in enumerate(subject.versions):
        plan = plans[version.version]
        chosen = np.flatnonzero(assigned == number)
        if not len(chosen):
            continue
        if plan.columns is None:
            deferred[chosen] = True
            continue
        columns, unresolvable = columnar.resolve_columns(payload, chosen, plan)
        deferred[chosen[unresolvable]] = True
        keep = np.flatnonzero(~unresolvable)
        chosen = chosen[keep]
        texts, unmapped[version.version] = _unmapped_texts(present, chosen, plan, lines)
        meta = [
            event_ids.take(chosen),
            pa.repeat(pa.scalar(version.version), len(chosen)),
            received_us.take(chosen).cast(_RECEIVED_TYPE),
            texts,
        ]
        data = [c.take(keep) for c in columns] + meta
        parts.append(pa.Table.from_arrays(data, schema=schema))
    return parts, deferred, unmapped


def _unmapped_texts(
    present: dict[str, np.ndarray],
    chosen: np.ndarray,
    plan: columnar.VersionPlan,
    lines: list[bytes],
) -> tuple[pa.Array, list[tuple[list[str], dict[str, Any]]]]:
    """`_unmapped_fields` of the chosen rows, and the unmapped keys met with their payload.
    Taken from the line itself where the payload has a key the writer does not declare, so
    values keep their exact JSON form."""
    extra = np.zeros(len(chosen), dtype=bool)
    for name, rows in present.items():
        if name not in plan.declared:
            extra |= rows[chosen]
    texts: list[str | None] = [None] * len(chosen)
    met = []
    for index in np.flatnonzero(extra):
        staged = parse_envelope(0, lines[chosen[index]])
        texts[index], found = _unmapped_json(staged.payload, plan.version)
        met.append((found, staged.payload))
    return pa.array(texts, pa.string()), met


def _resolve_record(
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
    row[UNMAPPED_FIELDS], extra = _unmapped_json(staged.payload, writer)
    outcome.count_unmapped(writer.version, extra)
    if extra:
        outcome.sample_unmapped(writer.version, extra, staged.payload)
    outcome.rows.append(row)


def _result(outcome: _Outcome, duplicates: int, subject: SubjectSchemas) -> TransformResult:
    parts = [pa.Table.from_pylist(outcome.rows, schema=outcome.schema), *outcome.parts]
    table = pa.concat_tables(parts).sort_by([(RECEIVED_AT, "ascending"), (EVENT_ID, "ascending")])
    table = table.combine_chunks()
    rejects = [reject for _, reject in sorted(outcome.rejects, key=lambda item: item[0])]
    versions = pc.value_counts(table.column(SCHEMA_VERSION)).to_pylist()
    unmapped = Counter[str]()
    for counts in outcome.unmapped_by_version.values():
        unmapped.update(counts)
    return TransformResult(
        table=table,
        rejects=rejects,
        rows_per_version={
            v["values"]: v["counts"] for v in sorted(versions, key=lambda v: v["values"])
        },
        rejects_per_code=dict(sorted(Counter(r.code for r in rejects).items())),
        duplicates_dropped=duplicates,
        unmapped_fields=dict(sorted(unmapped.items())),
        unmapped_by_version={
            version: dict(sorted(counts.items()))
            for version, counts in sorted(outcome.unmapped_by_version.items())
        },
        unknown_versions=dict(sorted(outcome.unknown_versions.items())),
        near_misses=[
            miss
            for (version, keys), (payload, rows) in sorted(outcome.unmapped_samples.items())
            if (miss := near_miss(subject, version, keys, payload, rows)) is not None
        ],
    )
