"""Who may post: bearer tokens (several, for rotation) or HMAC-signed bodies."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping

from cxone_pipeline.landing.intake import IntakeError
from cxone_pipeline.settings import Secret

SIGNATURE_HEADER = "x-cxone-signature"
REPLAY_WINDOW_SECONDS = 300


def unauthorized(detail: str) -> IntakeError:
    return IntakeError(401, "unauthorized", detail)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-CXone-Signature` value for a body (used by senders and tests)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


class Authenticator:
    def __init__(
        self,
        tokens: tuple[Secret, ...],
        hmac_secret: Secret | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._tokens = tuple(t.reveal().encode() for t in tokens)
        self._hmac_key = hmac_secret.reveal().encode() if hmac_secret else None
        self._clock = clock

    def __repr__(self) -> str:
        return f"Authenticator(tokens={len(self._tokens)}, hmac={self._hmac_key is not None})"

    @property
    def configured(self) -> bool:
        return bool(self._tokens) or self._hmac_key is not None

    def needs_body(self, headers: Mapping[str, str]) -> bool:
        """Signed requests can only be checked once the whole body is read."""
        return "authorization" not in headers and SIGNATURE_HEADER in headers

    def check_bearer(self, headers: Mapping[str, str]) -> None:
        header = headers.get("authorization")
        if header is None:
            if SIGNATURE_HEADER in headers and self._hmac_key is not None:
                return  # checked once the body is read
            if SIGNATURE_HEADER in headers:
                raise unauthorized(
                    "request signing is not enabled on this server: use a bearer token"
                )
            raise unauthorized("missing credentials: send Authorization: Bearer <token>")
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

    def check_signature(self, headers: Mapping[str, str], body: bytes) -> None:
        if self._hmac_key is None:
            raise unauthorized("request signing is not enabled on this server: use a bearer token")
        fields: dict[str, list[str]] = {}
        for part in headers[SIGNATURE_HEADER].split(","):
            name, _, value = part.strip().partition("=")
            fields.setdefault(name, []).append(value)
        try:
            timestamp = int(fields["t"][0])
            candidates = fields["v1"]
        except (KeyError, ValueError):
            raise unauthorized("X-CXone-Signature must be 't=<unix seconds>,v1=<hex>'") from None
        if abs(self._clock() - timestamp) > REPLAY_WINDOW_SECONDS:
            raise unauthorized("signature timestamp is outside the 5-minute window")
        expected = hmac.new(self._hmac_key, f"{timestamp}.".encode() + body, hashlib.sha256)
        expected_hex = expected.hexdigest().encode()
        matched = False
        for candidate in candidates:
            matched |= hmac.compare_digest(candidate.strip().lower().encode(), expected_hex)
        if not matched:
            raise unauthorized("signature does not match the body")
