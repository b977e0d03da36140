"""`cxone-pipeline demo`: post sample events of every schema version to a running landing.

Also stages a batch into the previous hour, as a historical import would, so the sensor
curates a closed hour at once; the curated hours then feed the daily `marts/contact_kpis`.
"""

from __future__ import annotations

import argparse
import json
import secrets
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxone_pipeline.cli import CommandError

if TYPE_CHECKING:
    from cxone_pipeline.registry import SubjectSchemas

# A field no schema declares: the schema_drift check warns and the value lands in
# _unmapped_fields. One event in UNMAPPED_EVERY carries it.
UNMAPPED_FIELD = "demo_note"
UNMAPPED_EVERY = 10
UNKNOWN_VERSION = "v99"
UNRESOLVABLE_EVENTS = 3


def sample_value(avro_type: Any, field: str, n: int, named: dict[str, Any]) -> Any:
    """A valid value of `avro_type`, varied by `n`; for any writer schema, new ones included."""
    if isinstance(avro_type, list):  # a union: the first branch that is not null
        branch = next((t for t in avro_type if t != "null"), "null")
        return sample_value(branch, field, n, named)
    if isinstance(avro_type, str):
        if avro_type in named:
            return sample_value(named[avro_type], field, n, named)
        primitives = {
            "string": f"{field}-{n % 97}",
            # Few distinct ints, so ids such as skills and agents repeat and group in marts/.
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
    if "name" in avro_type:
        named[avro_type["name"]] = avro_type
        named[f"{avro_type.get('namespace', '')}.{avro_type['name']}".lstrip(".")] = avro_type
    if avro_type.get("logicalType") == "timestamp-millis":
        return int(datetime.now(timezone.utc).timestamp() * 1000) - n * 1000
    if kind == "enum":
        return avro_type["symbols"][n % len(avro_type["symbols"])]
    if kind == "array":
        return [sample_value(avro_type["items"], field, n, named)] if n % 3 == 0 else []
    if kind == "map":
        return {"k": sample_value(avro_type["values"], field, n, named)}
    if kind == "record":
        return sample_record(avro_type, n, named)
    if kind == "fixed":
        return ""
    return sample_value(kind, field, n, named)


def sample_record(schema: dict[str, Any], n: int, named: dict[str, Any]) -> dict[str, Any]:
    return {f["name"]: sample_value(f["type"], f["name"], n, named) for f in schema["fields"]}


def sample_payloads(
    schema: dict[str, Any], version: str, count: int, run: str
) -> Iterator[dict[str, Any]]:
    named: dict[str, Any] = {}
    for n in range(count):
        payload = sample_record(schema, n, named)
        if n % UNMAPPED_EVERY == 0:
            payload[UNMAPPED_FIELD] = f"unknown to every schema ({n})"
        payload["eventId"] = f"demo-{run}-{version}-{n}"
        yield payload


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
        "landing (some with a field no schema declares, a few with an unknown version or "
        "matching no schema), then stage the same mix into the previous hour as a historical "
        "import, so a fresh Dagster shows curated partitions, a drift warning, quarantined "
        "records and the daily marts/contact_kpis within minutes. Uses "
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
    from cxone_pipeline.lake.layout import hour_floor, partition_key
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
    previous_hour = hour_floor(datetime.now(timezone.utc)) - timedelta(hours=1)

    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(headers=headers, timeout=30) as client, tempfile.TemporaryDirectory() as tmp:
        for subject, schemas in registry.items():
            try:
                history = post_samples(client, url, schemas, args.per_version, run)
            except httpx.HTTPError as exc:
                raise CommandError(f"cannot reach the landing at {url}: {exc}") from None
            export = Path(tmp) / f"{subject}.ndjson"
            export.write_text("".join(json.dumps(p) + "\n" for p in history))
            try:
                report = import_files(store, subject, [export], hour=partition_key(previous_hour))
            except (ImportInputError, StoreError) as exc:
                raise CommandError(str(exc)) from None
            print(
                f"staged {report.events} {subject} events into the closed hour "
                f"{partition_key(previous_hour)} as a historical import"
            )
    print(
        "the staging_sensor curates them within a sensor interval or two, then the marts_sensor "
        "builds today's marts/contact_kpis from them: open the Dagster UI"
    )
    return 0


def post_samples(
    client: Any, url: str, schemas: SubjectSchemas, per_version: int, run: str
) -> list[dict[str, Any]]:
    """Post every version's samples and a few unresolvable events; returns the samples again,
    with new ids, for the historical batch."""
    history: list[dict[str, Any]] = []
    for index, writer in enumerate(schemas.versions):
        payloads = list(sample_payloads(writer.schema, writer.version, per_version, run))
        # Every other version is declared by header; the rest is inferred from the shape.
        declared = writer.version if index % 2 == 0 else None
        posted = post(client, url, schemas.name, payloads, declared)
        print(f"posted {posted} {schemas.name} {writer.version} events")
        history += [{**p, "eventId": f"{p['eventId']}-import"} for p in payloads]
    unresolvable = [
        {**p, "eventId": f"demo-{run}-unknown-{n}"}
        for n, p in enumerate(history[:UNRESOLVABLE_EVENTS])
    ]
    post(client, url, schemas.name, unresolvable, UNKNOWN_VERSION)
    post(client, url, schemas.name, [{"eventId": f"demo-{run}-shapeless", "no": "schema"}], None)
    print(f"posted {UNRESOLVABLE_EVENTS + 1} {schemas.name} events no schema resolves")
    return history
