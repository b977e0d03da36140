"""OAuth2 for CXone: grant choice, endpoint discovery and a single-flight token cache."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx

from cxone_pipeline.cxone.config import CXoneConfig
from cxone_pipeline.cxone.errors import (
    CXoneAPIError,
    CXoneAuthError,
    CXoneConfigError,
    body_excerpt,
)
from cxone_pipeline.cxone.retry import send_with_retries
from cxone_pipeline.settings import Secret

logger = logging.getLogger(__name__)

# A token is replaced this long before it expires, so a request never leaves with one
# that dies in flight; short-lived tokens get half their lifetime, never under 30 s.
REFRESH_MARGIN_SECONDS = 300.0
MIN_REFRESH_MARGIN_SECONDS = 30.0
DEFAULT_EXPIRES_IN = 3600.0

T = TypeVar("T")


@dataclass(frozen=True)
class ClientCredentialsGrant:
    client_id: str
    client_secret: Secret
    scope: str
    name: str = "client_credentials"

    def form(self) -> dict[str, str]:
        return {"grant_type": "client_credentials", "scope": self.scope}


@dataclass(frozen=True)
class PasswordGrant:
    """CXone's documented server-to-server flow: an access key as username and password."""

    client_id: str
    client_secret: Secret
    access_key_id: str
    access_key_secret: Secret
    name: str = "password"

    def form(self) -> dict[str, str]:
        return {
            "grant_type": "password",
            "username": self.access_key_id,
            "password": self.access_key_secret.reveal(),
        }


Grant = ClientCredentialsGrant | PasswordGrant


def grant_for(config: CXoneConfig) -> Grant:
    """The password grant when an access key is configured, else client credentials."""
    if not (config.client_id and config.client_secret):
        raise CXoneConfigError(
            "CXONE_CLIENT_ID and CXONE_CLIENT_SECRET must be set: both grants send the "
            "registered app's client id and secret"
        )
    if config.access_key_id or config.access_key_secret:
        if not (config.access_key_id and config.access_key_secret):
            raise CXoneConfigError(
                "set both CXONE_ACCESS_KEY_ID and CXONE_ACCESS_KEY_SECRET for the password "
                "grant, or neither for client credentials"
            )
        return PasswordGrant(
            config.client_id, config.client_secret, config.access_key_id, config.access_key_secret
        )
    return ClientCredentialsGrant(config.client_id, config.client_secret, config.scope)


@dataclass(frozen=True)
class Token:
    access_token: Secret = field(repr=False)
    refresh_at: float
    claims: Mapping[str, Any] = field(repr=False)

    def is_fresh(self) -> bool:
        return time.monotonic() < self.refresh_at


def _basic_authorization(client_id: str, client_secret: Secret) -> str:
    """RFC 6749 §2.3.1: the app's id and secret in HTTP Basic auth, for both grants."""
    pair = f"{client_id}:{client_secret.reveal()}".encode()
    return "Basic " + base64.b64encode(pair).decode()


def trusted_endpoint(url: str, config: CXoneConfig, source: str, override: str) -> str:
    """A discovered endpoint, if it may receive credentials: https (http only in development)
    on the issuer's own host or a host of the allowed domains. Anything else is refused
    before it is contacted."""
    parts = httpx.URL(url)
    issuer = httpx.URL(config.auth_base_url).host
    host = parts.host.lower()
    allowed = host == issuer or any(
        host == domain or host.endswith("." + domain) for domain in config.allowed_domains
    )
    secure = parts.scheme == "https" or (config.allow_http and parts.scheme == "http")
    if not (allowed and secure) or parts.userinfo:
        raise CXoneConfigError(
            f"{source} names {parts.scheme}://{host[:80]}, which is not https on {issuer} or "
            f"a host under {', '.join(config.allowed_domains)}: refused without contacting it "
            f"(set {override}, or add the domain to CXONE_ALLOWED_DOMAINS)"
        )
    return url


def refresh_margin(lifetime: float) -> float:
    return max(MIN_REFRESH_MARGIN_SECONDS, min(REFRESH_MARGIN_SECONDS, lifetime / 2))


def jwt_claims(jwt: str) -> dict[str, Any]:
    """The payload of a JWT, unverified: it came straight from the token endpoint over TLS."""
    try:
        payload = jwt.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return {}
    return claims if isinstance(claims, dict) else {}


class _SingleFlight(Generic[T]):
    """Many concurrent callers, one running coroutine; all share its result or its error."""

    def __init__(self) -> None:
        self._task: asyncio.Task[T] | None = None

    async def run(self, work: Callable[[], Awaitable[T]]) -> T:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run(work))
        # Shielded: a caller that is cancelled must not cancel the others' shared request.
        return await asyncio.shield(self._task)

    async def _run(self, work: Callable[[], Awaitable[T]]) -> T:
        try:
            return await work()
        finally:
            self._task = None


class CXoneAuth:
    """Tokens and tenant endpoints for one set of credentials, discovered once and cached."""

    def __init__(self, config: CXoneConfig, grant: Grant, http: httpx.AsyncClient) -> None:
        self._config = config
        self._http = http
        self._grant = grant
        self._token: Token | None = None
        self._token_endpoint = config.token_endpoint
        self._api_base_url = config.api_base_url
        self._token_flight: _SingleFlight[Token] = _SingleFlight()
        self._discovery_flight: _SingleFlight[str] = _SingleFlight()

    async def token(self) -> Token:
        token = self._token
        if token is not None and token.is_fresh():
            return token
        return await self._token_flight.run(self._fetch_token)

    async def refresh(self, rejected: Token) -> Token:
        """A new token after the API refused `rejected`, unless another caller already got one."""
        if self._token is not rejected and self._token is not None:
            return self._token
        self._token = None
        return await self._token_flight.run(self._fetch_token)

    async def api_base_url(self) -> str:
        if self._api_base_url is None:
            self._api_base_url = await self._discovery_flight.run(self._discover_api_base_url)
        return self._api_base_url

    async def _fetch_token(self) -> Token:
        endpoint = await self._discover_token_endpoint()
        grant = self._grant
        response = await send_with_retries(
            self._http,
            lambda: self._http.build_request(
                "POST",
                endpoint,
                data=grant.form(),
                headers={
                    "Authorization": _basic_authorization(grant.client_id, grant.client_secret),
                    "Accept": "application/json",
                },
            ),
            policy=self._config.retry,
            deadline_at=time.monotonic() + self._config.retry.deadline,
            idempotent=True,
        )
        if response.status_code in (400, 401, 403):
            raise CXoneAuthError(
                "POST",
                endpoint,
                response.status_code,
                f"the {grant.name} grant was refused: "
                + body_excerpt(response.text, self._config.secrets),
            )
        body = self._json(response, "POST", endpoint)
        access_token = body.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise CXoneAuthError(
                "POST", endpoint, response.status_code, "the answer has no access_token"
            )
        lifetime = float(body.get("expires_in") or DEFAULT_EXPIRES_IN)
        claims = {**jwt_claims(access_token), **jwt_claims(body.get("id_token") or "")}
        token = Token(
            access_token=Secret(access_token),
            refresh_at=time.monotonic() + lifetime - refresh_margin(lifetime),
            claims=claims,
        )
        self._token = token
        logger.info("CXone token obtained (%s grant, expires in %.0f s)", grant.name, lifetime)
        return token

    async def _discover_token_endpoint(self) -> str:
        if self._token_endpoint is None:
            url = f"{self._config.auth_base_url}/.well-known/openid-configuration"
            self._token_endpoint = await self._discover(
                url, "token_endpoint", "CXONE_TOKEN_ENDPOINT"
            )
        return self._token_endpoint

    async def _discover_api_base_url(self) -> str:
        tenant_id = (await self.token()).claims.get("tenantId")
        if not tenant_id:
            raise CXoneConfigError(
                "the token carries no tenantId claim to discover the API with: "
                "set CXONE_API_BASE_URL to the tenant's API base"
            )
        url = f"{self._config.auth_base_url}/.well-known/cxone-configuration"
        discovered = await self._discover(
            str(httpx.URL(url, params={"tenantId": tenant_id})),
            "api_endpoint",
            "CXONE_API_BASE_URL",
        )
        return discovered.rstrip("/")

    async def _discover(self, url: str, key: str, override: str) -> str:
        response = await send_with_retries(
            self._http,
            lambda: self._http.build_request("GET", url, headers={"Accept": "application/json"}),
            policy=self._config.retry,
            deadline_at=time.monotonic() + self._config.retry.deadline,
            idempotent=True,
        )
        if response.status_code != 200:
            raise CXoneConfigError(
                f"discovery at {url} answered {response.status_code}: check "
                f"CXONE_AUTH_BASE_URL or set {override}"
            )
        value = self._json(response, "GET", url).get(key)
        if not isinstance(value, str) or not value:
            raise CXoneConfigError(f"discovery at {url} has no {key!r}: set {override}")
        return trusted_endpoint(value, self._config, f"discovery at {url}", override)

    def _json(self, response: httpx.Response, method: str, url: str) -> dict[str, Any]:
        if not response.is_success:
            raise CXoneAPIError(
                method,
                url,
                response.status_code,
                body_excerpt(response.text, self._config.secrets),
            )
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise CXoneAPIError(
                method,
                url,
                response.status_code,
                "expected a JSON object, got " + body_excerpt(response.text, self._config.secrets),
            )
        return body
