"""The CXone API client: one connection pool, bearer auth refreshed on 401, retried requests."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

import httpx

from cxone_pipeline.cxone.auth import CXoneAuth, Token, grant_for
from cxone_pipeline.cxone.config import CXoneConfig
from cxone_pipeline.cxone.errors import CXoneAPIError, CXoneAuthError, body_excerpt
from cxone_pipeline.cxone.retry import send_with_retries
from cxone_pipeline.settings import Secret

_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
# CXone's reporting APIs may explain an error in this response header rather than the body.
STATUS_DESCRIPTION_HEADER = "icStatusDescription"


class CXoneClient:
    """Use as `async with CXoneClient(config) as client:`; every call shares one pool and token."""

    def __init__(self, config: CXoneConfig) -> None:
        self.config = config
        grant = grant_for(config)  # missing credentials fail here, before a pool is opened
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(config.timeout_seconds),
            headers={"User-Agent": "cxone-pipeline"},
        )
        self._auth = CXoneAuth(config, grant, self._http)

    async def __aenter__(self) -> CXoneClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        secrets: Iterable[Secret] = (),
        hints: Mapping[int, str] | None = None,
    ) -> Any:
        """Call `<api base><path>` and return the decoded JSON body (None when empty, as a
        204 No Content is).

        `secrets` are values inside `json` that must be masked if CXone echoes them in an error;
        `hints` replace the default advice for an error status.
        """
        deadline_at = time.monotonic() + self.config.retry.deadline
        url = await self._auth.api_base_url() + path
        token = await self._auth.token()
        response = await self._send(method, url, json, params, token, deadline_at)
        if response.status_code == 401:
            # The token may have been revoked or expired early: one refresh, one more try.
            token = await self._auth.refresh(token)
            response = await self._send(method, url, json, params, token, deadline_at)
            if response.status_code == 401:
                raise CXoneAuthError(
                    method,
                    url,
                    401,
                    "a freshly issued token was refused too: "
                    + _error_text(response, (*self.config.secrets, token.access_token)),
                )
        if not response.is_success:
            hint = (hints or {}).get(response.status_code)
            raise CXoneAPIError(
                method,
                url,
                response.status_code,
                _error_text(response, (*self.config.secrets, token.access_token, *secrets)),
                hint,
            )
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise CXoneAPIError(
                method, url, response.status_code, "the answer is not JSON"
            ) from None

    async def _send(
        self,
        method: str,
        url: str,
        json: Any,
        params: Mapping[str, str] | None,
        token: Token,
        deadline_at: float,
    ) -> httpx.Response:
        return await send_with_retries(
            self._http,
            lambda: self._http.build_request(
                method,
                url,
                json=json,
                params=params,
                headers={
                    "Authorization": f"Bearer {token.access_token.reveal()}",
                    "Accept": "application/json",
                },
            ),
            policy=self.config.retry,
            deadline_at=deadline_at,
            idempotent=method in _IDEMPOTENT_METHODS,
        )


def _error_text(response: httpx.Response, secrets: Iterable[Secret]) -> str:
    """CXone's `icStatusDescription` when it sends one, else the start of the body; masked."""
    description = response.headers.get(STATUS_DESCRIPTION_HEADER)
    return body_excerpt(description or response.text, secrets)
