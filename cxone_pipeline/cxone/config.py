"""How to reach one CXone tenant: credentials, endpoints and retry limits."""

from __future__ import annotations

from dataclasses import dataclass, field

from cxone_pipeline.cxone.retry import RetryPolicy
from cxone_pipeline.settings import Secret, Settings

_DEFAULTS = Settings()


@dataclass(frozen=True)
class CXoneConfig:
    """Which grant is used follows from the credentials present (see `auth.grant_for`)."""

    client_id: str | None = None
    client_secret: Secret | None = field(default=None, repr=False)
    access_key_id: str | None = None
    access_key_secret: Secret | None = field(default=None, repr=False)
    auth_base_url: str = _DEFAULTS.cxone_auth_base_url
    api_base_url: str | None = None
    token_endpoint: str | None = None
    dataactions_path: str = _DEFAULTS.cxone_dataactions_path
    scope: str = _DEFAULTS.cxone_scope
    timeout_seconds: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Discovered endpoints must be https on the issuer's host or one of these domains.
    allowed_domains: tuple[str, ...] = _DEFAULTS.cxone_allowed_domains
    allow_http: bool = False
    api_version: str = _DEFAULTS.cxone_api_version  # the NN.N of /incontactapi/services/vNN.N/
    page_size: int = _DEFAULTS.cxone_page_size  # `top` of Reporting API queries

    @classmethod
    def from_settings(cls, settings: Settings) -> CXoneConfig:
        return cls(
            client_id=settings.cxone_client_id,
            client_secret=settings.cxone_client_secret,
            access_key_id=settings.cxone_access_key_id,
            access_key_secret=settings.cxone_access_key_secret,
            auth_base_url=settings.cxone_auth_base_url,
            api_base_url=settings.cxone_api_base_url,
            token_endpoint=settings.cxone_token_endpoint,
            dataactions_path=settings.cxone_dataactions_path,
            scope=settings.cxone_scope,
            retry=RetryPolicy(deadline=settings.cxone_deadline_seconds),
            allowed_domains=settings.cxone_allowed_domains,
            allow_http=settings.allow_http,
            api_version=settings.cxone_api_version,
            page_size=settings.cxone_page_size,
        )

    @property
    def secrets(self) -> tuple[Secret, ...]:
        return tuple(s for s in (self.client_secret, self.access_key_secret) if s)
