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


def canonical_json(payload: Mapping[str, Any]) -> bytes:
    """Sorted keys, compact separators, UTF-8: equal payloads give equal bytes."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_id(payload: Mapping[str, Any], idempotency_key: str | None = None) -> str:
    """The payload's `eventId`/`event_id`, else the Idempotency-Key, else `sha256:` + the hash
    of its canonical JSON, so an identical retry gets the same id."""
    for field in ("eventId", "event_id"):
        value = payload.get(field)
        if isinstance(value, str) and 0 < len(value) <= MAX_EVENT_ID_LENGTH:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    if idempotency_key is not None:
        return idempotency_key
    return "sha256:" + hashlib.sha256(canonical_json(payload)).hexdigest()


def format_received_at(moment: datetime) -> str:
    return moment.strftime(RECEIVED_AT_FORMAT)
