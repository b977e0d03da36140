"""Transform benchmark: staged envelopes (gzip NDJSON) to Parquet bytes, engine against baselines.

    .venv/bin/python benchmarks/transform.py [--events 1000000] [--repeats 3]

Generates call_event envelopes mixed across v1, v2 and v3 (1% duplicates, 1% extra fields,
0.5% invalid) in staged objects of 5,000 events, then times, each in its own process so that
peak RSS is its own:
  asset     the real asset: the objects staged in one hour of a local lake, then
            `curated/call_event` materialized in-process for that hour (list, read, resolve,
            select, Parquet, quarantine, checks, metadata)
  engine    cxone_pipeline.resolve.transform + write_parquet (columnar fast path)
  apache    per record: json.loads, detect version, Apache Avro write + read with the canonical
            reader, rows to Arrow, Parquet (the published design's way, aliases made to work)
  fastavro  the same with fastavro schemaless_writer / schemaless_reader
            (both detect versions as the design did: fastavro's validate, with each failed
            candidate's reason composed)
  floor     pyarrow's NDJSON reader parsing the same bytes, gunzipped, one call per object
            (no resolution, no Parquet): the parse floor
  ceiling   the engine's own parse (Arrow's reader restarted past lines it cannot read)
"""

from __future__ import annotations

import argparse
import copy
import gzip
import io
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cxone_pipeline.registry import (  # noqa: E402
    CONTROL_FIELDS,
    SchemaVersion,
    SubjectSchemas,
    find_version,
    load_subject,
)
from cxone_pipeline.resolve import canonical_arrow_schema, transform, write_parquet  # noqa: E402
from cxone_pipeline.settings import DEFAULT_SCHEMAS_DIR  # noqa: E402

SUBJECT = "call_event"
EVENTS_PER_OBJECT = 5_000
START = datetime(2026, 11, 27, 19, tzinfo=timezone.utc)


# --- data ---------------------------------------------------------------------------------


def payload_for(version: str, rng: random.Random, n: int) -> dict[str, Any]:
    customer, agent, duration = (
        f"cust-{rng.randrange(10**6)}",
        f"{rng.randrange(1000, 9999)}",
        rng.randrange(1, 7200),
    )
    if version == "v1":
        return {"customer_id": customer, "call_duration_sec": duration, "agent_ext": agent}
    payload: dict[str, Any] = {"customerId": customer, "duration": duration, "agentId": agent}
    if rng.random() < 0.3:  # CXone omits absent transcripts
        payload["transcript"] = "caller asked about invoice " + str(n)
    if version == "v3":
        payload.update(
            contactId=10**9 + n,
            direction=rng.choice(["INBOUND", "OUTBOUND", "INTERNAL"]),
            skillId=rng.randrange(1, 500),
            startedAt=1_764_270_000_000 + n * 37,
            tags=rng.sample(["vip", "billing", "churn-risk", "callback"], rng.randrange(0, 3)),
        )
    return payload


def invalid_line(kind: int, envelope: dict[str, Any]) -> str:
    payload = envelope["payload"]
    if kind == 0:
        payload["duration" if "duration" in payload else "call_duration_sec"] = "long"
    elif kind == 1:
        payload.pop(next(iter(payload)))
        envelope["schema_version"] = "v3" if "contactId" in payload else "v2"
    elif kind == 2:
        envelope["schema_version"] = "v7"
    elif kind == 3:
        payload.update(
            payload_for("v3", random.Random(0), 0), direction="SIDEWAYS", _schema_version="v3"
        )
    else:
        return "{truncated"
    return json.dumps(envelope)


def staged_objects(events: int, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    lines: list[str] = []
    previous: list[str] = []
    for n in range(events):
        roll = rng.random()
        if roll < 0.01 and previous:  # a retry: same event id, received later
            envelope = json.loads(rng.choice(previous))
        else:
            version = rng.choice(["v1", "v2", "v3"])
            envelope = {
                "event_id": f"evt-{n:09d}",
                "received_at": "",
                "schema_version": version if rng.random() < 0.2 else None,
                "payload": payload_for(version, rng, n),
            }
            if 0.01 <= roll < 0.02:
                envelope["payload"]["queueName"] = f"queue-{rng.randrange(20)}"
        received = START + timedelta(microseconds=n * 3_500 + rng.randrange(3_000))
        envelope["received_at"] = received.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        if 0.02 <= roll < 0.025:
            lines.append(invalid_line(n % 5, envelope))
            continue
        line = json.dumps(envelope)
        lines.append(line)
        if len(previous) < 1_000:
            previous.append(line)
    return [
        gzip.compress(("\n".join(lines[i : i + EVENTS_PER_OBJECT]) + "\n").encode(), 1)
        for i in range(0, len(lines), EVENTS_PER_OBJECT)
    ]


# --- the per-record pipelines (baselines) ---------------------------------------------------


def detect_as_published(
    subject: SubjectSchemas, payload: dict[str, Any], declared: object
) -> SchemaVersion:
    """The per-record design's detection as it was published: the declared version, else the
    newest the payload validates against, judged by fastavro's `validate`, with the reason of
    every failed candidate composed as the registry did then. (The registry now compiles its
    own validation; the baselines keep the design they stand for.)"""
    from fastavro.validation import ValidationError, validate

    datum = {k: v for k, v in payload.items() if k not in CONTROL_FIELDS}
    name = payload.get("_schema_version") or declared
    candidates = [find_version(subject, name)] if name else list(reversed(subject.versions))
    for version in candidates:
        if version is None:
            continue
        missing = [
            f["name"] for f in version.fields if "default" not in f and f["name"] not in datum
        ]
        if missing:
            continue
        try:
            validate(datum, version.schema, raise_errors=True)
        except ValidationError as exc:
            "; ".join(str(error) for error in exc.errors)  # the reason the design composed
            continue
        return version
    raise ValueError("no version")


def per_record(
    objects: list[bytes],
    subject: SubjectSchemas,
    resolve: Callable[[dict[str, Any], SchemaVersion], dict[str, Any]],
) -> bytes:
    """Staged bytes to Parquet one record at a time: parse, dedupe, detect, resolve, collect."""
    first: dict[str, tuple[str, int, dict[str, Any]]] = {}
    seq = 0
    for data in objects:
        for line in gzip.decompress(data).split(b"\n"):
            seq += 1
            try:
                envelope = json.loads(line)
            except ValueError:
                continue
            if not isinstance(envelope, dict) or not isinstance(envelope.get("payload"), dict):
                continue
            key = (envelope["received_at"], seq)
            held = first.get(envelope["event_id"])
            if held is None or key < held[:2]:
                first[envelope["event_id"]] = (*key, envelope)
    rows = []
    for _, _, envelope in first.values():
        payload = envelope["payload"]
        try:
            writer = detect_as_published(subject, payload, envelope.get("schema_version"))
            row = resolve({k: v for k, v in payload.items() if k not in CONTROL_FIELDS}, writer)
        except Exception:  # PayloadError or an Avro error: a reject either way
            continue
        declared = {f["name"] for f in writer.fields} | CONTROL_FIELDS
        extra = {k: payload[k] for k in sorted(payload) if k not in declared}
        row["_event_id"] = envelope["event_id"]
        row["_schema_version"] = writer.version
        row["_received_at"] = datetime.fromisoformat(envelope["received_at"].replace("Z", "+00:00"))
        row["_unmapped_fields"] = json.dumps(extra, separators=(",", ":")) if extra else None
        rows.append(row)
    import pyarrow as pa

    table = pa.Table.from_pylist(rows, schema=canonical_arrow_schema(subject))
    return write_parquet(table.sort_by([("_received_at", "ascending"), ("_event_id", "ascending")]))


def fastavro_resolver(subject: SubjectSchemas) -> Callable[[dict[str, Any], SchemaVersion], dict]:
    from fastavro import schemaless_reader, schemaless_writer

    def resolve(datum: dict[str, Any], writer: SchemaVersion) -> dict[str, Any]:
        buffer = io.BytesIO()
        schemaless_writer(buffer, writer.schema, datum)
        buffer.seek(0)
        return schemaless_reader(buffer, writer.schema, subject.canonical.schema)

    return resolve


def apache_resolver(subject: SubjectSchemas) -> Callable[[dict[str, Any], SchemaVersion], dict]:
    """Apache Avro's Python DatumReader ignores field aliases, so each writer version gets the
    canonical reader with aliases applied to field names (and keys renamed back after reading).
    Logical types are dropped: its writer wants datetimes, CXone sends epoch milliseconds."""
    import avro.schema
    from avro.io import BinaryDecoder, BinaryEncoder, DatumReader, DatumWriter

    def plain(document: Any) -> Any:
        if isinstance(document, dict):
            return {k: plain(v) for k, v in document.items() if k != "logicalType"}
        if isinstance(document, list):
            return [plain(v) for v in document]
        return document

    canonical = plain(json.loads(subject.canonical.path.read_text()))
    pipelines = {}
    for version in subject.versions:
        writer_doc = plain(json.loads(version.path.read_text()))
        names = {f["name"] for f in writer_doc["fields"]}
        reader_doc, renames = copy.deepcopy(canonical), {}
        for field in reader_doc["fields"]:
            source = next((a for a in field.pop("aliases", []) if a in names), None)
            if source is not None and field["name"] not in names:
                renames[source] = field["name"]
                field["name"] = source
        writer = avro.schema.parse(json.dumps(writer_doc))
        reader = avro.schema.parse(json.dumps(reader_doc))
        pipelines[version.version] = (DatumWriter(writer), DatumReader(writer, reader), renames)

    def resolve(datum: dict[str, Any], version: SchemaVersion) -> dict[str, Any]:
        datum_writer, datum_reader, renames = pipelines[version.version]
        buffer = io.BytesIO()
        datum_writer.write(datum, BinaryEncoder(buffer))
        buffer.seek(0)
        row = datum_reader.read(BinaryDecoder(buffer))
        return {renames.get(k, k): v for k, v in row.items()}

    return resolve


def parseable(objects: list[bytes]) -> list[bytes]:
    """The objects without the lines pyarrow's reader refuses (the 0.5% invalid ones: not
    JSON, or a value whose type conflicts with the other lines'), gzip again. Not timed."""
    import pyarrow as pa
    import pyarrow.json as pj

    kept = []
    for data in objects:
        lines = gzip.decompress(data).splitlines()
        while True:
            text = b"\n".join(lines)
            try:
                pj.read_json(io.BytesIO(text), pj.ReadOptions(block_size=len(text) + 1))
                break
            except pa.ArrowInvalid as exc:
                row = int(str(exc).rsplit("row ", 1)[1].split()[0].rstrip("."))
                del lines[row]
        kept.append(gzip.compress(text + b"\n", 1))
    return kept


def floor(objects: list[bytes]) -> int:
    """pyarrow's NDJSON reader alone on each gunzipped object, inferring types."""
    import pyarrow.json as pj

    rows = 0
    for data in objects:
        text = gzip.decompress(data)
        options = pj.ReadOptions(block_size=len(text) + 1)
        rows += pj.read_json(io.BytesIO(text), read_options=options).num_rows
    return rows


def asset_runner(data_dir: Path) -> Callable[[list[bytes]], int]:
    """Stage the objects in one hour of a fresh local lake; each call materializes the hour
    with the project's `curated/call_event` asset, in-process on an ephemeral instance."""
    from dagster import DagsterInstance, materialize
    from dagster_aws.s3 import S3Resource

    from cxone_pipeline.defs.assets import curate_assets, hourly_partitions
    from cxone_pipeline.defs.curated_io import curated_io_managers
    from cxone_pipeline.defs.resources import CurationSettings, LakeResource
    from cxone_pipeline.lake.layout import import_key, partition_key
    from cxone_pipeline.lake.store import LocalStore

    lake = data_dir / "lake"
    store = LocalStore(lake)
    asset = curate_assets(SUBJECT, hourly_partitions("2026-01-01-00:00"), 24)
    lake_resource = LakeResource(lake_url=str(lake), s3=S3Resource())
    curation = CurationSettings(schemas_dir=str(DEFAULT_SCHEMAS_DIR))
    resources = {
        "lake": lake_resource,
        "curation": curation,
        **curated_io_managers(lake_resource, curation),
    }
    hours = iter(START - timedelta(days=n) for n in range(1, 300))

    def work(objects: list[bytes]) -> int:
        hour = next(hours)  # a fresh hour each call: the warm-up's objects are not re-read
        for number, data in enumerate(objects):
            store.put(import_key(SUBJECT, hour, f"{number:032x}"), data)
        with DagsterInstance.ephemeral() as instance:
            started = time.perf_counter()
            result = materialize(
                [asset], partition_key=partition_key(hour), resources=resources, instance=instance
            )
            elapsed = time.perf_counter() - started
        assert result.success
        rows = result.asset_materializations_for_node(f"curate_{SUBJECT}")[0].metadata
        timings.append(elapsed)
        return int(rows["dagster/row_count"].value)

    timings: list[float] = []
    work.timings = timings  # type: ignore[attr-defined]
    return work


def ceiling(objects: list[bytes], subject: SubjectSchemas) -> int:
    """Arrow's JSON reader alone, restarted after each line it cannot read (as the engine does:
    one bad line would otherwise fail the whole object)."""
    from cxone_pipeline.resolve.columnar import ObjectLines, explicit_payload_types, parse_object
    from cxone_pipeline.resolve.envelopes import unpacked

    payload_types, conflicts = explicit_payload_types(subject), set()
    rows = 0
    for data in objects:
        parsed = parse_object(ObjectLines.read(unpacked(data)), payload_types, conflicts)
        rows += sum(run.table.num_rows for run in parsed.runs)
    return rows


# --- measurement ----------------------------------------------------------------------------


def run_worker(approach: str, data_dir: Path, repeats: int) -> dict[str, Any]:
    objects = [p.read_bytes() for p in sorted(data_dir.glob("*.jsonl.gz"))]
    subject = load_subject(DEFAULT_SCHEMAS_DIR, SUBJECT)
    if approach == "engine":

        def work(objects: list[bytes]) -> int:
            result = transform(objects, subject)
            return len(write_parquet(result.table)) and result.table.num_rows

    elif approach == "ceiling":

        def work(objects: list[bytes]) -> int:
            return ceiling(objects, subject)

    elif approach == "floor":
        clean = {id(o): c for o, c in zip(objects, parseable(objects), strict=True)}

        def work(objects: list[bytes]) -> int:
            return floor([clean[id(o)] for o in objects])

    elif approach == "asset":
        work = asset_runner(data_dir)

    else:
        resolver = (apache_resolver if approach == "apache" else fastavro_resolver)(subject)

        def work(objects: list[bytes]) -> int:
            return len(per_record(objects, subject, resolver))

    work(objects[:2])  # warm-up: lazy imports and first calls are not what is measured
    timings, output = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        output = work(objects)
        timings.append(time.perf_counter() - started)
    if approach == "asset":  # the materialization only, not staging the objects
        timings = work.timings[1:]
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": statistics.median(timings), "peak_mib": peak_kib / 1024, "output": output}


def measure(approach: str, data_dir: Path, repeats: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", approach, "--data-dir", str(data_dir)]
    command += ["--repeats", str(repeats)]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode:
        raise SystemExit(f"{approach} failed:\n{completed.stderr}")
    return json.loads(completed.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3, help="runs of engine and ceiling")
    parser.add_argument("--baseline-repeats", type=int, default=1, help="runs of each baseline")
    parser.add_argument(
        "--worker",
        choices=["asset", "engine", "apache", "fastavro", "floor", "ceiling"],
    )
    parser.add_argument("--data-dir", type=Path)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_worker(args.worker, args.data_dir, args.repeats)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        started = time.perf_counter()
        objects = staged_objects(args.events)
        for number, data in enumerate(objects):
            (data_dir / f"{number:05d}.jsonl.gz").write_bytes(data)
        staged_mib = sum(len(d) for d in objects) / 2**20
        print(
            f"{args.events:,} events in {len(objects)} staged objects ({staged_mib:.1f} MiB gzip), "
            f"generated in {time.perf_counter() - started:.0f} s; Python {sys.version.split()[0]}",
            flush=True,
        )
        results = {}
        for approach, repeats in (
            ("asset", args.repeats),
            ("engine", args.repeats),
            ("floor", args.repeats),
            ("ceiling", args.repeats),
            ("fastavro", args.baseline_repeats),
            ("apache", args.baseline_repeats),
        ):
            results[approach] = measure(approach, data_dir, repeats)
            print(f"  {approach}: {results[approach]['seconds']:.2f} s", flush=True)

    asset = results["asset"]["seconds"]
    print()
    print(f"{'approach':<10} {'median s':>9} {'events/s':>11} {'vs asset':>9} {'peak RSS MiB':>13}")
    for approach, result in results.items():
        seconds = result["seconds"]
        print(
            f"{approach:<10} {seconds:>9.2f} {args.events / seconds:>11,.0f} "
            f"{seconds / asset:>9.2f} {result['peak_mib']:>13.0f}"
        )
    fastavro, floor_s = results["fastavro"]["seconds"], results["floor"]["seconds"]
    print(
        f"\nasset: {results['apache']['seconds'] / asset:.1f}x the published per-record design "
        f"(Apache Avro, (a)), {fastavro / asset:.1f}x per record with fastavro (b), "
        f"{asset / floor_s:.2f}x the parse floor "
        f"(engine alone {results['engine']['seconds'] / floor_s:.2f}x)"
    )
    print(f"rows: asset {results['asset']['output']:,}, engine {results['engine']['output']:,}")


if __name__ == "__main__":
    main()
