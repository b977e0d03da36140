"""The lake's key layout: the only place that builds or parses the keys of every zone.

Keys are built from validated subject names and server-generated parts only.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timezone

STAGING = "staging"
CURATED = "curated"
QUARANTINE = "quarantine"
# Small markers writers leave when they stage into an hour other than the one they write in
# (late events, imports, pulls), so the sensor finds those hours without listing staging.
CHANGES = "changes"
# Daily tables built on curated hours (`cxone_pipeline.marts`), one folder per mart.
MARTS = "marts"
# Schema proposals (`schemas propose`, the propose_schema job) left for review.
PROPOSALS = "proposals"
ZONES = (STAGING, CURATED, QUARANTINE, CHANGES, MARTS, PROPOSALS)
# The subject of `POST /ingest` without a subject: CXone's call events.
DEFAULT_SUBJECT = "call_event"

PARTITION_KEY_FORMAT = "%Y-%m-%d-%H:%M"
DAY_PARTITION_KEY_FORMAT = "%Y-%m-%d"
_SUBJECT_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_HOUR_PATH_RE = re.compile(r"year=(\d{4})/month=(\d{2})/day=(\d{2})/hour=(\d{2})")
_STAGING_KEY_RE = re.compile(
    rf"{STAGING}/(?P<subject>[a-z][a-z0-9_]{{0,63}})/(?P<hour>{_HOUR_PATH_RE.pattern})/"
    r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*\.jsonl(?:\.gz)?)"
)


class InvalidName(ValueError):
    """A subject or partition name that cannot be part of a lake key."""


def validate_subject(subject: str) -> str:
    if not _SUBJECT_RE.fullmatch(subject):
        raise InvalidName(
            f"invalid subject {subject[:80]!r}: use 1-64 lowercase letters, digits or "
            "underscores, starting with a letter"
        )
    return subject


def is_valid_subject(subject: str) -> bool:
    return _SUBJECT_RE.fullmatch(subject) is not None


def hour_floor(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("lake hours are UTC: pass an aware datetime")
    return moment.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def hour_path(hour: datetime) -> str:
    h = hour_floor(hour)
    return f"year={h:%Y}/month={h:%m}/day={h:%d}/hour={h:%H}"


def parse_hour_path(path: str) -> datetime:
    match = _HOUR_PATH_RE.search(path)
    if not match:
        raise InvalidName(f"no year=/month=/day=/hour= partition in {path[:120]!r}")
    year, month, day, hour = (int(g) for g in match.groups())
    return datetime(year, month, day, hour, tzinfo=timezone.utc)


def partition_key(hour: datetime) -> str:
    return hour_floor(hour).strftime(PARTITION_KEY_FORMAT)


def partition_hour(key: str) -> datetime:
    try:
        return datetime.strptime(key, PARTITION_KEY_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        raise InvalidName(
            f"invalid hourly partition key {key[:40]!r}: expected YYYY-MM-DD-HH:00"
        ) from None


def partition_day(key: str) -> date:
    try:
        return datetime.strptime(key, DAY_PARTITION_KEY_FORMAT).date()
    except ValueError:
        raise InvalidName(
            f"invalid daily partition key {key[:40]!r}: expected YYYY-MM-DD"
        ) from None


def zone_prefix(zone: str, subject: str) -> str:
    if zone not in ZONES:
        raise InvalidName(f"unknown lake zone {zone!r}")
    return f"{zone}/{validate_subject(subject)}/"


def hour_prefix(zone: str, subject: str, hour: datetime) -> str:
    return f"{zone_prefix(zone, subject)}{hour_path(hour)}/"


_STAMP_FORMAT = "%Y%m%dT%H%M%S.%fZ"


def _stamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime(_STAMP_FORMAT)


def staging_key(subject: str, received_at: datetime, hour: datetime | None = None) -> str:
    """A fresh, collision-free staging object key in `hour` (default: the hour received)."""
    prefix = hour_prefix(STAGING, subject, received_at if hour is None else hour)
    return f"{prefix}{_stamp(received_at)}-{secrets.token_hex(8)}.jsonl.gz"


def import_key(subject: str, hour: datetime, digest: str) -> str:
    """A deterministic staging key for historical imports, so re-running one is idempotent."""
    return _content_key("import", subject, hour, digest)


def pull_key(subject: str, hour: datetime, digest: str) -> str:
    """A deterministic staging key for records pulled from CXone: a re-pull of unchanged
    records names the object already there."""
    return _content_key("pull", subject, hour, digest)


def _content_key(source: str, subject: str, hour: datetime, digest: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{16,64}", digest):
        raise InvalidName(f"{source} digest must be lowercase hex")
    return f"{hour_prefix(STAGING, subject, hour)}{source}-{digest}.jsonl.gz"


def curated_key(subject: str, hour: datetime, part: int) -> str:
    return f"{hour_prefix(CURATED, subject, hour)}part-{part:05d}.parquet"


def quarantine_key(subject: str, hour: datetime) -> str:
    return f"{hour_prefix(QUARANTINE, subject, hour)}rejects.jsonl.gz"


def mart_prefix(mart: str, day: date) -> str:
    """The folder of one day of a mart; mart names follow the subject naming rule."""
    return f"{zone_prefix(MARTS, mart)}year={day:%Y}/month={day:%m}/day={day:%d}/"


def mart_key(mart: str, day: date, part: int) -> str:
    return f"{mart_prefix(mart, day)}part-{part:05d}.parquet"


@dataclass(frozen=True)
class StagingObject:
    subject: str
    hour: datetime
    key: str


def parse_staging_key(key: str) -> StagingObject | None:
    """The subject and hour of a staging object key; None for anything else (temp files)."""
    match = _STAGING_KEY_RE.fullmatch(key)
    if not match:
        return None
    return StagingObject(match["subject"], parse_hour_path(match["hour"]), key)


_CHANGE_RE = re.compile(
    rf"{CHANGES}/(?P<subject>[a-z][a-z0-9_]{{0,63}})/(?P<written>\d{{8}}T\d{{6}}\.\d{{6}}Z)-"
    r"[0-9a-f]{8}-h(?P<hour>\d{10})"
)


@dataclass(frozen=True)
class ChangeMarker:
    subject: str
    hour: datetime
    written_at: datetime
    key: str


def change_marker_key(subject: str, hour: datetime, written_at: datetime) -> str:
    """A marker that `hour` of `subject` got a staging object; keys sort by write time."""
    h = hour_floor(hour)
    return (
        f"{zone_prefix(CHANGES, subject)}{_stamp(written_at)}-{secrets.token_hex(4)}-h{h:%Y%m%d%H}"
    )


def change_marker_after(subject: str, moment: datetime) -> str:
    """The key every marker written at or after `moment` sorts after (a listing start)."""
    return f"{zone_prefix(CHANGES, subject)}{_stamp(moment)}"


def parse_change_marker(key: str) -> ChangeMarker | None:
    match = _CHANGE_RE.fullmatch(key)
    if not match:
        return None
    hour = datetime.strptime(match["hour"], "%Y%m%d%H").replace(tzinfo=timezone.utc)
    written = datetime.strptime(match["written"], _STAMP_FORMAT).replace(tzinfo=timezone.utc)
    return ChangeMarker(match["subject"], hour, written, key)


_PROPOSAL_FILE_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}\.(?:avsc|json|txt)")
_PROPOSAL_RE = re.compile(
    rf"{PROPOSALS}/(?P<subject>[a-z][a-z0-9_]{{0,63}})/(?P<made>\d{{8}}T\d{{6}}\.\d{{6}}Z)-"
    r"(?P<fingerprint>[0-9a-f]{16})/(?P<name>[a-z0-9][a-z0-9._-]{0,63}\.(?:avsc|json|txt))"
)


@dataclass(frozen=True)
class ProposalObject:
    subject: str
    folder: str  # the proposal's key prefix, one per proposal
    fingerprint: str  # first 16 hex digits of the registry fingerprint it extends
    name: str
    key: str


def proposal_key(subject: str, made_at: datetime, fingerprint: str, name: str) -> str:
    """A file of the proposal made at `made_at` against the registry with `fingerprint`;
    proposals' folders sort by the time they were made."""
    if not re.fullmatch(r"[0-9a-f]{16,64}", fingerprint):
        raise InvalidName("registry fingerprint must be lowercase hex")
    if not _PROPOSAL_FILE_RE.fullmatch(name):
        raise InvalidName(f"invalid proposal file name {name[:80]!r}")
    return f"{zone_prefix(PROPOSALS, subject)}{_stamp(made_at)}-{fingerprint[:16]}/{name}"


def parse_proposal_key(key: str) -> ProposalObject | None:
    match = _PROPOSAL_RE.fullmatch(key)
    if not match:
        return None
    folder = key[: -len(match["name"])]
    return ProposalObject(match["subject"], folder, match["fingerprint"], match["name"], key)
