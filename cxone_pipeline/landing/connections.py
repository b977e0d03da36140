"""Per-connection limits uvicorn lacks: a deadline and a size limit for request headers,
and a cap on open connections.

uvicorn closes idle keep-alive connections, but a connection that opens and sends nothing,
or trickles its headers a byte at a time, is held forever; nor does it bound header size.
The guard closes such connections. The body's own deadline is the app's (`read_body`).
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
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
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
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._started_cycle: object = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[arg-type]
        if len(self.connections) > self._limits.max_connections:
            transport.abort()  # type: ignore[attr-defined]
            return
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and self._between_requests():
            self._await_headers()
        waiting = self._header_timer is not None
        super().data_received(data)
        if not waiting or self.transport.is_closing():
            return
        if self.cycle is not self._started_cycle:  # the request's headers are complete
            self._stop_header_timer()
        else:
            self._header_bytes += len(data)
            if self._header_bytes > self._limits.max_header_bytes:
                self._refuse(_TOO_LARGE_RESPONSE)

    def _between_requests(self) -> bool:
        cycle = self.cycle
        return cycle is None or (cycle.response_complete and not cycle.more_body)

    def _await_headers(self) -> None:
        self._header_bytes = 0
        self._started_cycle = self.cycle
        self._header_timer = self.loop.call_later(
            self._limits.read_timeout, self._refuse, _TIMEOUT_RESPONSE
        )

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _refuse(self, response: bytes) -> None:
        self._stop_header_timer()
        if not self.transport.is_closing():
            self.transport.write(response)
            self.transport.close()


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedHttpProtocol]:
    """The guarded protocol with explicit limits (for a server in this process)."""
    return type("GuardedHttpProtocolWithLimits", (GuardedHttpProtocol,), {"limits": limits})
