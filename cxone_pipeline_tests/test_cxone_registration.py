"""Webhook registration and `cxone-pipeline register-webhook` against the CXone simulator."""

from __future__ import annotations

import asyncio

import pytest

from cxone_pipeline.cli import main
from cxone_pipeline.cxone.config import CXoneConfig
from cxone_pipeline.cxone.errors import CXoneAPIError, CXoneTransportError, RegistrationError
from cxone_pipeline.cxone.registration import (
    BODY_TEMPLATE,
    Outcome,
    RegistrationResult,
    register_webhook,
    webhook_spec,
)
from cxone_pipeline.settings import Secret, Settings
from cxone_pipeline_tests.cxone_simulator import (
    API_PREFIX,
    DATAACTIONS_PATH,
    CXoneSimulator,
)

LIST = API_PREFIX + DATAACTIONS_PATH
INGEST_TOKEN = "landing-token-9d2e"
URL = "https://landing.example.com/ingest/call_event"


def register(sim: CXoneSimulator, url: str = URL, token: str = INGEST_TOKEN) -> RegistrationResult:
    config = CXoneConfig.from_settings(Settings.from_env(sim.env(password_grant=True)))
    spec = webhook_spec(url, (Secret(token), Secret("older-token")))
    return asyncio.run(register_webhook(config, spec))


def writes(sim: CXoneSimulator) -> list[tuple[str, str]]:
    return [
        (s.method, s.path)
        for s in sim.seen
        if s.method in ("POST", "PUT") and s.path != "/auth/token"
    ]


def test_create_then_unchanged_then_update(sim: CXoneSimulator) -> None:
    first = register(sim)
    assert first == RegistrationResult("da-1", "cxone-pipeline-call_event", Outcome.CREATED)
    assert writes(sim) == [("POST", LIST)]
    (action,) = sim.actions.values()
    assert action["type"] == "dataaction"
    assert action["actions"] == [
        {
            "type": "http",
            "name": "ForwardToConsumer",
            "settings": {
                "url": URL,
                "method": "POST",
                "headers": {
                    "Authorization": f"Bearer {INGEST_TOKEN}",
                    "Content-Type": "application/json",
                },
                "body": BODY_TEMPLATE,
            },
        }
    ]

    assert register(sim).outcome is Outcome.UNCHANGED
    assert writes(sim) == [("POST", LIST)]  # the second run wrote nothing

    moved = "https://landing2.example.com/ingest/call_event"
    third = register(sim, url=moved)
    assert third == RegistrationResult("da-1", "cxone-pipeline-call_event", Outcome.UPDATED)
    assert writes(sim) == [("POST", LIST), ("PUT", f"{LIST}/da-1")]
    assert len(sim.actions) == 1
    assert sim.actions["da-1"]["actions"][0]["settings"]["url"] == moved


def test_rotated_token_updates_the_headers(sim: CXoneSimulator) -> None:
    register(sim)
    assert register(sim, token="rotated-token").outcome is Outcome.UPDATED
    headers = sim.actions["da-1"]["actions"][0]["settings"]["headers"]
    assert headers["Authorization"] == "Bearer rotated-token"


def test_create_retried_after_503_is_created_once(sim: CXoneSimulator) -> None:
    sim.fail("POST", LIST, 503)
    assert register(sim).outcome is Outcome.CREATED
    assert sim.statuses("POST", LIST) == [503, 201]
    assert list(sim.actions) == ["da-1"]


def test_create_that_landed_behind_a_gateway_timeout_is_found_not_repeated(
    sim: CXoneSimulator,
) -> None:
    sim.fail("POST", LIST, 504, after_serving=True)
    assert register(sim) == RegistrationResult("da-1", "cxone-pipeline-call_event", Outcome.CREATED)
    assert sim.statuses("POST", LIST) == [504]
    assert sim.statuses("GET", LIST) == [200, 200]
    assert list(sim.actions) == ["da-1"]


def test_create_lost_behind_a_bad_gateway_is_reported_not_repeated(sim: CXoneSimulator) -> None:
    sim.fail("POST", LIST, 502)
    with pytest.raises(CXoneTransportError, match="may have been applied"):
        register(sim)
    assert sim.statuses("POST", LIST) == [502]
    assert sim.actions == {}


def test_two_actions_with_the_name_is_an_error(sim: CXoneSimulator) -> None:
    register(sim)
    sim.actions["da-9"] = {**sim.actions["da-1"], "id": "da-9"}
    with pytest.raises(RegistrationError, match=r"2 data actions .* \(ids da-1, da-9\)"):
        register(sim)


def test_secret_echoed_by_cxone_is_masked_in_the_error(sim: CXoneSimulator) -> None:
    sim.fail(
        "POST", LIST, 400, echo=lambda body: {"bad": body["actions"][0]["settings"]["headers"]}
    )
    with pytest.raises(CXoneAPIError) as raised:
        register(sim)
    assert raised.value.status == 400
    assert '"Authorization":"Bearer ***"' in raised.value.excerpt
    assert INGEST_TOKEN not in str(raised.value)


@pytest.mark.parametrize(
    ("url", "subject", "message"),
    [
        ("ftp://landing/ingest/call_event", "call_event", "not an absolute http"),
        ("https://landing/ingest/agent_state", "call_event", "'agent_state' but the subject"),
        ("https://landing/ingest", "agent_state", "'call_event' but the subject"),
        ("https://landing/ingest/x", "../x", "not a subject name"),
    ],
)
def test_invalid_webhook_requests_are_refused(url: str, subject: str, message: str) -> None:
    with pytest.raises(RegistrationError, match=message):
        webhook_spec(url, (Secret(INGEST_TOKEN),), subject=subject)


def test_url_without_ingest_path_is_used_as_given() -> None:
    spec = webhook_spec("https://proxy.example.com/cxone", (Secret("t"),), subject="agent_state")
    assert spec.webhook_url == "https://proxy.example.com/cxone"
    assert spec.action_name == "cxone-pipeline-agent_state"
    assert "agent_state" in spec.data_action()["description"]


@pytest.fixture
def cli_env(sim: CXoneSimulator, monkeypatch: pytest.MonkeyPatch) -> CXoneSimulator:
    for name, value in {**sim.env(), "CXONE_PIPELINE_INGEST_TOKEN": INGEST_TOKEN}.items():
        monkeypatch.setenv(name, value)
    return sim


def test_cli_creates_then_reports_unchanged(
    cli_env: CXoneSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["register-webhook", "--webhook-url", URL, "--name", "landing"]
    assert main(args) == 0
    assert capsys.readouterr().out == f"created: data action 'landing' (id da-1) -> {URL}\n"
    assert main(args) == 0
    assert capsys.readouterr().out == f"unchanged: data action 'landing' (id da-1) -> {URL}\n"
    assert writes(cli_env) == [("POST", LIST)]


def test_cli_dry_run_sends_nothing_and_masks_the_token(
    cli_env: CXoneSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["register-webhook", "--webhook-url", URL, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert cli_env.seen == []
    assert '"Authorization": "Bearer ***"' in out
    assert f"POST {cli_env.base_url}" not in out  # the API base is discovered, not guessed
    assert INGEST_TOKEN not in out
    assert cli_env.client_secret not in out


def test_cli_failure_is_one_line_without_secrets(
    cli_env: CXoneSimulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CXONE_CLIENT_SECRET", "a-wrong-secret")
    assert main(["register-webhook", "--webhook-url", URL]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("cxone-pipeline register-webhook: POST ")
    assert "answered 401" in captured.err
    assert captured.err.count("\n") == 1
    assert "a-wrong-secret" not in captured.err
    assert INGEST_TOKEN not in captured.err


def test_cli_without_ingest_token_fails_clearly(
    cli_env: CXoneSimulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CXONE_PIPELINE_INGEST_TOKEN")
    assert main(["register-webhook", "--webhook-url", URL]) == 2
    assert "CXONE_PIPELINE_INGEST_TOKEN is not set" in capsys.readouterr().err
    assert cli_env.seen == []


def test_spec_repr_hides_the_token() -> None:
    spec = webhook_spec(URL, (Secret(INGEST_TOKEN),))
    assert repr(spec) == (
        f"WebhookSpec(webhook_url='{URL}', subject='call_event', "
        "action_name='cxone-pipeline-call_event')"
    )
