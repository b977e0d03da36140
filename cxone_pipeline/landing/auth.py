"""Who may post: bearer tokens (several, for rotation) or Standard Webhooks signatures.

Everything that can be decided from the headers is decided before the body is read: a
request that cannot possibly verify never gets its body buffered. A signed request carries
`webhook-id` (the event id), `webhook-timestamp` and `webhook-signature`
(`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, several space-separated during a
rotation); each secret belongs to one subject, so a signature is only good on that path.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from starlette.datastructures import Headers

from cxone_pipeline.landing.intake import IntakeError
from cxone_pipeline.settings import Secret, webhook_key

WEBHOOK_ID = "webhook-id"
WEBHOOK_TIMESTAMP = "webhook-timestamp"
WEBHOOK_SIGNATURE = "webhook-signature"
SIGNATURE_HEADERS = (WEBHOOK_ID, WEBHOOK_TIMESTAMP, WEBHOOK_SIGNATURE)
# Standard Webhooks' recommended tolerance; the future gets only clock skew, so a request
# signed "in the future" cannot outlive the window.
TOLERANCE_SECONDS = 300
FUTURE_SKEW_SECONDS = 30
MAX_SIGNATURES = 16
_DIGEST_BYTES = hashlib.sha256().digest_size
_WEBHOOK_ID_RE = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")


def unauthorized(detail: str) -> IntakeError:
    return IntakeError(401, "unauthorized", detail)


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """A `webhook-signature` value (`v1,<base64>`) for a body; used by senders and tests."""
    digest = hmac.new(
        webhook_key(Secret(secret)), _signed_content(webhook_id, timestamp, body), "sha256"
    )
    return "v1," + base64.b64encode(digest.digest()).decode()


def signed_headers(
    secret: str, webhook_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers of a body signed now (or at `timestamp`)."""
    moment = int(time.time()) if timestamp is None else timestamp
    return {
        WEBHOOK_ID: webhook_id,
        WEBHOOK_TIMESTAMP: str(moment),
        WEBHOOK_SIGNATURE: sign(secret, webhook_id, moment, body),
    }


def _signed_content(webhook_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{webhook_id}.{timestamp}.".encode() + body


@dataclass(frozen=True)
class Signed:
    """A signed request whose headers could verify; the body decides."""

    subject: str
    webhook_id: str
    timestamp: int
    signatures: tuple[bytes, ...]


class Authenticator:
    def __init__(
        self,
        tokens: Sequence[Secret],
        webhook_secrets: Sequence[tuple[str, Secret]] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._tokens = tuple(t.reveal().encode() for t in tokens)
        self._keys: dict[str, tuple[bytes, ...]] = {}
        for subject, secret in webhook_secrets:
            self._keys[subject] = (*self._keys.get(subject, ()), webhook_key(secret))
        self._clock = clock

    def __repr__(self) -> str:
        return f"Authenticator(tokens={len(self._tokens)}, signed_subjects={sorted(self._keys)})"

    @property
    def configured(self) -> bool:
        return bool(self._tokens or self._keys)

    @property
    def signed_subjects(self) -> frozenset[str]:
        return frozenset(self._keys)

    def authenticate(self, headers: Headers, subject: str) -> Signed | None:
        """Check the bearer token, and everything of a signature but the body. Returns the
        signature still to verify against the body (None for a bearer-only request)."""
        authorization = headers.getlist("authorization")
        present = [name for name in SIGNATURE_HEADERS if name in headers]
        if len(authorization) > 1:
            raise unauthorized("send one Authorization header, not several")
        if not authorization and not present:
            raise unauthorized(
                "missing credentials: send Authorization: Bearer <token>, or sign the request "
                "(webhook-id, webhook-timestamp, webhook-signature)"
            )
        if authorization:
            self.check_bearer(authorization[0])
        # A signature that comes with a bearer token must verify too.
        return self._signature(headers, subject) if present else None

    def check_bearer(self, header: str) -> None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("Authorization header must be 'Bearer <token>'")
        presented = token.strip().encode()
        # Compare against every token, always, so timing does not reveal which one matched.
        matched = False
        for expected in self._tokens:
            matched |= hmac.compare_digest(presented, expected)
        if not matched:
            raise unauthorized("invalid bearer token")

    def _signature(self, headers: Headers, subject: str) -> Signed:
        values = {name: headers.getlist(name) for name in SIGNATURE_HEADERS}
        if any(len(v) != 1 for v in values.values()):
            raise unauthorized(
                "a signed request carries webhook-id, webhook-timestamp and webhook-signature, "
                "each exactly once"
            )
        if subject not in self._keys:
            raise unauthorized(
                "signed requests are not enabled for this path: use a bearer token, or the "
                "path of the subject the secret belongs to"
            )
        webhook_id = values[WEBHOOK_ID][0]
        if not _WEBHOOK_ID_RE.fullmatch(webhook_id):
            raise unauthorized(
                "webhook-id must be 1-128 characters of letters, digits and ._:@/+=-"
            )
        raw_timestamp = values[WEBHOOK_TIMESTAMP][0].strip()
        if not _TIMESTAMP_RE.fullmatch(raw_timestamp):
            raise unauthorized("webhook-timestamp must be integer Unix seconds")
        timestamp = int(raw_timestamp)
        now = self._clock()
        if not now - TOLERANCE_SECONDS <= timestamp <= now + FUTURE_SKEW_SECONDS:
            raise unauthorized(
                f"webhook-timestamp is outside the accepted window ({TOLERANCE_SECONDS} s "
                f"back, {FUTURE_SKEW_SECONDS} s ahead): check the sender's clock"
            )
        return Signed(subject, webhook_id, timestamp, _v1_signatures(values[WEBHOOK_SIGNATURE][0]))

    def verify(self, signed: Signed, body: bytes) -> None:
        """The body against every secret of the subject and every v1 signature presented."""
        content = _signed_content(signed.webhook_id, signed.timestamp, body)
        matched = False
        for key in self._keys[signed.subject]:
            expected = hmac.new(key, content, "sha256").digest()
            for candidate in signed.signatures:
                matched |= hmac.compare_digest(candidate, expected)
        if not matched:
            raise unauthorized("webhook-signature does not match the body")


def _v1_signatures(header: str) -> tuple[bytes, ...]:
    """The decoded `v1,<base64>` entries of a webhook-signature header; other versions (such
    as asymmetric `v1a`) are skipped."""
    entries = header.split()
    if len(entries) > MAX_SIGNATURES:
        raise unauthorized(f"webhook-signature holds more than {MAX_SIGNATURES} signatures")
    signatures = []
    for entry in entries:
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue
        try:
            digest = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(digest) == _DIGEST_BYTES:
            signatures.append(digest)
    if not signatures:
        raise unauthorized("webhook-signature must hold at least one 'v1,<base64 HMAC-SHA256>'")
    return tuple(signatures)
