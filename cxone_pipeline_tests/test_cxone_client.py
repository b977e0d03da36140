"""The CXone client over real HTTP against the simulator: grants, discovery, tokens, retries."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import pytest

from cxone_pipeline.cxone.client import CXoneClient
from cxone_pipeline.cxone.config import CXoneConfig
from cxone_pipeline.cxone.errors import (
    CXoneAPIError,
    CXoneAuthError,
    CXoneConfigError,
    CXoneRetriesExhausted,
)
from cxone_pipeline.cxone.retry import RetryPolicy, retry_after_seconds
from cxone_pipeline.settings import Secret, Settings
from cxone_pipeline_tests.cxone_simulator import (
    API_PREFIX,
    DATAACTIONS_PATH,
    TENANT_ID,
    CXoneSimulator,
)
from cxone_pipeline_tests.servers import free_port

LIST = API_PREFIX + DATAACTIONS_PATH
FAST = RetryPolicy(deadline=5.0, base_delay=0.01, max_delay=0.05, retry_after_cap=2.0)


def config(sim: CXoneSimulator, *, retry: RetryPolicy = FAST, **env: Any) -> CXoneConfig:
    options = {k: v for k, v in env.items() if k in ("password_grant", "discover")}
    variables = {**sim.env(**options), **{k: v for k, v in env.items() if k not in options}}
    return dataclasses.replace(CXoneConfig.from_settings(Settings.from_env(variables)), retry=retry)


def list_actions(cfg: CXoneConfig, calls: int = 1) -> list[Any]:
    async def run() -> list[Any]:
        async with CXoneClient(cfg) as client:
            return [await client.request("GET", cfg.dataactions_path) for _ in range(calls)]

    return asyncio.run(run())


def test_client_credentials_grant_sends_client_and_scope(sim: CXoneSimulator) -> None:
    assert list_actions(config(sim)) == [{"entities": []}]
    assert sim.grants == ["client_credentials"]
    (issued,) = sim.tokens.values()
    assert issued.scopes == {"dataactions:read", "dataactions:write", "dataactions:execute"}


def test_password_grant_when_an_access_key_is_configured(sim: CXoneSimulator) -> None:
    assert list_actions(config(sim, password_grant=True)) == [{"entities": []}]
    assert sim.grants == ["password"]


@pytest.mark.parametrize(
    ("password_grant", "wrong", "variable"),
    [
        (False, "CXONE_CLIENT_SECRET", "CXONE_CLIENT_SECRET"),
        (True, "CXONE_ACCESS_KEY_SECRET", "CXONE_ACCESS_KEY_SECRET"),
    ],
)
def test_wrong_credentials_raise_auth_error_naming_the_variables(
    sim: CXoneSimulator, password_grant: bool, wrong: str, variable: str
) -> None:
    cfg = config(sim, password_grant=password_grant, **{wrong: "not-the-secret"})
    with pytest.raises(CXoneAuthError) as raised:
        list_actions(cfg)
    assert raised.value.status == 401
    assert variable in str(raised.value)
    assert "not-the-secret" not in str(raised.value)
    assert sim.statuses("POST", "/auth/token") == [401]


def test_missing_client_credentials_is_a_config_error(sim: CXoneSimulator) -> None:
    with pytest.raises(CXoneConfigError, match="CXONE_CLIENT_ID and CXONE_CLIENT_SECRET"):
        list_actions(config(sim, CXONE_CLIENT_SECRET=""))
    assert sim.seen == []


def test_discovery_finds_token_endpoint_and_tenant_api_once(sim: CXoneSimulator) -> None:
    assert list_actions(config(sim, password_grant=True), calls=3) == [{"entities": []}] * 3
    assert [(s.method, s.path) for s in sim.seen] == [
        ("GET", "/.well-known/openid-configuration"),
        ("POST", "/auth/token"),
        ("GET", "/.well-known/cxone-configuration"),
        ("GET", LIST),
        ("GET", LIST),
        ("GET", LIST),
    ]


def test_overrides_skip_discovery(sim: CXoneSimulator) -> None:
    list_actions(config(sim, discover=False))
    assert [s.path for s in sim.seen] == ["/auth/token", LIST]


def test_failed_discovery_is_a_config_error_naming_the_variables(sim: CXoneSimulator) -> None:
    cfg = config(sim, CXONE_API_BASE_URL="", CXONE_TOKEN_ENDPOINT=sim.base_url + "/auth/token")
    with pytest.raises(CXoneConfigError, match="CXONE_AUTH_BASE_URL"):
        list_actions(dataclasses.replace(cfg, auth_base_url=sim.base_url + "/elsewhere"))


def test_token_is_reused_across_calls(sim: CXoneSimulator) -> None:
    list_actions(config(sim), calls=5)
    assert len(sim.grants) == 1
    assert sim.statuses("GET", LIST) == [200] * 5


def test_token_is_refreshed_before_it_expires(sim: CXoneSimulator) -> None:
    # 31 s of life minus the 30 s minimum margin: usable for one second.
    sim.expires_in = 31
    cfg = config(sim)

    async def run() -> None:
        async with CXoneClient(cfg) as client:
            await client.request("GET", cfg.dataactions_path)
            await client.request("GET", cfg.dataactions_path)
            assert len(sim.grants) == 1
            await asyncio.sleep(1.1)
            await client.request("GET", cfg.dataactions_path)

    asyncio.run(run())
    assert len(sim.grants) == 2
    assert sim.statuses("GET", LIST) == [200, 200, 200]  # the old token was never refused


def test_fifty_concurrent_callers_with_no_token_cause_one_token_request(
    sim: CXoneSimulator,
) -> None:
    sim.token_delay = 0.2
    cfg = config(sim, password_grant=True)

    async def run() -> list[Any]:
        async with CXoneClient(cfg) as client:
            return await asyncio.gather(
                *(client.request("GET", cfg.dataactions_path) for _ in range(50))
            )

    assert asyncio.run(run()) == [{"entities": []}] * 50
    assert len(sim.grants) == 1
    assert len(sim.statuses("GET", "/.well-known/cxone-configuration")) == 1
    assert sim.statuses("GET", LIST) == [200] * 50


def test_fifty_concurrent_callers_with_an_expired_token_cause_one_refresh(
    sim: CXoneSimulator,
) -> None:
    sim.expires_in = 31
    sim.token_delay = 0.2
    cfg = config(sim)

    async def run() -> None:
        async with CXoneClient(cfg) as client:
            await client.request("GET", cfg.dataactions_path)
            await asyncio.sleep(1.1)
            await asyncio.gather(*(client.request("GET", cfg.dataactions_path) for _ in range(50)))

    asyncio.run(run())
    assert len(sim.grants) == 2


def test_revoked_token_is_refreshed_once_and_the_call_retried(sim: CXoneSimulator) -> None:
    cfg = config(sim)

    async def run() -> Any:
        async with CXoneClient(cfg) as client:
            await client.request("GET", cfg.dataactions_path)
            sim.revoke_tokens()
            return await client.request("GET", cfg.dataactions_path)

    assert asyncio.run(run()) == {"entities": []}
    assert sim.statuses("GET", LIST) == [200, 401, 200]
    assert len(sim.grants) == 2


def test_token_refused_twice_raises_auth_error(sim: CXoneSimulator) -> None:
    sim.fail("GET", LIST, 401, times=2)
    with pytest.raises(CXoneAuthError, match="freshly issued token") as raised:
        list_actions(config(sim))
    assert raised.value.status == 401
    assert len(sim.grants) == 2
    assert sim.statuses("GET", LIST) == [401, 401]


def test_429_with_retry_after_seconds_waits_that_long(sim: CXoneSimulator) -> None:
    sim.fail("GET", LIST, 429, retry_after="1")
    started = time.monotonic()
    assert list_actions(config(sim)) == [{"entities": []}]
    assert time.monotonic() - started >= 1.0
    assert sim.statuses("GET", LIST) == [429, 200]


def test_429_with_retry_after_date_is_honoured_up_to_the_cap(sim: CXoneSimulator) -> None:
    in_an_hour = format_datetime(datetime.now(timezone.utc) + timedelta(hours=1), usegmt=True)
    sim.fail("GET", LIST, 429, retry_after=in_an_hour)
    started = time.monotonic()
    list_actions(config(sim, retry=dataclasses.replace(FAST, retry_after_cap=0.4)))
    assert 0.4 <= time.monotonic() - started < 2.0
    assert sim.statuses("GET", LIST) == [429, 200]


def test_retry_after_parses_seconds_and_http_dates() -> None:
    now = datetime(2026, 11, 27, 20, 0, 0, tzinfo=timezone.utc)
    assert retry_after_seconds("7", now) == 7.0
    assert retry_after_seconds("Fri, 27 Nov 2026 20:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Fri, 27 Nov 2026 19:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


def test_429_without_retry_after_backs_off_and_succeeds(sim: CXoneSimulator) -> None:
    sim.fail("GET", LIST, 429, times=3)
    started = time.monotonic()
    assert list_actions(config(sim)) == [{"entities": []}]
    assert time.monotonic() - started < 1.0
    assert sim.statuses("GET", LIST) == [429, 429, 429, 200]


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_errors_are_retried(sim: CXoneSimulator, status: int) -> None:
    sim.fail("GET", LIST, status, times=2)
    assert list_actions(config(sim)) == [{"entities": []}]
    assert sim.statuses("GET", LIST) == [status, status, 200]


def test_token_endpoint_503_is_retried(sim: CXoneSimulator) -> None:
    sim.fail("POST", "/auth/token", 503)
    list_actions(config(sim))
    assert sim.statuses("POST", "/auth/token") == [503, 200]


def test_deadline_exceeded_raises_a_clear_error(sim: CXoneSimulator) -> None:
    sim.fail("GET", LIST, 503, times=10_000)
    started = time.monotonic()
    with pytest.raises(CXoneRetriesExhausted) as raised:
        list_actions(config(sim, retry=dataclasses.replace(FAST, deadline=0.5)))
    assert time.monotonic() - started < 1.5
    message = str(raised.value)
    assert f"GET {sim.api_base_url}{DATAACTIONS_PATH}" in message
    assert "503 Service Unavailable" in message
    assert "0.5 s deadline" in message
    assert len(sim.statuses("GET", LIST)) >= 3


def test_retry_after_beyond_the_deadline_gives_up_at_once(sim: CXoneSimulator) -> None:
    sim.fail("GET", LIST, 429, retry_after="2", times=5)
    started = time.monotonic()
    with pytest.raises(CXoneRetriesExhausted, match="429"):
        list_actions(config(sim, retry=dataclasses.replace(FAST, deadline=1.0)))
    assert time.monotonic() - started < 0.5
    assert sim.statuses("GET", LIST) == [429]


def test_connection_refused_is_retried_until_the_deadline(sim: CXoneSimulator) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    cfg = config(sim, discover=False, CXONE_API_BASE_URL=closed)
    with pytest.raises(CXoneRetriesExhausted, match="ConnectError"):
        list_actions(dataclasses.replace(cfg, retry=dataclasses.replace(FAST, deadline=0.3)))


def test_unknown_path_raises_api_error_with_status_and_hint(sim: CXoneSimulator) -> None:
    cfg = config(sim, CXONE_DATAACTIONS_PATH="/api/v31/dataactions")
    with pytest.raises(CXoneAPIError) as raised:
        list_actions(cfg)
    assert raised.value.status == 404
    assert raised.value.excerpt == "Not Found"
    assert "CXONE_DATAACTIONS_PATH" in str(raised.value)
    assert sim.statuses("GET", API_PREFIX + "/api/v31/dataactions") == []  # unrouted, not seen


def test_missing_scope_raises_403_with_excerpt(sim: CXoneSimulator) -> None:
    cfg = config(sim, CXONE_SCOPE="dataactions:read")

    async def run() -> None:
        async with CXoneClient(cfg) as client:
            await client.request("POST", cfg.dataactions_path, json={"name": "x"})

    with pytest.raises(CXoneAPIError) as raised:
        asyncio.run(run())
    assert raised.value.status == 403
    assert "insufficient_scope" in raised.value.excerpt
    assert sim.statuses("POST", LIST) == [403]


def test_secrets_never_reach_logs_errors_or_repr(
    sim: CXoneSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cfg = config(sim, password_grant=True)
    leaky = "ingest-token-never-shown"
    sim.fail("GET", LIST, 429)
    sim.fail("POST", LIST, 400, echo=lambda body: body)

    async def run() -> None:
        async with CXoneClient(cfg) as client:
            await client.request("GET", cfg.dataactions_path)
            sim.revoke_tokens()
            await client.request(
                "POST", cfg.dataactions_path, json={"token": leaky}, secrets=[Secret(leaky)]
            )

    with pytest.raises(CXoneAPIError) as raised:
        asyncio.run(run())
    assert raised.value.status == 400
    assert '"token":"***"' in raised.value.excerpt
    with pytest.raises(CXoneAuthError) as refused:
        list_actions(config(sim, CXONE_CLIENT_SECRET="wrong-client-secret-123"))
    visible = "\n".join([caplog.text, str(raised.value), str(refused.value), repr(cfg)])
    assert "retrying" in caplog.text  # the logs were captured, and say what happened
    for secret in (
        sim.client_secret,
        sim.access_key_secret,
        leaky,
        "wrong-client-secret-123",
        *sim.tokens,
    ):
        assert secret not in visible
    assert TENANT_ID not in repr(cfg)


@pytest.mark.parametrize(
    ("attribute", "endpoint"),
    [
        ("discovered_token_endpoint", "https://collector.attacker.example/auth/token"),
        ("discovered_token_endpoint", "http://{host}/auth/token-in-clear"),
        ("discovered_api_endpoint", "https://api.attacker.example"),
        ("discovered_api_endpoint", "https://niceincontact.com.attacker.example"),
    ],
)
def test_discovered_endpoints_off_the_issuer_domains_are_never_contacted(
    sim: CXoneSimulator, attribute: str, endpoint: str
) -> None:
    """Discovery that points at another host, or at plain http, is refused before any
    credential is sent there. (The configured simulator URL itself is plain http on
    loopback; discovered endpoints must be https with the development flag off.)"""
    setattr(sim, attribute, endpoint.format(host=sim.base_url.split("://", 1)[1]))
    env = {"password_grant": True}
    if attribute == "discovered_api_endpoint":
        env["CXONE_TOKEN_ENDPOINT"] = sim.base_url + "/auth/token"
    cfg = dataclasses.replace(config(sim, **env), allow_http=False)
    with pytest.raises(CXoneConfigError) as raised:
        list_actions(cfg)
    assert "refused without contacting it" in str(raised.value)
    assert sim.client_secret not in str(raised.value)
    if attribute == "discovered_token_endpoint":
        assert sim.statuses("POST", "/auth/token") == []
    assert sim.statuses("GET", LIST) == []


def test_an_allowed_domain_may_serve_the_api(sim: CXoneSimulator) -> None:
    sim.discovered_api_endpoint = sim.api_base_url.replace("127.0.0.1", "localhost")
    cfg = config(sim, CXONE_ALLOWED_DOMAINS="localhost.example")
    with pytest.raises(CXoneConfigError, match="refused without contacting it"):
        list_actions(cfg)
    assert list_actions(dataclasses.replace(cfg, allowed_domains=("localhost",))) == [
        {"entities": []}
    ]
