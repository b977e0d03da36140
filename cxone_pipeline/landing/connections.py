"""Per-connection limits uvicorn lacks: read deadlines for a request's headers and for its
body, a size limit for headers, and a cap on open connections.

uvicorn closes idle keep-alive connections, but a connection that opens and sends nothing,
or trickles its headers or body a byte at a time, is held forever; nor does it bound header
size. The guard answers such requests 408 (or 431) and closes the connection. A timer runs
only while a request is incomplete: one that arrives in one piece costs none.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _HttpProtocol
except ImportError:  # uvicorn without httptools
    from uvicorn.protocols.http.h11_impl import H11Protocol as _HttpProtocol  # type: ignore[assignment]

from cxone_pipeline.settings import Settings

MAX_HEADER_BYTES = 64 * 1024
_TIMEOUT_BODY = (
    b'{"error":"request_timeout","detail":"the request did not arrive within the read timeout"}'
)
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)
_TOO_LARGE_RESPONSE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n"
    b"connection: close\r\n\r\n"
)


@dataclass(frozen=True)
class ConnectionLimits:
    read_timeout: float
    max_connections: int
    max_header_bytes: int = MAX_HEADER_BYTES

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(settings.read_timeout_seconds, settings.max_connections)


class GuardedHttpProtocol(_HttpProtocol):
    """uvicorn's HTTP protocol with header deadlines and a connection cap. `serve` names this
    class by import path (each worker process reads the limits from its environment); tests
    use `guarded_protocol` to get a subclass with explicit limits."""

    limits: ClassVar[ConnectionLimits | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cls = type(self)
        if cls.limits is None:
            cls.limits = ConnectionLimits.from_settings(Settings.from_env())
        self._limits = cls.limits
        self._read_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[arg-type]
        if len(self.connections) > self._limits.max_connections:
            transport.abort()  # type: ignore[attr-defined]
            return
        self._start_read_timer()  # a connection that never sends a byte

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_read_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        awaiting_headers = cycle is None or (cycle.response_complete and not cycle.more_body)
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self.cycle is cycle and awaiting_headers:
            self._header_bytes += len(data)
            if self._header_bytes > self._limits.max_header_bytes:
                self._refuse(_TOO_LARGE_RESPONSE)
            elif self._read_timer is None:
                self._start_read_timer()
            return
        if self.cycle is not cycle:  # new headers complete: the body gets its own deadline
            self._header_bytes = 0
            self._stop_read_timer()
        if self.cycle.more_body:  # the body, or the rest of a refused one, is still coming
            if self._read_timer is None:
                self._start_read_timer()
        else:
            self._stop_read_timer()

    def _start_read_timer(self) -> None:
        self._read_timer = self.loop.call_later(
            self._limits.read_timeout, self._refuse, _TIMEOUT_RESPONSE
        )

    def _stop_read_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _refuse(self, response: bytes) -> None:
        self._stop_read_timer()
        if not self.transport.is_closing():
            if self.cycle is None or not self.cycle.response_started:
                self.transport.write(response)
            self.transport.close()


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedHttpProtocol]:
    """The guarded protocol with explicit limits (for a server in this process)."""
    return type("GuardedHttpProtocolWithLimits", (GuardedHttpProtocol,), {"limits": limits})
