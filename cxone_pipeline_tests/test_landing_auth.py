"""Standard Webhooks as specified: the published test vector and the reference package
(`standardwebhooks`) agree with the landing, in both directions; rotation; bearer rules."""

from __future__ import annotations

import base64
from datetime import datetime, timezone

import pytest
from standardwebhooks.webhooks import Webhook
from starlette.datastructures import Headers

from cxone_pipeline.landing.auth import Authenticator, sign, signed_headers
from cxone_pipeline.landing.intake import IntakeError
from cxone_pipeline.settings import Secret

# The example of the Standard Webhooks specification.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
NEW_SECRET = "whsec_" + base64.b64encode(b"n" * 32).decode()


def authenticator(*secrets: str, now: float = VECTOR_TIMESTAMP) -> Authenticator:
    return Authenticator(
        [Secret("a-token")], [("call_event", Secret(s)) for s in secrets], clock=lambda: now
    )


def verify(auth: Authenticator, headers: dict[str, str], body: bytes) -> None:
    signed = auth.authenticate(Headers(headers), "call_event")
    assert signed is not None
    auth.verify(signed, body)


def test_the_published_vector() -> None:
    assert sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE
    headers = {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": VECTOR_SIGNATURE,
    }
    verify(authenticator(VECTOR_SECRET), headers, VECTOR_BODY)


def test_the_reference_package_agrees_both_ways() -> None:
    body = b'{"eventId": "e-1", "duration": 42}'
    now = int(datetime.now(timezone.utc).timestamp())
    reference = Webhook(NEW_SECRET)
    theirs = reference.sign("msg_ref", datetime.fromtimestamp(now, timezone.utc), body.decode())
    headers = {"webhook-id": "msg_ref", "webhook-timestamp": str(now), "webhook-signature": theirs}
    verify(authenticator(NEW_SECRET, now=now), headers, body)
    ours = signed_headers(NEW_SECRET, "msg_ours", body, now)
    assert reference.verify(body, ours) == {"eventId": "e-1", "duration": 42}


def test_rotation_accepts_any_configured_secret_and_any_listed_signature() -> None:
    auth = authenticator(VECTOR_SECRET, NEW_SECRET)
    old = signed_headers(VECTOR_SECRET, VECTOR_ID, VECTOR_BODY, VECTOR_TIMESTAMP)
    new = signed_headers(NEW_SECRET, VECTOR_ID, VECTOR_BODY, VECTOR_TIMESTAMP)
    verify(auth, old, VECTOR_BODY)
    verify(auth, new, VECTOR_BODY)
    both = {**new, "webhook-signature": f"{new['webhook-signature']} {old['webhook-signature']}"}
    verify(authenticator(VECTOR_SECRET), both, VECTOR_BODY)
    with pytest.raises(IntakeError, match="does not match"):
        verify(authenticator(NEW_SECRET), old, VECTOR_BODY)


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ([("authorization", "Bearer a-token"), ("authorization", "Bearer x")], "one Authorization"),
        ([], "missing credentials"),
        ([("authorization", "Basic a-token")], "must be 'Bearer <token>'"),
    ],
)
def test_bearer_rules(headers: list[tuple[str, str]], detail: str) -> None:
    raw = Headers(raw=[(k.encode(), v.encode()) for k, v in headers])
    with pytest.raises(IntakeError, match=detail) as refused:
        authenticator(VECTOR_SECRET).authenticate(raw, "call_event")
    assert refused.value.status == 401
    assert authenticator().authenticate(Headers({"authorization": "Bearer a-token"}), "x") is None
