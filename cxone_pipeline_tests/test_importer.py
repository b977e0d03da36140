"""`cxone-pipeline import`: exported files into staging envelopes, on both stores, resumably."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from cxone_pipeline.cli import main
from cxone_pipeline.curate import curate_hour
from cxone_pipeline.importer import (
    ImportInputError,
    ImportReport,
    Progress,
    import_files,
    parse_event_time,
)
from cxone_pipeline.lake.layout import InvalidName, parse_staging_key
from cxone_pipeline.lake.store import LocalStore, S3Store
from cxone_pipeline.registry import load_subject
from cxone_pipeline.settings import DEFAULT_SCHEMAS_DIR
from cxone_pipeline_tests.landing_fixtures import staged_envelopes, staged_objects
from cxone_pipeline_tests.servers import cli_process

H19 = datetime(2026, 11, 27, 19, tzinfo=timezone.utc)
H20 = datetime(2026, 11, 27, 20, tzinfo=timezone.utc)
H20_MS = int(H20.timestamp() * 1000)


def content_id(payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def write_ndjson(path: Path, events: list[dict[str, Any]], compress: bool = False) -> Path:
    data = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events).encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def staged(store: LocalStore | S3Store) -> list[tuple[str, str, Any]]:
    """(event id, received_at, payload) of every staged envelope, checked against its key."""
    rows = []
    for envelope in staged_envelopes(store, "call_event"):
        key = parse_staging_key(envelope["_key"])
        assert key is not None and envelope["_key"].split("/")[-1].startswith("import-")
        received = datetime.strptime(envelope["received_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
        assert key.hour == received.replace(minute=0, second=0, microsecond=0, tzinfo=timezone.utc)
        assert envelope["schema_version"] is None
        rows.append((envelope["event_id"], envelope["received_at"], envelope["payload"]))
    return sorted(rows, key=lambda row: (row[0], row[1]))


def test_array_ndjson_and_gzip_files_land_under_their_hours(
    store: LocalStore | S3Store, tmp_path: Path
) -> None:
    array = [
        {"eventId": "a1", "at": "2026-11-27T19:48:25.5Z", "duration": 1},
        {"event_id": "a2", "at": "2026-11-27T21:10:00+01:00"},  # 20:10 UTC
    ]
    ndjson = [{"eventId": "n1", "at": H20_MS + 1500}, {"customerId": "c-\u2028", "at": H20_MS}]
    (tmp_path / "array.json").write_text(json.dumps(array, indent=2))
    packed = [{"eventId": "z1", "at": "2026-11-27T19:59:59.999999+00:00"}]
    (tmp_path / "array.json.gz").write_bytes(gzip.compress(json.dumps(packed).encode()))
    write_ndjson(tmp_path / "events.ndjson", ndjson)
    write_ndjson(tmp_path / "events.gz", [{"eventId": "g1", "at": int(H19.timestamp())}], True)
    paths = [tmp_path / n for n in ("array.json", "array.json.gz", "events.ndjson", "events.gz")]

    report = import_files(store, "call_event", paths, time_field="at")

    assert (report.events, report.hours, report.objects_written) == (6, {H19, H20}, 5)
    assert staged(store) == [
        ("a1", "2026-11-27T19:48:25.500000Z", array[0]),
        ("a2", "2026-11-27T20:10:00.000000Z", array[1]),
        ("g1", "2026-11-27T19:00:00.000000Z", {"eventId": "g1", "at": int(H19.timestamp())}),
        ("n1", "2026-11-27T20:00:01.500000Z", ndjson[0]),
        (content_id(ndjson[1]), "2026-11-27T20:00:00.000000Z", ndjson[1]),
        ("z1", "2026-11-27T19:59:59.999999Z", packed[0]),
    ]


def test_hour_option_stages_every_event_in_that_hour(
    local_store: LocalStore, tmp_path: Path
) -> None:
    events = [{"eventId": f"e{i}", "at": "not a time"} for i in range(3)]
    report = import_files(
        local_store,
        "call_event",
        [write_ndjson(tmp_path / "e.ndjson", events)],
        hour="2026-11-27-19:00",
    )
    assert (report.events, report.hours, report.objects_written) == (3, {H19}, 1)
    assert [row[:2] for row in staged(local_store)] == [
        (f"e{i}", "2026-11-27T19:00:00.000000Z") for i in range(3)
    ]


def test_rerun_writes_nothing_and_big_hours_are_chunked(
    store: LocalStore | S3Store, tmp_path: Path
) -> None:
    events = [{"eventId": f"e{i}", "at": H20_MS + i} for i in range(7)]
    paths = [write_ndjson(tmp_path / "e.ndjson", events)]

    first = import_files(store, "call_event", paths, time_field="at", max_events_per_object=3)
    staged_first = staged(store)
    again = import_files(store, "call_event", paths, time_field="at", max_events_per_object=3)

    assert (first.objects_written, first.objects_skipped) == (3, 0)  # 3 + 3 + 1 events
    assert (again.objects_written, again.objects_skipped, again.events) == (0, 3, 7)
    assert staged(store) == staged_first
    assert [row[0] for row in staged_first] == [f"e{i}" for i in range(7)]
    assert len(staged_objects(store, "call_event")) == 3


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-27T19:48:25Z", datetime(2026, 11, 27, 19, 48, 25)),
        ("2026-11-27T21:48:25.1234567+02:00", datetime(2026, 11, 27, 19, 48, 25, 123456)),
        ("2026-11-27 14:48:25-05:00", datetime(2026, 11, 27, 19, 48, 25)),
        (1764272905, datetime(2025, 11, 27, 19, 48, 25)),
        (1764272905.25, datetime(2025, 11, 27, 19, 48, 25, 250000)),
        (1764272905250, datetime(2025, 11, 27, 19, 48, 25, 250000)),
        ("1764272905250", datetime(2025, 11, 27, 19, 48, 25, 250000)),
        ("2026-11-27T19:48:25", None),  # no offset: which zone?
        ("yesterday", None),
        ("\u00b2", None),  # a digit to str.isdigit(), not to int()
        ("9" * 5000, None),
        ("0001-01-01T00:00:00+01:00", None),
        ("", None),
        (True, None),
        (None, None),
        ({"t": 1}, None),
        (10**30, None),
    ],
)
def test_event_times(value: object, expected: datetime | None) -> None:
    parsed = parse_event_time(value)
    assert parsed == (expected.replace(tzinfo=timezone.utc) if expected else None)


BAD_FILES = [
    pytest.param(b'{"at": 1}\n\n{"at": 2,}\n', "{f}:3 is not valid JSON", id="bad-json-line"),
    pytest.param(b'{"at": 1, "at": 2}\n', "{f}:1 is not valid JSON: duplicate key", id="dup-key"),
    pytest.param(
        b'{"at": 1}\n[{"at": 2}]\n', "{f}:2 is a JSON list, not an event object", id="array-line"
    ),
    pytest.param(b'{"at": 1}\n"text"\n', "{f}:2 is a JSON str, not an event object", id="scalar"),
    pytest.param(b'[{"at": 1}, 7]', "{f}[1] is a JSON int, not an event object", id="array-item"),
    pytest.param(b'[{"at": 1}', "{f} is not valid JSON", id="bad-array"),
    pytest.param(b'{"at": "caf\xe9"}\n', "{f}:1 is not valid UTF-8", id="latin1"),
    pytest.param(b'{"x": 1}\n', "{f}:1: no 'at' field (or import it with --hour)", id="no-time"),
    pytest.param(
        b'{"at": "2026-11-27T19:00:00"}\n',
        "{f}:1: 'at' is '2026-11-27T19:00:00', not an ISO-8601 time with an offset",
        id="naive-time",
    ),
    pytest.param(
        rb'{"at": 1, "s": "\ud800"}' + b"\n",
        "{f}:1: event 0 holds an unpaired UTF-16 surrogate escape",
        id="lone-surrogate",
    ),
    pytest.param(gzip.compress(b'{"at": 1}\n')[:-6], "cannot read {f}", id="truncated-gzip"),
]


@pytest.mark.parametrize(("content", "message"), BAD_FILES)
def test_bad_input_names_file_and_line(
    local_store: LocalStore, tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "export"
    path.write_bytes(content)
    with pytest.raises(ImportInputError) as error:
        import_files(local_store, "call_event", [path], time_field="at")
    assert str(error.value).startswith(message.format(f=path))
    assert "\n" not in str(error.value)


def test_bad_options_are_refused_before_anything_is_written(
    local_store: LocalStore, tmp_path: Path
) -> None:
    good = write_ndjson(tmp_path / "good.ndjson", [{"at": 1}])
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({}, ImportInputError, "give --time-field FIELD or --hour .* declares no event time"),
        ({"time_field": "at", "hour": "2026-11-27-19:00"}, ImportInputError, "only one of"),
        ({"hour": "2026-11-27T19"}, InvalidName, "invalid hourly partition key"),
        ({"subject": "../curated", "hour": "2026-11-27-19:00"}, InvalidName, "invalid subject"),
        (
            {"paths": [good, tmp_path / "missing.ndjson"], "time_field": "at"},
            ImportInputError,
            f"no such file: {tmp_path / 'missing.ndjson'}",
        ),
    ]
    for options, error, message in cases:
        subject = options.pop("subject", "call_event")
        paths = options.pop("paths", [good])
        with pytest.raises(error, match=message):
            import_files(local_store, subject, paths, **options)
    assert list(local_store.list("")) == []


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_redraws_one_line_on_a_terminal_and_prints_lines_otherwise() -> None:
    report = ImportReport(events=2500, hours={H19, H20}, objects_written=2, objects_skipped=1)
    plain, terminal = io.StringIO(), Terminal()
    for stream in (plain, terminal):
        progress = Progress(stream, interval=0)
        progress.update(report)
        progress.update(report, final=True)
    line = "2,500 events, 2 hours, 2 objects written, 1 skipped, "
    assert [text.startswith(line) for text in plain.getvalue().splitlines()] == [True, True]
    assert terminal.getvalue().count("\r\x1b[K" + line) == 2
    assert terminal.getvalue().endswith(" events/s\n")
    assert terminal.getvalue().count("\n") == 1


def run_import(env: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess:
    process = cli_process(
        ["import", *map(str, args)], env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    out, err = process.communicate(timeout=60)
    return subprocess.CompletedProcess(args, process.returncode, out, err)


def test_command_stages_to_s3_reports_and_resumes(
    s3_lake_env: dict[str, str],
    s3_store: S3Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in s3_lake_env.items():
        monkeypatch.setenv(name, value)
    export = write_ndjson(tmp_path / "e.ndjson", [{"eventId": "e1", "at": H20_MS}], True)
    args = ["import", str(export), "--subject", "call_event", "--time-field", "at"]

    assert main(args) == 0
    first = capsys.readouterr()
    assert main(args) == 0
    again = capsys.readouterr()

    assert first.out == (
        "staged 1 call_event event in 1 hour: 2026-11-27-20:00; "
        "1 object written, 0 already staged\n"
    )
    assert "0 objects written, 1 already staged" in again.out
    assert first.err.startswith("1 event, 1 hour, 1 object written, 0 skipped, ")
    assert [row[0] for row in staged(s3_store)] == ["e1"]


def test_command_fails_with_one_line_reasons(tmp_path: Path) -> None:
    env = {"CXONE_PIPELINE_LAKE_URL": str(tmp_path / "lake")}
    good = write_ndjson(tmp_path / "good.ndjson", [{"at": 1}])
    bad = tmp_path / "bad.ndjson"
    bad.write_bytes(b'{"at": 1}\n{"at": \n')
    cases = [
        (("--subject", "nope", "--hour", "2026-11-27-19:00", good), "unknown subject 'nope'; "),
        (("--subject", "call_event", good), "give --time-field FIELD or --hour"),
        (
            ("--subject", "call_event", "--hour", "2026-11-27-19:00", "--time-field", "at", good),
            "give only one of",
        ),
        (("--subject", "call_event", "--time-field", "at", tmp_path / "none"), "no such file"),
        (("--subject", "call_event", "--time-field", "at", bad), f"{bad}:2 is not valid JSON"),
    ]
    for args, reason in cases:
        result = run_import(env, *args)
        assert result.returncode == 2
        assert result.stdout == ""
        assert result.stderr.startswith(f"cxone-pipeline import: {reason}")
        assert result.stderr.count("\n") == 1
    assert not (tmp_path / "lake").exists()


def test_imported_hour_curates_like_landed_events(local_store: LocalStore, tmp_path: Path) -> None:
    """What `import` stages is what a backfill of the hour reads."""
    events = [
        {"eventId": f"e{i}", "customerId": f"c{i}", "duration": i, "agentId": "a", "at": at}
        for i, at in enumerate([H20_MS + 2000, H20_MS + 1000, H20_MS + 1000])
    ]
    import_files(
        local_store, "call_event", [write_ndjson(tmp_path / "e.ndjson", events)], time_field="at"
    )
    outcome = curate_hour(local_store, load_subject(DEFAULT_SCHEMAS_DIR, "call_event"), H20)
    table = outcome.result.table
    assert (outcome.rows, outcome.rejected) == (3, 0)
    assert table.column("_event_id").to_pylist() == ["e1", "e2", "e0"]
    assert table.column("_received_at").to_pylist() == [
        datetime(2026, 11, 27, 20, 0, s, tzinfo=timezone.utc) for s in (1, 1, 2)
    ]
    assert table.column("_schema_version").to_pylist() == ["v2"] * 3


def test_events_over_the_landing_limit_are_refused_without_reading_them_whole(
    local_store: LocalStore, tmp_path: Path
) -> None:
    """The review: 300 KB of gzip became one 300 MB event. Lines and array elements are read
    only up to the landing's body limit."""
    limit = 64 * 1024
    one_line = tmp_path / "bomb.ndjson.gz"
    one_line.write_bytes(gzip.compress(b'{"at": 1, "pad": "' + b"x" * 300_000_000 + b'"}\n', 9))
    element = tmp_path / "bomb.json.gz"
    element.write_bytes(gzip.compress(b'[{"at": 1, "pad": "' + b"x" * 300_000_000 + b'"}]', 9))
    for path, where in ((one_line, f"{one_line}:1"), (element, f"{element}[0]")):
        with pytest.raises(ImportInputError) as refused:
            import_files(local_store, "call_event", [path], time_field="at", max_event_bytes=limit)
        assert str(refused.value).startswith(
            f"{where} is over 65,536 bytes, the landing's limit for one event "
            "(CXONE_PIPELINE_MAX_BODY_BYTES)"
        )
    assert list(local_store.list("staging/")) == []


def test_a_large_array_file_is_streamed_event_by_event(
    local_store: LocalStore, tmp_path: Path
) -> None:
    events = [{"eventId": f"a{n}", "at": 1_764_000_000, "pad": "y" * 100} for n in range(20_000)]
    path = tmp_path / "big.json"
    path.write_text(" [\n" + ",\n".join(json.dumps(e) for e in events) + "\n] \n")
    assert path.stat().st_size > 40 * 1024
    report = import_files(local_store, "call_event", [path], time_field="at", max_event_bytes=1024)
    assert report.events == 20_000
