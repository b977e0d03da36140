"""Historical import: exported event files into staging envelopes under their hours, resumably.

Keys are content digests (`layout.import_key`), so re-running an import writes nothing new.
"""

from __future__ import annotations

import argparse
import codecs
import gzip
import hashlib
import itertools
import re
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, TextIO

from cxone_pipeline.cli import CommandError, command_subject
from cxone_pipeline.lake.hours import describe_hours, plural
from cxone_pipeline.lake.layout import (
    STAGING,
    InvalidName,
    change_marker_key,
    hour_prefix,
    import_key,
    partition_hour,
    partition_key,
    validate_subject,
)
from cxone_pipeline.lake.store import Store, StoreError
from cxone_pipeline.landing.intake import (
    MAX_NESTING_DEPTH,
    IntakeError,
    envelope_lines,
    parse_json,
    scan_value,
    skip_space,
)
from cxone_pipeline.registry.subject import SubjectRules
from cxone_pipeline.settings import Settings

MAX_EVENTS_PER_OBJECT = 50_000
MAX_EVENT_BYTES = Settings.max_body_bytes
_READ_BYTES = 64 * 1024
EARLIEST = datetime.min.replace(tzinfo=timezone.utc)
# Epoch numbers at least this large are milliseconds: as seconds they would be past year 5000.
_EPOCH_MS_FROM = 10**11
_EPOCH_TEXT_RE = re.compile(r"-?[0-9]{1,20}")
_FRACTION_RE = re.compile(r"\.([0-9]+)")


class ImportInputError(ValueError):
    """An input the import cannot use; the message names the file (and line) or option."""


@dataclass
class ImportReport:
    events: int = 0
    hours: set[datetime] = field(default_factory=set)
    objects_written: int = 0
    objects_skipped: int = 0

    def summary(self, subject: str) -> str:
        if not self.hours:
            return f"no events found for {subject}: nothing staged"
        # The distinct hours as ranges: a min-max span would invite backfilling the empty
        # hours between them too.
        return (
            f"staged {plural(self.events, f'{subject} event')} in "
            f"{plural(len(self.hours), 'hour')}: {describe_hours(self.hours)}; "
            f"{plural(self.objects_written, 'object')} written, "
            f"{self.objects_skipped:,} already staged"
        )


class Progress:
    """Events, hours and throughput on a stream: one redrawn line on a terminal, else a
    plain line every `interval` seconds."""

    def __init__(self, stream: TextIO, interval: float | None = None) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._interval = interval if interval is not None else (0.2 if self._tty else 5.0)
        self._started = time.monotonic()
        self._shown = self._started

    def update(self, report: ImportReport, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._shown < self._interval:
            return
        self._shown = now
        rate = report.events / max(now - self._started, 1e-6)
        line = (
            f"{plural(report.events, 'event')}, {plural(len(report.hours), 'hour')}, "
            f"{plural(report.objects_written, 'object')} written, "
            f"{report.objects_skipped:,} skipped, "
            f"{rate:,.0f} events/s"
        )
        if self._tty:
            self._stream.write(f"\r\x1b[K{line}" + ("\n" if final else ""))
        else:
            self._stream.write(line + "\n")
        self._stream.flush()


def parse_event_time(value: object) -> datetime | None:
    """An ISO-8601 time with an offset (or Z), or epoch seconds or milliseconds, in UTC."""
    if isinstance(value, str) and _EPOCH_TEXT_RE.fullmatch(value.strip()):
        value = int(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        seconds = value / 1000 if abs(value) >= _EPOCH_MS_FROM else value
        try:
            return datetime.fromtimestamp(seconds, timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    # Python 3.10 reads neither "Z" nor fractions other than 3 or 6 digits.
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    text = _FRACTION_RE.sub(lambda m: "." + (m[1] + "00000")[:6], text, count=1)
    try:
        moment = datetime.fromisoformat(text)
        return moment.astimezone(timezone.utc) if moment.tzinfo else None
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 shifted out of range
        return None


def _open(path: Path) -> IO[bytes]:
    with path.open("rb") as probe:
        magic = probe.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else path.open("rb")


def _parse_json(data: bytes, where: str) -> Any:
    try:
        return parse_json(data.decode("utf-8"), where)
    except UnicodeDecodeError as exc:
        raise ImportInputError(f"{where} is not valid UTF-8 (byte {exc.start})") from None
    except IntakeError as exc:
        raise ImportInputError(exc.detail) from None


def _event(where: str, value: object) -> tuple[str, dict[str, Any]]:
    if not isinstance(value, dict):
        raise ImportInputError(f"{where} is a JSON {type(value).__name__}, not an event object")
    return where, value


def _too_large(where: str, limit: int) -> ImportInputError:
    return ImportInputError(
        f"{where} is over {limit:,} bytes, the landing's limit for one event "
        "(CXONE_PIPELINE_MAX_BODY_BYTES)"
    )


def _first_byte(stream: IO[bytes]) -> tuple[bytes, int]:
    """The first byte that is not JSON whitespace (b"" at the end) and the newlines before."""
    newlines = 0
    while (byte := stream.read(1)) in b" \t\r\n" and byte:
        newlines += byte == b"\n"
    return byte, newlines


def _lines(
    stream: IO[bytes], path: Path, limit: int, first: bytes = b"", number: int = 1
) -> Iterator[tuple[int, bytes]]:
    """Numbered non-blank lines (the first starting with `first`), none read past `limit`
    bytes: a gzip bomb of one line stops there."""
    for n in itertools.count(number):
        line = first + stream.readline(limit + 2 - len(first))
        first = b""
        if not line:
            return
        if len(line.rstrip(b"\r\n")) > limit:
            raise _too_large(f"{path}:{n}", limit)
        if line.strip():
            yield n, line


def _array_events(stream: IO[bytes], path: Path, head: bytes, limit: int) -> Iterator[Any]:
    """The elements of a top-level JSON array, read a chunk at a time: memory holds one
    element (at most `limit` bytes of text) and a chunk, whatever the file's size."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    text, eof = decoder.decode(head), False

    def fill(pos: int) -> tuple[str, int]:
        nonlocal eof
        chunk = stream.read(max(_READ_BYTES, len(text) - pos))
        eof = not chunk
        return text[pos:] + decoder.decode(chunk, final=eof), 0

    pos = skip_space(text, text.index("[") + 1)
    for index in itertools.count():
        while not eof and (pos >= len(text) or len(text) - pos < _READ_BYTES):
            text, pos = fill(pos)
            pos = skip_space(text, pos)
        if text.startswith("]", pos):
            if text[pos + 1 :].strip() or stream.read(1).strip():
                raise ImportInputError(f"{path} has extra data after the JSON array")
            return
        where = f"{path}[{index}]"
        while True:
            try:
                value, end = scan_value(text, pos, where, MAX_NESTING_DEPTH - 1)
                break
            except IntakeError as exc:
                if eof:
                    raise ImportInputError(exc.detail) from None
                if len(text) - pos > limit:
                    # Past the limit, a value that does not end and one that is invalid look
                    # the same: say both.
                    raise ImportInputError(
                        f"{_too_large(where, limit)}, or not valid JSON ({exc.detail})"
                    ) from None
                text, pos = fill(pos)
        if end - pos > limit:
            raise _too_large(where, limit)
        yield value
        pos = skip_space(text, end)
        if text.startswith(",", pos):
            pos = skip_space(text, pos + 1)
        elif not text.startswith("]", pos):
            raise ImportInputError(f"{path} is not valid JSON: ',' or ']' expected after {where}")


def read_events(path: Path, limit: int = MAX_EVENT_BYTES) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each event of an export file (a JSON array or NDJSON, gzip or not) with where it is:
    `file:line` for NDJSON, `file[index]` for an array. No event may be over `limit` bytes,
    the landing's body limit."""
    try:
        with _open(path) as stream:
            first, newlines = _first_byte(stream)
            if first == b"[":
                for index, value in enumerate(_array_events(stream, path, first, limit)):
                    yield _event(f"{path}[{index}]", value)
                return
            for n, line in _lines(stream, path, limit, first, newlines + 1):
                yield _event(f"{path}:{n}", _parse_json(line, f"{path}:{n}"))
    except (OSError, EOFError, zlib.error) as exc:
        raise ImportInputError(f"cannot read {path}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ImportInputError(f"{path} is not valid UTF-8 ({exc.reason})") from None


class _Stager:
    """Chunks one file's envelope lines per hour into objects; skips objects already staged."""

    def __init__(self, store: Store, subject: str, report: ImportReport, max_events: int) -> None:
        self._store = store
        self._subject = subject
        self._report = report
        self._max_events = max_events
        self._pending: dict[datetime, list[bytes]] = {}
        self._staged: dict[datetime, set[str]] = {}

    def add(self, hour: datetime, line: bytes) -> None:
        lines = self._pending.setdefault(hour, [])
        lines.append(line)
        if len(lines) >= self._max_events:
            self._write(hour, self._pending.pop(hour))

    def flush(self) -> None:
        for hour in sorted(self._pending):
            self._write(hour, self._pending[hour])
        self._pending.clear()

    def _write(self, hour: datetime, lines: list[bytes]) -> None:
        data = b"".join(lines)
        key = import_key(self._subject, hour, hashlib.sha256(data).hexdigest())
        if hour not in self._staged:
            self._staged[hour] = staged_keys(self._store, self._subject, hour)
        if stage_once(self._store, self._subject, hour, key, data, self._staged[hour]):
            self._report.objects_written += 1
        else:
            self._report.objects_skipped += 1


def staged_keys(store: Store, subject: str, hour: datetime) -> set[str]:
    return {info.key for info in store.list(hour_prefix(STAGING, subject, hour))}


def stage_once(
    store: Store, subject: str, hour: datetime, key: str, data: bytes, staged: set[str]
) -> bool:
    """Write envelope lines `data` as the content-addressed staging object `key` of `hour`
    unless `staged` (the hour's keys, updated here) already holds it; True when written.

    A change marker is written first, so the sensor notices the hour however old it is.
    """
    if key in staged:
        return False
    store.put(change_marker_key(subject, hour, datetime.now(timezone.utc)), b"")
    store.put(key, gzip.compress(data, 6, mtime=0))
    staged.add(key)
    return True


def import_files(
    store: Store,
    subject: str,
    paths: Sequence[Path],
    *,
    time_field: str | None = None,
    hour: str | None = None,
    progress: Progress | None = None,
    max_events_per_object: int = MAX_EVENTS_PER_OBJECT,
    rules: SubjectRules | None = None,
    first_hour: datetime = EARLIEST,
    max_event_bytes: int = MAX_EVENT_BYTES,
) -> ImportReport:
    """Stage every event of `paths` for `subject`, dated by `time_field` or all in `hour`
    (the envelope's `received_at`), or by the subject's event time when it declares one.
    Subjects partitioned by event time stage each event under its event time's hour.

    Raises ImportInputError (bad option, missing file, bad JSON, event without a time),
    InvalidName (bad subject) or StoreError. What was written before an error stays;
    re-running skips it.
    """
    validate_subject(subject)
    rules = rules or SubjectRules()
    received_at = _dating(time_field, hour, rules)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ImportInputError(f"no such file: {', '.join(missing)}")
    report = ImportReport()
    stager = _Stager(store, subject, report, max_events_per_object)
    for path in paths:
        for where, payload in read_events(path, max_event_bytes):
            moment = received_at(payload, where)
            try:
                staged = envelope_lines([payload], moment, None, None, rules, first_hour)
            except IntakeError as exc:
                raise ImportInputError(f"{where}: {exc.detail}") from None
            ((event_hour, lines),) = staged.by_hour.items()
            stager.add(event_hour, lines[0])
            report.events += 1
            report.hours.add(event_hour)
            if progress is not None and report.events % 1000 == 0:
                progress.update(report)
        stager.flush()
    if progress is not None:
        progress.update(report, final=True)
    return report


def _dating(
    time_field: str | None, hour: str | None, rules: SubjectRules
) -> Callable[[dict[str, Any], str], datetime]:
    """How an event's `received_at` is found: its `time_field`, the fixed `hour`, or the
    subject's event time."""
    if time_field is not None and hour is not None:
        raise ImportInputError("give only one of --time-field FIELD or --hour YYYY-MM-DD-HH:00")
    if hour is not None:
        fixed = partition_hour(hour)
        return lambda payload, where: fixed
    if time_field is not None:
        return lambda payload, where: _event_time(payload, time_field, where)
    if rules.event_time_field is None:
        raise ImportInputError(
            "give --time-field FIELD or --hour YYYY-MM-DD-HH:00 (the subject declares no "
            "event time)"
        )
    return lambda payload, where: _rules_time(payload, rules, where)


def _rules_time(payload: dict[str, Any], rules: SubjectRules, where: str) -> datetime:
    moment = rules.event_time(payload)
    if moment is None:
        assert rules.event_time_field is not None
        raise ImportInputError(
            f"{where}: no readable {rules.event_time_field.name!r} (spelled "
            f"{' or '.join(rules.event_time_field.keys)}): pass --time-field or --hour"
        )
    return moment


def _event_time(payload: dict[str, Any], time_field: str, where: str) -> datetime:
    if time_field not in payload:
        raise ImportInputError(f"{where}: no {time_field!r} field (or import it with --hour)")
    moment = parse_event_time(payload[time_field])
    if moment is None:
        raise ImportInputError(
            f"{where}: {time_field!r} is {str(payload[time_field])[:60]!r}, not an ISO-8601 time "
            "with an offset or epoch seconds/milliseconds (or import it with --hour)"
        )
    return moment


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import",
        help="stage exported event files (JSON array or NDJSON, gzip or not) as history",
        description="Stage historical events as envelopes under their hours in the lake's "
        "staging zone, in objects of at most 50,000 events named by their content: "
        "re-running skips what is already staged. Each object leaves a change marker, so "
        "the staging sensor curates the hours it touches.",
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="exported events")
    parser.add_argument("--subject", required=True, help="registry subject, e.g. call_event")
    parser.add_argument(
        "--time-field",
        metavar="FIELD",
        help="payload field holding each event's time: ISO-8601 with offset, or epoch s/ms "
        "(default for subjects with an event time in subject.json: that field)",
    )
    parser.add_argument(
        "--hour", metavar="YYYY-MM-DD-HH:00", help="stage every event in this UTC hour instead"
    )
    parser.set_defaults(handler=import_command)


def import_command(args: argparse.Namespace) -> int:
    from cxone_pipeline.lake.store import open_store
    from cxone_pipeline.registry import SchemaError
    from cxone_pipeline.settings import Settings, SettingsError

    try:
        settings = Settings.from_env()
        schemas = command_subject(settings.schemas_dir, args.subject)
        report = import_files(
            open_store(settings),
            args.subject,
            args.files,
            time_field=args.time_field,
            hour=args.hour,
            progress=Progress(sys.stderr),
            rules=schemas.rules,
            first_hour=partition_hour(settings.partitions_start),
            max_event_bytes=settings.max_body_bytes,
        )
    except (SettingsError, ImportInputError, InvalidName, StoreError, SchemaError) as exc:
        raise CommandError(str(exc)) from None
    print(report.summary(args.subject))
    if report.hours and partition_key(min(report.hours)) < settings.partitions_start:
        print(
            f"note: hours before CXONE_PIPELINE_PARTITIONS_START ({settings.partitions_start}) "
            "are staged but outside Dagster's partitions: lower it to curate them"
        )
    return 0
