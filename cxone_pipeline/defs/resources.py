"""Dagster resources: the lake store and the curation settings, fed by environment variables."""

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource, EnvVar
from dagster_aws.s3 import S3Resource

from cxone_pipeline.lake.store import Store, open_store
from cxone_pipeline.registry import SubjectSchemas, load_registry, load_subject
from cxone_pipeline.settings import Settings, SettingsError


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

    def subject(self, name: str) -> SubjectSchemas:
        return load_subject(Path(self.schemas_dir), name)

    def registry(self) -> dict[str, SubjectSchemas]:
        return load_registry(Path(self.schemas_dir))


def env_int(name: str, default: int, minimum: int = 0, env: Mapping[str, str] = os.environ) -> int:
    """An integer read at definition load, for the settings Dagster needs before any run."""
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be at least {minimum}")
    return value


def _env(name: str, default: Any) -> Any:
    # EnvVar only when the variable is set, so unset ones fall back to the documented default
    # while the UI still shows which variable a configured value came from.
    if not os.environ.get(name):
        return default
    return EnvVar.int(name) if isinstance(default, int) else EnvVar(name)


def _env_rate(name: str, default: float) -> float:
    # Dagster's EnvVar resolves to str or int only, so a fraction is parsed here.
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number (a fraction: 0.01 is 1%)") from None
    if not 0.0 <= value <= 1.0:
        raise SettingsError(f"{name}={value} must be a fraction between 0 and 1")
    return value


def build_resources(settings: Settings) -> dict[str, ConfigurableResource]:
    """The resources of the code location, configured from `CXONE_PIPELINE_*` variables."""
    return {
        "lake": LakeResource(
            lake_url=_env("CXONE_PIPELINE_LAKE_URL", ".lake"),
            s3=S3Resource(endpoint_url=_env("CXONE_PIPELINE_S3_ENDPOINT_URL", None)),
            server_side_encryption=_env("CXONE_PIPELINE_S3_SSE", None),
            kms_key_id=_env("CXONE_PIPELINE_S3_KMS_KEY_ID", None),
        ),
        "curation": CurationSettings(
            schemas_dir=str(settings.schemas_dir),
            lookback_hours=_env("CXONE_PIPELINE_SENSOR_LOOKBACK_HOURS", 3),
            close_grace_seconds=_env("CXONE_PIPELINE_CLOSE_GRACE_SECONDS", 120),
            open_hour_refresh_seconds=_env("CXONE_PIPELINE_OPEN_HOUR_REFRESH_SECONDS", 900),
            reconcile_days=_env("CXONE_PIPELINE_RECONCILE_DAYS", 2),
            quarantine_rate_max=_env_rate("CXONE_PIPELINE_QUARANTINE_RATE_MAX", 0.01),
        ),
    }
