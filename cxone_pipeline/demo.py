"""`cxone-pipeline demo`: post sample events of every schema version to a running landing.

Also stages a batch into the previous hour, as a historical import would, so the sensor
curates a closed hour at once; the curated completed contacts then feed the daily
`marts/contact_kpis`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import secrets
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxone_pipeline.cli import CommandError
from cxone_pipeline.registry.extensions import ISO_DURATION, ISO_TIMESTAMPS, ITEM_KEY

if TYPE_CHECKING:
    from cxone_pipeline.registry import SchemaVersion, SubjectSchemas

# A field no schema declares: the schema_drift check warns and the value lands in
# _unmapped_fields. One event in UNMAPPED_EVERY carries it.
UNMAPPED_FIELD = "demo_note"
UNMAPPED_EVERY = 10
UNKNOWN_VERSION = "v99"
UNRESOLVABLE_EVENTS = 3
# Numeric event ids of a run start at its random run number times this, so a second demo run
# adds new events instead of new copies of the first run's.
IDS_PER_RUN = 1_000_000

# completed_contact samples come from a small contact center, so marts/contact_kpis shows
# numbers worth reading: four skills, abandonment and durations (seconds) that differ by skill.
DEMO_SKILLS = ((4101, "Sales"), (4102, "Support"), (4103, "Billing"), (4104, "Retention"))


def demo_contact(serial: int) -> dict[str, Any]:
    """Canonical column values of the run's contact number `serial`."""
    skill = serial % len(DEMO_SKILLS)
    skill_id, skill_name = DEMO_SKILLS[skill]
    # One contact in 3 (Sales) to one in 6 (Retention) abandons in the queue.
    abandoned = (serial // len(DEMO_SKILLS)) % (3 + skill) == 0
    queue = 10 + 15 * skill + (serial * 37) % 90
    talk = 0 if abandoned else 120 + 60 * skill + (serial * 53) % 300
    wrap_up = 0 if abandoned else 15 + (serial * 29) % 45
    return {
        "media_type_id": 4,
        "media_type_name": "Call",
        "skill_id": skill_id,
        "skill_name": skill_name,
        "agent_id": None if abandoned else 20 + serial % 6,
        "abandoned": abandoned,
        "is_short_abandon": abandoned and queue < 20,
        "is_outbound": False,
        "pre_queue_seconds": 8,
        "in_queue_seconds": queue,
        "agent_seconds": talk,
        "hold_seconds": 0 if abandoned else (serial * 13) % 40,
        "acw_seconds": wrap_up,
        "abandon_seconds": queue if abandoned else 0,
        "total_duration_seconds": 8 + queue + talk + wrap_up,
    }


# Per subject: canonical column values by the run's serial number of the event.
SCENARIOS = {"completed_contact": demo_contact}


@dataclass(frozen=True)
class Window:
    """The time span a batch's times fall in, spread evenly, never past `end`."""

    start: datetime
    end: datetime

    def at(self, n: int, count: int) -> datetime:
        return self.start + (self.end - self.start) * ((n + 0.5) / count)


def iso_text(moment: datetime, logical_type: str) -> str:
    digits = 3 if ISO_TIMESTAMPS[logical_type] == "timestamp-millis" else 6
    fraction = f"{moment.microsecond:06d}"[:digits]
    return f"{moment.astimezone(timezone.utc):%Y-%m-%dT%H:%M:%S}.{fraction}Z"


def sample_value(avro_type: Any, field: str, n: int, named: dict[str, Any], at: datetime) -> Any:
    """A valid value of `avro_type` (writer extensions included), varied by `n`, with times
    at `at`; for any writer schema, new ones included."""
    if isinstance(avro_type, list):  # a union: the first branch that is not null
        branch = next((t for t in avro_type if t != "null"), "null")
        return sample_value(branch, field, n, named, at)
    if isinstance(avro_type, str):
        if avro_type in named:
            return sample_value(named[avro_type], field, n, named, at)
        primitives = {
            "string": f"{field}-{n % 97}",
            # Few distinct ints, so codes such as media types repeat.
            "int": 1 + n % 8,
            "long": 1_000 + n,
            "float": n / 4,
            "double": n / 8,
            "boolean": n % 2 == 0,
            "null": None,
            "bytes": "",
        }
        return primitives[avro_type]
    kind = avro_type["type"]
    logical = avro_type.get("logicalType")
    if "name" in avro_type:
        named[avro_type["name"]] = avro_type
        named[f"{avro_type.get('namespace', '')}.{avro_type['name']}".lstrip(".")] = avro_type
    if logical in ISO_TIMESTAMPS:
        return iso_text(at, logical)
    if logical == ISO_DURATION:
        return f"PT{n % 45}M{n % 60}.5S"
    if logical in ("timestamp-millis", "timestamp-micros"):
        return int(at.timestamp() * (1_000 if logical == "timestamp-millis" else 1_000_000))
    if kind == "enum":
        return avro_type["symbols"][n % len(avro_type["symbols"])]
    if kind == "array":
        return [sample_value(avro_type["items"], field, n, named, at)] if n % 3 == 0 else []
    if kind == "map":
        return {"k": sample_value(avro_type["values"], field, n, named, at)}
    if kind == "record":
        return sample_record(avro_type, n, named, at)
    if kind == "fixed":
        return ""
    return sample_value(kind, field, n, named, at)


def sample_field(field: dict[str, Any], n: int, named: dict[str, Any], at: datetime) -> Any:
    value = sample_value(field["type"], field["name"], n, named, at)
    if ITEM_KEY in field and isinstance(value, list):  # items sent as objects, as CXone's tags
        return [{field[ITEM_KEY]: item} for item in value]
    return value


def sample_record(
    schema: dict[str, Any], n: int, named: dict[str, Any], at: datetime
) -> dict[str, Any]:
    return {f["name"]: sample_field(f, n, named, at) for f in schema["fields"]}


def event_id_value(avro_type: Any, run: str, serial: int) -> Any:
    """A value of an event-id field (string, int or long) that no other event of the run has."""
    kind = next(t for t in avro_type if t != "null") if isinstance(avro_type, list) else avro_type
    if kind == "string":
        return f"demo-{run}-{serial}"
    if kind == "long":
        return int(run, 16) * IDS_PER_RUN + serial
    return serial


def canonical_columns(canonical: dict[str, Any]) -> dict[str, str]:
    """The canonical column each writer spelling (a field's name or alias) feeds."""
    aliases = {alias: f["name"] for f in canonical["fields"] for alias in f.get("aliases", ())}
    return {**aliases, **{f["name"]: f["name"] for f in canonical["fields"]}}


class SubjectSamples:
    """One demo run's sample payloads of a subject, per writer version (its schema document,
    so extension fields get ISO-8601 text and tag objects): times inside the window asked
    for, event ids never repeated in the run (`run`: its random hex id), and the subject's
    SCENARIOS values."""

    def __init__(self, schemas: SubjectSchemas, run: str) -> None:
        self.schemas = schemas
        self.run = run
        self._serials = itertools.count()
        self._id_fields = {
            key for spelling in schemas.rules.event_id_fields for key in spelling.keys
        }
        self._columns = canonical_columns(schemas.canonical.document)
        self._scenario = SCENARIOS.get(schemas.name)

    def batch(
        self, writer: SchemaVersion, label: str, count: int, window: Window
    ) -> list[dict[str, Any]]:
        payloads = []
        for n in range(count):
            serial = next(self._serials)
            payload = sample_record(writer.document, n, {}, window.at(n, count))
            values = self._scenario(serial) if self._scenario else {}
            for field in writer.document["fields"]:
                name = field["name"]
                if name in self._id_fields:
                    payload[name] = event_id_value(field["type"], self.run, serial)
                elif self._columns.get(name) in values:
                    payload[name] = values[self._columns[name]]
            if n % UNMAPPED_EVERY == 0:
                payload[UNMAPPED_FIELD] = f"unknown to every schema ({n})"
            payload["eventId"] = f"demo-{self.run}-{label}-{n}"
            payloads.append(payload)
        return payloads


def post(client: Any, url: str, subject: str, payloads: list[dict], version: str | None) -> int:
    headers = {"X-Schema-Version": version} if version else {}
    response = client.post(f"{url}/ingest/{subject}", json=payloads, headers=headers)
    if response.status_code != 202:
        raise CommandError(
            f"POST {url}/ingest/{subject} answered {response.status_code}: {response.text[:200]}"
        )
    return int(response.json()["count"])


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="post sample events of every schema version to a running landing",
        description="Post --per-version events of every version of every subject to the "
        "landing, dated inside the current hour (some with a field no schema declares, a few "
        "with an unknown version or matching no schema), then stage as many of every version, "
        "dated inside the previous hour, as a historical import, so a fresh Dagster shows "
        "curated partitions, a drift warning, quarantined records and the daily "
        "marts/contact_kpis (completed contacts of four demo skills) within minutes. Uses "
        "CXONE_PIPELINE_INGEST_TOKEN and the lake variables.",
    )
    parser.add_argument(
        "--url", default="http://127.0.0.1:8000", help="landing base URL (default %(default)s)"
    )
    parser.add_argument(
        "--per-version", type=int, default=100, help="events per schema version (default 100)"
    )
    parser.set_defaults(handler=demo)


def demo(args: argparse.Namespace) -> int:
    import httpx

    from cxone_pipeline.importer import ImportInputError, import_files
    from cxone_pipeline.lake.layout import hour_floor, partition_hour, partition_key
    from cxone_pipeline.lake.store import StoreError, open_store
    from cxone_pipeline.registry import SchemaError, load_registry
    from cxone_pipeline.settings import Settings, SettingsError

    try:
        settings = Settings.from_env()
        registry = load_registry(settings.schemas_dir)
        store = open_store(settings)
    except (SettingsError, SchemaError, StoreError) as exc:
        raise CommandError(str(exc)) from None
    if not settings.ingest_tokens:
        raise CommandError("set CXONE_PIPELINE_INGEST_TOKEN to a token the landing accepts")
    token = settings.ingest_tokens[0].reveal()
    url = args.url.rstrip("/")
    run = secrets.token_hex(3)
    now = datetime.now(timezone.utc)
    open_hour = Window(hour_floor(now), now)
    closed_hour = Window(open_hour.start - timedelta(hours=1), open_hour.start)

    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(headers=headers, timeout=30) as client, tempfile.TemporaryDirectory() as tmp:
        for subject, schemas in registry.items():
            samples = SubjectSamples(schemas, run)
            try:
                post_samples(client, url, samples, args.per_version, open_hour)
            except httpx.HTTPError as exc:
                raise CommandError(f"cannot reach the landing at {url}: {exc}") from None
            history = [
                payload
                for writer in schemas.versions
                for payload in samples.batch(
                    writer, f"{writer.version}-import", args.per_version, closed_hour
                )
            ]
            export = Path(tmp) / f"{subject}.ndjson"
            export.write_text("".join(json.dumps(p) + "\n" for p in history))
            try:
                # Subjects with an event time are staged by it: the batch's times are in the hour.
                report = import_files(
                    store,
                    subject,
                    [export],
                    hour=partition_key(closed_hour.start),
                    rules=schemas.rules,
                    first_hour=partition_hour(settings.partitions_start),
                )
            except (ImportInputError, StoreError) as exc:
                raise CommandError(str(exc)) from None
            print(
                f"staged {report.events} {subject} events into the closed hour "
                f"{partition_key(closed_hour.start)} as a historical import"
            )
    print(
        "the staging_sensor curates them within a sensor interval or two, then the marts_sensor "
        "builds the day's marts/contact_kpis from the curated completed contacts: open the "
        "Dagster UI"
    )
    return 0


def post_samples(
    client: Any, url: str, samples: SubjectSamples, per_version: int, window: Window
) -> None:
    """Post every version's samples, dated inside `window`, and a few unresolvable events."""
    schemas = samples.schemas
    for index, writer in enumerate(schemas.versions):
        payloads = samples.batch(writer, writer.version, per_version, window)
        # Every other version is declared by header; the rest is inferred from the shape.
        declared = writer.version if index % 2 == 0 else None
        posted = post(client, url, schemas.name, payloads, declared)
        print(f"posted {posted} {schemas.name} {writer.version} events")
    unresolvable = samples.batch(schemas.versions[0], "unknown", UNRESOLVABLE_EVENTS, window)
    post(client, url, schemas.name, unresolvable, UNKNOWN_VERSION)
    shapeless = {"eventId": f"demo-{samples.run}-shapeless", "no": "schema"}
    post(client, url, schemas.name, [shapeless], None)
    print(f"posted {UNRESOLVABLE_EVENTS + 1} {schemas.name} events no schema resolves")
