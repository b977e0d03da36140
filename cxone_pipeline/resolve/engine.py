"""Staged envelopes of any schema version to one canonical, typed Arrow table plus rejects.

Two steps: `resolve` reads every copy of every event (rows through the columnar fast path
(`columnar`) when it can prove its result equals fastavro's; the rest, and every row that
will be rejected, one by one through fastavro); `select` then keeps one copy per event id by
the subject's keep policy, also against copies staged in neighbouring hours.
"""

from __future__ import annotations

import bisect
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

from cxone_pipeline.lake.envelope import MAX_EVENT_ID_LENGTH
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
from cxone_pipeline.registry.subject import ID_SEPARATOR, KEEP_LATEST
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
    unpacked,
)
from cxone_pipeline.resolve.records import resolve_record
from cxone_pipeline.resolve.rejects import Reject

_RECEIVED_TYPE = pa.timestamp("us", tz="UTC")
_Parsed = columnar.ParsedObject | MalformedEnvelope
# Input position of each row: ties are broken by it, then it is dropped.
_SEQ = "_seq"


@dataclass
class TransformResult:
    table: pa.Table
    rejects: list[Reject]
    rows_per_version: dict[str, int]
    rejects_per_code: dict[str, int]
    duplicates_dropped: int  # copies of an event id that lost to a copy of the same input
    unmapped_fields: dict[str, int]
    unmapped_by_version: dict[str, dict[str, int]]
    unknown_versions: dict[str, int]
    duplicates_across_hours: int = 0  # copies that lost to a copy staged in another hour
    superseded: int = 0  # unresolvable copies of an event id that has a resolvable copy
    # Kept rows read as a version whose unmapped keys a newer version declares, and why that
    # one failed (from one sample payload per version and unmapped key set).
    near_misses: list[NearMiss] = field(default_factory=list)


@dataclass
class Rejected:
    """A record that cannot be resolved, with what selection needs to know of it."""

    seq: int
    reject: Reject
    event_id: str | None  # None: not an envelope, so no event to deduplicate
    received_us: int | None
    declared: str | None = None  # the unknown version it named


@dataclass
class Resolved:
    """Every copy of every event of some staged objects: resolved rows (canonical columns,
    metadata columns and `_seq`) and rejects, not yet deduplicated."""

    table: pa.Table
    rejects: list[Rejected]
    # The first payload of each (writer version, unmapped keys), for near-miss diagnostics.
    unmapped_samples: dict[tuple[str, tuple[str, ...]], dict[str, Any]] = field(
        default_factory=dict
    )


# Columns of a copies table: one line per copy of an event, from this input or a neighbour.
COPY_ID, COPY_RECEIVED, COPY_VALID, COPY_KEEP, COPY_ORDER = (
    "id",
    "received",
    "valid",
    "keep",
    "order",
)


@dataclass
class _ArrowBatch:
    """Rows Arrow parsed (from one or more staged objects) that the fast path may take."""

    seq: np.ndarray  # input position of each row
    table: pa.Table
    received_us: pa.Array  # int64
    eligible: np.ndarray  # rows the fast path may take; the others went to the per-record path


class _Lines:
    """Every staged line of one call by input position, sliced from its object on demand."""

    def __init__(self) -> None:
        self._firsts: list[int] = []
        self._objects: list[columnar.ObjectLines | None] = []

    def add(self, first: int, staged: columnar.ObjectLines) -> None:
        self._firsts.append(first)
        self._objects.append(staged)

    def release_before(self, seq: int) -> None:
        """Free the text of every object whose lines all come before `seq`: their rows are
        resolved (or parsed for the per-record path) and need them no more."""
        for number in range(bisect.bisect_right(self._firsts, seq) - 1):
            self._objects[number] = None

    def __getitem__(self, seq: int) -> bytes:
        number = bisect.bisect_right(self._firsts, seq) - 1
        staged = self._objects[number]
        assert staged is not None, "a line of a released object"
        return staged.line(seq - self._firsts[number])


@dataclass
class _Outcome:
    """Everything one call produces, accumulated before the table is assembled."""

    schema: pa.Schema
    exact: list[Envelope] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    parts: list[pa.Table] = field(default_factory=list)
    rejects: list[Rejected] = field(default_factory=list)
    unmapped_samples: dict[tuple[str, tuple[str, ...]], dict[str, Any]] = field(
        default_factory=dict
    )

    def reject(
        self,
        staged: Envelope,
        code: str,
        message: str,
        received_us: int | None,
        declared: str | None = None,
    ) -> None:
        reject = Reject(staged.envelope, code, message)
        self.rejects.append(Rejected(staged.seq, reject, staged.event_id, received_us, declared))

    def reject_line(self, seq: int, line: bytes, message: str) -> None:
        self.rejects.append(Rejected(seq, line_reject(line, message), None, None))

    def read_line(self, seq: int, line: bytes) -> None:
        """Queue a line for the per-record path, or reject it when it is not an envelope."""
        try:
            self.exact.append(parse_envelope(seq, line))
        except MalformedEnvelope as exc:
            self.reject_line(seq, line, str(exc))


def _unmapped_keys(payload: dict[str, Any], writer: SchemaVersion) -> list[str]:
    """The payload keys `writer` does not declare, sorted."""
    declared = {f["name"] for f in writer.fields} | CONTROL_FIELDS
    return sorted(key for key in payload if key not in declared)


def _unmapped_json(payload: dict[str, Any], writer: SchemaVersion) -> str | None:
    """The payload keys `writer` does not declare, with their values, as JSON text."""
    extra = _unmapped_keys(payload, writer)
    if not extra:
        return None
    unmapped = {key: payload[key] for key in extra}
    text = json.dumps(unmapped, ensure_ascii=False, separators=(",", ":"))
    if not is_unicode(text):  # a lone surrogate: kept as the JSON escape it came as
        text = json.dumps(unmapped, separators=(",", ":"))
    return text


_MAX_SAMPLES = 100


def _sample_unmapped(
    samples: dict[tuple[str, tuple[str, ...]], dict[str, Any]],
    writer: SchemaVersion,
    payload: dict[str, Any],
) -> None:
    """Keep the first payload of each (version, unmapped keys), at most _MAX_SAMPLES."""
    if len(samples) < _MAX_SAMPLES:
        samples.setdefault((writer.version, tuple(_unmapped_keys(payload, writer))), payload)


def transform(
    staged_objects: Iterable[bytes],
    subject: SubjectSchemas,
    neighbours: Iterable[pa.Table] = (),
) -> TransformResult:
    """Resolve staged objects' envelopes into the subject's canonical table and rejects,
    one row per event id (see `select`), sorted by received_at then event id; every input
    line is a row, a reject, a dropped duplicate or a superseded copy."""
    return select(resolve(staged_objects, subject), subject, neighbours)


def resolve(staged_objects: Iterable[bytes], subject: SubjectSchemas) -> Resolved:
    """Every copy of every event, resolved or rejected; nothing deduplicated yet."""
    outcome = _Outcome(canonical_arrow_schema(subject).append(pa.field(_SEQ, pa.int64())))
    lines = _Lines()
    plans = columnar.plan_versions(subject)
    # Each batch is resolved as soon as it is gathered, while the threads parse on.
    _read(
        staged_objects,
        subject,
        outcome,
        lines,
        lambda batch: _resolve_batch(batch, subject, plans, outcome, lines),
    )
    for staged, received_us in _timed(outcome):
        _resolve_record(staged, received_us, subject, outcome)
    table = pa.concat_tables(
        [pa.Table.from_pylist(outcome.rows, schema=outcome.schema), *outcome.parts]
    )
    return Resolved(_subject_ids(table, subject), outcome.rejects, outcome.unmapped_samples)


def _read(
    staged_objects: Iterable[bytes],
    subject: SubjectSchemas,
    outcome: _Outcome,
    source: _Lines,
    consume: Callable[[_ArrowBatch], None],
) -> None:
    """Parse every staged object; Arrow-parsed rows are gathered into large batches (per-call
    costs of Arrow kernels are then paid per batch, not per object) handed to `consume`."""
    payload_types = columnar.explicit_payload_types(subject)
    conflicts: set[bytes] = set()

    def parse(data: bytes) -> _Parsed:
        try:
            staged = columnar.ObjectLines.read(unpacked(data))
            return columnar.parse_object(staged, payload_types, conflicts)
        except MalformedEnvelope as exc:
            return exc

    objects = list(staged_objects)
    pending = _Pending()
    seq = 0
    with ThreadPoolExecutor(max_workers=_PARSE_THREADS) as pool:
        for number, (data, parsed) in enumerate(_in_order(pool, parse, objects)):
            if isinstance(parsed, MalformedEnvelope):
                raw = {"raw": data[:1024].decode("utf-8", errors="replace")}
                message = f"object {number}: {parsed}"
                outcome.rejects.append(
                    Rejected(seq, Reject(raw, NOT_AN_OBJECT, message), None, None)
                )
                seq += 1
                continue
            staged = parsed.staged
            source.add(seq, staged)
            for index in parsed.leftovers:
                outcome.read_line(seq + index, staged.line(index))
            for run in parsed.runs:
                if not pending.accepts(run.table):
                    pending.flush(outcome, source, consume)
                    source.release_before(seq)  # earlier objects' rows are all resolved
                pending.add(run.table, run.rows + seq, parsed.nulls[:, run.rows])
            seq += len(staged)
        pending.flush(outcome, source, consume)


_PARSE_THREADS = min(8, os.cpu_count() or 1)


def _in_order(
    pool: ThreadPoolExecutor, parse: Callable[[bytes], _Parsed], objects: list[bytes]
) -> Iterator[tuple[bytes, _Parsed]]:
    """(object, parse result) in input order, with at most four parses per thread in flight:
    enough to keep the threads parsing while a batch is resolved, few enough that parsed
    objects wait in memory only briefly."""
    window: deque[tuple[bytes, Future[_Parsed]]] = deque()
    for data in objects:
        window.append((data, pool.submit(parse, data)))
        if len(window) > 4 * _PARSE_THREADS:
            data, future = window.popleft()
            yield data, future.result()
    for data, future in window:
        yield data, future.result()


_BATCH_ROWS = 50_000


@dataclass
class _Pending:
    """Arrow runs waiting to become one batch: they must share (unifiable) column types."""

    tables: list[pa.Table] = field(default_factory=list)
    seqs: list[np.ndarray] = field(default_factory=list)
    rows: int = 0
    nulls: list[np.ndarray] = field(default_factory=list)  # ObjectLines.null_counts per row
    schema: pa.Schema | None = None

    def accepts(self, table: pa.Table) -> bool:
        if self.schema is None:
            return True
        if self.rows + table.num_rows > _BATCH_ROWS:
            return False
        try:
            pa.unify_schemas([self.schema, table.schema], promote_options="default")
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return False
        return True

    def add(self, table: pa.Table, seqs: np.ndarray, nulls: np.ndarray) -> None:
        schemas = [table.schema] if self.schema is None else [self.schema, table.schema]
        self.schema = pa.unify_schemas(schemas, promote_options="default")
        self.tables.append(table)
        self.seqs.append(seqs)
        self.rows += table.num_rows
        self.nulls.append(nulls)

    def flush(
        self, outcome: _Outcome, source: _Lines, consume: Callable[[_ArrowBatch], None]
    ) -> None:
        if not self.tables:
            return
        seqs, nulls = np.concatenate(self.seqs), np.hstack(self.nulls)
        try:
            table = pa.concat_tables(self.tables, promote_options="default")
            batch = _fast_rows(seqs, nulls, table, outcome, source)
        except pa.ArrowException:  # an Arrow quirk on odd input: json reads these lines
            for seq in seqs.tolist():
                outcome.read_line(seq, source[seq])
            batch = None
        self.tables, self.seqs, self.rows, self.nulls, self.schema = [], [], 0, [], None
        if batch is not None:
            consume(batch)


def _fast_rows(
    seqs: np.ndarray, nulls: np.ndarray, table: pa.Table, outcome: _Outcome, source: _Lines
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
    # Only once every Arrow step succeeded, so a failure leaves nothing half queued.
    for seq in seqs[~eligible].tolist():
        outcome.read_line(seq, source[seq])
    # The table is kept whole: taking the eligible rows would copy every column.
    return _ArrowBatch(seqs, table, received_us, eligible) if eligible.any() else None


def _timed(outcome: _Outcome) -> list[tuple[Envelope, int]]:
    """The per-record envelopes with their received_at as microseconds; those without a
    readable one are rejected."""
    received = parse_timestamps(pa.array([e.received_at for e in outcome.exact], pa.string()))
    timed = []
    for staged, micros in zip(outcome.exact, received.to_pylist(), strict=True):
        if micros is None:
            message = f"received_at {staged.received_at[:64]!r} is not an ISO-8601 time with zone"
            outcome.reject(staged, NOT_AN_OBJECT, message, None)
        else:
            timed.append((staged, micros))
    outcome.exact = []
    return timed


def _resolve_batch(
    batch: _ArrowBatch,
    subject: SubjectSchemas,
    plans: dict[str, columnar.VersionPlan],
    outcome: _Outcome,
    source: _Lines,
) -> None:
    seqs, received_us = batch.seq, batch.received_us
    try:
        parts, deferred = _fast_parts(
            batch, source, subject, plans, outcome.schema, outcome.unmapped_samples
        )
    # An Arrow quirk on odd input, or a line Arrow read that json refuses: every row of the
    # batch goes per record, which decides line by line.
    except (pa.ArrowException, MalformedEnvelope):
        parts, deferred = [], batch.eligible.copy()
    outcome.parts += parts
    for index in np.flatnonzero(deferred):
        line = source[int(seqs[index])]
        try:
            staged = parse_envelope(int(seqs[index]), line)
        except MalformedEnvelope as exc:  # Arrow and json disagree on the line: json decides
            outcome.reject_line(int(seqs[index]), line, str(exc))
            continue
        _resolve_record(staged, received_us[index].as_py(), subject, outcome)


def _fast_parts(
    batch: _ArrowBatch,
    source: _Lines,
    subject: SubjectSchemas,
    plans: dict[str, columnar.VersionPlan],
    schema: pa.Schema,
    samples: dict[tuple[str, tuple[str, ...]], dict[str, Any]],
) -> tuple[list[pa.Table], np.ndarray]:
    """Canonical table parts per writer version, and the eligible rows to defer."""
    table, seqs, received_us = batch.table, batch.seq, batch.received_us
    payload = table.column("payload").combine_chunks()
    present = columnar.present_masks(payload)
    assigned, deferred = columnar.assign_versions(table, subject, plans, present)
    assigned[~batch.eligible] = -1
    deferred &= batch.eligible
    event_ids = table.column("event_id").combine_chunks()
    parts = []
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
        meta = [
            event_ids.take(chosen),
            pa.repeat(pa.scalar(version.version), len(chosen)),
            received_us.take(chosen).cast(_RECEIVED_TYPE),
            _unmapped_texts(present, seqs[chosen], chosen, plan, source, samples),
            pa.array(seqs[chosen], pa.int64()),
        ]
        if len(keep) < len(unresolvable):
            columns = [c.take(keep) for c in columns]
        data = [*columns, *meta]
        parts.append(pa.Table.from_arrays(data, schema=schema))
    return parts, deferred


def _unmapped_texts(
    present: dict[str, np.ndarray],
    seqs: np.ndarray,
    chosen: np.ndarray,
    plan: columnar.VersionPlan,
    source: _Lines,
    samples: dict[tuple[str, tuple[str, ...]], dict[str, Any]],
) -> pa.Array:
    """`_unmapped_fields` of the chosen rows. Taken from the line itself where the payload has
    a key the writer does not declare, so values keep their exact JSON form; the payloads are
    sampled for near-miss diagnostics."""
    extra = np.zeros(len(chosen), dtype=bool)
    for name, rows in present.items():
        if name not in plan.declared:
            extra |= rows[chosen]
    texts: list[str | None] = [None] * len(chosen)
    for index in np.flatnonzero(extra):
        staged = parse_envelope(0, source[int(seqs[index])])
        texts[index] = _unmapped_json(staged.payload, plan.version)
        _sample_unmapped(samples, plan.version, staged.payload)
    return pa.array(texts, pa.string())


def _resolve_record(
    staged: Envelope, received_us: int, subject: SubjectSchemas, outcome: _Outcome
) -> None:
    try:
        writer = detect_version(subject, staged.payload, staged.envelope.get("schema_version"))
        row = resolve_record(staged.payload, writer, subject.canonical)
    except UnknownSchemaVersion as exc:
        outcome.reject(staged, exc.code, str(exc), received_us, str(exc.declared))
        return
    except PayloadError as exc:
        outcome.reject(staged, exc.code, str(exc), received_us)
        return
    row[EVENT_ID] = staged.event_id
    row[SCHEMA_VERSION] = writer.version
    row[RECEIVED_AT] = received_us
    row[UNMAPPED_FIELDS] = _unmapped_json(staged.payload, writer)
    if row[UNMAPPED_FIELDS] is not None:
        _sample_unmapped(outcome.unmapped_samples, writer, staged.payload)
    row[_SEQ] = staged.seq
    outcome.rows.append(row)


def _subject_ids(table: pa.Table, subject: SubjectSchemas) -> pa.Table:
    """For subjects whose rules name id fields, `_event_id` from the resolved columns (so every
    writer spelling and type gives the same text); the envelope's id where one is missing."""
    fields = subject.rules.event_id_fields
    if not fields or not table.num_rows:
        return table
    parts = []
    for spelling in fields:
        text = pc.utf8_trim_whitespace(table.column(spelling.name).cast(pa.string()))
        length = pc.utf8_length(text)
        usable = pc.and_(pc.greater(length, 0), pc.less_equal(length, MAX_EVENT_ID_LENGTH))
        parts.append(pc.if_else(usable, text, pa.scalar(None, pa.string())))
    joined = pc.binary_join_element_wise(*parts, ID_SEPARATOR) if len(parts) > 1 else parts[0]
    ids = pc.coalesce(joined, table.column(EVENT_ID))
    return table.set_column(table.schema.get_field_index(EVENT_ID), EVENT_ID, ids)


def copies(resolved: Resolved, subject: SubjectSchemas, order: int) -> pa.Table:
    """The copies of `resolved` as `select` compares them; `order` ranks inputs (a neighbour
    hour's offset from the hour being selected: -1 for the hour before)."""
    table = resolved.table
    keep_type = _keep_type(subject)
    with_ids = [r for r in resolved.rejects if r.event_id is not None]
    keep = (
        table.column(subject.rules.keep_by).cast(keep_type)
        if subject.rules.keep == KEEP_LATEST and subject.rules.keep_by
        else pa.nulls(table.num_rows, keep_type)
    )
    rows = pa.table(
        {
            COPY_ID: table.column(EVENT_ID).cast(pa.string()),
            COPY_RECEIVED: table.column(RECEIVED_AT).cast(pa.int64()),
            COPY_VALID: pa.repeat(pa.scalar(True), table.num_rows),
            COPY_KEEP: keep,
            COPY_ORDER: pa.repeat(pa.scalar(order, pa.int64()), table.num_rows),
            _SEQ: table.column(_SEQ),
        }
    )
    rejected = pa.table(
        {
            COPY_ID: pa.array([r.event_id for r in with_ids], pa.string()),
            COPY_RECEIVED: pa.array([r.received_us for r in with_ids], pa.int64()),
            COPY_VALID: pa.repeat(pa.scalar(False), len(with_ids)),
            COPY_KEEP: pa.nulls(len(with_ids), keep_type),
            COPY_ORDER: pa.repeat(pa.scalar(order, pa.int64()), len(with_ids)),
            _SEQ: pa.array([r.seq for r in with_ids], pa.int64()),
        }
    )
    return pa.concat_tables([rows, rejected])


def _keep_type(subject: SubjectSchemas) -> pa.DataType:
    keep_by = subject.rules.keep_by
    if subject.rules.keep != KEEP_LATEST or keep_by is None:
        return pa.null()
    arrow = canonical_arrow_schema(subject).field(keep_by).type
    # Timestamps compare as their integer value; the unit is the same for every copy.
    return pa.int64() if pa.types.is_timestamp(arrow) else arrow


def select(
    resolved: Resolved, subject: SubjectSchemas, neighbours: Iterable[pa.Table] = ()
) -> TransformResult:
    """One copy per event id, among this input's copies and `neighbours` (copies staged in
    other hours, from `copies`), then this input's part of the outcome.

    A copy that resolves always wins over one that does not. Among resolvable copies the
    keep policy decides: `first` the copy of the earliest hour, then the earliest received,
    then input order (a signed request is staged by its signed time, which may put a retry
    received first into the later hour); `latest` the greatest keep-by value (ties: the
    later received). Among unresolvable copies the same order picks the one quarantined.
    Losing copies are counted as duplicates (within the input or across hours) or, when
    unresolvable and a resolvable copy exists, as superseded.
    """
    local = copies(resolved, subject, 0)
    everything = pa.concat_tables([local, *neighbours]).combine_chunks()
    # Only ids with several copies need ranking; most events arrive once.
    counts = pc.value_counts(everything.column(COPY_ID))
    repeated = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
    several = columnar.as_mask(pc.is_in(everything.column(COPY_ID), value_set=repeated))
    single = everything.filter(pa.array(~several))
    single_local = single.column(COPY_ORDER).to_numpy() == 0
    single_valid = columnar.as_mask(single.column(COPY_VALID))
    single_seqs = single.column(_SEQ).to_numpy()
    kept_rows = [single_seqs[single_local & single_valid]]
    kept_rejects = [single_seqs[single_local & ~single_valid]]

    latest = subject.rules.keep == KEEP_LATEST
    later = "descending" if latest else "ascending"
    order = [(COPY_ID, "ascending"), (COPY_VALID, "descending")]
    if latest:
        order.append((COPY_KEEP, "descending"))
    if latest:
        order += [(COPY_RECEIVED, later), (COPY_ORDER, later), (_SEQ, later)]
    else:
        order += [(COPY_ORDER, later), (COPY_RECEIVED, later), (_SEQ, later)]
    # Nulls (no keep value, no readable received_at) lose.
    keys = [(name, direction, "at_end") for name, direction in order]
    contested = everything.filter(pa.array(several))
    ranked = contested.take(pc.sort_indices(contested, keys))
    ids = ranked.column(COPY_ID)
    starts = np.ones(len(ids), dtype=bool)
    if len(ids) > 1:
        starts[1:] = columnar.as_mask(pc.not_equal(ids[1:], ids[:-1]))
    group = np.cumsum(starts) - 1
    winner_rows = np.flatnonzero(starts)
    is_local = ranked.column(COPY_ORDER).to_numpy() == 0
    valid = columnar.as_mask(ranked.column(COPY_VALID))
    winner_local, winner_valid = is_local[winner_rows][group], valid[winner_rows][group]
    seqs = ranked.column(_SEQ).to_numpy()
    losing = is_local & ~starts
    superseded = losing & ~valid & winner_valid
    duplicates = losing & ~superseded
    kept_rows.append(seqs[starts & is_local & valid])
    kept_rejects.append(seqs[starts & is_local & ~valid])

    table = resolved.table.drop_columns([_SEQ])  # still the parts: `take` makes the one copy
    if table.num_rows:
        # The kept rows in output order, taken in one copy of the table.
        row_seqs = resolved.table.column(_SEQ).to_numpy()
        wanted = np.zeros(int(row_seqs.max()) + 1, dtype=bool)
        wanted[np.concatenate(kept_rows)] = True
        kept = np.flatnonzero(wanted[row_seqs])
        keys = table.select([RECEIVED_AT, EVENT_ID]).take(kept)
        order = pc.sort_indices(keys, [(RECEIVED_AT, "ascending"), (EVENT_ID, "ascending")])
        table = table.take(pa.array(kept).take(order))
    table = table.combine_chunks()
    quarantined = set(np.concatenate(kept_rejects).tolist())
    rejected = sorted(
        (r for r in resolved.rejects if r.event_id is None or r.seq in quarantined),
        key=lambda r: r.seq,
    )
    rejects = [r.reject for r in rejected]
    versions = pc.value_counts(table.column(SCHEMA_VERSION)).to_pylist()
    unmapped_by_version, key_sets = _unmapped_counts(table)
    unmapped = Counter[str]()
    for counts in unmapped_by_version.values():
        unmapped.update(counts)
    samples = resolved.unmapped_samples
    near_misses = [
        miss
        for (version, keys), rows in sorted(key_sets.items())
        if (version, keys) in samples
        and (miss := near_miss(subject, version, keys, samples[(version, keys)], rows))
    ]
    return TransformResult(
        table=table,
        rejects=rejects,
        rows_per_version={
            v["values"]: v["counts"] for v in sorted(versions, key=lambda v: v["values"])
        },
        rejects_per_code=dict(sorted(Counter(r.code for r in rejects).items())),
        duplicates_dropped=int((duplicates & winner_local).sum()),
        unmapped_fields=dict(sorted(unmapped.items())),
        unmapped_by_version=unmapped_by_version,
        unknown_versions=dict(
            sorted(Counter(r.declared for r in rejected if r.declared is not None).items())
        ),
        duplicates_across_hours=int((duplicates & ~winner_local).sum()),
        superseded=int(superseded.sum()),
        near_misses=near_misses,
    )


def _unmapped_counts(
    table: pa.Table,
) -> tuple[dict[str, dict[str, int]], Counter[tuple[str, tuple[str, ...]]]]:
    """Per writer version, how many kept rows carry each unmapped key; and how many carry
    each (version, set of unmapped keys)."""
    present = pc.is_valid(table.column(UNMAPPED_FIELDS))
    counts: dict[str, Counter[str]] = {}
    key_sets = Counter[tuple[str, tuple[str, ...]]]()
    if not pc.any(present).as_py():
        return {}, key_sets
    rows = table.filter(present)
    versions, texts = rows.column(SCHEMA_VERSION), rows.column(UNMAPPED_FIELDS)
    for version, text in zip(versions.to_pylist(), texts.to_pylist(), strict=True):
        keys = tuple(json.loads(text))
        counts.setdefault(version, Counter()).update(keys)
        key_sets[(version, keys)] += 1
    return {v: dict(sorted(c.items())) for v, c in sorted(counts.items())}, key_sets
