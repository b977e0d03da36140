"""Dagster resources: the lake store and the curation settings, fed by environment variables."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dagster import (
    ConfigurableIOManager,
    ConfigurableResource,
    IOManagerDefinition,
    ResourceDefinition,
)
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
    local_file_mode: int = Settings.local_file_mode

    def store(self) -> Store:
        settings = Settings(
            lake_url=self.lake_url,
            s3_server_side_encryption=self.server_side_encryption,
            s3_kms_key_id=self.kms_key_id,
            local_file_mode=self.local_file_mode,
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


def build_resources(settings: Settings) -> dict[str, ConfigurableResource]:
    """The resources of the code location, configured from `CXONE_PIPELINE_*` variables
    (`Settings.from_env` has validated them)."""
    return {
        "lake": LakeResource(
            lake_url=settings.lake_url,
            s3=S3Resource(endpoint_url=settings.s3_endpoint_url),
            server_side_encryption=settings.s3_server_side_encryption,
            kms_key_id=settings.s3_kms_key_id,
            local_file_mode=settings.local_file_mode,
        ),
        "curation": CurationSettings(
            schemas_dir=str(settings.schemas_dir),
            lookback_hours=settings.sensor_lookback_hours,
            close_grace_seconds=settings.close_grace_seconds,
            open_hour_refresh_seconds=settings.open_hour_refresh_seconds,
            reconcile_days=settings.reconcile_days,
            quarantine_rate_max=settings.quarantine_rate_max,
            quarantine_rate_action=settings.quarantine_rate_action,
        ),
    }


def locked(resources: Mapping[str, Any]) -> dict[str, ResourceDefinition]:
    """The resources as fixed values that run config cannot override. Dagster OSS lets anyone
    who reaches the UI launch runs with config: otherwise a run could be pointed at another
    lake, or read the code server's environment with `{env: VAR}` and have it repeated in an
    error. What the operator set in the environment is what every run uses."""
    return {key: _fixed(value) for key, value in resources.items()}


def _fixed(value: Any) -> ResourceDefinition:
    """A resource whose config schema is empty: any run config for it is refused."""
    kind = IOManagerDefinition if isinstance(value, ConfigurableIOManager) else ResourceDefinition
    return kind(resource_fn=lambda _: value, config_schema={}, description=type(value).__doc__)
