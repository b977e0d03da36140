"""Hostile requests against the running landing: each refused with its documented error,
nothing staged, the server healthy afterwards; plus a bounded fuzz test of the same promise."""

from __future__ import annotations

import contextlib
import gzip
import json
import resource
import secrets
import socket
import string
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers

from cxone_pipeline.lake.layout import (
    STAGING,
    InvalidName,
    hour_prefix,
    import_key,
    parse_staging_key,
    staging_key,
    zone_prefix,
)
from cxone_pipeline.lake.store import LocalStore, S3Store, StoreError
from cxone_pipeline.landing.auth import (
    FUTURE_SKEW_SECONDS,
    TOLERANCE_SECONDS,
    Authenticator,
    signed_headers,
)
from cxone_pipeline.landing.intake import MAX_NESTING_DEPTH, IntakeError
from cxone_pipeline.settings import Secret
from cxone_pipeline_tests.landing_fixtures import (
    AUTH,
    TOKEN,
    WEBHOOK_SECRET,
    running_landing,
    staged_envelopes,
    staged_objects,
)

LIMIT = 1024 * 1024  # the default body limit, which the corpus server keeps
NOW = int(time.time())
DOCUMENTED_4XX = frozenset(
    {
        "invalid_json",
        "not_an_object",
        "invalid_gzip",
        "invalid_header",
        "unauthorized",
        "unknown_subject",
        "payload_too_large",
        "too_many_events",
        "unsupported_media_type",
        "unsupported_encoding",
    }
)
# What uvicorn's HTTP parser answers, before the app runs, to what HTTP forbids: control
# bytes in a header value, conflicting body framing.
PARSER_REFUSAL = b"Invalid HTTP request received."
AUTH_BYTES = {"Authorization": f"Bearer {TOKEN}".encode()}


@dataclass(frozen=True)
class Hostile:
    """One request, sent byte for byte: `head` holds extra header lines, CR/LF/NUL included."""

    body: bytes = b"{}"
    head: bytes = b""
    path: bytes = b"/ingest/call_event"
    auth: bool = True

    def to_bytes(self) -> bytes:
        auth = header("Authorization", AUTH["Authorization"]) if self.auth else b""
        return (
            b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n%s%s\r\n%s"
            % (self.path, len(self.body), auth, self.head, self.body)
        )


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def exchange(url: str, request: Hostile, timeout: float = 20.0) -> Reply:
    """One request over a raw socket (no client-side validation or path normalization)."""
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        # The server may answer before reading everything; its answer is what counts.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request.to_bytes())
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return Reply(int(lines[0].split(" ")[1]), headers.get("content-type", ""), body)


def header(name: str, value: bytes | str) -> bytes:
    return name.encode() + b": " + (value if isinstance(value, bytes) else value.encode()) + b"\r\n"


def signature(timestamp: int, body: bytes = b"{}", webhook_id: str = "msg_hostile") -> bytes:
    return b"".join(
        header(name, value)
        for name, value in signed_headers(WEBHOOK_SECRET, webhook_id, body, timestamp).items()
    )


def signature_with(**replaced: str) -> bytes:
    """Valid signature headers for `{}` now, with some header values replaced."""
    headers = {**signed_headers(WEBHOOK_SECRET, "msg_hostile", b"{}"), **replaced}
    return b"".join(header(name.replace("_", "-"), value) for name, value in headers.items())


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def nested(depth: int) -> bytes:
    """An object holding `depth` nested arrays: `depth` + 1 levels."""
    return b'{"a":' + b"[" * depth + b"]" * depth + b"}"


GZIP = header("Content-Encoding", "gzip")
NDJSON = header("Content-Type", "application/x-ndjson")
EVENT_AT_LIMIT = b'{"k":"' + b"x" * (LIMIT - 8) + b'"}'
DUPLICATE_AFTER_MANY_KEYS = (
    b"{" + b",".join(b'"k%06d":0' % i for i in range(80_000)) + b',"k000000":1}'
)
VALID_GZIP = gzipped(b'{"customerId": "c-1"}')

# Cases test_landing.ERROR_CASES already covers (invalid JSON, empty body, [1, 2], "text",
# top-level duplicate keys, NaN, a 30-digit integer, \xff\xfe, 100,000 nested arrays, xml,
# br, plain not-gzip, "v2/../..;x", "a b", wrong token, Basic) are not repeated here.
CORPUS = [
    # bodies that are not JSON, or not JSON that fits the lake
    pytest.param(Hostile(b'{"a": 1,}'), 400, "invalid_json", id="trailing-comma"),
    pytest.param(Hostile(b"{'a': 1}"), 400, "invalid_json", id="single-quotes"),
    pytest.param(Hostile(b'{"a": 1 /* c */}'), 400, "invalid_json", id="comment"),
    pytest.param(Hostile(b'{"a": '), 400, "invalid_json", id="truncated"),
    pytest.param(Hostile(b'{"a": 1} {"b": 2}'), 400, "invalid_json", id="two-json-values"),
    pytest.param(
        Hostile(b'{"eventId": "ok1"}\n{oops\n{"eventId": "ok2"}\n', NDJSON),
        400,
        "invalid_json",
        id="ndjson-one-bad-line-stages-none",
    ),
    pytest.param(Hostile(b'{"a": "\xc0\xaf"}'), 400, "invalid_json", id="utf8-overlong"),
    pytest.param(Hostile(b'{"a": "\xed\xa0\x80"}'), 400, "invalid_json", id="utf8-surrogate"),
    pytest.param(Hostile(b'{"a": "\xe2\x82"}'), 400, "invalid_json", id="utf8-truncated"),
    pytest.param(Hostile(b'{"a": "caf\xe9"}'), 400, "invalid_json", id="latin1-body"),
    pytest.param(Hostile(rb'{"a": "\ud800"}'), 400, "invalid_json", id="lone-surrogate-escape"),
    pytest.param(Hostile(rb'{"\udfff": 1}'), 400, "invalid_json", id="lone-surrogate-key"),
    pytest.param(Hostile(b" \n\t\r\n "), 400, "invalid_json", id="whitespace-only"),
    pytest.param(Hostile(b"[]"), 400, "invalid_json", id="empty-array"),
    pytest.param(Hostile(b"\n\n  \n", NDJSON), 400, "invalid_json", id="ndjson-blank-lines"),
    pytest.param(
        Hostile(b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
        400,
        "invalid_json",
        id="objects-nested-100000",
    ),
    pytest.param(
        Hostile(b'[{"a":' * 50_000 + b"1" + b"}]" * 50_000),
        400,
        "invalid_json",
        id="mixed-nested-100000",
    ),
    pytest.param(Hostile(nested(990)), 400, "invalid_json", id="nested-at-recursion-limit"),
    pytest.param(
        Hostile(nested(MAX_NESTING_DEPTH)),
        400,
        "invalid_json",
        id="nested-one-past-the-limit",
    ),
    pytest.param(Hostile(b'{"n": 9223372036854775808}'), 400, "invalid_json", id="int64-max+1"),
    pytest.param(Hostile(b'{"n": -9223372036854775809}'), 400, "invalid_json", id="int64-min-1"),
    pytest.param(Hostile(b'{"n": 18446744073709551616}'), 400, "invalid_json", id="2**64"),
    pytest.param(Hostile(b'{"n": ' + b"9" * 5000 + b"}"), 400, "invalid_json", id="5000-digits"),
    pytest.param(Hostile(b'{"a": Infinity}'), 400, "invalid_json", id="infinity"),
    pytest.param(Hostile(b'{"a": -Infinity}'), 400, "invalid_json", id="minus-infinity"),
    pytest.param(Hostile(b'{"a": [1, NaN]}'), 400, "invalid_json", id="nested-nan"),
    pytest.param(Hostile(b'{"a": 1e999}'), 400, "invalid_json", id="1e999"),
    pytest.param(Hostile(b'{"a": -1e999}'), 400, "invalid_json", id="minus-1e999"),
    pytest.param(Hostile(b'{"a": {"b": 1, "b": 2}}'), 400, "invalid_json", id="duplicate-nested"),
    pytest.param(
        Hostile(b'[{"x": 1}, {"y": 1, "y": 2}]'), 400, "invalid_json", id="duplicate-in-array"
    ),
    pytest.param(Hostile(rb'{"a": 1, "\u0061": 2}'), 400, "invalid_json", id="duplicate-by-escape"),
    pytest.param(
        Hostile(DUPLICATE_AFTER_MANY_KEYS), 400, "invalid_json", id="duplicate-after-80000-keys"
    ),
    # JSON, but not objects
    pytest.param(Hostile(b"42"), 400, "not_an_object", id="top-level-number"),
    pytest.param(Hostile(b"-1.5e3"), 400, "not_an_object", id="top-level-float"),
    pytest.param(Hostile(b"true"), 400, "not_an_object", id="top-level-true"),
    pytest.param(Hostile(b"null"), 400, "not_an_object", id="top-level-null"),
    pytest.param(Hostile(b"[{}, 1]"), 400, "not_an_object", id="array-object-then-number"),
    pytest.param(Hostile(b'[{}, "x"]'), 400, "not_an_object", id="array-object-then-string"),
    pytest.param(Hostile(b"[null]"), 400, "not_an_object", id="array-of-null"),
    pytest.param(Hostile(b"[[{}]]"), 400, "not_an_object", id="array-of-arrays"),
    pytest.param(
        Hostile(b'{"a": 1}\n[{"b": 2}]\n', NDJSON), 400, "not_an_object", id="ndjson-array"
    ),
    pytest.param(Hostile(b'{"a": 1}\n7\n', NDJSON), 400, "not_an_object", id="ndjson-scalar"),
    # sizes and gzip
    pytest.param(
        Hostile(gzipped(EVENT_AT_LIMIT[:-2] + b'x"}'), GZIP),
        413,
        "payload_too_large",
        id="gzip-one-byte-over-limit",
    ),
    pytest.param(Hostile(VALID_GZIP[:-5], GZIP), 400, "invalid_gzip", id="gzip-truncated"),
    pytest.param(
        Hostile(VALID_GZIP[:-8] + b"\0\0\0\0" + VALID_GZIP[-4:], GZIP),
        400,
        "invalid_gzip",
        id="gzip-bad-crc",
    ),
    pytest.param(Hostile(VALID_GZIP + b"junk", GZIP), 400, "invalid_gzip", id="gzip-trailing-junk"),
    pytest.param(Hostile(gzipped(VALID_GZIP), GZIP), 400, "invalid_json", id="gzip-inside-gzip"),
    # content types and encodings
    pytest.param(
        Hostile(head=header("Content-Type", "multipart/form-data; boundary=x")),
        415,
        "unsupported_media_type",
        id="multipart",
    ),
    pytest.param(
        Hostile(head=header("Content-Type", "application/x-www-form-urlencoded")),
        415,
        "unsupported_media_type",
        id="form-urlencoded",
    ),
    pytest.param(
        Hostile(head=header("Content-Type", "application/octet-stream")),
        415,
        "unsupported_media_type",
        id="octet-stream",
    ),
    pytest.param(
        Hostile(head=header("Content-Type", "text/html")),
        415,
        "unsupported_media_type",
        id="text-html",
    ),
    pytest.param(
        Hostile(head=header("Content-Type", "image/svg+json")),
        415,
        "unsupported_media_type",
        id="non-application-plus-json",
    ),
    pytest.param(
        Hostile(head=header("Content-Encoding", "deflate")),
        415,
        "unsupported_encoding",
        id="deflate",
    ),
    pytest.param(
        Hostile(gzipped(VALID_GZIP), header("Content-Encoding", "gzip, gzip")),
        415,
        "unsupported_encoding",
        id="gzip-twice",
    ),
    pytest.param(
        Hostile(VALID_GZIP, header("Content-Encoding", "x-gzip")),
        415,
        "unsupported_encoding",
        id="x-gzip",
    ),
    # subjects that could name a path
    pytest.param(Hostile(path=b"/ingest/%2e%2e"), 404, "unknown_subject", id="dot-dot-encoded"),
    pytest.param(Hostile(path=b"/ingest/../staging"), 404, "unknown_subject", id="dot-dot-raw"),
    pytest.param(
        Hostile(path=b"/ingest/call_event%2F..%2Fagent_state"),
        404,
        "unknown_subject",
        id="slash-encoded",
    ),
    pytest.param(
        Hostile(path=b"/ingest/%2Fetc%2Fpasswd"), 404, "unknown_subject", id="absolute-path"
    ),
    pytest.param(Hostile(path=b"/ingest/call_event%00"), 404, "unknown_subject", id="nul"),
    pytest.param(Hostile(path=b"/ingest/CALL_EVENT"), 404, "unknown_subject", id="uppercase"),
    pytest.param(Hostile(path=b"/ingest/call_event/"), 404, "unknown_subject", id="trailing-slash"),
    pytest.param(Hostile(path=b"/ingest/%ff%fe"), 404, "unknown_subject", id="invalid-utf8"),
    pytest.param(Hostile(path=b"/ingest/" + b"a" * 65), 404, "unknown_subject", id="65-chars"),
    pytest.param(
        Hostile(path=b"/ingest/" + b"a" * 10_000), 404, "unknown_subject", id="10000-chars"
    ),
    # header values: refused by the app when HTTP allows them, by the HTTP parser otherwise
    pytest.param(
        Hostile(head=header("X-Schema-Version", "v" * 200)), 400, "invalid_header", id="version-200"
    ),
    pytest.param(
        Hostile(head=header("Idempotency-Key", "k" * 200)), 400, "invalid_header", id="key-200"
    ),
    pytest.param(
        Hostile(head=header("X-Schema-Version", "")), 400, "invalid_header", id="version-empty"
    ),
    pytest.param(
        Hostile(head=header("Idempotency-Key", b"caf\xc3\xa9")),
        400,
        "invalid_header",
        id="key-non-ascii",
    ),
    pytest.param(
        Hostile(head=header("X-Schema-Version", b"v2\xff")),
        400,
        "invalid_header",
        id="version-non-ascii",
    ),
    pytest.param(
        Hostile(head=header("Idempotency-Key", "a%0d%0aX-Injected:%201")),
        400,
        "invalid_header",
        id="key-url-encoded-crlf",
    ),
    pytest.param(
        Hostile(head=header("X-Schema-Version", b"v2\rX-Injected: 1")),
        400,
        None,
        id="version-bare-cr",
    ),
    pytest.param(
        Hostile(head=header("Idempotency-Key", b"k\nX-Injected: 1")),
        400,
        None,
        id="key-bare-lf",
    ),
    pytest.param(Hostile(head=header("Idempotency-Key", b"k\0x")), 400, None, id="key-nul"),
    pytest.param(
        Hostile(head=header("X-Schema-Version", "v2") + b" folded\r\n"),
        400,
        None,
        id="version-obs-fold",
    ),
    # framing a proxy and the landing could read differently (request smuggling)
    pytest.param(
        Hostile(head=header("Transfer-Encoding", "chunked")),
        400,
        None,
        id="content-length-and-chunked",
    ),
    pytest.param(Hostile(head=header("Content-Length", "5")), 400, None, id="two-content-lengths"),
    pytest.param(
        Hostile(head=header("Content-Length", "-1")), 400, None, id="negative-content-length"
    ),
    # credentials
    pytest.param(Hostile(auth=False), 401, "unauthorized", id="no-credentials"),
    pytest.param(
        Hostile(auth=False, head=header("Authorization", "Bearer ")),
        401,
        "unauthorized",
        id="bearer-empty",
    ),
    pytest.param(
        Hostile(auth=False, head=header("Authorization", TOKEN)),
        401,
        "unauthorized",
        id="token-without-scheme",
    ),
    pytest.param(
        Hostile(auth=False, head=header("Authorization", f"Bearer {TOKEN[:-1]}")),
        401,
        "unauthorized",
        id="token-prefix",
    ),
    pytest.param(
        Hostile(auth=False, head=header("Authorization", f"Bearer {TOKEN}x")),
        401,
        "unauthorized",
        id="token-suffix",
    ),
    pytest.param(
        Hostile(auth=False, head=header("Authorization", f"Bearer {TOKEN}".encode() + b"\xe9")),
        401,
        "unauthorized",
        id="token-non-ascii",
    ),
    pytest.param(
        Hostile(auth=False, head=signature(NOW + 3600)),
        401,
        "unauthorized",
        id="signature-from-the-future",
    ),
    pytest.param(
        Hostile(auth=False, head=signature(0)), 401, "unauthorized", id="signature-epoch-zero"
    ),
    pytest.param(
        Hostile(auth=False, head=signature_with(webhook_timestamp="1e9")),
        401,
        "unauthorized",
        id="signature-float-time",
    ),
    pytest.param(
        Hostile(auth=False, head=signature_with(webhook_timestamp="9" * 5000)),
        401,
        "unauthorized",
        id="signature-5000-digit-time",
    ),
    pytest.param(
        Hostile(auth=False, head=signature_with(webhook_signature="v1a,AAAA")),
        401,
        "unauthorized",
        id="signature-without-v1",
    ),
    pytest.param(
        Hostile(auth=False, head=signature_with(webhook_signature="v1,AAAA " * 17)),
        401,
        "unauthorized",
        id="signature-17-entries",
    ),
    pytest.param(
        Hostile(auth=False, head=signature_with(webhook_id="sha256:" + "0" * 64)),
        401,
        "unauthorized",
        id="signature-reserved-id-unsigned",
    ),
    pytest.param(
        Hostile(auth=False, head=signature(NOW) + signature_with(webhook_id="msg_other")),
        401,
        "unauthorized",
        id="signature-headers-twice",
    ),
    pytest.param(
        Hostile(head=header("Authorization", "Bearer wrong")),
        401,
        "unauthorized",
        id="two-authorization-headers",
    ),
    pytest.param(
        Hostile(auth=False, head=signature(NOW), path=b"/ingest/agent_state"),
        401,
        "unauthorized",
        id="signature-for-another-subject",
    ),
    pytest.param(
        Hostile(gzipped(b"{}"), GZIP + signature(NOW), auth=False),
        401,
        "unauthorized",
        id="signature-of-the-decompressed-body",
    ),
    pytest.param(
        Hostile(
            head=signature(NOW) + header("Authorization", "Bearer wrong"),
            auth=False,
        ),
        401,
        "unauthorized",
        id="valid-signature-wrong-bearer",
    ),
]


@dataclass(frozen=True)
class Landing:
    url: str
    store: LocalStore
    http: httpx.Client


@contextmanager
def landing_with_client(store: LocalStore, **overrides: Any) -> Iterator[Landing]:
    with running_landing(store, **overrides) as url, httpx.Client(base_url=url, timeout=10) as http:
        yield Landing(url, store, http)


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Landing]:
    """One landing, default limits, for every corpus case: they must not harm it."""
    with landing_with_client(LocalStore(tmp_path_factory.mktemp("hostile") / "lake")) as landing:
        yield landing


def assert_healthy(landing: Landing) -> None:
    """Alive, and a valid request is still staged."""
    assert landing.http.get("/healthz").status_code == 200
    event_id = f"probe-{secrets.token_hex(4)}"
    response = landing.http.post("/ingest/call_event", json={"eventId": event_id}, headers=AUTH)
    assert (response.status_code, response.json()["event_ids"]) == (202, [event_id])
    assert event_id in {e["event_id"] for e in staged_envelopes(landing.store, "call_event")}


@pytest.mark.parametrize(("request_", "status", "code"), CORPUS)
def test_hostile_request_is_refused_and_stages_nothing(
    landing: Landing, request_: Hostile, status: int, code: str | None
) -> None:
    url, store = landing.url, landing.store
    before = staged_objects(store)
    reply = exchange(url, request_)
    assert reply.status == status
    if code is None:
        assert (reply.content_type, reply.body) == ("text/plain; charset=utf-8", PARSER_REFUSAL)
    else:
        assert reply.content_type == "application/json"
        body = reply.json()
        assert body["error"] == code
        assert isinstance(body["detail"], str) and body["detail"]
        assert body.keys() == {"error", "detail"}
    assert staged_objects(store) == before
    assert_healthy(landing)


ACCEPTED = [
    pytest.param(
        Hostile('{"t": "a\u2028b\u2029c\x85d"}\n{"t": 2}\n'.encode(), NDJSON),
        [{"t": "a\u2028b\u2029c\x85d"}, {"t": 2}],
        id="ndjson-unicode-line-separators-in-strings",
    ),
    pytest.param(
        Hostile(b'{"a": 1}\r\n{"b": 2}\r\n', NDJSON), [{"a": 1}, {"b": 2}], id="ndjson-crlf"
    ),
    pytest.param(
        Hostile(b'{"max": 9223372036854775807, "min": -9223372036854775808}'),
        [{"max": 2**63 - 1, "min": -(2**63)}],
        id="int64-bounds",
    ),
    pytest.param(
        Hostile(rb'{"smile": "\ud83d\ude00"}'), [{"smile": "\U0001f600"}], id="surrogate-pair"
    ),
    pytest.param(
        Hostile(nested(MAX_NESTING_DEPTH - 1)),
        [json.loads(nested(MAX_NESTING_DEPTH - 1))],
        id="nested-at-the-limit",
    ),
    pytest.param(
        Hostile(gzipped(EVENT_AT_LIMIT), GZIP),
        [json.loads(EVENT_AT_LIMIT)],
        id="gzip-exactly-at-limit",
    ),
    pytest.param(
        Hostile(gzipped(b"") * 1000 + gzipped(b'{"m": ') + gzipped(b"1}"), GZIP),
        [{"m": 1}],
        id="gzip-many-members",
    ),
]


@pytest.mark.parametrize(("request_", "payloads"), ACCEPTED)
def test_odd_but_valid_request_is_staged_as_sent(
    landing: Landing, request_: Hostile, payloads: list[dict[str, Any]]
) -> None:
    url, store = landing.url, landing.store
    before = set(staged_objects(store))
    reply = exchange(url, request_)
    assert reply.status == 202
    new = [e for e in staged_envelopes(store) if e["_key"] not in before]
    assert [e["payload"] for e in new] == payloads
    assert [e["event_id"] for e in new] == reply.json()["event_ids"]
    assert_healthy(landing)


def test_path_like_header_values_are_data_never_keys(landing: Landing) -> None:
    url, store = landing.url, landing.store
    reply = exchange(
        url,
        Hostile(
            b'{"customerId": "c-1"}',
            header("X-Schema-Version", "../../curated") + header("Idempotency-Key", "../k"),
        ),
    )
    assert (reply.status, reply.json()["event_ids"]) == (202, ["../k"])
    [envelope] = [e for e in staged_envelopes(store) if e["event_id"] == "../k"]
    assert envelope["schema_version"] == "../../curated"
    staged = parse_staging_key(envelope["_key"])
    assert staged is not None and staged.subject == "call_event"
    assert all(parse_staging_key(key) for key in staged_objects(store))


def test_nesting_near_the_recursion_limit_is_refused_not_a_crash(landing: Landing) -> None:
    """Depths just under Python's recursion limit once parsed, then failed to encode: a 500."""
    before = staged_objects(landing.store)
    for depth in range(850, 1001):
        for body in (nested(depth), b"[" + b'{"a":' * depth + b"1" + b"}" * depth + b"]"):
            reply = exchange(landing.url, Hostile(body))
            assert (reply.status, reply.json()["error"]) == (400, "invalid_json"), depth
    assert staged_objects(landing.store) == before
    assert_healthy(landing)


def test_aborted_upload_is_counted_not_a_server_error(landing: Landing) -> None:
    """A sender that hangs up mid-body once raised ClientDisconnect out of the app (a 500)."""
    before = staged_objects(landing.store)
    request = Hostile(b'{"customerId": "c-1", "duration": 42}').to_bytes()
    port = int(landing.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request[:-10])
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(1024) == b""
    counted = 'cxone_landing_requests_rejected_total{reason="client_disconnected"} 1.0'
    deadline = time.monotonic() + 10
    while counted not in landing.http.get("/metrics", headers=AUTH).text:
        assert time.monotonic() < deadline, "the aborted upload was not counted as rejected"
        time.sleep(0.05)
    assert staged_objects(landing.store) == before
    assert_healthy(landing)


def test_gzip_bomb_is_refused_without_expanding_it(landing: Landing) -> None:
    url, store = landing.url, landing.store
    member = gzip.compress(bytes(16 * LIMIT), 9, mtime=0)
    bomb = member * 64  # about 1 MB on the wire, 1 GiB expanded
    assert len(bomb) < LIMIT
    before = staged_objects(store)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    started = time.monotonic()
    reply = exchange(url, Hostile(bomb, GZIP))
    elapsed = time.monotonic() - started
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert (reply.status, reply.json()["error"]) == (413, "payload_too_large")
    assert "decompression" in reply.json()["detail"]
    assert elapsed < 5
    assert grown_mib < 100  # the server runs in this process: 1 GiB expanded would show
    assert staged_objects(store) == before
    assert_healthy(landing)


def test_many_gzip_members_cost_linear_time(local_store: LocalStore) -> None:
    """100,000 empty gzip members once took 14 s of event-loop time (quadratic re-slicing)."""
    limit = 2 * LIMIT
    body = gzipped(b"") * ((limit - 40) // 20) + gzipped(b'{"n": 1}')
    assert len(body) <= limit
    with landing_with_client(local_store, max_body_bytes=limit) as landing:
        started = time.monotonic()
        reply = exchange(landing.url, Hostile(body, GZIP))
        elapsed = time.monotonic() - started
        assert_healthy(landing)
    assert reply.status == 202
    assert elapsed < 6


def test_signature_window_is_five_minutes_back_and_thirty_seconds_ahead() -> None:
    now = [float(NOW)]
    auth = Authenticator((), [("call_event", Secret(WEBHOOK_SECRET))], clock=lambda: now[0])
    body = b'{"customerId": "c-1"}'
    headers = Headers(signed_headers(WEBHOOK_SECRET, "msg_1", body, NOW))
    for moment in (NOW - FUTURE_SKEW_SECONDS, NOW, NOW + TOLERANCE_SECONDS):
        now[0] = moment
        signed = auth.authenticate(headers, "call_event")
        assert signed is not None
        auth.verify(signed, body)
    for moment in (NOW + TOLERANCE_SECONDS + 1, NOW - FUTURE_SKEW_SECONDS - 1):
        now[0] = moment
        with pytest.raises(IntakeError) as refused:
            auth.authenticate(headers, "call_event")
        assert (refused.value.status, refused.value.code) == (401, "unauthorized")
        assert "outside the accepted window" in refused.value.detail


BAD_SUBJECTS = [
    "",
    "..",
    "../curated",
    "call_event/../x",
    "call_event/",
    "/call_event",
    "CALL_EVENT",
    "call_event\x00",
    "call-event",
    "call event",
    "1call",
    "_call",
    "caf\u00e9",
    "a" * 65,
]


@pytest.mark.parametrize("subject", BAD_SUBJECTS)
def test_staging_keys_are_built_only_from_validated_names(subject: str) -> None:
    hour = datetime(2026, 11, 27, 19, tzinfo=timezone.utc)
    with pytest.raises(InvalidName):
        staging_key(subject, hour)
    with pytest.raises(InvalidName):
        hour_prefix(STAGING, subject, hour)
    with pytest.raises(InvalidName):
        import_key(subject, hour, "ab" * 32)


def test_lake_keys_refuse_unknown_zones_and_non_hex_digests() -> None:
    hour = datetime(2026, 11, 27, 19, tzinfo=timezone.utc)
    for zone in ("..", "staging/..", "raw"):
        with pytest.raises(InvalidName):
            zone_prefix(zone, "call_event")
    for digest in ("../../x", "AB" * 16, "ab" * 7, "ab" * 33, "g" * 32):
        with pytest.raises(InvalidName):
            import_key("call_event", hour, digest)
    key = staging_key("call_event", hour)
    assert parse_staging_key(key) is not None
    assert key.startswith("staging/call_event/year=2026/month=11/day=27/hour=19/")


UNSAFE_KEYS = ["", "/abs", "../escape", "staging/../../escape", "staging//x", "staging/./x", "a/.."]


def test_store_refuses_unsafe_keys(store: LocalStore | S3Store, tmp_path: Path) -> None:
    for key in UNSAFE_KEYS:
        with pytest.raises(StoreError, match="unsafe lake key"):
            store.put(key, b"x")
        with pytest.raises(StoreError, match="unsafe lake key"):
            store.get(key)
        with pytest.raises(StoreError, match="unsafe lake key"):
            store.delete(key)
    assert list(store.list("")) == []
    assert not list(tmp_path.rglob("escape"))


# Property-based: whatever arrives, the answer is a 202 whose events are all staged, or a
# documented 4xx that stages nothing; never a 5xx.

FUZZ_LIMIT = 8192
FUZZ_MAX_EVENTS = 20
ROUTE_ERRORS = frozenset({"not_found", "method_not_allowed"})
HEADER_TOKENS = st.text(string.ascii_letters + string.digits + "._:@/+=-", min_size=1, max_size=40)
# What HTTP lets a client send in a header value: visible ASCII, spaces, tabs, obs-text.
HEADER_BYTES = st.binary(max_size=60).map(
    lambda raw: bytes(b for b in raw if b == 9 or 32 <= b <= 126 or b >= 128).strip()
)


# Characters that split lines for str.splitlines() but are plain text inside JSON strings.
TEXT = st.text(
    st.characters(codec="utf-8") | st.sampled_from("\u2028\u2029\x85\x1c\x0b"), max_size=12
)


def json_values(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda children: (
            st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3)
        ),
        max_leaves=8,
    )


SAFE_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
ANY_LEAVES = (
    SAFE_LEAVES
    | st.integers()
    | st.floats()
    | st.text(st.characters() | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF))
)
EVENTS = st.lists(
    st.dictionaries(TEXT, json_values(SAFE_LEAVES), max_size=4),
    min_size=1,
    max_size=4,
)


@dataclass(frozen=True)
class Sample:
    body: bytes
    headers: dict[str, bytes]
    path: str
    events: list[dict[str, Any]] | None  # set when the request is valid: it must be accepted


@st.composite
def valid_requests(draw: st.DrawFn) -> Sample:
    events = draw(EVENTS)
    shape = draw(
        st.sampled_from(["object", "array", "ndjson"])
        if len(events) == 1
        else st.sampled_from(["array", "ndjson"])
    )
    headers: dict[str, bytes] = {}
    if shape == "ndjson":
        newline = draw(st.sampled_from(["\n", "\r\n", "\n\n"]))
        body = newline.join(json.dumps(e, ensure_ascii=draw(st.booleans())) for e in events)
        headers["Content-Type"] = draw(
            st.sampled_from([b"application/x-ndjson", b"application/jsonl"])
        )
    else:
        body = json.dumps(
            events[0] if shape == "object" else events, ensure_ascii=draw(st.booleans())
        )
        content_type = draw(
            st.sampled_from(
                [
                    None,
                    b"application/json",
                    b"text/plain; charset=utf-8",
                    b"application/vnd.cxone+json",
                ]
            )
        )
        if content_type is not None:
            headers["Content-Type"] = content_type
    data = body.encode()
    assume(len(data) <= FUZZ_LIMIT)
    if draw(st.booleans()):
        data = gzip.compress(data, mtime=0)
        headers["Content-Encoding"] = b"gzip"
    if draw(st.booleans()):
        headers["X-Schema-Version"] = draw(HEADER_TOKENS).encode()
    if len(events) == 1 and draw(st.booleans()):
        headers["Idempotency-Key"] = draw(HEADER_TOKENS).encode()
    path = draw(st.sampled_from(["/ingest", "/ingest/call_event", "/ingest/agent_state"]))
    return Sample(data, {**AUTH_BYTES, **headers}, path, events)


ANY_JSON = json_values(ANY_LEAVES)
HOSTILE_BODIES = st.one_of(
    st.binary(max_size=300),
    ANY_JSON.map(lambda v: json.dumps(v).encode()),
    st.lists(ANY_JSON, max_size=6).map(lambda vs: "\n".join(json.dumps(v) for v in vs).encode()),
    st.builds(
        lambda depth, parts: parts[0] * depth + parts[1] + parts[2] * depth,
        st.integers(1, 3000),
        st.sampled_from([(b"[", b"", b"]"), (b'{"a":', b"1", b"}"), (b'[{"a":', b"1", b"}]")]),
    ),
    st.builds(
        lambda v, i, b: v[:i] + bytes([b]) + v[i + 1 :],
        valid_requests().map(lambda s: s.body),
        st.integers(0, 400),
        st.integers(0, 255),
    ),
)
HOSTILE_HEADERS = {
    "Authorization": st.sampled_from([AUTH_BYTES["Authorization"], b"Bearer nope", b""])
    | HEADER_BYTES,
    "Content-Type": st.sampled_from([b"application/json", b"application/x-ndjson", b"text/csv"])
    | HEADER_BYTES,
    "Content-Encoding": st.sampled_from([b"gzip", b"identity", b"br", b"GZIP"]) | HEADER_BYTES,
    "X-Schema-Version": HEADER_TOKENS.map(str.encode) | HEADER_BYTES,
    "Idempotency-Key": HEADER_TOKENS.map(str.encode) | HEADER_BYTES,
}
SUBJECTS = st.sampled_from(["call_event", "nope", ""]) | st.text(max_size=70)


@st.composite
def hostile_requests(draw: st.DrawFn) -> Sample:
    body = draw(HOSTILE_BODIES)
    headers: dict[str, bytes] = {}
    for name, values in HOSTILE_HEADERS.items():
        # Usually authorized, so that most requests get past authentication.
        present = draw(st.integers(0, 9)) > 0 if name == "Authorization" else draw(st.booleans())
        if present:
            headers[name] = draw(values)
    if headers.get("Content-Encoding", b"").lower() == b"gzip" and draw(st.booleans()):
        body = gzip.compress(body, mtime=0)[: draw(st.integers(10, 10_000))]
    return Sample(body, headers, "/ingest/" + quote(draw(SUBJECTS), safe=""), None)


def new_envelopes(store: LocalStore, seen: set[str]) -> list[dict[str, Any]]:
    """Envelopes of the staging objects not in `seen`, which this adds them to."""
    fresh = [key for key in staged_objects(store) if key not in seen]
    seen.update(fresh)
    return [
        json.loads(line) for key in fresh for line in gzip.decompress(store.get(key)).splitlines()
    ]


def test_fuzzed_requests_get_202_with_staged_events_or_a_documented_4xx(
    local_store: LocalStore,
) -> None:
    accepted: list[str] = []
    seen: set[str] = set()
    with landing_with_client(
        local_store, max_body_bytes=FUZZ_LIMIT, max_events_per_request=FUZZ_MAX_EVENTS
    ) as landing:

        @settings(
            max_examples=150,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        @given(sample=valid_requests() | hostile_requests())
        def answer_is_202_or_documented_4xx(sample: Sample) -> None:
            response = landing.http.post(sample.path, content=sample.body, headers=sample.headers)
            new = new_envelopes(landing.store, seen)
            assert response.status_code < 500, response.text
            if response.status_code == 202:
                reply = response.json()
                ids = reply["event_ids"]
                assert reply == {"status": "accepted", "count": len(ids), "event_ids": ids}
                assert all(isinstance(i, str) and i for i in ids)
                assert [e["event_id"] for e in new] == ids
                if sample.events is not None:
                    assert [e["payload"] for e in new] == sample.events
                accepted.extend(ids)
            else:
                assert sample.events is None, response.text
                assert 400 <= response.status_code < 500
                error = response.json()
                assert error["error"] in DOCUMENTED_4XX | ROUTE_ERRORS
                assert isinstance(error["detail"], str) and error["detail"]
                assert new == []

        answer_is_202_or_documented_4xx()
        assert sorted(e["event_id"] for e in staged_envelopes(local_store)) == sorted(accepted)
        assert_healthy(landing)
