"""Dagster resources: the lake store and the curation settings, fed by environment variables."""

import os
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource, EnvVar
from dagster_aws.s3 import S3Resource

from cxone_pipeline.lake.store import Store, open_store
from cxone_pipeline.registry import SubjectSchemas, load_registry, load_subject
from cxone_pipeline.settings import Settings


class LakeResource(ConfigurableResource):
    """The lake root: a local folder or `s3://bucket/prefix`, reached through dagster-aws's S3."""

    lake_url: str = ".lake"
    s3: S3Resource
    server_side_encryption: str | None = None
    kms_key_id: str | None = None

    def store(self) -> Store:
        settings = Settings(
            lake_url=self.lake_url,
            s3_server_side_encryption=self.server_side_encryption,
            s3_kms_key_id=self.kms_key_id,
        )
        client = self.s3.get_client() if self.lake_url.startswith("s3://") else None
        return open_store(settings, client)


class CurationSettings(ConfigurableResource):
    """Where the schemas live and the knobs of the sensor, the reconcile schedule and the checks."""

    schemas_dir: str
    lookback_hours: int = 3
    close_grace_seconds: int = 120
    open_hour_refresh_seconds: int = 900
    reconcile_days: int = 2
    quarantine_rate_max: float = 0.01
    quarantine_rate_action: str = "tag"

    def subject(self, name: str) -> SubjectSchemas:
        return load_subject(Path(self.schemas_dir), name)

    def registry(self) -> dict[str, SubjectSchemas]:
        return load_registry(Path(self.schemas_dir))


def _env(name: str, value: Any) -> Any:
    # An EnvVar where the variable is set, so the UI shows where a value came from;
    # `Settings.from_env` has already validated it.
    if not os.environ.get(name):
        return value
    return EnvVar.int(name) if isinstance(value, int) else EnvVar(name)


def build_resources(settings: Settings) -> dict[str, ConfigurableResource]:
    """The resources of the code location, configured from `CXONE_PIPELINE_*` variables."""
    return {
        "lake": LakeResource(
            lake_url=_env("CXONE_PIPELINE_LAKE_URL", settings.lake_url),
            s3=S3Resource(endpoint_url=_env("CXONE_PIPELINE_S3_ENDPOINT_URL", None)),
            server_side_encryption=_env("CXONE_PIPELINE_S3_SSE", None),
            kms_key_id=_env("CXONE_PIPELINE_S3_KMS_KEY_ID", None),
        ),
        "curation": CurationSettings(
            schemas_dir=str(settings.schemas_dir),
            lookback_hours=_env(
                "CXONE_PIPELINE_SENSOR_LOOKBACK_HOURS", settings.sensor_lookback_hours
            ),
            close_grace_seconds=_env(
                "CXONE_PIPELINE_CLOSE_GRACE_SECONDS", settings.close_grace_seconds
            ),
            open_hour_refresh_seconds=_env(
                "CXONE_PIPELINE_OPEN_HOUR_REFRESH_SECONDS", settings.open_hour_refresh_seconds
            ),
            reconcile_days=_env("CXONE_PIPELINE_RECONCILE_DAYS", settings.reconcile_days),
            # EnvVar resolves to str or int only: a fraction is passed as the parsed value.
            quarantine_rate_max=settings.quarantine_rate_max,
            quarantine_rate_action=_env(
                "CXONE_PIPELINE_QUARANTINE_RATE_ACTION", settings.quarantine_rate_action
            ),
        ),
    }
