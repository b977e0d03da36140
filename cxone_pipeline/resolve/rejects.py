"""Quarantined records: the envelope as read plus the reason, stored as gzip NDJSON."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from typing import Any

REJECT_CODES = ("unknown_schema_version", "no_matching_schema", "invalid_record", "not_an_object")


@dataclass
class Reject:
    envelope: dict[str, Any]
    code: str
    message: str

    def to_json_line(self) -> bytes:
        """One NDJSON line, newline included: the envelope plus `"error": {code, message}`."""
        record = {**self.envelope, "error": {"code": self.code, "message": self.message}}
        text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        try:
            return text.encode() + b"\n"
        except UnicodeEncodeError:  # an unpaired surrogate, kept as its JSON escape
            return json.dumps(record, separators=(",", ":")).encode() + b"\n"


def rejects_to_bytes(rejects: list[Reject]) -> bytes:
    # mtime=0 keeps the bytes a pure function of the rejects.
    return gzip.compress(b"".join(r.to_json_line() for r in rejects), mtime=0)


def read_rejects(data: bytes) -> list[dict[str, Any]]:
    text = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    return [json.loads(line) for line in text.splitlines() if line.strip()]
