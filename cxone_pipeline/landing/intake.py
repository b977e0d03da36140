"""From a raw request body to staging envelopes: plain functions, no HTTP framework."""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cxone_pipeline.lake.envelope import ReservedEventId, format_received_at
from cxone_pipeline.lake.layout import hour_floor
from cxone_pipeline.registry.subject import SubjectRules

JSON_TYPES = frozenset({"", "application/json", "text/plain", "text/json"})
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl"})
_HEADER_TOKEN_RE = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
_INT64 = (-(2**63), 2**63 - 1)
_JSON_SPACE = " \t\r\n"
# Far below Python's recursion limit, so every reader of a staged envelope (the landing's
# encoder, curation under Dagster) has stack to spare.
MAX_NESTING_DEPTH = 100
# gzip input is fed in slices: a body of many tiny members then costs linear time.
_GZIP_FEED_BYTES = 16 * 1024


class IntakeError(Exception):
    """A request the landing refuses; maps to one HTTP status and JSON error code."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


def invalid_json(detail: str) -> IntakeError:
    return IntakeError(400, "invalid_json", detail)


def body_format(content_type: str | None) -> str:
    """'json' or 'ndjson' for a Content-Type header; 415 for anything else."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in JSON_TYPES or (media.startswith("application/") and media.endswith("+json")):
        return "json"
    if media in NDJSON_TYPES:
        return "ndjson"
    raise IntakeError(
        415,
        "unsupported_media_type",
        f"content type {media[:60]!r} is neither JSON (application/json) "
        "nor NDJSON (application/x-ndjson)",
    )


def gunzip_bounded(data: bytes, limit: int) -> bytes:
    """Decompress gzip (one or more members) but stop as soon as the output passes `limit`."""
    out = bytearray()
    view = memoryview(data)
    pos = 0
    while pos < len(view):
        decompressor = zlib.decompressobj(wbits=31)
        try:
            while not decompressor.eof:
                if pos == len(view):
                    raise IntakeError(400, "invalid_gzip", "gzip body is truncated")
                piece = view[pos : pos + _GZIP_FEED_BYTES]
                out += decompressor.decompress(piece, limit + 1 - len(out))
                if len(out) > limit:
                    raise too_large(limit, "after gzip decompression")
                pos += len(piece) - len(decompressor.unused_data)
        except zlib.error as exc:
            raise IntakeError(400, "invalid_gzip", f"body is not valid gzip: {exc}") from None
    return bytes(out)


def too_large(limit: int, where: str = "") -> IntakeError:
    suffix = f" {where}" if where else ""
    return IntakeError(413, "payload_too_large", f"body is over the {limit}-byte limit{suffix}")


def _parse_int(text: str) -> int:
    value = int(text)
    if not _INT64[0] <= value <= _INT64[1]:
        raise ValueError(f"integer {text[:40]} does not fit in 64 bits")
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _parse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key[:60]!r}")
            seen.add(key)
    return obj


_decoder = json.JSONDecoder(
    parse_int=_parse_int,
    parse_float=_parse_float,
    parse_constant=_parse_constant,
    object_pairs_hook=_object_without_duplicates,
)


def parse_json(text: str, where: str, max_depth: int = MAX_NESTING_DEPTH) -> Any:
    """One JSON value, strictly: no duplicate keys, NaN, out-of-range numbers or deep nesting;
    errors name `where` ("body", "line 3", a file and line)."""
    value, end = scan_value(text, skip_space(text, 0), where, max_depth)
    if skip_space(text, end) != len(text):
        raise invalid_json(f"{where} has extra data after the JSON value")
    return value


def scan_value(
    text: str, pos: int, where: str, max_depth: int = MAX_NESTING_DEPTH
) -> tuple[Any, int]:
    """The strict JSON value starting at `pos` and where it ends."""
    try:
        value, end = _decoder.raw_decode(text, pos)
    except RecursionError:
        raise invalid_json(f"{where} is nested too deeply") from None
    except ValueError as exc:
        raise invalid_json(f"{where} is not valid JSON: {str(exc)[:200]}") from None
    # No more opening brackets than levels allowed cannot nest too deeply: skip the walk.
    brackets = text.count("{", pos, end) + text.count("[", pos, end)
    if brackets > max_depth and _nested_too_deeply(value, max_depth):
        raise invalid_json(f"{where} is nested more than {MAX_NESTING_DEPTH} levels deep")
    return value, end


def skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _JSON_SPACE:
        pos += 1
    return pos


def _nested_too_deeply(value: Any, max_depth: int = MAX_NESTING_DEPTH) -> bool:
    """Whether containers nest more than `max_depth` levels, walked level by level."""
    if not isinstance(value, (dict, list)):
        return False
    level = [value]
    for _ in range(max_depth):
        level = [
            child
            for container in level
            if isinstance(container, (dict, list))
            for child in (container.values() if isinstance(container, dict) else container)
        ]
        if not level:
            return False
    return any(isinstance(item, (dict, list)) for item in level)


@dataclass
class Events:
    """A body's events, and each one's JSON text as sent (spliced into its envelope line)."""

    payloads: list[dict[str, Any]]
    texts: list[str]


def parse_events(body: bytes, fmt: str, max_events: int) -> Events:
    """The events of a body: one JSON object, a JSON array of objects, or NDJSON objects.
    Parsing stops at the first event past `max_events`: a body of many tiny events costs
    at most the limit, not its full size."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise invalid_json(f"body is not valid UTF-8 (byte {exc.start})") from None
    start = skip_space(text, 0)
    if start == len(text):
        raise invalid_json("body is empty: send a JSON object, an array of objects or NDJSON")
    if fmt == "ndjson":
        values = _ndjson_values(text)
    elif text[start] == "[":
        values = _array_values(text, start)
    else:
        values = iter([(parse_json(text, "body"), text)])
    events = Events([], [])
    for value, value_text in values:
        if len(events.payloads) == max_events:
            raise IntakeError(
                413, "too_many_events", f"more than {max_events} events: the limit per request"
            )
        if not isinstance(value, dict):
            raise IntakeError(
                400,
                "not_an_object",
                f"event {len(events.payloads)} is a JSON {type(value).__name__}, not an object",
            )
        events.payloads.append(value)
        events.texts.append(value_text)
    if not events.payloads:
        raise invalid_json("body holds no events")
    return events


def _ndjson_values(text: str) -> Iterator[tuple[Any, str]]:
    # Only "\n" ends an NDJSON line: U+2028, U+0085 and friends are legal inside strings.
    start, number = 0, 0
    while start <= len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        number += 1
        line = text[start:end]
        if line.strip(_JSON_SPACE):
            yield parse_json(line, f"line {number}"), line
        start = end + 1


def _array_values(text: str, start: int) -> Iterator[tuple[Any, str]]:
    """The elements of the top-level array at `start`, one at a time; each element is a level
    below the array, so its own nesting may go one level less deep."""
    pos = skip_space(text, start + 1)
    if text.startswith("]", pos):
        end = pos + 1
    else:
        n = 0
        while True:
            value, end = scan_value(text, pos, f"event {n}", MAX_NESTING_DEPTH - 1)
            yield value, text[pos:end]
            pos = end
            n += 1
            pos = skip_space(text, pos)
            if text.startswith(",", pos):
                pos = skip_space(text, pos + 1)
                continue
            if not text.startswith("]", pos):
                raise invalid_json(f"body is not valid JSON: ',' or ']' expected at char {pos}")
            end = pos + 1
            break
    if skip_space(text, end) != len(text):
        raise invalid_json("body has extra data after the JSON value")


def header_token(headers: Mapping[str, str], name: str) -> str | None:
    """A short, printable header value safe to store (no control characters, no separators)."""
    value = headers.get(name)
    if value is None:
        return None
    if not _HEADER_TOKEN_RE.fullmatch(value):
        raise IntakeError(
            400,
            "invalid_header",
            f"{name} must be 1-128 characters of letters, digits and ._:@/+=-",
        )
    return value


# An event time further ahead than this is a sender's clock or a bad value, not an event.
FUTURE_TOLERANCE = timedelta(minutes=5)
# Each staging hour of a request is an object and a change marker written while the
# subject's writer waits: a day's worth per request; history goes through `import`.
MAX_HOURS_PER_REQUEST = 24


def staging_hour(
    rules: SubjectRules,
    payload: dict[str, Any],
    received_at: datetime,
    first_hour: datetime,
    arrived_at: datetime | None = None,
) -> datetime:
    """The hour an event is staged under: its event time's, for subjects that declare one;
    the hour it arrived (`arrived_at`, default `received_at`) when there is none, or it does
    not parse, lies before the first partition or more than five minutes in the future."""
    moment = rules.event_time(payload)
    if moment is None or moment < first_hour or moment > received_at + FUTURE_TOLERANCE:
        return hour_floor(received_at if arrived_at is None else arrived_at)
    return hour_floor(moment)


@dataclass
class Envelopes:
    """A request's events as staging envelope lines, grouped by the hour they are staged in."""

    ids: list[str]
    by_hour: dict[datetime, list[bytes]]

    @property
    def nbytes(self) -> int:
        return sum(len(line) for lines in self.by_hour.values() for line in lines)


def envelope_lines(
    events: list[dict[str, Any]],
    received_at: datetime,
    schema_version: str | None,
    idempotency_key: str | None,
    rules: SubjectRules,
    first_hour: datetime,
    *,
    key_per_event: bool = False,
    arrived_at: datetime | None = None,
    texts: list[str] | None = None,
    keep_lone_surrogates: bool = False,
) -> Envelopes:
    """Event ids and one serialized envelope line per event, under its staging hour.

    `idempotency_key` names a single-event body's event; with `key_per_event` (a signed
    `webhook-id`) a multi-event body's event n is `<key>:<n>`. `arrived_at` stands in for
    `received_at` as the hour of events without an event time (a signed timestamp, so a
    replay lands in the same hour). `texts`, each payload's strict JSON as sent, are spliced
    into the lines instead of serializing the payloads again. A payload holding an unpaired
    UTF-16 surrogate is refused (a sender, or whoever holds an import file, can fix it),
    unless `keep_lone_surrogates` (pulls: nobody can fix what CXone sends), which stages it
    escaped for curation to quarantine alone."""
    if idempotency_key is not None and len(events) != 1 and not key_per_event:
        raise IntakeError(
            400, "invalid_header", "Idempotency-Key applies to a single-event body only"
        )
    stamp = format_received_at(received_at)
    head = f',"received_at":"{stamp}","schema_version":{json.dumps(schema_version)},"payload":'
    result = Envelopes([], {})
    for n, payload in enumerate(events):
        key = idempotency_key
        if key is not None and len(events) > 1:
            key = f"{key}:{n}"
        try:
            eid = rules.event_id(payload, key)
            text = texts[n] if texts is not None else None
            if text is not None and "\\u" not in text:
                # Valid strict JSON holds line breaks only as whitespace: spaces keep it one
                # line. Texts with \u escapes take the path below, which refuses lone
                # surrogates.
                payload_text = text.replace("\n", " ").replace("\r", " ")
                event_id = json.dumps(eid, ensure_ascii=False)
                line = ('{"event_id":' + event_id + head + payload_text + "}").encode()
            else:
                envelope = {
                    "event_id": eid,
                    "received_at": stamp,
                    "schema_version": schema_version,
                    "payload": payload,
                }
                line = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()
        except UnicodeEncodeError:
            # Only a \ud800-\udfff escape without its pair gets here: the body was valid UTF-8.
            if not keep_lone_surrogates:
                raise invalid_json(
                    f"event {n} holds an unpaired UTF-16 surrogate escape, which is not Unicode "
                    "text"
                ) from None
            envelope = {
                "event_id": eid,
                "received_at": stamp,
                "schema_version": schema_version,
                "payload": payload,
            }
            line = json.dumps(envelope, separators=(",", ":")).encode()  # escaped: ASCII
        except ReservedEventId as exc:
            raise IntakeError(400, "invalid_event_id", f"event {n}: {exc}") from None
        result.ids.append(eid)
        hour = staging_hour(rules, payload, received_at, first_hour, arrived_at)
        result.by_hour.setdefault(hour, []).append(line + b"\n")
        if len(result.by_hour) > MAX_HOURS_PER_REQUEST:
            raise IntakeError(
                413,
                "too_many_hours",
                f"the events' times span more than {MAX_HOURS_PER_REQUEST} hours: split the "
                "request, or stage history with `cxone-pipeline import`",
            )
    return result
