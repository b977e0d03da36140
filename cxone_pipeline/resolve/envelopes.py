"""Staged objects (gzip or plain NDJSON of envelopes) to parsed envelopes, never dropping a line."""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from cxone_pipeline.resolve.rejects import Reject

NOT_AN_OBJECT = "not_an_object"


@dataclass
class Envelope:
    seq: int  # position in the call's input, for deterministic output order
    envelope: dict[str, Any]
    payload: dict[str, Any]
    event_id: str
    received_at: str


class MalformedEnvelope(ValueError):
    """A line that is not an envelope: not JSON, not an object, or no object payload."""


def staged_lines(data: bytes) -> list[bytes]:
    """The non-blank NDJSON lines of one staged object, gunzipped when it is gzip."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise MalformedEnvelope(f"staged object is not readable gzip: {exc}") from exc
    return [line for line in data.split(b"\n") if line.strip()]


def parse_envelope(seq: int, line: bytes) -> Envelope:
    try:
        envelope = json.loads(line)
    except ValueError as exc:
        raise MalformedEnvelope(f"line is not valid JSON: {exc}") from None
    if not isinstance(envelope, dict):
        raise MalformedEnvelope(f"line is a JSON {type(envelope).__name__}, not an envelope object")
    payload = envelope.get("payload")
    if not isinstance(payload, dict):
        raise MalformedEnvelope("envelope has no object 'payload'")
    received_at = envelope.get("received_at")
    if not isinstance(received_at, str):
        raise MalformedEnvelope("envelope has no 'received_at' timestamp")
    event_id = envelope.get("event_id")
    if not isinstance(event_id, str) or not event_id:
        event_id = derived_event_id(payload)
    return Envelope(seq, envelope, payload, event_id, received_at)


def derived_event_id(payload: dict[str, Any]) -> str:
    """DESIGN.md's event id for an envelope without one: payload id, else a content hash."""
    for key in ("eventId", "event_id"):
        value = payload.get(key)
        if isinstance(value, str) and value:
            return value
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def line_reject(line: bytes, message: str) -> Reject:
    """A not_an_object reject keeping the line: as the envelope when it is one, else raw text."""
    try:
        envelope = json.loads(line)
    except ValueError:
        envelope = None
    if not isinstance(envelope, dict):
        envelope = {"raw": line.decode("utf-8", errors="replace")}
    return Reject(envelope, NOT_AN_OBJECT, message)


def read_envelopes(
    staged_objects: Iterable[bytes],
) -> tuple[list[Envelope], list[tuple[int, Reject]]]:
    """Every line of every object as an envelope, or as a not_an_object reject with its position."""
    envelopes: list[Envelope] = []
    rejects: list[tuple[int, Reject]] = []
    seq = 0
    for number, data in enumerate(staged_objects):
        try:
            lines = staged_lines(data)
        except MalformedEnvelope as exc:
            raw = {"raw": data[:1024].decode("utf-8", errors="replace")}
            rejects.append((seq, Reject(raw, NOT_AN_OBJECT, f"object {number}: {exc}")))
            seq += 1
            continue
        for line in lines:
            try:
                envelopes.append(parse_envelope(seq, line))
            except MalformedEnvelope as exc:
                rejects.append((seq, line_reject(line, f"object {number}: {exc}")))
            seq += 1
    return envelopes, rejects


def parse_timestamps(texts: Sequence[str]) -> list[int | None]:
    """ISO-8601 timestamps with a zone to UTC microseconds; None where one does not parse."""
    target = pa.timestamp("us", tz="UTC")
    try:
        return pa.array(texts, pa.string()).cast(target).cast(pa.int64()).to_pylist()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        parsed: list[int | None] = []
        for text in texts:
            try:
                parsed.append(pa.scalar(text, pa.string()).cast(target).cast(pa.int64()).as_py())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                parsed.append(None)
        return parsed
