"""What requests in progress may hold: how many at once, and how many bytes.

A request is admitted before its body is read and holds bytes as it buffers them (the body,
its decompressed form, its envelope lines) until it is answered. Past a limit the landing
answers 503 `saturated` at once, without reading further: memory stays bounded whatever
senders do. Bytes of bodies whose signature is not verified yet have a smaller share, so
unauthenticated senders cannot crowd out authenticated ones.
"""

from __future__ import annotations

from types import TracebackType

from cxone_pipeline.landing.commit import RETRY_AFTER_SATURATED, Unavailable

UNVERIFIED_SHARE = 4  # unverified bodies may hold 1/4 of the byte budget


def saturated(what: str) -> Unavailable:
    return Unavailable("saturated", f"{what}; retry shortly", RETRY_AFTER_SATURATED)


class Admission:
    def __init__(self, max_requests: int, max_bytes: int) -> None:
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.max_unverified_bytes = max_bytes // UNVERIFIED_SHARE
        self.requests = 0
        self.bytes = 0
        self.unverified_bytes = 0

    def admit(self) -> Hold:
        if self.requests >= self.max_requests:
            raise saturated(f"{self.requests} requests are in progress")
        self.requests += 1
        return Hold(self)


class Hold:
    """One admitted request's share; use as a context manager that gives everything back."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self.bytes = 0
        self.unverified_bytes = 0

    def reserve(self, n: int, *, unverified: bool = False) -> None:
        budget = self._admission
        if budget.bytes + n > budget.max_bytes:
            raise saturated(f"requests in progress hold {budget.bytes} bytes")
        if unverified and budget.unverified_bytes + n > budget.max_unverified_bytes:
            raise saturated(f"unverified bodies hold {budget.unverified_bytes} bytes")
        budget.bytes += n
        self.bytes += n
        if unverified:
            budget.unverified_bytes += n
            self.unverified_bytes += n

    def verified(self) -> None:
        self._admission.unverified_bytes -= self.unverified_bytes
        self.unverified_bytes = 0

    def __enter__(self) -> Hold:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.verified()
        self._admission.bytes -= self.bytes
        self._admission.requests -= 1
        self.bytes = 0
