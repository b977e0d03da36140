"""A CXone tenant on loopback for the tests: discovery, OAuth2 tokens, data actions, the
Reporting API (completed contacts, agent state history) and faults."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cxone_pipeline.cxone.config import CXoneConfig
from cxone_pipeline.cxone.reporting import utc_z
from cxone_pipeline.cxone.retry import RetryPolicy
from cxone_pipeline.registry.extensions import parse_iso8601
from cxone_pipeline.settings import Settings
from cxone_pipeline_tests.servers import uvicorn_thread

TENANT_ID = "11e4b0d7-0000-4000-8000-00000000c0de"
API_PREFIX = "/tenant-api"  # the API lives apart from auth, as on a real tenant
DATAACTIONS_PATH = "/api/v2/dataactions"
REPORTING_PREFIX = "/incontactapi/services"
BUSINESS_UNIT = 4_600_123
Handler = Callable[[Request], Awaitable[Response]]

# Completed contacts are kept in the current field names; API versions below
# OLD_NAMES_BEFORE answer with the older spelling and without the current-only fields.
OLD_NAMES_BEFORE = 26
OLD_NAMES = {
    "contactStartDate": "contactStart",
    "fromAddress": "fromAddr",
    "toAddress": "toAddr",
    "conferenceSeconds": "confSeconds",
    "acwSeconds": "ACWSeconds",
    "mediaTypeId": "mediaType",
}
FAST_RETRY = RetryPolicy(deadline=10.0, base_delay=0.01, max_delay=0.05, retry_after_cap=2.0)
CURRENT_ONLY = ("endReason", "highProficiency", "lowProficiency", "routingAttribute", "divisionNo")


@dataclass
class Fault:
    status: int
    times: int
    headers: dict[str, str] = field(default_factory=dict)
    # Builds the error body from the request's JSON, as validation errors quote fields.
    echo: Callable[[Any], Any] | None = None
    # Serve the request, then answer the fault: a gateway timing out on a write that landed.
    after_serving: bool = False


@dataclass(frozen=True)
class Report:
    """One Reporting API endpoint: its records' key, rows, time field, and how a row is sent."""

    key: str
    rows: list[dict[str, Any]]
    time_field: str
    render: Callable[[dict[str, Any]], dict[str, Any]] = dict


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
        self.contacts: dict[int, dict[str, Any]] = {}
        self.agent_states: list[dict[str, Any]] = []
        self.page_cap = 10_000
        self.reporting_allowed = True
        self.wrap_in_result_set = False  # how older API versions answered
        self.reporting_seen: list[dict[str, str]] = []
        self._revoke_after: int | None = None
        self._last_update = datetime(2000, 1, 1, tzinfo=timezone.utc)
        self._parsed: dict[str, int | None] = {}
        self._faults: dict[tuple[str, str], list[Fault]] = {}
        api = API_PREFIX + DATAACTIONS_PATH
        reporting = API_PREFIX + REPORTING_PREFIX + "/v{version}"
        self.app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self._endpoint(self._openid)),
                Route("/.well-known/cxone-configuration", self._endpoint(self._cxone_config)),
                Route("/auth/token", self._endpoint(self._token), methods=["POST"]),
                Route(api, self._endpoint(self._list), methods=["GET"]),
                Route(api, self._endpoint(self._create), methods=["POST"]),
                Route(api + "/{action_id}", self._endpoint(self._update), methods=["PUT"]),
                Route(
                    reporting + "/contacts/completed",
                    self._endpoint(self._completed_contacts),
                    methods=["GET"],
                ),
                Route(
                    reporting + "/agents/state-history",
                    self._endpoint(self._agent_state_history),
                    methods=["GET"],
                ),
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

    def config(self, api_version: str = "30.0", **env: str) -> CXoneConfig:
        """A client configuration for this tenant (password grant, discovery), retrying fast."""
        variables = {**self.env(password_grant=True), "CXONE_API_VERSION": api_version, **env}
        settings = Settings.from_env(variables)
        return dataclasses.replace(CXoneConfig.from_settings(settings), retry=FAST_RETRY)

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

    def revoke_tokens_after(self, reporting_requests: int) -> None:
        """Revoke every token once that many more Reporting API requests have been served."""
        self._revoke_after = reporting_requests

    def reporting_path(self, version: str, endpoint: str) -> str:
        return f"{API_PREFIX}{REPORTING_PREFIX}/v{version}/{endpoint}"

    def add_troubled_hour(
        self, hour: datetime, count: int, version: str, page_cap: int
    ) -> list[dict[str, Any]]:
        """`count` contacts starting in `hour`, served `page_cap` to a page after a 429 without
        Retry-After, every token revoked once the first page is served."""
        contacts = completed_contacts(hour, count)
        self.add_contacts(contacts)
        self.page_cap = page_cap
        self.fail("GET", self.reporting_path(version, "contacts/completed"), 429)
        self.revoke_tokens_after(1)
        return contacts

    def add_contacts(self, contacts: list[dict[str, Any]]) -> None:
        for contact in contacts:
            self.contacts[int(contact["contactId"])] = contact

    def update_contact(self, contact_id: int, **changes: Any) -> dict[str, Any]:
        """Change a contact as CXone does after the fact; its lastUpdateTime moves to now."""
        contact = self.contacts[contact_id]
        contact.update(changes, lastUpdateTime=utc_z(self._next_update_time()))
        return contact

    def _micros(self, text: Any) -> int | None:
        """An ISO time as microseconds, parsed once per distinct text (a day of contacts
        is filtered on every request)."""
        if not isinstance(text, str):
            return None
        if text not in self._parsed:
            self._parsed[text] = parse_iso8601(text)
        return self._parsed[text]

    def _next_update_time(self) -> datetime:
        now = datetime.now(timezone.utc)
        self._last_update = max(now, self._last_update + timedelta(milliseconds=1))
        return self._last_update

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

    def _authorized(self, request: Request, scope: str | None) -> Response | None:
        """None when the bearer token is valid (and carries `scope`, unless None)."""
        header = request.headers.get("Authorization", "")
        issued = self.tokens.get(header.removeprefix("Bearer "))
        if issued is None or time.monotonic() >= issued.expires_at:
            return JSONResponse({"error": "invalid_token"}, 401)
        if scope is not None and scope not in issued.scopes:
            return JSONResponse({"error": "insufficient_scope", "scope": scope}, 403)
        return None

    async def _completed_contacts(self, request: Request) -> Response:
        version = _api_version(request)

        def render(contact: dict[str, Any]) -> dict[str, Any]:
            if version >= OLD_NAMES_BEFORE:
                return dict(contact)
            return {
                OLD_NAMES.get(key, key): value
                for key, value in contact.items()
                if key not in CURRENT_ONLY
            }

        report = Report("completedContacts", list(self.contacts.values()), "contactStartDate")
        return self._answer(request, dataclasses.replace(report, render=render))

    async def _agent_state_history(self, request: Request) -> Response:
        return self._answer(request, Report("agentStateHistory", self.agent_states, "startDate"))

    def _answer(self, request: Request, report: Report) -> Response:
        try:
            return self._page_of(request, report)
        finally:
            if self._revoke_after is not None:
                self._revoke_after -= 1
                if self._revoke_after <= 0:
                    self._revoke_after = None
                    self.revoke_tokens()

    def _page_of(self, request: Request, report: Report) -> Response:
        """A Reporting API answer: the rows whose time is in [startDate, endDate) (or updated
        since updatedSince), one page of at most `page_cap`, 204 when none match."""
        key, rows, time_field, render = report.key, report.rows, report.time_field, report.render
        query = dict(request.query_params)
        self.reporting_seen.append({**query, "accept": request.headers.get("Accept", "")})
        denied = self._authorized(request, None)
        if denied:
            return denied
        if "application/json" not in request.headers.get("Accept", ""):
            return _status(406, "No known way to render data")
        if not self.reporting_allowed:
            return _status(403, "User does not have permission to access this report")
        bounds = {}
        for name in ("startDate", "endDate", "updatedSince"):
            if name in query:
                if not query[name].endswith("Z") or parse_iso8601(query[name]) is None:
                    return _status(400, f"Invalid {name}: use ISO-8601 UTC ending in Z")
                bounds[name] = parse_iso8601(query[name])
        if not bounds:
            return _status(400, "startDate and endDate, or updatedSince, are required")

        def selected(row: dict[str, Any]) -> bool:
            at = self._micros(row.get(time_field))
            updated = self._micros(row.get("lastUpdateTime"))
            return (
                ("startDate" not in bounds or (at is not None and at >= bounds["startDate"]))
                and ("endDate" not in bounds or (at is not None and at < bounds["endDate"]))
                and (
                    "updatedSince" not in bounds
                    or (updated is not None and updated >= bounds["updatedSince"])
                )
            )

        matched = [row for row in rows if selected(row)]
        if query.get("orderBy", "").lower() == "lastupdatetime asc":
            matched.sort(key=lambda row: self._micros(row["lastUpdateTime"]) or 0)
        skip = int(query.get("skip", 0))
        top = min(int(query.get("top", self.page_cap)), self.page_cap)
        if not matched or skip >= len(matched):
            return Response(status_code=204)
        page = [render(row) for row in matched[skip : skip + top]]
        links: dict[str, Any] = {"self": str(request.url), "next": None}
        if skip + len(page) < len(matched):
            following = {**query, "skip": str(skip + len(page))}
            links["next"] = f"{request.url.remove_query_params(query)}?{urlencode(following)}"
        body = {
            "totalRecords": len(matched),
            "_links": links,
            "businessUnitId": BUSINESS_UNIT,
            "lastPollTime": utc_z(datetime.now(timezone.utc)),
            key: page,
        }
        return JSONResponse({"resultSet": body} if self.wrap_in_result_set else body)

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


def _api_version(request: Request) -> int:
    return int(float(request.path_params["version"]))


def _status(status: int, description: str) -> Response:
    """An error the way CXone's reporting APIs send it: the text in a header."""
    return JSONResponse({"error": "request failed"}, status, {"icStatusDescription": description})


def completed_contacts(
    hour: datetime, count: int, first_id: int = 7_000_000_000
) -> list[dict[str, Any]]:
    """`count` completed contacts starting in `hour`, in the current field names, with the
    messy values CXone is known to send: "" for a number, numeric text with a thousands
    separator, "True"/"False" text, tags as objects. Deterministic in its arguments."""
    contacts = []
    for n in range(count):
        start = hour + timedelta(seconds=(n * 3_599) // max(count, 1))
        contact_id = first_id + n
        contact: dict[str, Any] = {
            "contactId": contact_id,
            "masterContactId": contact_id,
            "contactStartDate": utc_z(start),
            "lastUpdateTime": utc_z(start + timedelta(minutes=15)),
            "mediaTypeId": 4,
            "mediaTypeName": "Call",
            "skillId": 4_100 + n % 5,
            "skillName": f"Skill {n % 5}",
            "campaignId": 12,
            "campaignName": "Support",
            "agentId": 30_000 + n % 40,
            "firstName": "Ada",
            "lastName": "Agent",
            "teamId": 55,
            "teamName": "Tier 1",
            "pointOfContactId": 901,
            "pointOfContactName": "Support line",
            "fromAddress": f"+1555{n:07d}",
            "toAddress": "+18005550100",
            "totalDurationSeconds": 300 + n % 60,
            "preQueueSeconds": 5,
            "inQueueSeconds": 20.5,
            "postQueueSeconds": 0,
            "agentSeconds": 240,
            "holdSeconds": 10,
            "holdCount": 1,
            "conferenceSeconds": 0,
            "acwSeconds": 30,
            "abandonSeconds": 0,
            "releaseSeconds": 1,
            "abandoned": False,
            "isShortAbandon": False,
            "isOutbound": n % 4 == 0,
            "isRefused": False,
            "isTakeover": False,
            "isLogged": True,
            "isAnalyticsProcessed": False,
            "primaryDispositionId": 3,
            "dispositionNotes": "resolved",
            "serviceLevelFlag": 1,
            "endReason": "Contact Hung Up",
            "routingAttribute": "",
            "highProficiency": 20,
            "lowProficiency": 1,
            "divisionNo": 0,
            "tags": [{"tagId": 7, "tagName": "VIP"}] if n % 3 == 0 else [],
        }
        if n % 7 == 1:
            contact["acwSeconds"] = ""  # older responses send "" for a number
        if n % 11 == 2:
            contact["holdSeconds"] = "1,234.5"
        if n % 13 == 3:
            contact["isRefused"] = "True"
        contacts.append(contact)
    return contacts


def agent_states(hour: datetime, agents: int, states_per_agent: int) -> list[dict[str, Any]]:
    """Agent state history rows starting in `hour`, durations as ISO-8601 text."""
    names = ["LoggedIn", "Available", "InboundContact", "Unavailable", "Available"]
    rows = []
    for agent in range(agents):
        at = hour
        for index in range(states_per_agent):
            seconds = 30 + (agent * 7 + index * 13) % 300
            state = names[index % len(names)]
            rows.append(
                {
                    "stateIndex": index + 1,
                    "startDate": utc_z(at),
                    "agentId": 30_000 + agent,
                    "agentStateId": index % len(names),
                    "agentStateName": state,
                    "agentSessionId": 900_000 + agent,
                    "contactId": 7_000_000_000 + index if state == "InboundContact" else 0,
                    "skillId": 4_100,
                    "skillName": "Skill 0",
                    "mediaTypeId": 4,
                    "mediaTypeName": "Call",
                    "fromAddress": "",
                    "toAddress": "",
                    "outStateId": 0,
                    "outStateDescription": "",
                    "duration": f"PT{seconds // 60}M{seconds % 60}.5S",
                    "isOutbound": False,
                    "isNaturalCalling": False,
                    "stationId": 5_000 + agent,
                    "stationName": f"Station {agent}",
                    "teamId": 55,
                }
            )
            at += timedelta(seconds=seconds)
    return rows


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
