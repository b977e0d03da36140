"""Typed failures of the CXone client: messages say what to fix and never carry a secret."""

from __future__ import annotations

from collections.abc import Iterable

from cxone_pipeline.settings import Secret

_EXCERPT_CHARS = 200

# What an operator should check for each status the API may answer with.
_HINTS = {
    400: "CXone rejected the request body; the excerpt says which field",
    401: (
        "check CXONE_CLIENT_ID/CXONE_CLIENT_SECRET (and CXONE_ACCESS_KEY_ID/"
        "CXONE_ACCESS_KEY_SECRET for the password grant) and the app's scopes"
    ),
    403: (
        "the credentials are valid but not allowed to do this: grant the app or the access "
        "key's user the data-actions permissions (scopes dataactions:read dataactions:write)"
    ),
    404: (
        "this tenant serves the API elsewhere: check CXONE_API_BASE_URL and "
        "CXONE_DATAACTIONS_PATH (see docs/cxone-setup.md)"
    ),
    409: "an action with this name already exists; rerun to update it in place",
}


def body_excerpt(text: str, secrets: Iterable[Secret] = ()) -> str:
    """The start of a response body on one line, with any known secret masked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret.reveal(), "***")
    text = " ".join(text.split())
    if len(text) > _EXCERPT_CHARS:
        return text[:_EXCERPT_CHARS] + "…"
    return text or "(empty body)"


class CXoneError(Exception):
    """Base of every failure talking to CXone."""


class CXoneConfigError(CXoneError):
    """Credentials or endpoints are missing or inconsistent; the message names the variable."""


class CXoneAPIError(CXoneError):
    """CXone answered with a status that retrying cannot fix."""

    def __init__(
        self, method: str, url: str, status: int, excerpt: str, hint: str | None = None
    ) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.excerpt = excerpt
        hint = hint or _HINTS.get(status)
        message = f"{method} {url} answered {status}: {excerpt}"
        super().__init__(f"{message} ({hint})" if hint else message)


class CXoneAuthError(CXoneAPIError):
    """The token endpoint refused the credentials, or the API refused a freshly issued token."""


class CXoneRetriesExhausted(CXoneError):
    """Rate limiting, gateway errors or connection failures outlasted the deadline."""


class CXoneTransportError(CXoneError):
    """A write failed after it may have reached CXone, so it is not retried blindly."""


class RegistrationError(CXoneError):
    """The webhook cannot be registered as asked; the message names the option to change."""
