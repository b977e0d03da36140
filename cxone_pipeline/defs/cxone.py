"""Dagster wiring for CXone: the API resource and the `register_cxone_webhook` job."""

# No `from __future__ import annotations`: Dagster reads the op's config type at runtime.
import asyncio
import os
from collections.abc import Mapping

import dagster as dg
from pydantic import Field

from cxone_pipeline.cxone.config import CXoneConfig
from cxone_pipeline.cxone.errors import CXoneError
from cxone_pipeline.cxone.registration import (
    RegistrationResult,
    register_webhook,
    webhook_spec,
)
from cxone_pipeline.lake.layout import DEFAULT_SUBJECT
from cxone_pipeline.settings import Settings, SettingsError

# Resource field -> environment variable; Settings.from_env parses them as everywhere else.
ENV_VARS = {
    "client_id": "CXONE_CLIENT_ID",
    "client_secret": "CXONE_CLIENT_SECRET",
    "access_key_id": "CXONE_ACCESS_KEY_ID",
    "access_key_secret": "CXONE_ACCESS_KEY_SECRET",
    "auth_base_url": "CXONE_AUTH_BASE_URL",
    "api_base_url": "CXONE_API_BASE_URL",
    "token_endpoint": "CXONE_TOKEN_ENDPOINT",
    "dataactions_path": "CXONE_DATAACTIONS_PATH",
    "scope": "CXONE_SCOPE",
    "deadline_seconds": "CXONE_DEADLINE_SECONDS",
    "ingest_token": "CXONE_PIPELINE_INGEST_TOKEN",
    "api_version": "CXONE_API_VERSION",
    "page_size": "CXONE_PAGE_SIZE",
}


class CXoneResource(dg.ConfigurableResource):
    """A CXone tenant; each field means what its environment variable in ENV_VARS means."""

    client_id: str | None = None
    client_secret: str | None = Field(default=None, repr=False)
    access_key_id: str | None = None
    access_key_secret: str | None = Field(default=None, repr=False)
    auth_base_url: str | None = None
    api_base_url: str | None = None
    token_endpoint: str | None = None
    dataactions_path: str | None = None
    scope: str | None = None
    deadline_seconds: str | None = None
    ingest_token: str | None = Field(
        default=None, repr=False, description="the landing's bearer token(s), comma-separated"
    )
    api_version: str | None = None
    page_size: str | None = None

    def settings(self) -> Settings:
        return Settings.from_env(
            {var: value for name, var in ENV_VARS.items() if (value := getattr(self, name))}
        )

    def config(self) -> CXoneConfig:
        return CXoneConfig.from_settings(self.settings())

    def register_webhook(
        self, webhook_url: str, *, subject: str, action_name: str | None
    ) -> RegistrationResult:
        settings = self.settings()
        spec = webhook_spec(
            webhook_url, settings.ingest_tokens, subject=subject, action_name=action_name
        )
        return asyncio.run(register_webhook(CXoneConfig.from_settings(settings), spec))


def cxone_resource_from_env(env: Mapping[str, str] | None = None) -> CXoneResource:
    """The resource with an `EnvVar` for each variable set now, read again at each run."""
    env = os.environ if env is None else env
    return CXoneResource(**{name: dg.EnvVar(var) for name, var in ENV_VARS.items() if env.get(var)})


class RegisterWebhookConfig(dg.Config):
    webhook_url: str = Field(description="full landing URL CXone POSTs to, used as given")
    subject: str = Field(default=DEFAULT_SUBJECT, description="event subject delivered")
    action_name: str | None = Field(
        default=None, description="data action name; default cxone-pipeline-<subject>"
    )


@dg.op
def register_webhook_op(
    context: dg.OpExecutionContext, config: RegisterWebhookConfig, cxone: CXoneResource
) -> dg.Output[str]:
    """Create, update or leave unchanged the data action; outputs its id."""
    try:
        result = cxone.register_webhook(
            config.webhook_url, subject=config.subject, action_name=config.action_name
        )
    except (CXoneError, SettingsError) as exc:
        raise dg.Failure(description=str(exc)) from None
    context.log.info(
        f"data action {result.action_name!r} (id {result.action_id}): {result.outcome.value}"
    )
    return dg.Output(
        result.action_id,
        metadata={
            "action_id": result.action_id,
            "action_name": result.action_name,
            "outcome": result.outcome.value,
            "webhook_url": dg.MetadataValue.url(config.webhook_url),
        },
    )


@dg.job(description="Point CXone at the landing endpoint (idempotent: reruns change nothing).")
def register_cxone_webhook() -> None:
    register_webhook_op()
