"""Dagster wiring for CXone: the API resource and the `register_cxone_webhook` job.

Safe to launch from the UI: the only run config is which of the registry's subjects to
register (an enum: no free text, no `{env: ...}`). The landing URL is
`CXONE_PIPELINE_PUBLIC_URL` and the tenant the `CXONE_*` variables, both read from the run's
environment; the resource has no fields, so run config cannot point it at another host.
"""

# No `from __future__ import annotations`: Dagster reads the op's config type at runtime.
import asyncio
from collections.abc import Sequence

import dagster as dg

from cxone_pipeline.cxone.config import CXoneConfig
from cxone_pipeline.cxone.errors import CXoneError, RegistrationError
from cxone_pipeline.cxone.registration import (
    RegistrationResult,
    register_webhook,
    webhook_spec,
)
from cxone_pipeline.lake.layout import DEFAULT_SUBJECT
from cxone_pipeline.settings import Settings, SettingsError


class CXoneResource(dg.ConfigurableResource):
    """The CXone tenant of the `CXONE_*` variables, read when a run uses it. No fields on
    purpose: a field could be overridden by run config from the UI, pointing the client (and
    its credentials) at another host."""

    def config(self) -> CXoneConfig:
        return CXoneConfig.from_settings(Settings.from_env())

    def register_webhook(self, subject: str) -> tuple[RegistrationResult, str]:
        """Register `<CXONE_PIPELINE_PUBLIC_URL>/ingest/<subject>`; the result and that URL."""
        settings = Settings.from_env()
        if settings.public_url is None:
            raise RegistrationError(
                "CXONE_PIPELINE_PUBLIC_URL is not set: set it to the landing's public base URL "
                "(https://landing.example.com) where the job runs"
            )
        webhook_url = f"{settings.public_url}/ingest/{subject}"
        spec = webhook_spec(
            webhook_url, settings.ingest_tokens, subject=subject, allow_http=settings.allow_http
        )
        result = asyncio.run(register_webhook(CXoneConfig.from_settings(settings), spec))
        return result, webhook_url


def register_webhook_job(subjects: Sequence[str]) -> dg.JobDefinition:
    """The job, offering the registry's subjects as its only choice."""
    subject = dg.Field(
        dg.Enum("Subject", [dg.EnumValue(name) for name in subjects]),
        default_value=DEFAULT_SUBJECT if DEFAULT_SUBJECT in subjects else subjects[0],
        description="subject whose events CXone delivers, to "
        "<CXONE_PIPELINE_PUBLIC_URL>/ingest/<subject>",
    )

    @dg.op(name="register_webhook_op", config_schema={"subject": subject})
    def register_webhook_op(context: dg.OpExecutionContext, cxone: CXoneResource) -> dg.Output[str]:
        """Create, update or leave unchanged the data action; outputs its id."""
        try:
            result, webhook_url = cxone.register_webhook(context.op_config["subject"])
        except (CXoneError, SettingsError) as exc:
            # One line naming what to fix; the message never carries a secret or a config value.
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        context.log.info(
            f"data action {result.action_name!r} (id {result.action_id}): {result.outcome.value}"
        )
        return dg.Output(
            result.action_id,
            metadata={
                "action_id": result.action_id,
                "action_name": result.action_name,
                "outcome": result.outcome.value,
                "webhook_url": dg.MetadataValue.url(webhook_url),
            },
        )

    @dg.job(
        name="register_cxone_webhook",
        description="Point CXone at <CXONE_PIPELINE_PUBLIC_URL>/ingest/<subject> "
        "(idempotent: reruns change nothing). Safe to launch from the UI.",
    )
    def register_cxone_webhook() -> None:
        register_webhook_op()

    return register_cxone_webhook
