"""The next schema versions of a subject, proposed from what drifted (`registry.drift`).

One writer version per new shape, the canonical additions that read it, rename suggestions for
review (applied only when accepted by name), and what the engine then resolves: every proposal
is checked and run through `resolve.transform` on a copy of the registry, never in place.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import re
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
from fastavro import parse_schema
from fastavro.validation import validate

from cxone_pipeline.lake.layout import (
    PROPOSALS,
    parse_proposal_key,
    partition_key,
    proposal_key,
    zone_prefix,
)
from cxone_pipeline.lake.store import Store
from cxone_pipeline.registry import (
    SchemaError,
    SchemaVersion,
    SubjectSchemas,
    find_version,
    load_subject,
)
from cxone_pipeline.registry.avsc_text import edit_fields, format_schema
from cxone_pipeline.registry.compatibility import RegistryCheck, check_registry
from cxone_pipeline.registry.drift import (
    QUARANTINED,
    UNMAPPED,
    Drifted,
    DriftSample,
    envelope_event_id,
)
from cxone_pipeline.registry.extensions import (
    ExtensionError,
    effective_document,
    payload_converter,
)
from cxone_pipeline.registry.inference import (
    AVRO_NAME,
    Inference,
    Naming,
    Observed,
    Typed,
    canonical_field,
    snake_case,
    writer_field,
)
from cxone_pipeline.registry.schemas import CANONICAL_STEM, SCHEMA_SUFFIX, natural_key
from cxone_pipeline.resolve import transform
from cxone_pipeline.resolve.arrow_schema import EVENT_ID, SCHEMA_VERSION, UNMAPPED_FIELDS
from cxone_pipeline.resolve.columnar import kind_of, plan_versions

CANONICAL_FILE = f"{CANONICAL_STEM}{SCHEMA_SUFFIX}"
PROPOSAL_FILE = "proposal.json"
SUMMARY_FILE = "summary.txt"
RENAME_SHARE = 0.5  # share of a new field's distinct values a canonical column must hold
MAX_SHAPES = 500  # distinct key sets compared pairwise when grouping; beyond, one group
_VERSION_NUMBER = re.compile(r"v(\d+)")
_VERSION_STEM = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_NUMBERS = ("int", "long", "float", "double")


class ProposalError(Exception):
    """A proposal cannot be made or written; the message says why and what to do."""


@dataclass(frozen=True)
class VersionProposal:
    version: str
    origin: str  # what the records were: "declared v4", "matched no version", "v1 + unmapped"
    document: dict[str, Any]
    records: dict[str, int]  # the shape's records, by source
    resolved: dict[str, int]  # of those, resolved by this version on the engine, by source
    new_fields: tuple[str, ...]  # sender fields no earlier version declares
    notes: tuple[str, ...]


@dataclass(frozen=True)
class CanonicalChange:
    field: str
    change: str  # "new field" or "alias"
    sender_field: str
    type: Any
    why: str


@dataclass(frozen=True)
class Rename:
    """A new sender field whose values a canonical column already holds: maybe a rename."""

    sender_field: str
    canonical_field: str
    version: str
    shared_values: int
    distinct_values: int
    examples: tuple[str, ...]
    accepted: bool


@dataclass(frozen=True)
class Failure:
    source: str
    partition: str
    event_id: str
    code: str
    reason: str


@dataclass(frozen=True)
class NotProposed:
    version: str
    origin: str
    records: int
    problems: tuple[str, ...]


@dataclass(frozen=True)
class Proposal:
    subject: str
    partitions: tuple[str, ...]
    registry_fingerprint: str  # of the registry the proposal extends
    read: dict[str, int]
    truncated: bool
    versions: tuple[VersionProposal, ...]
    canonical_changes: tuple[CanonicalChange, ...]
    renames: tuple[Rename, ...]
    not_proposed: tuple[NotProposed, ...]
    still_failing: tuple[Failure, ...]
    resolved_by_existing: dict[str, int]  # records an existing version now resolves
    filled: dict[str, int]  # new canonical columns: values they get from the records
    files: dict[str, str]  # file name → proposed text
    originals: dict[str, str]  # file name → current text (absent for new files)
    notes: tuple[str, ...] = ()

    def diff(self) -> str:
        return "".join(
            "".join(
                difflib.unified_diff(
                    self.originals.get(name, "").splitlines(keepends=True),
                    text.splitlines(keepends=True),
                    fromfile=f"a/{self.subject}/{name}" if name in self.originals else "/dev/null",
                    tofile=f"b/{self.subject}/{name}",
                )
            )
            for name, text in self.files.items()
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "partitions": list(self.partitions),
            "registry_fingerprint": self.registry_fingerprint,
            "read": self.read,
            "truncated": self.truncated,
            "versions": [v.__dict__ for v in self.versions],
            "canonical_changes": [c.__dict__ for c in self.canonical_changes],
            "renames": [r.__dict__ for r in self.renames],
            "not_proposed": [n.__dict__ for n in self.not_proposed],
            "still_failing": [f.__dict__ for f in self.still_failing],
            "resolved_by_existing": self.resolved_by_existing,
            "filled": self.filled,
            "files": self.files,
            "notes": list(self.notes),
        }


# Grouping ---------------------------------------------------------------------------------


@dataclass
class _Group:
    origin: str
    records: list[Drifted]
    base: SchemaVersion | None = None
    version: str = ""
    observed: dict[str, Observed] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for record in self.records:
            for key, value in record.fields.items():
                self.observed.setdefault(key, Observed()).add(value)

    def count(self, source: str) -> int:
        return sum(1 for r in self.records if r.source == source)


def _stem(declared: str) -> str | None:
    """The file stem under which `find_version` finds a declared version ("4" → v4)."""
    text = declared.strip()
    stem = f"v{text}" if text.isdigit() else text.lower()
    return stem if _VERSION_STEM.fullmatch(stem) and stem != CANONICAL_STEM else None


def _failure(record: Drifted, reason: str, code: str | None = None) -> Failure:
    return Failure(
        record.source, partition_key(record.hour), record.event_id, code or record.code, reason
    )


def _unfixable(record: Drifted) -> str | None:
    """Why no new version can resolve the record, or None when one may."""
    if record.source == QUARANTINED:
        if record.code == "unknown_schema_version":
            if record.declared is None or _stem(record.declared) is None:
                return f"declares {record.declared!r}, which cannot name a schema file"
            return None
        if record.code == "no_matching_schema":
            return None
        if record.declared is not None:
            return (
                f"declares {record.declared} and does not fit it ({record.message}): fix the "
                "sender, or have it declare a version it fits"
            )
        return record.message or record.code
    if record.envelope is None:
        return "its staged envelope is no longer in staging: it cannot be re-curated"
    if record.declared is not None:
        return (
            f"declares {record.declared}, so it resolves with {record.declared} again: the "
            "sender must declare a version with these fields"
        )
    return None


def _shapes(records: list[Drifted]) -> list[list[Drifted]]:
    """Records grouped by key set, a key set joined with those it contains or is contained in
    (so sometimes-absent fields stay one shape); in order of first appearance."""
    by_keys: dict[frozenset[str], list[Drifted]] = {}
    for record in records:
        by_keys.setdefault(frozenset(record.fields), []).append(record)
    keysets = list(by_keys)
    if len(keysets) > MAX_SHAPES:
        return [records]
    parent = list(range(len(keysets)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(keysets):
        for j in range(i + 1, len(keysets)):
            b = keysets[j]
            if a <= b or b <= a:
                parent[root(j)] = root(i)
    components: dict[int, list[Drifted]] = {}
    for i, keys in enumerate(keysets):
        components.setdefault(root(i), []).extend(by_keys[keys])
    return list(components.values())


def _groups(
    schemas: SubjectSchemas, records: list[Drifted]
) -> tuple[list[_Group], list[Drifted], list[Failure]]:
    """Groups a new version may resolve, records the registry as it is already resolves (it
    changed since they were curated), and records no version can resolve."""
    declared: dict[str, list[Drifted]] = defaultdict(list)
    unmatched: list[Drifted] = []
    unmapped: dict[str, list[Drifted]] = defaultdict(list)
    failures: list[Failure] = []
    candidates = [r for r in records if _unfixable(r) is None]
    already = _try(schemas, candidates, []).resolved_ids
    existing = [r for r in candidates if (r.hour, r.event_id) in already]
    for record in records:
        reason = _unfixable(record)
        if reason is not None:
            failures.append(_failure(record, reason))
        elif (record.hour, record.event_id) in already:
            continue
        elif record.code == "unknown_schema_version":
            assert record.declared is not None
            if find_version(schemas, record.declared) is not None:
                reason = (
                    f"declares {record.declared}, which the registry has now, and does not fit it"
                )
                failures.append(_failure(record, reason))
            else:
                declared[_stem(record.declared) or ""].append(record)
        elif record.source == QUARANTINED:
            unmatched.append(record)
        elif record.base is not None and schemas.version(record.base) is not None:
            unmapped[record.base].append(record)
        else:
            failures.append(_failure(record, f"resolved with {record.base}, not in the registry"))
    groups = [
        _Group(f"declared {stem}", rows, version=stem)
        for stem, rows in sorted(declared.items(), key=lambda kv: natural_key(kv[0]))
    ]
    groups += [_Group("matched no version", shape) for shape in _shapes(unmatched)]
    for base, rows in sorted(unmapped.items(), key=lambda kv: natural_key(kv[0])):
        version = schemas.version(base)
        groups += [_Group(f"{base} + unmapped fields", s, version) for s in _shapes(rows)]
    numbers = [
        int(match[1])
        for name in [v.version for v in schemas.versions] + [g.version for g in groups]
        if (match := _VERSION_NUMBER.fullmatch(name))
    ]
    number = max(numbers, default=0)
    for group in groups:
        if not group.version:
            number += 1
            group.version = f"v{number}"
    return groups, existing, failures


# Drafting ---------------------------------------------------------------------------------


@dataclass
class _Draft:
    writers: dict[str, dict[str, Any]]
    canonical: dict[str, Any]
    changes: list[CanonicalChange]
    renames: list[Rename]
    new_fields: dict[str, list[str]]
    notes: dict[str, list[str]]


def _named_types(node: Any, found: set[str]) -> set[str]:
    if isinstance(node, list):
        for item in node:
            _named_types(item, found)
    elif isinstance(node, dict):
        if node.get("type") in ("record", "enum", "fixed") and isinstance(node.get("name"), str):
            found.add(node["name"].rsplit(".", 1)[-1])
        for value in node.values():
            _named_types(value, found)
    return found


def _admits_null(avro_type: Any) -> bool:
    return isinstance(avro_type, list) and "null" in avro_type


def _base_type(avro_type: Any) -> str | None:
    if isinstance(avro_type, list):
        branches = [b for b in avro_type if b != "null"]
        avro_type = branches[0] if len(branches) == 1 else None
    if isinstance(avro_type, dict) and "logicalType" not in avro_type:
        avro_type = avro_type.get("type")
    return avro_type if isinstance(avro_type, str) else None


def _reused_field(
    schemas: SubjectSchemas, key: str, values: list[Any], seen: Observed, containers: int
) -> dict[str, Any] | None:
    """The newest existing writer field named `key`, made nullable where needed, if every value
    sent fits it (keeps enums, timestamps and defaults the registry already chose)."""
    existing = next(
        (
            f
            for version in reversed(schemas.versions)
            for f in version.document["fields"]
            if f.get("name") == key
        ),
        None,
    )
    if existing is None:
        return None
    reused = copy.deepcopy(existing)
    absent = seen.seen < containers
    if (seen.nulls and not _admits_null(reused["type"])) or (absent and "default" not in reused):
        if not _admits_null(reused["type"]):
            reused["type"] = ["null", reused["type"]]
        elif reused["type"][0] != "null":
            return None
        reused["default"] = None
    probe = {"type": "record", "name": "Probe", "fields": [reused]}
    try:
        convert = payload_converter(probe)
        parsed = parse_schema(effective_document(probe))
    except Exception:  # a field referring to a type named elsewhere: inferred instead
        return None
    for value in values:
        datum: Any = {key: value}
        try:
            datum = convert(datum, "") if convert else datum
        except ExtensionError:
            return None
        if not validate(datum, parsed, raise_errors=False):
            return None
    return reused


def _for_canonical(typed: Typed, seen: Observed, target: dict[str, Any] | None) -> Typed:
    """Text that reads as the number or boolean a canonical field holds: the lenient extension."""
    base = None if target is None else _base_type(target["type"])
    if typed.writer != "string" or base is None:
        return typed
    if base in _NUMBERS and seen.numeric_text == seen.strings:
        return Typed(base, base, lenient=True)
    if base == "boolean" and seen.boolean_text == seen.strings:
        return Typed("boolean", "boolean", lenient=True)
    return typed


def _targets(canonical: dict[str, Any]) -> tuple[dict[str, int], dict[str, int]]:
    """Sender names the canonical fields declare (name or alias), and their snake_case forms."""
    declared: dict[str, int] = {}
    spelled: dict[str, int] = {}
    for index, f in enumerate(canonical["fields"]):
        for name in (f["name"], *f.get("aliases", ())):
            declared.setdefault(name, index)
            spelled.setdefault(snake_case(name), index)
    return declared, spelled


def _rename(
    key: str,
    seen: Observed,
    candidates: list[dict[str, Any]],
    curated: dict[str, set[str]],
    version: str,
    accepted: frozenset[str],
) -> Rename | None:
    """The canonical field whose curated values most of `key`'s values are, if any."""
    best: tuple[float, int, str] | None = None
    for candidate in candidates:
        shared = seen.values & curated.get(candidate["name"], set())
        if not seen.values or not shared:
            continue
        share = len(shared) / len(seen.values)
        if share >= RENAME_SHARE and (best is None or share > best[0]):
            best = (share, len(shared), candidate["name"])
    if best is None:
        return None
    shared_values = sorted(seen.values & curated[best[2]])
    return Rename(
        key,
        best[2],
        version,
        best[1],
        len(seen.values),
        tuple(shared_values[:5]),
        key in accepted,
    )


def _draft(
    schemas: SubjectSchemas,
    groups: list[_Group],
    curated: dict[str, set[str]],
    enums: frozenset[str],
    accepted: frozenset[str],
) -> _Draft:
    canonical_doc = schemas.canonical.document
    taken = _named_types(canonical_doc, set())
    for version in schemas.versions:
        _named_types(version.document, taken)
    inference = Inference(Naming(taken), enums)
    merged: dict[str, Observed] = {}
    for group in groups:
        for key, seen in group.observed.items():
            merged.setdefault(key, Observed()).merge(seen)
    learned = inference.learn({k: v for k, v in merged.items() if AVRO_NAME.fullmatch(k)})
    declared, spelled = _targets(canonical_doc)
    canonical = copy.deepcopy(canonical_doc)
    draft = _Draft({}, canonical, [], [], {}, {})
    new_keys: dict[str, None] = {}  # sender fields the canonical schema gains, in order
    spelling: dict[str, int] = {}
    for group in groups:
        notes = draft.notes.setdefault(group.version, [])
        fields = copy.deepcopy(group.base.document["fields"]) if group.base else []
        for key, seen in group.observed.items():
            if not AVRO_NAME.fullmatch(key):
                notes.append(f"{key!r} is not an Avro field name: it stays in _unmapped_fields")
                continue
            index = declared.get(key, spelled.get(snake_case(key)))
            target = None if index is None else canonical["fields"][index]
            values = [r.fields[key] for r in group.records if key in r.fields]
            reused = _reused_field(schemas, key, values, seen, len(group.records))
            if reused is None:
                typed = _for_canonical(inference.typed(seen, (key,)), seen, target)
                notes += [*typed.problems, *typed.notes]
                nullable = seen.nullable_in(len(group.records))
                reused = writer_field(key, typed, nullable)
                draft.new_fields.setdefault(group.version, []).append(key)
            fields.append(reused)
            if index is None:
                new_keys.setdefault(key)
            elif key not in declared:
                spelling.setdefault(key, index)
        supplied = {i for f in fields for i in [declared.get(f["name"])] if i is not None} | {
            spelling[f["name"]] for f in fields if f["name"] in spelling
        }
        candidates = [f for i, f in enumerate(canonical["fields"]) if i not in supplied]
        for key in group.observed:
            if key in new_keys:
                rename = _rename(
                    key, group.observed[key], candidates, curated, group.version, accepted
                )
                if rename is not None and all(r.sender_field != key for r in draft.renames):
                    draft.renames.append(rename)
        document = {**(group.base.document if group.base else _header(canonical_doc))}
        document["doc"] = _doc(schemas.name, group)
        document["fields"] = fields
        draft.writers[group.version] = document
    for key, index in spelling.items():
        _add_alias(draft, index, key, "the same name in another spelling")
    renamed = {r.sender_field: r for r in draft.renames if r.accepted}
    by_name: dict[str, dict[str, Any]] = {}
    for key in new_keys:
        if key in renamed:
            index = next(
                i
                for i, f in enumerate(canonical["fields"])
                if f["name"] == renamed[key].canonical_field
            )
            _add_alias(draft, index, key, "rename accepted for review")
            continue
        addition = canonical_field(key, learned[key])
        if addition["name"] in by_name:  # queueName and queue_name: one column
            by_name[addition["name"]].setdefault("aliases", []).append(key)
            continue
        by_name[addition["name"]] = addition
        canonical["fields"].append(addition)
        draft.changes.append(
            CanonicalChange(
                addition["name"], "new field", key, addition["type"], "new in the senders' data"
            )
        )
    return draft


def _add_alias(draft: _Draft, index: int, alias: str, why: str) -> None:
    target = draft.canonical["fields"][index]
    target["aliases"] = [*target.get("aliases", []), alias]
    draft.changes.append(CanonicalChange(target["name"], "alias", alias, target["type"], why))


def _header(canonical: dict[str, Any]) -> dict[str, Any]:
    """The top-level attributes a new writer shares with the canonical schema: its name."""
    keys = ("type", "name", "namespace")
    return {k: canonical[k] for k in keys if k in canonical}


def _doc(subject: str, group: _Group) -> str:
    parts = [f"{n} {source}" for source in (QUARANTINED, UNMAPPED) if (n := group.count(source))]
    return (
        f"Proposed by `cxone-pipeline schemas propose` from {' and '.join(parts)} {subject} "
        f"record(s) ({group.origin}); review before merging."
    )


def _files(schemas: SubjectSchemas, draft: _Draft) -> tuple[dict[str, str], dict[str, str]]:
    files = {f"{v}{SCHEMA_SUFFIX}": format_schema(doc) for v, doc in draft.writers.items()}
    originals = {}
    if draft.canonical != schemas.canonical.document:
        original = schemas.canonical.path.read_text(encoding="utf-8")
        files[CANONICAL_FILE] = edit_fields(original, draft.canonical)
        originals[CANONICAL_FILE] = original
    return files, originals


# Checking and trying ----------------------------------------------------------------------


def _write_files(folder: Path, files: dict[str, str]) -> None:
    """Each file written whole, then renamed into place."""
    for name, text in files.items():
        temporary = folder / f".{name}.proposed"
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, folder / name)


@contextmanager
def _trial_registry(
    schemas_dir: Path, subject: str, files: dict[str, str], whole: bool = False
) -> Iterator[tuple[Path, list[str]]]:
    """A temporary copy of the registry (the subject's folder, or all of it) with `files`
    written, and what `schemas check` says about it (empty when it passes)."""
    with tempfile.TemporaryDirectory(prefix="cxone-propose-") as tmp:
        root = Path(tmp) / "schemas"
        if whole:
            shutil.copytree(schemas_dir, root)
        else:
            shutil.copytree(schemas_dir / subject, root / subject)
        _write_files(root / subject, files)
        try:
            failures = check_registry(root).failures
        except SchemaError as exc:
            failures = [str(exc)]
        yield root, [f.replace(str(root), str(schemas_dir)) for f in failures]


@dataclass
class _Tried:
    resolved: dict[str, dict[str, int]]  # version → source → records
    failures: list[Failure]
    filled: dict[str, int]
    resolved_ids: set[tuple[datetime, str]] = field(default_factory=set)


def _try(subject: SubjectSchemas, records: list[Drifted], new_columns: list[str]) -> _Tried:
    """Resolve the records' envelopes with `subject` (the proposed registry), hour by hour, as
    a re-materialization would."""
    tried = _Tried(defaultdict(lambda: defaultdict(int)), [], dict.fromkeys(new_columns, 0))
    by_hour: dict[datetime, list[Drifted]] = defaultdict(list)
    for record in records:
        by_hour[record.hour].append(record)
    for hour in sorted(by_hour):
        batch = by_hour[hour]
        lines = b"".join(_staged_line(r.envelope) for r in batch if r.envelope is not None)
        result = transform([lines], subject)
        rows = {
            row[EVENT_ID]: row
            for row in result.table.select([EVENT_ID, SCHEMA_VERSION, UNMAPPED_FIELDS]).to_pylist()
        }
        rejects = {envelope_event_id(r.envelope): r for r in result.rejects}
        for name in new_columns:
            tried.filled[name] += pc.count(result.table.column(name)).as_py()
        for record in batch:
            row = rows.get(record.event_id)
            if row is not None and row[UNMAPPED_FIELDS] is None:
                tried.resolved[row[SCHEMA_VERSION]][record.source] += 1
                tried.resolved_ids.add((record.hour, record.event_id))
            elif row is not None:
                reason = (
                    f"resolves with {row[SCHEMA_VERSION]}, still unmapped: {row[UNMAPPED_FIELDS]}"
                )
                tried.failures.append(_failure(record, reason[:300], UNMAPPED))
            elif record.event_id in rejects:
                reject = rejects[record.event_id]
                tried.failures.append(_failure(record, reject.message, reject.code))
            else:
                tried.failures.append(_failure(record, "a duplicate of an earlier copy"))
    return tried


def _slower(before: SubjectSchemas, after: SubjectSchemas) -> tuple[str, ...]:
    """A note when the proposal moves versions off the columnar fast path (its canonical schema
    gains columns of a shape the fast path does not resolve, such as records and maps)."""
    fast = {v for v, plan in plan_versions(before).items() if plan.columns is not None}
    slowed = [v for v, plan in plan_versions(after).items() if plan.columns is None]
    if not fast.intersection(slowed):
        return ()
    named = after.canonical.schema.get("__named_schemas", {})
    columns = [f["name"] for f in after.canonical.fields if kind_of(f["type"], named) is None]
    return (
        f"the columnar fast path does not resolve {', '.join(columns)}: with them, "
        f"{', '.join(slowed)} are resolved record by record (fastavro), several times slower "
        "(docs/benchmarks.md)",
    )


def _staged_line(envelope: dict[str, Any]) -> bytes:
    staged = {k: v for k, v in envelope.items() if k != "error"}
    return json.dumps(staged, ensure_ascii=False).encode() + b"\n"


# The proposal -----------------------------------------------------------------------------


def propose(
    schemas_dir: Path,
    sample: DriftSample,
    enums: Iterable[str] = (),
    accept_renames: Iterable[str] = (),
) -> Proposal:
    """What the registry needs to resolve the sample: versions that pass `schemas check`
    (tried one shape at a time, so one shape that cannot pass does not block the others) and,
    run on the engine, what they resolve and what still fails."""
    subject = sample.subject
    schemas = load_subject(schemas_dir, subject)
    enums, accepted = frozenset(enums), frozenset(accept_renames)
    groups, existing, failures = _groups(schemas, sample.records)
    kept: list[_Group] = []
    not_proposed: list[NotProposed] = []
    for group in groups:
        draft = _draft(schemas, [*kept, group], sample.curated_values, enums, accepted)
        with _trial_registry(schemas_dir, subject, _files(schemas, draft)[0]) as (_, problems):
            if problems:
                not_proposed.append(
                    NotProposed(group.version, group.origin, len(group.records), tuple(problems))
                )
            else:
                kept.append(group)
    draft = _draft(schemas, kept, sample.curated_values, enums, accepted)
    # Suggested for every shape, also one left out: its rename may be what it needs to pass.
    renames = _draft(schemas, groups, sample.curated_values, enums, accepted).renames
    unknown = accepted - {r.sender_field for r in renames}
    if unknown:
        suggested = ", ".join(r.sender_field for r in renames) or "none"
        raise ProposalError(
            f"--accept-rename {', '.join(sorted(unknown))}: no rename is suggested for that "
            f"field (suggested: {suggested})"
        )
    files, originals = _files(schemas, draft)
    new_columns = [c.field for c in draft.changes if c.change == "new field"]
    tried_records = existing + [r for g in groups for r in g.records]
    with _trial_registry(schemas_dir, subject, files) as (root, _):
        proposed_schemas = load_subject(root, subject)
        tried = _try(proposed_schemas, tried_records, new_columns)
    notes = _slower(schemas, proposed_schemas)
    versions = tuple(
        VersionProposal(
            version=group.version,
            origin=group.origin,
            document=draft.writers[group.version],
            records={s: n for s in (QUARANTINED, UNMAPPED) if (n := group.count(s))},
            resolved=dict(tried.resolved.get(group.version, {})),
            new_fields=tuple(draft.new_fields.get(group.version, ())),
            notes=tuple(dict.fromkeys(draft.notes.get(group.version, ()))),
        )
        for group in kept
    )
    proposed = {v.version for v in versions}
    return Proposal(
        subject=subject,
        partitions=tuple(partition_key(h) for h in sample.hours),
        registry_fingerprint=schemas.fingerprint,
        read={s: sample.count(s) for s in (QUARANTINED, UNMAPPED)},
        truncated=sample.truncated,
        versions=versions,
        canonical_changes=tuple(draft.changes),
        renames=tuple(renames),
        not_proposed=tuple(not_proposed),
        still_failing=tuple(failures + tried.failures),
        resolved_by_existing={
            v: sum(counts.values()) for v, counts in tried.resolved.items() if v not in proposed
        },
        filled=tried.filled,
        files=files,
        originals=originals,
        notes=notes,
    )


def store_proposal(store: Store, proposal: Proposal, made_at: datetime) -> list[str]:
    """Leave the proposal in the lake for review: its files, `proposal.json` and
    `summary.txt`, under `proposals/<subject>/<made at>-<registry fingerprint>/`."""
    documents = {
        **proposal.files,
        SUMMARY_FILE: describe(proposal),
        PROPOSAL_FILE: json.dumps(proposal.to_json(), indent=2, ensure_ascii=False) + "\n",
    }
    keys = []
    for name, text in documents.items():
        key = proposal_key(proposal.subject, made_at, proposal.registry_fingerprint, name)
        store.put(key, text.encode())
        keys.append(key)
    return keys


def pending_proposal(store: Store, subject: str, registry_fingerprint: str) -> str | None:
    """The newest proposal in the lake made against the registry as it is now (one that was
    applied, or made before the registry changed, no longer counts): its `proposal.json` key."""
    pending = None
    for info in store.list(zone_prefix(PROPOSALS, subject)):
        found = parse_proposal_key(info.key)
        if (
            found is not None
            and found.name == PROPOSAL_FILE
            and registry_fingerprint.startswith(found.fingerprint)
        ):
            pending = found.key  # keys sort by the time proposals were made
    return pending


def write_proposal(schemas_dir: Path, proposal: Proposal) -> RegistryCheck:
    """Write the proposal's files into the registry, only if the whole registry with them passes
    `schemas check` (tried on a copy first) and the subject is as it was when proposed."""
    if not proposal.files:
        raise ProposalError("nothing to write: the proposal has no file")
    current = load_subject(schemas_dir, proposal.subject)
    if current.fingerprint != proposal.registry_fingerprint:
        raise ProposalError(
            f"schemas/{proposal.subject} changed since the proposal was made: propose again"
        )
    folder = schemas_dir / proposal.subject
    for name in proposal.files:
        if name not in proposal.originals and (folder / name).exists():
            raise ProposalError(f"{folder / name} exists already: propose again")
    with _trial_registry(schemas_dir, proposal.subject, proposal.files, whole=True) as (_, bad):
        if bad:
            raise ProposalError("the registry would not pass schemas check: " + "; ".join(bad))
    _write_files(folder, proposal.files)
    return check_registry(schemas_dir)


def short_type(avro_type: Any) -> str:
    """`["null", {"type": "record", "name": "Queue", …}]` → `null | record Queue`."""
    if isinstance(avro_type, list):
        return " | ".join(short_type(t) for t in avro_type)
    if not isinstance(avro_type, dict):
        return str(avro_type)
    kind = avro_type.get("type")
    if "logicalType" in avro_type:
        return str(avro_type["logicalType"])
    if kind in ("record", "enum", "fixed"):
        return f"{kind} {avro_type.get('name')}"
    if kind == "array":
        return f"array<{short_type(avro_type.get('items'))}>"
    if kind == "map":
        return f"map<{short_type(avro_type.get('values'))}>"
    return short_type(kind)


def describe(proposal: Proposal) -> str:
    """The proposal for a person: what each version resolves, the canonical changes, renames
    to review, what still fails, and the files as a diff."""
    read = proposal.read
    partitions = proposal.partitions
    span = f"{partitions[0]} to {partitions[-1]}" if len(partitions) > 1 else "".join(partitions)
    lines = [
        f"{proposal.subject}: {read[QUARANTINED]} quarantined and {read[UNMAPPED]} unmapped "
        f"record(s) read from {len(partitions)} hour(s), {span}"
        + (" (stopped at the record limit)" if proposal.truncated else ""),
        "",
    ]
    for v in proposal.versions:
        records = " and ".join(f"{n} {source}" for source, n in v.records.items())
        resolved = ", ".join(
            f"{v.resolved.get(source, 0)} of {n} {source}" for source, n in v.records.items()
        )
        lines.append(f"{v.version}{SCHEMA_SUFFIX}: new writer version for {records} ({v.origin})")
        lines.append(f"  resolves {resolved}")
        if v.new_fields:
            lines.append(f"  typed from the data: {', '.join(v.new_fields)}")
        lines += [f"  note: {note}" for note in v.notes]
    if proposal.canonical_changes:
        lines += ["", CANONICAL_FILE]
        for c in proposal.canonical_changes:
            if c.change == "new field":
                lines.append(f"  + {c.field}  {short_type(c.type)}  from {c.sender_field}")
            else:
                lines.append(f"  ~ {c.field}  alias {c.sender_field} ({c.why})")
    pending = [r for r in proposal.renames if not r.accepted]
    if pending:
        lines += ["", "rename suggestions, for review (not applied):"]
        for r in pending:
            lines.append(
                f"  {r.sender_field} ({r.version}) may be a rename of {r.canonical_field}: "
                f"{r.shared_values} of its {r.distinct_values} distinct value(s) are in curated "
                f"{r.canonical_field} ({', '.join(r.examples)})"
            )
            lines.append(
                f"    to apply: --accept-rename {r.sender_field} ({r.canonical_field} gets the "
                f"alias instead of a new {snake_case(r.sender_field)} column)"
            )
    if proposal.notes:
        lines += ["", *(f"note: {note}" for note in proposal.notes)]
    if proposal.filled:
        filled = ", ".join(f"{name} {n}" for name, n in proposal.filled.items())
        lines += ["", f"new columns filled when the records are resolved: {filled}"]
    if proposal.resolved_by_existing:
        existing = ", ".join(f"{v} {n}" for v, n in proposal.resolved_by_existing.items())
        lines += ["", f"already resolvable by the registry as it is (re-materialize): {existing}"]
    if proposal.not_proposed:
        lines += ["", "not proposed (would not pass schemas check):"]
        for n in proposal.not_proposed:
            lines.append(f"  {n.version} ({n.origin}, {n.records} record(s)):")
            lines += [f"    {problem}" for problem in n.problems]
    if proposal.still_failing:
        lines += ["", f"still failing ({len(proposal.still_failing)}):"]
        lines += [
            f"  {f.partition}  {f.source}  {f.event_id}  {f.code}: {f.reason}"
            for f in proposal.still_failing
        ]
    if proposal.files:
        lines += ["", "files (written by --write):", proposal.diff().rstrip("\n")]
    else:
        lines += ["", "nothing to propose"]
    return "\n".join(lines) + "\n"
