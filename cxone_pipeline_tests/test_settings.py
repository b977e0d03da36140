from __future__ import annotations

import base64

import pytest

from cxone_pipeline.settings import Secret, Settings, SettingsError

WHSEC = "whsec_" + base64.b64encode(b"k" * 32).decode()
WHSEC_OLD = "whsec_" + base64.b64encode(b"o" * 24).decode()


def test_defaults_without_environment() -> None:
    settings = Settings.from_env({})
    assert settings.lake_url == ".lake"
    assert settings.ingest_tokens == ()
    assert settings.max_body_bytes == 1024 * 1024
    assert (settings.batch_max_events, settings.batch_max_bytes) == (5_000, 8 * 1024 * 1024)
    assert settings.store_deadline_seconds == 5.0
    assert settings.partitions_start == "2025-01-01-00:00"
    assert settings.schemas_dir.name == "schemas" and (settings.schemas_dir / "call_event").is_dir()


def test_tokens_rotate_and_secrets_never_show() -> None:
    settings = Settings.from_env(
        {
            "CXONE_PIPELINE_INGEST_TOKEN": " new-token , old-token ,",
            "CXONE_PIPELINE_WEBHOOK_SECRETS": f"call_event={WHSEC}, call_event={WHSEC_OLD}",
            "CXONE_CLIENT_SECRET": "client-secret",
        }
    )
    assert [t.reveal() for t in settings.ingest_tokens] == ["new-token", "old-token"]
    assert [(s, secret.reveal()) for s, secret in settings.webhook_secrets] == [
        ("call_event", WHSEC),
        ("call_event", WHSEC_OLD),
    ]
    shown = repr(settings) + str(settings.ingest_tokens) + f"{settings.webhook_secrets}"
    for secret in ("new-token", "old-token", WHSEC, WHSEC[6:], WHSEC_OLD, "client-secret"):
        assert secret not in shown
    assert repr(Secret("x")) == "Secret('***')"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "CXONE_PIPELINE_MAX_BODY_BYTES",
            "lots",
            "CXONE_PIPELINE_MAX_BODY_BYTES='lots' is not an integer",
        ),
        (
            "CXONE_PIPELINE_MAX_BODY_BYTES",
            "0",
            "CXONE_PIPELINE_MAX_BODY_BYTES=0 must be at least 1",
        ),
        ("CXONE_PIPELINE_STORE_DEADLINE_SECONDS", "soon", "is not a number"),
        ("CXONE_PIPELINE_QUARANTINE_RATE_MAX", "1.5", "=1.5 must be between 0 and 1"),
        ("CXONE_PIPELINE_S3_SSE", "rot13", "use AES256, aws:kms or aws:kms:dsse"),
        ("CXONE_PIPELINE_QUARANTINE_RATE_MAX", "nan", "=nan must be between 0 and 1"),
        ("CXONE_PIPELINE_STORE_DEADLINE_SECONDS", "inf", "=inf must be at least 0.1"),
        ("CXONE_PIPELINE_STORE_DEADLINE_SECONDS", "0", "=0 must be at least 0.1"),
        ("CXONE_PIPELINE_HMAC_SECRET", "old", "was replaced by CXONE_PIPELINE_WEBHOOK_SECRETS"),
        ("CXONE_PIPELINE_WEBHOOK_SECRETS", "call_event=plain", "entry 1 must be <subject>=whsec_"),
        ("CXONE_PIPELINE_WEBHOOK_SECRETS", "call_event=whsec_c2hvcnQ=", "24 to 64 random bytes"),
        ("CXONE_PIPELINE_WEBHOOK_SECRETS", "Bad=" + WHSEC, "entry 1 must be <subject>=whsec_"),
        (
            "CXONE_PIPELINE_WEBHOOK_SECRETS",
            f"call_event={WHSEC},agent_state={WHSEC}",
            "entry 2 reuses another subject's secret",
        ),
        ("CXONE_PIPELINE_ALLOW_HTTP", "maybe", "is not a flag"),
        ("CXONE_PIPELINE_LOCAL_FILE_MODE", "0400", "the owner can read and write"),
        ("CXONE_PIPELINE_LOCAL_FILE_MODE", "rw", "the owner can read and write"),
        ("CXONE_AUTH_BASE_URL", "http://cxone.example", "CXONE_AUTH_BASE_URL must be an absolute"),
        ("CXONE_API_BASE_URL", "ftp://api.example", "must be an absolute https:// URL"),
        ("CXONE_PIPELINE_PUBLIC_URL", "https://u:p@x.example", "without credentials"),
        ("CXONE_PIPELINE_PUBLIC_URL", "https://x.example/?a=1", "query or fragment"),
        ("CXONE_ALLOWED_DOMAINS", "com", "is not a domain name"),
    ],
)
def test_malformed_values_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({name: value})
    assert message in str(raised.value)


def test_secret_and_url_values_never_appear_in_errors() -> None:
    """A mistyped setting may hold a secret (the wrong variable pasted): errors name the
    variable, not the value."""
    for name in (
        "CXONE_PIPELINE_WEBHOOK_SECRETS",
        "CXONE_AUTH_BASE_URL",
        "CXONE_API_BASE_URL",
        "CXONE_TOKEN_ENDPOINT",
        "CXONE_PIPELINE_PUBLIC_URL",
    ):
        with pytest.raises(SettingsError) as raised:
            Settings.from_env({name: "call_event=hunter2-AKIAEXAMPLESECRET"})
        assert "hunter2" not in str(raised.value)
        assert name in str(raised.value)


def test_https_only_unless_development_flag() -> None:
    url = "http://127.0.0.1:9/auth"
    with pytest.raises(SettingsError, match="CXONE_PIPELINE_ALLOW_HTTP=true"):
        Settings.from_env({"CXONE_AUTH_BASE_URL": url})
    settings = Settings.from_env({"CXONE_AUTH_BASE_URL": url, "CXONE_PIPELINE_ALLOW_HTTP": "true"})
    assert settings.cxone_auth_base_url == url
    assert Settings.from_env({}).local_file_mode == 0o600
    assert Settings.from_env({"CXONE_PIPELINE_LOCAL_FILE_MODE": "0640"}).local_file_mode == 0o640


def test_cxone_pull_settings_are_normalized_and_bounded() -> None:
    defaults = Settings.from_env({})
    assert (defaults.cxone_api_version, defaults.cxone_page_size) == ("30.0", 10_000)
    assert (defaults.cxone_sync_interval_seconds, defaults.cxone_sync_lookback_hours) == (300, 24)
    for written in ("32", "v32.0", " 32.0 "):
        assert Settings.from_env({"CXONE_API_VERSION": written}).cxone_api_version == "32.0"
    for name, value, message in (
        ("CXONE_API_VERSION", "latest", "is not an API version"),
        ("CXONE_PAGE_SIZE", "20000", "between 1 and 10000"),
        ("CXONE_SYNC_LOOKBACK_HOURS", "1000", "between 1 and 720"),
        ("CXONE_SYNC_INTERVAL_SECONDS", "5", "at least 30"),
    ):
        with pytest.raises(SettingsError, match=message) as raised:
            Settings.from_env({name: value})
        assert name in str(raised.value)
