"""Point CXone at the landing endpoint: a data action upserted by name, written only on change."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import httpx

from cxone_pipeline.cxone.client import CXoneClient
from cxone_pipeline.cxone.config import CXoneConfig
from cxone_pipeline.cxone.errors import CXoneError, CXoneTransportError, RegistrationError
from cxone_pipeline.lake.layout import DEFAULT_SUBJECT, is_valid_subject
from cxone_pipeline.settings import Secret

logger = logging.getLogger(__name__)

FORWARD_ACTION = "ForwardToConsumer"
# CXone's template for "the event as JSON": the landing receives the event unchanged.
BODY_TEMPLATE = "{{#toJson}}$input{{/toJson}}"
_COMPARED_SETTINGS = ("url", "method", "headers", "body")


class Outcome(str, Enum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class WebhookSpec:
    """What CXone should call: the landing URL, with the bearer token the landing accepts."""

    webhook_url: str
    subject: str
    action_name: str
    ingest_token: Secret = field(repr=False)

    def data_action(self, *, mask: bool = False) -> dict[str, Any]:
        token = "***" if mask else self.ingest_token.reveal()
        return {
            "name": self.action_name,
            "description": (
                f"Forwards CXone {self.subject} events to the cxone-pipeline landing endpoint"
            ),
            "type": "dataaction",
            "actions": [
                {
                    "type": "http",
                    "name": FORWARD_ACTION,
                    "settings": {
                        "url": self.webhook_url,
                        "method": "POST",
                        "headers": {
                            "Authorization": f"Bearer {token}",
                            "Content-Type": "application/json",
                        },
                        "body": BODY_TEMPLATE,
                    },
                }
            ],
        }


@dataclass(frozen=True)
class RegistrationResult:
    action_id: str
    action_name: str
    outcome: Outcome


def default_action_name(subject: str) -> str:
    return f"cxone-pipeline-{subject}"


def webhook_spec(
    webhook_url: str,
    ingest_tokens: Sequence[Secret],
    *,
    subject: str = DEFAULT_SUBJECT,
    action_name: str | None = None,
    allow_http: bool = False,
) -> WebhookSpec:
    """Validate the request; the URL is used exactly as given (see docs/cxone-setup.md).
    Errors never repeat the URL: it may come from somewhere a secret can be pasted."""
    if not ingest_tokens:
        raise RegistrationError(
            "CXONE_PIPELINE_INGEST_TOKEN is not set: the landing would refuse CXone's requests; "
            "set it to the token(s) the landing accepts (the first one is given to CXone)"
        )
    if not is_valid_subject(subject):
        raise RegistrationError(
            "the subject is not a subject name (lowercase letters, digits, underscores)"
        )
    try:
        url = httpx.URL(webhook_url)
    except httpx.InvalidURL:
        url = httpx.URL("")
    schemes = ("https", "http") if allow_http else ("https",)
    if url.scheme not in schemes or not url.host or url.userinfo:
        raise RegistrationError(
            "the webhook URL is not an absolute https:// URL without credentials (CXone sends "
            "the landing token to it; http:// only with CXONE_PIPELINE_ALLOW_HTTP=true)"
        )
    url_subject = _subject_in_path(url.path)
    if url_subject is not None and url_subject != subject:
        shown = repr(url_subject) if is_valid_subject(url_subject) else "another subject"
        raise RegistrationError(
            f"the webhook URL delivers to {shown} but the subject is {subject!r}: make them agree"
        )
    return WebhookSpec(
        webhook_url=webhook_url,
        subject=subject,
        action_name=action_name or default_action_name(subject),
        ingest_token=ingest_tokens[0],
    )


def _subject_in_path(path: str) -> str | None:
    """The subject a landing URL delivers to: `/ingest/S` → S, bare `/ingest` → the default."""
    segments = path.rstrip("/").split("/")
    if segments[-1] == "ingest":
        return DEFAULT_SUBJECT
    if len(segments) >= 2 and segments[-2] == "ingest":
        return segments[-1]
    return None


async def register_webhook(config: CXoneConfig, spec: WebhookSpec) -> RegistrationResult:
    """Create the data action if missing, update it if it differs, otherwise write nothing."""
    async with CXoneClient(config) as client:
        result = await _upsert(client, spec)
    logger.info(
        "CXone data action %r (id %s): %s", spec.action_name, result.action_id, result.outcome.value
    )
    return result


async def _upsert(client: CXoneClient, spec: WebhookSpec) -> RegistrationResult:
    path = client.config.dataactions_path
    desired = spec.data_action()
    existing = _find_by_name(await client.request("GET", path), spec.action_name, path)
    if existing is None:
        try:
            created = await client.request("POST", path, json=desired, secrets=(spec.ingest_token,))
        except CXoneTransportError:
            # The create may have landed before the failure: if so, it is ours.
            created = _find_by_name(await client.request("GET", path), spec.action_name, path)
            if created is None:
                raise
        return RegistrationResult(_action_id(created, path), spec.action_name, Outcome.CREATED)
    action_id = _action_id(existing, path)
    if _forwarding(existing) == _forwarding(desired):
        return RegistrationResult(action_id, spec.action_name, Outcome.UNCHANGED)
    await client.request("PUT", f"{path}/{action_id}", json=desired, secrets=(spec.ingest_token,))
    return RegistrationResult(action_id, spec.action_name, Outcome.UPDATED)


def describe_registration(config: CXoneConfig, spec: WebhookSpec) -> str:
    """The requests a registration would send, token masked; for `--dry-run`."""
    endpoint = (config.api_base_url or "<API base discovered for the tenant>") + (
        config.dataactions_path
    )
    body = json.dumps(spec.data_action(mask=True), indent=2)
    return (
        f"dry run, nothing sent. Registering data action {spec.action_name!r} would\n"
        f"  GET {endpoint}  to look it up by name, then\n"
        f"  POST {endpoint}  if it is missing, or\n"
        f"  PUT {endpoint}/<id>  if its URL, headers or body differ\n"
        f"with this body:\n{body}"
    )


def _find_by_name(listing: Any, name: str, path: str) -> dict[str, Any] | None:
    entities = listing.get("entities") if isinstance(listing, dict) else None
    if not isinstance(entities, list):
        raise CXoneError(
            f"GET {path} did not answer {{'entities': [...]}}: check CXONE_DATAACTIONS_PATH"
        )
    matches = [e for e in entities if isinstance(e, dict) and e.get("name") == name]
    if len(matches) > 1:
        ids = ", ".join(str(m.get("id")) for m in matches)
        raise RegistrationError(
            f"{len(matches)} data actions are named {name!r} (ids {ids}): delete the extra ones "
            "in CXone, or register under another --name"
        )
    return matches[0] if matches else None


def _forwarding(action: dict[str, Any]) -> dict[str, Any] | None:
    """The part of an action that decides where and what CXone sends."""
    for step in action.get("actions") or ():
        if isinstance(step, dict) and step.get("name") == FORWARD_ACTION:
            settings = step.get("settings") or {}
            compared = {key: settings.get(key) for key in _COMPARED_SETTINGS}
            # Header names are case-insensitive; CXone may return them normalized.
            compared["headers"] = {k.lower(): v for k, v in (compared["headers"] or {}).items()}
            return compared
    return None


def _action_id(action: Any, path: str) -> str:
    action_id = action.get("id") if isinstance(action, dict) else None
    if action_id in (None, ""):
        raise CXoneError(f"CXone answered a data action without an id at {path}")
    return str(action_id)
