"""`cxone-pipeline studio-snippet`: the Studio code that posts a subject's current writer shape.

CXone has no public API that subscribes a URL to events: near real-time data leaves CXone
through a Studio script (shared/cxone-apis.md). This prints that script's part: a SNIPPET
building the event as a DYNAMIC and posting it with `GetRESTProxy()`, and the settings of the
REST API action that can post the same DYNAMIC instead. Plain text generation, no I/O.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Any

from cxone_pipeline.cli import CommandError, command_subject
from cxone_pipeline.registry.extensions import ISO_TIMESTAMPS, LENIENT

# The Studio variable holding the landing's bearer token (a name, not a secret).
TOKEN_VARIABLE = "ingestToken"  # noqa: S105
# Studio's own variables for fields whose meaning they carry; any other field is read from a
# script variable of the field's name.
STUDIO_VARIABLES = {"contactId": "ContactID"}
EXAMPLE_CONTACT_ID = "5000001"
EXAMPLE_TIME = "2026-11-29T10:00:00.000Z"
TIMEOUT_MS = 2000
_NUMBERS = frozenset({"int", "long", "float", "double"})


@dataclass(frozen=True)
class StudioField:
    """How a writer field is filled from Studio: `text` (a quoted "{variable}"), or `value`
    (the variable itself, for a number or boolean the writer does not read leniently)."""

    name: str
    variable: str
    required: bool
    form: str  # "text" | "value" | "structured"
    hint: str
    example: Any  # what the DYNAMIC holds when the script variable holds a sample value

    def assignment(self) -> str:
        if self.form == "value":
            return f"event.{self.name} = {self.variable}"
        return f'event.{self.name} = "{{{self.variable}}}"'


def _kind(avro_type: Any) -> tuple[Any, bool]:
    """The non-null branch of a nullable union, and whether null was allowed."""
    if isinstance(avro_type, list):
        branches = [t for t in avro_type if t != "null"]
        return (branches[0] if len(branches) == 1 else branches), len(branches) < len(avro_type)
    return avro_type, False


def studio_field(field: dict[str, Any]) -> StudioField:
    avro_type, nullable = _kind(field["type"])
    name = field["name"]
    variable = STUDIO_VARIABLES.get(name, name)
    required = "default" not in field and not nullable
    logical = avro_type.get("logicalType") if isinstance(avro_type, dict) else None
    base = avro_type.get("type") if isinstance(avro_type, dict) else avro_type
    text = EXAMPLE_CONTACT_ID if variable == "ContactID" else f"{name}-1"
    if logical in ISO_TIMESTAMPS:
        return StudioField(name, variable, required, "text", "ISO-8601 with a zone", EXAMPLE_TIME)
    if base == "enum":
        symbols = avro_type["symbols"]
        return StudioField(name, variable, required, "text", "|".join(symbols), symbols[0])
    if base in _NUMBERS or base == "boolean":
        noun, sample = ("number", 42) if base in _NUMBERS else ("true/false", True)
        if variable == "ContactID":
            sample = int(EXAMPLE_CONTACT_ID)
        if field.get(LENIENT):
            return StudioField(
                name, variable, required, "text", f"{noun} as text", json.dumps(sample)
            )
        return StudioField(name, variable, required, "value", f"JSON {noun}", sample)
    if base == "string":
        return StudioField(name, variable, required, "text", "text", text)
    return StudioField(name, variable, required, "structured", f"{base} in the DYNAMIC", None)


@dataclass(frozen=True)
class StudioShape:
    """What a Studio script posts for a subject: its newest writer version's fields."""

    subject: str
    version: str
    fields: tuple[StudioField, ...]
    event_id_field: str | None  # "eventId" when the subject names no id fields of its own

    @property
    def required(self) -> list[StudioField]:
        return [f for f in self.fields if f.required]

    @property
    def optional(self) -> list[StudioField]:
        return [f for f in self.fields if not f.required]


def studio_shape(schemas: Any) -> StudioShape:
    """The shape of `schemas` (a registry.SubjectSchemas) that the snippet posts."""
    newest = schemas.versions[-1]
    fields = tuple(studio_field(f) for f in newest.document["fields"])
    own_ids = bool(schemas.rules.event_id_fields)
    return StudioShape(schemas.name, newest.version, fields, None if own_ids else "eventId")


def default_url(subject: str) -> str:
    return f"https://landing.example.com/ingest/{subject}"


def snippet(shape: StudioShape, url: str) -> str:
    """The SNIPPET action's code: build the event, post it with GetRESTProxy()."""
    lines = ["DYNAMIC event"]
    if shape.event_id_field:
        lines.append(f'event.{shape.event_id_field} = "{{ContactID}}-{shape.subject}"')
    lines += [f.assignment() for f in shape.required]
    lines += [
        'ASSIGN body = "{event.asjson()}"',
        "",
        "ASSIGN proxy = GetRESTProxy()",
        'proxy.ContentType = "application/json"',
        f'proxy.AddHeader("Authorization", "Bearer {{{TOKEN_VARIABLE}}}")',
        f'proxy.AddHeader("X-Schema-Version", "{shape.version}")',
        f'ASSIGN response = proxy.MakeRestRequest("{url}", body, 0, "POST")',
        'ASSIGN status = "{proxy.StatusCode}"',
    ]
    return "\n".join(lines)


def rest_action_settings(shape: StudioShape, url: str) -> str:
    """The REST API action's properties that post the same DYNAMIC `event`."""
    headers = {
        "Authorization": f"Bearer {{{TOKEN_VARIABLE}}}",
        "Content-Type": "application/json",
        "X-Schema-Version": shape.version,
    }
    rows = [
        ("Verb", "POST"),
        ("URL", url),
        ("Parameters", "{event.asjson()}"),
        ("Headers", json.dumps(headers)),
        ("TimeOutInMilliSeconds", str(TIMEOUT_MS)),
    ]
    return "\n".join(f"  {name:<22} {value}" for name, value in rows)


def _described(fields: list[StudioField]) -> str:
    return "; ".join(f"{f.name} ({f.hint}, from {f.variable})" for f in fields) or "none"


def studio_text(shape: StudioShape, url: str) -> str:
    """Everything `studio-snippet` prints."""
    parts = [
        f"# {shape.subject}, writer version {shape.version}: SNIPPET action "
        f"(set {TOKEN_VARIABLE} from a secured source first)",
        "",
        snippet(shape, url),
        "",
        "# Or the REST API action, after a SNIPPET that builds the same DYNAMIC event "
        "(its first lines above):",
        rest_action_settings(shape, url),
        "",
        f"# Fields read from script variables: {_described(shape.required)}.",
        f"# Optional fields (add them the same way): {_described(shape.optional)}.",
        "# 202 means staged; anything else is worth logging. The event id makes a retried "
        "POST (the REST API action retries twice) one row.",
    ]
    if shape.event_id_field:
        parts.append(
            f"# {shape.event_id_field} is one per contact: if the script posts {shape.subject} "
            "more than once per contact, append what tells the posts apart."
        )
    if any(f.form == "value" for f in shape.required):
        parts.append(
            "# Fields assigned without quotes must arrive as JSON numbers or booleans: whether "
            "Studio's asjson() writes a variable that way is unconfirmed. If the landing "
            "quarantines these events as invalid_record, add a writer version marking those "
            'fields "lenient": true (as call_event v4 does).'
        )
    return "\n".join(parts)


def example_body(shape: StudioShape) -> dict[str, Any]:
    """The JSON body the snippet posts when every script variable holds a sample value."""
    body: dict[str, Any] = {}
    if shape.event_id_field:
        body[shape.event_id_field] = f"{EXAMPLE_CONTACT_ID}-{shape.subject}"
    for field in shape.required:
        body[field.name] = field.example
    return body


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "studio-snippet",
        help="print the Studio SNIPPET and REST API action settings that post a subject",
        description=(
            "Print the Studio code that posts events of SUBJECT in its newest writer version "
            "to the landing: a SNIPPET using GetRESTProxy(), and the REST API action settings "
            "that post the same DYNAMIC. CXone has no public API to register a webhook: a "
            "Studio script is how events leave CXone in near real time."
        ),
    )
    parser.add_argument("--subject", required=True, help="registry subject, e.g. call_event")
    parser.add_argument(
        "--url", help="landing URL the script posts to (default https://landing.example.com/…)"
    )
    parser.add_argument(
        "--example", action="store_true", help="print the JSON body the snippet posts instead"
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from cxone_pipeline.registry import SchemaError
    from cxone_pipeline.settings import Settings, SettingsError

    try:
        shape = studio_shape(command_subject(Settings.from_env().schemas_dir, args.subject))
    except (SettingsError, SchemaError) as exc:
        raise CommandError(str(exc)) from None
    if args.example:
        print(json.dumps(example_body(shape), indent=2))
    else:
        print(studio_text(shape, args.url or default_url(args.subject)))
    return 0
