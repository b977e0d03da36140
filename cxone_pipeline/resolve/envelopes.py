"""Staged objects (gzip or plain NDJSON of envelopes) to parsed envelopes, never dropping a line."""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from cxone_pipeline.lake.envelope import event_id as derive_event_id
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


def unpacked(data: bytes) -> bytes:
    """A staged object's NDJSON bytes, gunzipped when it is gzip."""
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise MalformedEnvelope(f"staged object is not readable gzip: {exc}") from exc


def staged_lines(data: bytes) -> list[bytes]:
    """The non-blank NDJSON lines of one staged object, gunzipped when it is gzip."""
    # Stripped: a CRLF file dropped by hand reads like the landing's own objects.
    return [stripped for line in unpacked(data).split(b"\n") if (stripped := line.strip())]


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
        event_id = derive_event_id(payload)
    return Envelope(seq, envelope, payload, event_id, received_at)


def line_reject(line: bytes, message: str) -> Reject:
    """A not_an_object reject keeping the line: as the envelope when it is one, else raw text."""
    try:
        envelope = json.loads(line)
    except ValueError:
        envelope = None
    if not isinstance(envelope, dict):
        envelope = {"raw": line.decode("utf-8", errors="replace")}
    return Reject(envelope, NOT_AN_OBJECT, message)


def parse_timestamps(texts: pa.Array) -> pa.Array:
    """ISO-8601 timestamps with a zone to UTC microseconds (int64); null where one does not."""
    target = pa.timestamp("us", tz="UTC")
    try:
        return texts.cast(target).cast(pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        parsed: list[int | None] = []
        for text in texts:
            try:
                parsed.append(text.cast(target).cast(pa.int64()).as_py())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                parsed.append(None)
        return pa.array(parsed, pa.int64())
