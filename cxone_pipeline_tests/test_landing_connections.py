"""Connection-level limits of the landing: header deadline and size, body deadline, and the
cap on open connections; each against the app under uvicorn with the options `serve` uses."""

from __future__ import annotations

import socket
import time

import httpx

from cxone_pipeline.lake.store import LocalStore
from cxone_pipeline.landing.connections import MAX_HEADER_BYTES
from cxone_pipeline_tests.landing_fixtures import AUTH, running_landing, staged_objects

REQUEST_HEAD = (
    "POST /ingest/call_event HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
    "Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
)


def connect(url: str, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=timeout)


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass
    return answer


def head(length: int) -> bytes:
    return REQUEST_HEAD.format(auth=AUTH["Authorization"], length=length).encode()


def test_slow_or_silent_headers_are_cut_at_the_read_timeout(local_store: LocalStore) -> None:
    with running_landing(local_store, read_timeout_seconds=0.5) as url:
        with connect(url) as silent, connect(url) as trickle:
            trickle.sendall(b"POST /ingest/call_event HTTP/1.1\r\nHost: x\r\n")
            # Without the deadline both wait for the client's 10 s socket timeout and fail.
            assert read_all(silent).startswith(b"HTTP/1.1 408")
            assert read_all(trickle).startswith(b"HTTP/1.1 408")
        # Between requests of a keep-alive connection the deadline restarts.
        with connect(url) as keep_alive:
            for n in range(2):
                body = b'{"eventId": "k%d"}' % n
                keep_alive.sendall(head(len(body)) + body)
                assert keep_alive.recv(65536).startswith(b"HTTP/1.1 202")
                time.sleep(0.3)
        assert httpx.get(url + "/healthz").status_code == 200


def test_oversized_headers_are_refused(local_store: LocalStore) -> None:
    with running_landing(local_store) as url, connect(url) as sock:
        sock.sendall(b"POST /ingest/call_event HTTP/1.1\r\nHost: x\r\n")
        padding = b"X-Pad: " + b"a" * 1000 + b"\r\n"
        try:
            for _ in range(MAX_HEADER_BYTES // len(padding) + 2):
                sock.sendall(padding)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert read_all(sock).startswith(b"HTTP/1.1 431")


def test_slow_body_is_answered_408_and_nothing_staged(local_store: LocalStore) -> None:
    with running_landing(local_store, read_timeout_seconds=0.5) as url, connect(url) as sock:
        sock.sendall(head(100) + b'{"eventId": ')
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408")
    assert b'"request_timeout"' in answer
    assert staged_objects(local_store) == []


def test_connections_past_the_cap_are_closed_and_the_others_served(
    local_store: LocalStore,
) -> None:
    with running_landing(local_store, max_connections=3) as url:
        held = [connect(url) for _ in range(3)]
        try:
            with connect(url) as extra:
                extra.sendall(head(2) + b"{}")
                refused = read_all(extra)
            body = b'{"eventId": "held"}'
            held[0].sendall(head(len(body)) + body)
            served = held[0].recv(65536)
        finally:
            for sock in held:
                sock.close()
    assert refused == b""
    assert served.startswith(b"HTTP/1.1 202")
