"""The `register_cxone_webhook` Dagster job executed in-process against the CXone simulator."""

from __future__ import annotations

import dagster as dg
import pytest

from cxone_pipeline.defs.cxone import (
    CXoneResource,
    RegisterWebhookConfig,
    cxone_resource_from_env,
    register_cxone_webhook,
)
from cxone_pipeline_tests.cxone_simulator import CXoneSimulator

INGEST_TOKEN = "landing-token-41aa"
URL = "https://landing.example.com/ingest/agent_state"


def run_job(resource: CXoneResource, url: str = URL) -> dg.ExecuteInProcessResult:
    config = RegisterWebhookConfig(webhook_url=url, subject="agent_state", action_name="agents")
    return register_cxone_webhook.execute_in_process(
        run_config=dg.RunConfig(ops={"register_webhook_op": config}),
        resources={"cxone": resource},
        raise_on_error=False,
    )


def output_metadata(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    (event,) = [e for e in result.all_node_events if e.is_successful_output]
    return {k: v.value for k, v in event.step_output_data.metadata.items()}


def test_job_creates_then_leaves_unchanged_with_env_var_resource(
    sim: CXoneSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {**sim.env(), "CXONE_PIPELINE_INGEST_TOKEN": INGEST_TOKEN}.items():
        monkeypatch.setenv(name, value)
    resource = cxone_resource_from_env()

    first = run_job(resource)
    assert first.success
    assert first.output_for_node("register_webhook_op") == "da-1"
    assert output_metadata(first) == {
        "action_id": "da-1",
        "action_name": "agents",
        "outcome": "created",
        "webhook_url": URL,
    }
    second = run_job(resource)
    assert output_metadata(second)["outcome"] == "unchanged"
    third = run_job(resource, url=URL.replace("landing.", "landing2."))
    assert output_metadata(third)["outcome"] == "updated"
    assert sim.actions["da-1"]["actions"][0]["settings"]["headers"]["Authorization"] == (
        f"Bearer {INGEST_TOKEN}"
    )


def test_resource_from_env_uses_env_vars_and_hides_secrets(sim: CXoneSimulator) -> None:
    env = {**sim.env(password_grant=True), "CXONE_PIPELINE_INGEST_TOKEN": INGEST_TOKEN}
    resource = cxone_resource_from_env(env)
    assert resource.client_secret == dg.EnvVar("CXONE_CLIENT_SECRET")
    assert resource.api_base_url is None  # unset variables stay unset, not failing EnvVars
    plain = CXoneResource(client_id="id", client_secret=sim.client_secret, ingest_token="tok-zz9")
    assert sim.client_secret not in repr(plain)
    assert "tok-zz9" not in repr(plain)


def test_job_failure_names_the_problem_without_secrets(sim: CXoneSimulator) -> None:
    resource = CXoneResource(
        auth_base_url=sim.base_url,
        client_id=sim.client_id,
        client_secret="a-wrong-secret",
        ingest_token=INGEST_TOKEN,
    )
    result = run_job(resource)
    assert not result.success
    (failure,) = [e for e in result.all_node_events if e.is_step_failure]
    description = failure.step_failure_data.user_failure_data.description
    assert "answered 401" in description
    assert "a-wrong-secret" not in description
    assert sim.actions == {}
