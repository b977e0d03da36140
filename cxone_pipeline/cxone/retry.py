"""When and how long to wait before asking CXone again: Retry-After, backoff, a deadline."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import httpx

from cxone_pipeline.cxone.errors import CXoneRetriesExhausted, CXoneTransportError

logger = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
# A server error is retried for reads only: a write answered 500 may have been applied.
RETRYABLE_WHEN_IDEMPOTENT = frozenset({500})
# A gateway answering these may have passed the request on; 429 and 503 mean it was refused.
MAYBE_APPLIED_STATUSES = frozenset({502, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """`deadline` bounds one logical call, every attempt and wait included."""

    deadline: float = 60.0
    base_delay: float = 0.5
    max_delay: float = 30.0
    retry_after_cap: float = 60.0

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max_delay, base_delay * 2**attempt)]."""
        return random.uniform(0.0, min(self.max_delay, self.base_delay * 2 ** min(attempt, 32)))

    def delay(self, attempt: int, response: httpx.Response | None) -> float:
        if response is not None and response.status_code == 429:
            retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            if retry_after is not None:
                return min(retry_after, self.retry_after_cap)
        return self.backoff(attempt)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds from now (delta-seconds or HTTP date); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


async def send_with_retries(
    http: httpx.AsyncClient,
    build: Callable[[], httpx.Request],
    *,
    policy: RetryPolicy,
    deadline_at: float,
    idempotent: bool,
) -> httpx.Response:
    """Send until the answer is not retryable; the caller judges that answer's status.

    `build` is called per attempt so each one carries current headers. A write that may
    have been applied (broken connection after sending, 502/504 from a gateway) is not
    repeated blindly: it raises `CXoneTransportError` unless `idempotent`.
    """
    started = time.monotonic()
    attempt = 0  # failed attempts so far
    while True:
        request = build()
        response: httpx.Response | None = None
        try:
            response = await http.send(request)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            failure = type(exc).__name__  # never sent: safe to repeat any request
        except httpx.TransportError as exc:
            failure = type(exc).__name__
            if not idempotent:
                raise _maybe_applied(request, failure) from None
        else:
            if response.status_code not in RETRYABLE_STATUSES and not (
                idempotent and response.status_code in RETRYABLE_WHEN_IDEMPOTENT
            ):
                return response
            await response.aclose()
            failure = f"{response.status_code} {response.reason_phrase}".strip()
            if not idempotent and response.status_code in MAYBE_APPLIED_STATUSES:
                raise _maybe_applied(request, failure)
        delay = policy.delay(attempt, response)
        attempt += 1
        now = time.monotonic()
        if now + delay > deadline_at:
            raise CXoneRetriesExhausted(
                f"{request.method} {request.url} still failing after {attempt} attempt(s) in "
                f"{now - started:.1f} s (last: {failure}; next wait {delay:.1f} s would pass "
                f"the {policy.deadline:g} s deadline, CXONE_DEADLINE_SECONDS)"
            )
        logger.warning(
            "%s %s: %s; retrying in %.2f s (attempt %d)",
            request.method,
            request.url,
            failure,
            delay,
            attempt + 1,
        )
        await asyncio.sleep(delay)


def _maybe_applied(request: httpx.Request, failure: str) -> CXoneTransportError:
    return CXoneTransportError(
        f"{request.method} {request.url} failed after it was sent ({failure}) and may have "
        "been applied, so it was not repeated; rerun: registration looks the action up by "
        "name before writing"
    )
