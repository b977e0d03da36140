"""The staging envelope's shared rules: event ids and the `received_at` format.

The landing, the historical import and the resolution engine all derive ids here, so an
event gets the same id whichever way it reached the lake.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

RECEIVED_AT_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
MAX_EVENT_ID_LENGTH = 256
# Derived ids only: a sender that supplies one could pre-empt the real event's id.
DERIVED_PREFIX = "sha256:"


class ReservedEventId(ValueError):
    """A sender supplied an id in the form reserved for derived ids."""


def canonical_json(payload: Mapping[str, Any]) -> bytes:
    """Sorted keys, compact separators, UTF-8: equal payloads give equal bytes."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_id(payload: Mapping[str, Any], idempotency_key: str | None = None) -> str:
    """The payload's `eventId`/`event_id`, else the Idempotency-Key, else `sha256:` + the hash
    of its canonical JSON, so an identical retry gets the same id. A supplied id in the
    `sha256:` form raises ReservedEventId."""
    for field in ("eventId", "event_id"):
        value = payload.get(field)
        if isinstance(value, str) and 0 < len(value) <= MAX_EVENT_ID_LENGTH:
            return supplied_id(value, field)
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    if idempotency_key is not None:
        return supplied_id(idempotency_key, "Idempotency-Key")
    return derived_id(payload)


def derived_id(payload: Mapping[str, Any]) -> str:
    return DERIVED_PREFIX + hashlib.sha256(canonical_json(payload)).hexdigest()


def supplied_id(value: str, where: str) -> str:
    if value.startswith(DERIVED_PREFIX):
        raise ReservedEventId(
            f"{where} {value[:80]!r}: ids starting with {DERIVED_PREFIX!r} are reserved for "
            "ids the pipeline derives; send your own id without that prefix"
        )
    return value


def format_received_at(moment: datetime) -> str:
    """RECEIVED_AT_FORMAT of a UTC moment (isoformat: several times cheaper than strftime)."""
    if moment.utcoffset():
        return moment.strftime(RECEIVED_AT_FORMAT)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
