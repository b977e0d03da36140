"""All configuration, read once from the environment (the table in README.md lists it)."""

from __future__ import annotations

import base64
import binascii
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SCHEMAS_DIR = PROJECT_ROOT / "schemas"
Number = TypeVar("Number", int, float)
# What a run does when an hour's quarantine_rate check fails (cxone_pipeline.report).
QUARANTINE_RATE_ACTIONS = ("tag", "fail", "ignore")
# CXone serves `updatedSince` queries over the last 30 days only [practitioner-reported].
UPDATED_SINCE_MAX_HOURS = 30 * 24


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


_API_VERSION_RE = re.compile(r"v?(\d{1,3})(?:\.(\d{1,3}))?")


def api_version(text: str) -> str | None:
    """A CXone API version as `NN.N` ("30", "v30.0" and "30.0" are all "30.0"); None if it is
    not one."""
    match = _API_VERSION_RE.fullmatch(text.strip())
    if match is None:
        return None
    return f"{int(match[1])}.{int(match[2] or 0)}"


def api_version_key(version: str) -> tuple[int, int]:
    """A normalized `NN.N` version as numbers, so 9.0 < 21.0."""
    major, minor = version.split(".")
    return int(major), int(minor)


def _api_version(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name) or default
    version = api_version(raw)
    if version is None:
        raise SettingsError(
            f"{name}={raw[:40]!r} is not an API version: use the NN.0 of "
            "/incontactapi/services/vNN.0/, e.g. 30.0"
        )
    return version


def _secret(env: Mapping[str, str], name: str) -> Secret | None:
    raw = env.get(name, "").strip()
    return Secret(raw) if raw else None


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw not in _TRUE + _FALSE:
        raise SettingsError(f"{name}={raw[:20]!r} is not a flag: use true or false")
    return raw in _TRUE


def _octal_mode(env: Mapping[str, str], name: str, default: int) -> int:
    """A file permission mode written in octal (0600), owner read and write included."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not re.fullmatch(r"0?[0-7]{3}", raw) or int(raw, 8) & 0o600 != 0o600:
        raise SettingsError(
            f"{name}={raw[:20]!r} must be an octal file mode the owner can read and write, "
            "such as 0600 or 0640"
        )
    return int(raw, 8)


def checked_url(value: str, name: str, allow_http: bool) -> str:
    """An absolute https URL (http too when `allow_http`), without a trailing slash. Errors
    name the setting, never its value: a URL can carry credentials."""
    parts = urlsplit(value)
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes or not parts.hostname or parts.username or parts.password:
        hint = "" if allow_http else " (http:// only with CXONE_PIPELINE_ALLOW_HTTP=true)"
        raise SettingsError(f"{name} must be an absolute https:// URL without credentials{hint}")
    if parts.query or parts.fragment:
        raise SettingsError(f"{name} must not carry a query or fragment")
    return value.rstrip("/")


def _url(env: Mapping[str, str], name: str, allow_http: bool) -> str | None:
    raw = env.get(name, "").strip()
    return checked_url(raw, name, allow_http) if raw else None


WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
_WEBHOOK_KEY_BYTES = (24, 64)
_SUBJECT_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")


def webhook_key(secret: Secret) -> bytes:
    """The HMAC key of a Standard Webhooks secret: `whsec_` + base64 of 24-64 random bytes."""
    return base64.b64decode(secret.reveal().removeprefix(WEBHOOK_SECRET_PREFIX), validate=True)


def _domains(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    domains = tuple(d.strip().lower().strip(".") for d in env.get(name, "").split(",") if d.strip())
    for domain in domains:
        if not re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", domain):
            raise SettingsError(f"{name}: {domain[:80]!r} is not a domain name such as example.com")
    return domains


def _webhook_secrets(env: Mapping[str, str], name: str) -> tuple[tuple[str, Secret], ...]:
    """`subject=whsec_...` entries, comma-separated; several per subject for rotation. Each
    secret signs for one subject only, so a signed request cannot be replayed to another."""
    entries: list[tuple[str, Secret]] = []
    for n, entry in enumerate(env.get(name, "").split(","), 1):
        if not entry.strip():
            continue
        subject, _, raw = (part.strip() for part in entry.partition("="))
        if not _SUBJECT_NAME_RE.fullmatch(subject) or not raw.startswith(WEBHOOK_SECRET_PREFIX):
            raise SettingsError(
                f"{name}: entry {n} must be <subject>=whsec_<base64 key> (the value is not shown)"
            )
        secret = Secret(raw)
        try:
            size = len(webhook_key(secret))
        except (binascii.Error, ValueError):
            size = 0
        if not _WEBHOOK_KEY_BYTES[0] <= size <= _WEBHOOK_KEY_BYTES[1]:
            raise SettingsError(
                f"{name}: entry {n} ({subject}) must be whsec_ followed by the base64 of "
                f"{_WEBHOOK_KEY_BYTES[0]} to {_WEBHOOK_KEY_BYTES[1]} random bytes"
            )
        if any(other == secret and s != subject for s, other in entries):
            raise SettingsError(f"{name}: entry {n} reuses another subject's secret")
        entries.append((subject, secret))
    return tuple(entries)


@dataclass(frozen=True)
class Settings:
    lake_url: str = ".lake"
    s3_endpoint_url: str | None = None
    s3_server_side_encryption: str | None = None
    s3_kms_key_id: str | None = None
    ingest_tokens: tuple[Secret, ...] = field(default=(), repr=False)
    webhook_secrets: tuple[tuple[str, Secret], ...] = field(default=(), repr=False)
    schemas_dir: Path = DEFAULT_SCHEMAS_DIR
    partitions_start: str = "2025-01-01-00:00"
    max_body_bytes: int = 1024 * 1024
    max_events_per_request: int = 10_000
    batch_max_events: int = 5_000
    batch_max_bytes: int = 8 * 1024 * 1024
    max_pending_events: int = 100_000
    max_pending_bytes: int = 64 * 1024 * 1024
    max_concurrent_requests: int = 256
    max_connections: int = 1024
    read_timeout_seconds: float = 10.0
    metrics_public: bool = False
    store_deadline_seconds: float = 5.0
    local_file_mode: int = 0o600
    public_url: str | None = None
    allow_http: bool = False
    cxone_client_id: str | None = None
    cxone_client_secret: Secret | None = field(default=None, repr=False)
    cxone_access_key_id: str | None = None
    cxone_access_key_secret: Secret | None = field(default=None, repr=False)
    cxone_auth_base_url: str = "https://cxone.niceincontact.com"
    cxone_api_base_url: str | None = None
    cxone_token_endpoint: str | None = None
    cxone_allowed_domains: tuple[str, ...] = ("niceincontact.com", "nice-incontact.com")
    cxone_dataactions_path: str = "/api/v2/dataactions"
    cxone_scope: str = "dataactions:read dataactions:write dataactions:execute"
    cxone_deadline_seconds: float = 60.0
    cxone_api_version: str = "30.0"
    cxone_page_size: int = 10_000
    cxone_sync_interval_seconds: int = 300
    cxone_sync_lookback_hours: int = 24
    cxone_sync_max_pages: int = 20
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
        if env.get("CXONE_PIPELINE_HMAC_SECRET", "").strip():
            raise SettingsError(
                "CXONE_PIPELINE_HMAC_SECRET (X-CXone-Signature) was replaced by "
                "CXONE_PIPELINE_WEBHOOK_SECRETS (Standard Webhooks, subject=whsec_...): see "
                "the README's landing API"
            )
        allow_http = _flag(env, "CXONE_PIPELINE_ALLOW_HTTP")
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
            webhook_secrets=_webhook_secrets(env, "CXONE_PIPELINE_WEBHOOK_SECRETS"),
            schemas_dir=Path(env.get("CXONE_PIPELINE_SCHEMAS_DIR") or DEFAULT_SCHEMAS_DIR),
            partitions_start=env.get("CXONE_PIPELINE_PARTITIONS_START") or "2025-01-01-00:00",
            max_body_bytes=_number(env, "CXONE_PIPELINE_MAX_BODY_BYTES", 1024 * 1024, 1),
            max_events_per_request=_number(env, "CXONE_PIPELINE_MAX_EVENTS_PER_REQUEST", 10_000, 1),
            batch_max_events=_number(env, "CXONE_PIPELINE_BATCH_MAX_EVENTS", 5_000, 1),
            batch_max_bytes=_number(env, "CXONE_PIPELINE_BATCH_MAX_BYTES", 8 * 1024 * 1024, 1),
            max_pending_events=_number(env, "CXONE_PIPELINE_MAX_PENDING_EVENTS", 100_000, 1),
            max_pending_bytes=_number(
                env, "CXONE_PIPELINE_MAX_PENDING_BYTES", 64 * 1024 * 1024, 1024
            ),
            max_concurrent_requests=_number(env, "CXONE_PIPELINE_MAX_CONCURRENT_REQUESTS", 256, 1),
            max_connections=_number(env, "CXONE_PIPELINE_MAX_CONNECTIONS", 1024, 1),
            read_timeout_seconds=_number(env, "CXONE_PIPELINE_READ_TIMEOUT_SECONDS", 10.0, 0.1),
            metrics_public=_flag(env, "CXONE_PIPELINE_METRICS_PUBLIC"),
            store_deadline_seconds=_number(env, "CXONE_PIPELINE_STORE_DEADLINE_SECONDS", 5.0, 0.1),
            local_file_mode=_octal_mode(env, "CXONE_PIPELINE_LOCAL_FILE_MODE", 0o600),
            public_url=_url(env, "CXONE_PIPELINE_PUBLIC_URL", allow_http),
            allow_http=allow_http,
            cxone_client_id=env.get("CXONE_CLIENT_ID") or None,
            cxone_client_secret=_secret(env, "CXONE_CLIENT_SECRET"),
            cxone_access_key_id=env.get("CXONE_ACCESS_KEY_ID") or None,
            cxone_access_key_secret=_secret(env, "CXONE_ACCESS_KEY_SECRET"),
            cxone_auth_base_url=_url(env, "CXONE_AUTH_BASE_URL", allow_http)
            or Settings.cxone_auth_base_url,
            cxone_api_base_url=_url(env, "CXONE_API_BASE_URL", allow_http),
            cxone_token_endpoint=_url(env, "CXONE_TOKEN_ENDPOINT", allow_http),
            cxone_allowed_domains=_domains(env, "CXONE_ALLOWED_DOMAINS")
            or Settings.cxone_allowed_domains,
            cxone_dataactions_path="/"
            + (env.get("CXONE_DATAACTIONS_PATH") or "api/v2/dataactions").strip("/"),
            cxone_scope=env.get("CXONE_SCOPE")
            or "dataactions:read dataactions:write dataactions:execute",
            cxone_deadline_seconds=_number(env, "CXONE_DEADLINE_SECONDS", 60.0, 1.0),
            cxone_api_version=_api_version(env, "CXONE_API_VERSION", "30.0"),
            cxone_page_size=_number(env, "CXONE_PAGE_SIZE", 10_000, 1, 10_000),
            cxone_sync_interval_seconds=_number(env, "CXONE_SYNC_INTERVAL_SECONDS", 300, 30),
            cxone_sync_lookback_hours=_number(
                env, "CXONE_SYNC_LOOKBACK_HOURS", 24, 1, UPDATED_SINCE_MAX_HOURS
            ),
            cxone_sync_max_pages=_number(env, "CXONE_SYNC_MAX_PAGES", 20, 1),
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
