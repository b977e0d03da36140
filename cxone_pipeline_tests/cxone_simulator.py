"""A CXone tenant on loopback for the tests: discovery, OAuth2 tokens, data actions and faults."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cxone_pipeline_tests.servers import uvicorn_thread

TENANT_ID = "11e4b0d7-0000-4000-8000-00000000c0de"
API_PREFIX = "/tenant-api"  # the API lives apart from auth, as on a real tenant
DATAACTIONS_PATH = "/api/v2/dataactions"
Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class Fault:
    status: int
    times: int
    headers: dict[str, str] = field(default_factory=dict)
    # Builds the error body from the request's JSON, as validation errors quote fields.
    echo: Callable[[Any], Any] | None = None
    # Serve the request, then answer the fault: a gateway timing out on a write that landed.
    after_serving: bool = False


@dataclass
class Seen:
    method: str
    path: str
    status: int


@dataclass
class IssuedToken:
    grant: str
    scopes: frozenset[str]
    expires_at: float


class CXoneSimulator:
    """Credentials, token lifetime and faults are plain attributes tests may change."""

    def __init__(self) -> None:
        self.client_id = "sim-client"
        self.client_secret = "sim-client-secret-4f9a"
        self.access_key_id = "SIMACCESSKEY"
        self.access_key_secret = "sim-access-key-secret-77c1"
        self.expires_in = 3600
        self.token_delay = 0.0
        self.base_url = ""
        # What discovery answers; None: this simulator's own endpoints.
        self.discovered_token_endpoint: str | None = None
        self.discovered_api_endpoint: str | None = None
        self.seen: list[Seen] = []
        self.grants: list[str] = []
        self.tokens: dict[str, IssuedToken] = {}
        self.actions: dict[str, dict[str, Any]] = {}
        self._faults: dict[tuple[str, str], list[Fault]] = {}
        api = API_PREFIX + DATAACTIONS_PATH
        self.app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self._endpoint(self._openid)),
                Route("/.well-known/cxone-configuration", self._endpoint(self._cxone_config)),
                Route("/auth/token", self._endpoint(self._token), methods=["POST"]),
                Route(api, self._endpoint(self._list), methods=["GET"]),
                Route(api, self._endpoint(self._create), methods=["POST"]),
                Route(api + "/{action_id}", self._endpoint(self._update), methods=["PUT"]),
            ]
        )

    @property
    def api_base_url(self) -> str:
        return self.base_url + API_PREFIX

    def env(self, *, password_grant: bool = False, discover: bool = True) -> dict[str, str]:
        """CXONE_* variables that point the project at this simulator."""
        env = {
            # The simulator speaks plain HTTP on loopback: the development flag allows it.
            "CXONE_PIPELINE_ALLOW_HTTP": "true",
            "CXONE_AUTH_BASE_URL": self.base_url,
            "CXONE_CLIENT_ID": self.client_id,
            "CXONE_CLIENT_SECRET": self.client_secret,
        }
        if password_grant:
            env["CXONE_ACCESS_KEY_ID"] = self.access_key_id
            env["CXONE_ACCESS_KEY_SECRET"] = self.access_key_secret
        if not discover:
            env["CXONE_TOKEN_ENDPOINT"] = self.base_url + "/auth/token"
            env["CXONE_API_BASE_URL"] = self.api_base_url
        return env

    def fail(
        self,
        method: str,
        path: str,
        status: int,
        *,
        times: int = 1,
        retry_after: str | None = None,
        echo: Callable[[Any], Any] | None = None,
        after_serving: bool = False,
    ) -> None:
        """Answer the next `times` requests to `path` with `status` instead of serving them."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        self._faults.setdefault((method, path), []).append(
            Fault(status, times, headers, echo, after_serving)
        )

    def revoke_tokens(self) -> None:
        self.tokens.clear()

    def statuses(self, method: str, path: str) -> list[int]:
        return [s.status for s in self.seen if s.method == method and s.path == path]

    def _endpoint(self, handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            fault = self._next_fault(request.method, request.url.path)
            if fault is None or fault.after_serving:
                response = await handler(request)
            if fault is not None:
                body = fault.echo(await request.json()) if fault.echo else {"error": "injected"}
                response = JSONResponse(body, fault.status, fault.headers)
            self.seen.append(Seen(request.method, request.url.path, response.status_code))
            return response

        return endpoint

    def _next_fault(self, method: str, path: str) -> Fault | None:
        faults = self._faults.get((method, path))
        if not faults:
            return None
        fault = faults[0]
        fault.times -= 1
        if fault.times <= 0:
            faults.pop(0)
        return fault

    async def _openid(self, request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.base_url,
                "token_endpoint": self.discovered_token_endpoint or self.base_url + "/auth/token",
            }
        )

    async def _cxone_config(self, request: Request) -> Response:
        if request.query_params.get("tenantId") != TENANT_ID:
            return JSONResponse({"error": "unknown tenant"}, 404)
        api = self.discovered_api_endpoint or self.api_base_url
        return JSONResponse({"api_endpoint": api, "tenantId": TENANT_ID})

    async def _token(self, request: Request) -> Response:
        await asyncio.sleep(self.token_delay)
        # Parsed by hand: Starlette's form parser needs python-multipart, not a dependency.
        form = dict(parse_qsl((await request.body()).decode()))
        if _basic_auth(request) != (self.client_id, self.client_secret):
            return JSONResponse({"error": "invalid_client"}, 401)
        grant = form.get("grant_type")
        self.grants.append(str(grant))
        claims: dict[str, Any] = {"tenantId": TENANT_ID, "jti": secrets.token_hex(8)}
        body: dict[str, Any] = {"token_type": "bearer", "expires_in": self.expires_in}
        if grant == "password":
            if (form.get("username"), form.get("password")) != (
                self.access_key_id,
                self.access_key_secret,
            ):
                return JSONResponse({"error": "invalid_grant"}, 401)
            scopes = frozenset({"dataactions:read", "dataactions:write"})
            body["id_token"] = _jwt({"tenantId": TENANT_ID, "sub": self.access_key_id})
            claims.pop("tenantId")  # the tenant is a claim of the id_token in this grant
        elif grant == "client_credentials":
            scopes = frozenset(str(form.get("scope", "")).split())
        else:
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        access_token = _jwt(claims)
        self.tokens[access_token] = IssuedToken(
            str(grant), scopes, time.monotonic() + self.expires_in
        )
        return JSONResponse({**body, "access_token": access_token, "scope": " ".join(scopes)})

    def _authorized(self, request: Request, scope: str) -> Response | None:
        header = request.headers.get("Authorization", "")
        issued = self.tokens.get(header.removeprefix("Bearer "))
        if issued is None or time.monotonic() >= issued.expires_at:
            return JSONResponse({"error": "invalid_token"}, 401)
        if scope not in issued.scopes:
            return JSONResponse({"error": "insufficient_scope", "scope": scope}, 403)
        return None

    async def _list(self, request: Request) -> Response:
        denied = self._authorized(request, "dataactions:read")
        return denied or JSONResponse({"entities": list(self.actions.values())})

    async def _create(self, request: Request) -> Response:
        denied = self._authorized(request, "dataactions:write")
        if denied:
            return denied
        action = await request.json()
        action["id"] = f"da-{len(self.actions) + 1}"
        self.actions[action["id"]] = action
        return JSONResponse(action, 201)

    async def _update(self, request: Request) -> Response:
        denied = self._authorized(request, "dataactions:write")
        if denied:
            return denied
        action_id = request.path_params["action_id"]
        if action_id not in self.actions:
            return JSONResponse({"error": "not found"}, 404)
        self.actions[action_id] = {**await request.json(), "id": action_id}
        return JSONResponse(self.actions[action_id])


def _basic_auth(request: Request) -> tuple[str, str] | None:
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    user, _, password = base64.b64decode(encoded).decode().partition(":")
    return user, password


def _jwt(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.sim"


@contextmanager
def running_simulator() -> Iterator[CXoneSimulator]:
    simulator = CXoneSimulator()
    with uvicorn_thread(simulator.app) as base_url:
        simulator.base_url = base_url
        yield simulator
