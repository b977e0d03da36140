"""All configuration, read once from the environment (the table in README.md lists it)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SCHEMAS_DIR = PROJECT_ROOT / "schemas"
Number = TypeVar("Number", int, float)
# What a run does when an hour's quarantine_rate check fails (cxone_pipeline.report).
QUARANTINE_RATE_ACTIONS = ("tag", "fail", "ignore")


class SettingsError(ValueError):
    """A configuration value is malformed; the message names the variable."""


class Secret:
    """A string that never shows itself in `repr`, `str`, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def _number(
    env: Mapping[str, str],
    name: str,
    default: Number,
    minimum: Number = 0,
    maximum: Number | None = None,
) -> Number:
    """A number of the default's type (int or float) within [minimum, maximum]."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    kind = type(default)
    try:
        value = kind(raw)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise SettingsError(f"{name}={raw!r} is not {noun}") from None
    if not math.isfinite(value) or value < minimum or (maximum is not None and value > maximum):
        bound = (
            f"between {minimum:g} and {maximum:g}"
            if maximum is not None
            else f"at least {minimum:g}"
        )
        raise SettingsError(f"{name}={value:g} must be {bound}")
    return value


def _secret(env: Mapping[str, str], name: str) -> Secret | None:
    raw = env.get(name, "").strip()
    return Secret(raw) if raw else None


@dataclass(frozen=True)
class Settings:
    lake_url: str = ".lake"
    s3_endpoint_url: str | None = None
    s3_server_side_encryption: str | None = None
    s3_kms_key_id: str | None = None
    ingest_tokens: tuple[Secret, ...] = field(default=(), repr=False)
    hmac_secret: Secret | None = field(default=None, repr=False)
    schemas_dir: Path = DEFAULT_SCHEMAS_DIR
    partitions_start: str = "2025-01-01-00:00"
    max_body_bytes: int = 1024 * 1024
    max_events_per_request: int = 10_000
    batch_max_events: int = 5_000
    batch_max_bytes: int = 8 * 1024 * 1024
    max_pending_events: int = 100_000
    store_deadline_seconds: float = 5.0
    cxone_client_id: str | None = None
    cxone_client_secret: Secret | None = field(default=None, repr=False)
    cxone_access_key_id: str | None = None
    cxone_access_key_secret: Secret | None = field(default=None, repr=False)
    cxone_auth_base_url: str = "https://cxone.niceincontact.com"
    cxone_api_base_url: str | None = None
    cxone_token_endpoint: str | None = None
    cxone_dataactions_path: str = "/api/v2/dataactions"
    cxone_scope: str = "dataactions:read dataactions:write dataactions:execute"
    cxone_deadline_seconds: float = 60.0
    sensor_interval_seconds: int = 30
    sensor_lookback_hours: int = 3
    close_grace_seconds: int = 120
    open_hour_refresh_seconds: int = 900
    reconcile_days: int = 2
    reconcile_cron: str = "0 3 * * *"
    quarantine_rate_max: float = 0.01
    quarantine_rate_action: str = "tag"
    backfill_hours_per_run: int = 24

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        tokens = tuple(
            Secret(t.strip())
            for t in env.get("CXONE_PIPELINE_INGEST_TOKEN", "").split(",")
            if t.strip()
        )
        quarantine_action = env.get("CXONE_PIPELINE_QUARANTINE_RATE_ACTION") or "tag"
        if quarantine_action not in QUARANTINE_RATE_ACTIONS:
            raise SettingsError(
                f"CXONE_PIPELINE_QUARANTINE_RATE_ACTION={quarantine_action[:40]!r}: use tag, fail "
                "or ignore"
            )
        sse = env.get("CXONE_PIPELINE_S3_SSE") or None
        if sse not in (None, "AES256", "aws:kms", "aws:kms:dsse"):
            raise SettingsError(
                f"CXONE_PIPELINE_S3_SSE={sse!r}: use AES256, aws:kms or aws:kms:dsse"
            )
        return cls(
            lake_url=env.get("CXONE_PIPELINE_LAKE_URL") or ".lake",
            s3_endpoint_url=env.get("CXONE_PIPELINE_S3_ENDPOINT_URL") or None,
            s3_server_side_encryption=sse,
            s3_kms_key_id=env.get("CXONE_PIPELINE_S3_KMS_KEY_ID") or None,
            ingest_tokens=tokens,
            hmac_secret=_secret(env, "CXONE_PIPELINE_HMAC_SECRET"),
            schemas_dir=Path(env.get("CXONE_PIPELINE_SCHEMAS_DIR") or DEFAULT_SCHEMAS_DIR),
            partitions_start=env.get("CXONE_PIPELINE_PARTITIONS_START") or "2025-01-01-00:00",
            max_body_bytes=_number(env, "CXONE_PIPELINE_MAX_BODY_BYTES", 1024 * 1024, 1),
            max_events_per_request=_number(env, "CXONE_PIPELINE_MAX_EVENTS_PER_REQUEST", 10_000, 1),
            batch_max_events=_number(env, "CXONE_PIPELINE_BATCH_MAX_EVENTS", 5_000, 1),
            batch_max_bytes=_number(env, "CXONE_PIPELINE_BATCH_MAX_BYTES", 8 * 1024 * 1024, 1),
            max_pending_events=_number(env, "CXONE_PIPELINE_MAX_PENDING_EVENTS", 100_000, 1),
            store_deadline_seconds=_number(env, "CXONE_PIPELINE_STORE_DEADLINE_SECONDS", 5.0, 0.1),
            cxone_client_id=env.get("CXONE_CLIENT_ID") or None,
            cxone_client_secret=_secret(env, "CXONE_CLIENT_SECRET"),
            cxone_access_key_id=env.get("CXONE_ACCESS_KEY_ID") or None,
            cxone_access_key_secret=_secret(env, "CXONE_ACCESS_KEY_SECRET"),
            cxone_auth_base_url=(
                env.get("CXONE_AUTH_BASE_URL") or "https://cxone.niceincontact.com"
            ).rstrip("/"),
            cxone_api_base_url=(env.get("CXONE_API_BASE_URL") or "").rstrip("/") or None,
            cxone_token_endpoint=env.get("CXONE_TOKEN_ENDPOINT") or None,
            cxone_dataactions_path="/"
            + (env.get("CXONE_DATAACTIONS_PATH") or "api/v2/dataactions").strip("/"),
            cxone_scope=env.get("CXONE_SCOPE")
            or "dataactions:read dataactions:write dataactions:execute",
            cxone_deadline_seconds=_number(env, "CXONE_DEADLINE_SECONDS", 60.0, 1.0),
            sensor_interval_seconds=_number(env, "CXONE_PIPELINE_SENSOR_INTERVAL_SECONDS", 30, 1),
            sensor_lookback_hours=_number(env, "CXONE_PIPELINE_SENSOR_LOOKBACK_HOURS", 3),
            close_grace_seconds=_number(env, "CXONE_PIPELINE_CLOSE_GRACE_SECONDS", 120),
            open_hour_refresh_seconds=_number(env, "CXONE_PIPELINE_OPEN_HOUR_REFRESH_SECONDS", 900),
            reconcile_days=_number(env, "CXONE_PIPELINE_RECONCILE_DAYS", 2),
            reconcile_cron=env.get("CXONE_PIPELINE_RECONCILE_CRON") or "0 3 * * *",
            quarantine_rate_max=_number(env, "CXONE_PIPELINE_QUARANTINE_RATE_MAX", 0.01, 0.0, 1.0),
            quarantine_rate_action=quarantine_action,
            backfill_hours_per_run=_number(env, "CXONE_PIPELINE_BACKFILL_HOURS_PER_RUN", 24, 1),
        )
