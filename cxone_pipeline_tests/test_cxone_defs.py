"""The `register_cxone_webhook` Dagster job against the CXone simulator: in-process, and
launched through Dagster's GraphQL API as anyone reaching the UI could launch it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster_graphql.test.utils import (
    define_out_of_process_context,
    execute_dagster_graphql,
    infer_job_selector,
)

from cxone_pipeline.defs.cxone import CXoneResource, register_webhook_job
from cxone_pipeline.settings import PROJECT_ROOT
from cxone_pipeline_tests.cxone_simulator import CXoneSimulator

INGEST_TOKEN = "landing-token-41aa"
PUBLIC_URL = "https://landing.example.com"
CANARY = "aws-secret-canary-7d3f"
JOB = register_webhook_job(["agent_state", "call_event"])


@pytest.fixture
def cxone_env(sim: CXoneSimulator, monkeypatch: pytest.MonkeyPatch) -> CXoneSimulator:
    env = {
        **sim.env(),
        "CXONE_PIPELINE_INGEST_TOKEN": INGEST_TOKEN,
        "CXONE_PIPELINE_PUBLIC_URL": PUBLIC_URL,
        "AWS_SECRET_ACCESS_KEY": CANARY,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return sim


def run_job(subject: str = "agent_state") -> dg.ExecuteInProcessResult:
    return JOB.execute_in_process(
        run_config={"ops": {"register_webhook_op": {"config": {"subject": subject}}}},
        resources={"cxone": CXoneResource()},
        raise_on_error=False,
    )


def output_metadata(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    (event,) = [e for e in result.all_node_events if e.is_successful_output]
    return {k: v.value for k, v in event.step_output_data.metadata.items()}


def failure_of(result: dg.ExecuteInProcessResult) -> dg.DagsterEvent:
    (failure,) = [e for e in result.all_node_events if e.is_step_failure]
    return failure


def test_job_registers_the_public_url_then_leaves_it_unchanged(
    cxone_env: CXoneSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = run_job()
    assert first.success
    assert first.output_for_node("register_webhook_op") == "da-1"
    assert output_metadata(first) == {
        "action_id": "da-1",
        "action_name": "cxone-pipeline-agent_state",
        "outcome": "created",
        "webhook_url": f"{PUBLIC_URL}/ingest/agent_state",
    }
    assert output_metadata(run_job())["outcome"] == "unchanged"
    monkeypatch.setenv("CXONE_PIPELINE_PUBLIC_URL", "https://landing2.example.com")
    assert output_metadata(run_job())["outcome"] == "updated"
    settings = cxone_env.actions["da-1"]["actions"][0]["settings"]
    assert settings["url"] == "https://landing2.example.com/ingest/agent_state"
    assert settings["headers"]["Authorization"] == f"Bearer {INGEST_TOKEN}"


@pytest.mark.parametrize(
    ("unset", "replaced", "expected"),
    [
        ("CXONE_CLIENT_ID", {}, "CXONE_CLIENT_ID and CXONE_CLIENT_SECRET must be set"),
        ("CXONE_PIPELINE_PUBLIC_URL", {}, "CXONE_PIPELINE_PUBLIC_URL is not set"),
        (None, {"CXONE_CLIENT_SECRET": "a-wrong-secret"}, "answered 401"),
        (None, {"CXONE_PIPELINE_PUBLIC_URL": f"http://{CANARY}.example"}, "must be an absolute"),
    ],
)
def test_job_failures_are_one_line_without_secrets_or_config_values(
    cxone_env: CXoneSimulator,
    monkeypatch: pytest.MonkeyPatch,
    unset: str | None,
    replaced: dict[str, str],
    expected: str,
) -> None:
    if unset:
        monkeypatch.delenv(unset)
    monkeypatch.delenv("CXONE_PIPELINE_ALLOW_HTTP") if "PUBLIC_URL" in str(replaced) else None
    for name, value in replaced.items():
        monkeypatch.setenv(name, value)
    result = run_job()
    assert not result.success
    failure = failure_of(result).step_failure_data
    description = failure.user_failure_data.description
    assert expected in description
    assert "\n" not in description
    assert failure.error.cls_name == "Failure" and failure.error.cause is None
    for secret in (CANARY, "a-wrong-secret", cxone_env.client_secret):
        assert secret not in description
    assert cxone_env.actions == {}


LAUNCH = """
mutation Launch($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PythonError { message }
  }
}"""
RUN = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    ... on Run {
      status
      eventConnection { events { __typename ... on MessageEvent { message } } }
    }
  }
}"""


@pytest.fixture
def graphql(
    cxone_env: CXoneSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """Dagster's GraphQL API over the project's code location (a gRPC code server process);
    a launched run is a run worker process, as under the webserver."""
    monkeypatch.setenv("CXONE_PIPELINE_LAKE_URL", str(tmp_path / "lake"))
    with (
        dg.instance_for_test(
            # Launch directly (no queue, no daemon needed).
            overrides={
                "run_coordinator": {
                    "module": "dagster._core.run_coordinator",
                    "class": "DefaultRunCoordinator",
                }
            },
        ) as instance,
        define_out_of_process_context(
            str(PROJECT_ROOT / "cxone_pipeline" / "definitions.py"), "defs", instance
        ) as context,
    ):
        yield context


def launch(context: Any, run_config: dict[str, Any]) -> dict[str, Any]:
    selector = infer_job_selector(context, "register_cxone_webhook")
    result = execute_dagster_graphql(
        context, LAUNCH, {"executionParams": {"selector": selector, "runConfigData": run_config}}
    )
    assert result.errors is None, result.errors
    return result.data["launchRun"]


def test_ui_launch_cannot_read_environment_or_redirect_cxone(
    graphql: Any, cxone_env: CXoneSimulator
) -> None:
    """What the attack review did through the open UI: op config that reads an environment
    variable, resource overrides that point CXone's client elsewhere, a free webhook URL."""
    op = "register_webhook_op"
    attacks = {
        "env-in-url": {"ops": {op: {"config": {"webhook_url": {"env": "AWS_SECRET_ACCESS_KEY"}}}}},
        "env-in-subject": {"ops": {op: {"config": {"subject": {"env": "AWS_SECRET_ACCESS_KEY"}}}}},
        "attacker-url": {"ops": {op: {"config": {"webhook_url": "https://evil.example/x"}}}},
        "action-name": {"ops": {op: {"config": {"action_name": "someone-elses-action"}}}},
        "resource-override": {
            "resources": {"cxone": {"config": {"auth_base_url": "https://evil.example"}}}
        },
        # The lake and curation resources are fixed too: no other lake, no environment read.
        "lake-override": {
            "resources": {"lake": {"config": {"lake_url": {"env": "AWS_SECRET_ACCESS_KEY"}}}}
        },
        "curation-override": {
            "resources": {"curation": {"config": {"schemas_dir": "/tmp/elsewhere"}}}
        },
        "io-manager-override": {
            "resources": {"curated_io_manager": {"config": {"max_read_bytes": 1}}}
        },
    }
    for name, run_config in attacks.items():
        answer = launch(graphql, run_config)
        assert answer["__typename"] == "RunConfigValidationInvalid", (name, answer)
        assert CANARY not in str(answer), name
    assert graphql.instance.get_runs() == []

    launched = launch(graphql, {"ops": {op: {"config": {"subject": "agent_state"}}}})
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline = time.monotonic() + 240
    while not graphql.instance.get_run_by_id(run_id).is_finished:
        assert time.monotonic() < deadline, "the run did not finish"
        time.sleep(0.5)
    run = execute_dagster_graphql(graphql, RUN, {"runId": run_id})
    assert run.data["runOrError"]["status"] == "SUCCESS"
    (action,) = cxone_env.actions.values()
    assert action["actions"][0]["settings"]["url"] == f"{PUBLIC_URL}/ingest/agent_state"
    assert CANARY not in str(run.data)
