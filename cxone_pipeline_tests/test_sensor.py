"""`staging_sensor` evaluated on a test instance over a local lake."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from dagster import DagsterInstance, SensorResult, build_sensor_context

from cxone_pipeline.curate import plan_sensor_hours, staging_window
from cxone_pipeline.defs.sensors import build_staging_sensor, run_key, waiting_for
from cxone_pipeline.lake.layout import (
    CHANGES,
    change_marker_key,
    curated_key,
    hour_floor,
    hour_prefix,
    partition_hour,
    partition_key,
    zone_prefix,
)
from cxone_pipeline.lake.store import LocalStore
from cxone_pipeline.registry import load_subject
from cxone_pipeline.resolve import read_parquet
from cxone_pipeline.settings import DEFAULT_SCHEMAS_DIR
from cxone_pipeline_tests.dagster_fixtures import (
    START,
    Lake,
    call_events,
    closed_hour,
    materialize_hour,
    stage,
)

SENSOR = build_staging_sensor(
    ["agent_state", "call_event"], interval_seconds=30, first_hour=partition_hour(START)
)


def tick(lake: Lake, instance: DagsterInstance, cursor: str | None = None, **knobs) -> SensorResult:
    resources = lake.resources(**knobs)
    with build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        return SENSOR(context)


def requested(result: SensorResult) -> list[tuple[str | None, str | None]]:
    return sorted((r.partition_key, r.run_key) for r in result.run_requests or [])


CALL_EVENT = load_subject(DEFAULT_SCHEMAS_DIR, "call_event")


def expected(lake: Lake, hour: datetime) -> tuple[str, str]:
    digest = staging_window(lake.store, CALL_EVENT, hour).digest(True)
    return partition_key(hour), run_key("call_event", partition_key(hour), digest)


def test_new_objects_give_one_run_per_changed_hour(lake: Lake, instance: DagsterInstance) -> None:
    open_hour = hour_floor(datetime.now(timezone.utc))
    hours = [closed_hour(3), closed_hour(2), open_hour]
    for hour in hours:
        stage(lake.store, "call_event", hour, call_events(hour))
        stage(lake.store, "call_event", hour, call_events(hour, prefix="more"))

    result = tick(lake, instance)

    assert requested(result) == sorted(expected(lake, hour) for hour in hours)
    for request in result.run_requests:
        selection = {key.to_user_string() for key in request.asset_selection}
        assert selection == {"curated/call_event", "quarantine/call_event"}
    assert set(json.loads(result.cursor)["open"]) == {"call_event"}
    # A re-tick before the runs finished asks for the same runs: Dagster drops them by run key.
    assert requested(tick(lake, instance)) == requested(result)


def test_nothing_changed_skips(lake: Lake, instance: DagsterInstance) -> None:
    hour = closed_hour(2)
    stage(lake.store, "call_event", hour, call_events(hour))
    materialize_hour(lake, instance, hour)

    result = tick(lake, instance)

    assert result.run_requests == []
    reason = result.skip_reason.skip_message
    assert "hour(s) checked, none changed; the open hour " in reason
    assert reason.endswith(" UTC")


def test_late_object_in_a_closed_hour_triggers_that_hour(
    lake: Lake, instance: DagsterInstance
) -> None:
    late_hour, other = closed_hour(2), closed_hour(3)
    for hour in (late_hour, other):
        stage(lake.store, "call_event", hour, call_events(hour))
        materialize_hour(lake, instance, hour)
    before = expected(lake, late_hour)

    stage(lake.store, "call_event", late_hour, call_events(late_hour, prefix="late"))
    result = tick(lake, instance)

    assert requested(result) == [expected(lake, late_hour)]
    assert expected(lake, late_hour) != before
    materialize_hour(lake, instance, late_hour)
    assert tick(lake, instance).run_requests == []


def test_open_hour_refresh_is_throttled(lake: Lake, instance: DagsterInstance) -> None:
    open_hour = hour_floor(datetime.now(timezone.utc))
    stage(lake.store, "call_event", open_hour, call_events(open_hour))
    first = tick(lake, instance)
    assert requested(first) == [expected(lake, open_hour)]

    stage(lake.store, "call_event", open_hour, call_events(open_hour, prefix="next"))
    throttled = tick(lake, instance, cursor=first.cursor)
    assert throttled.run_requests == []

    assert f"the open hour {partition_key(open_hour)} " in throttled.skip_reason.skip_message
    long_ago = (datetime.now(timezone.utc) - timedelta(minutes=16)).isoformat()
    due = tick(lake, instance, cursor=json.dumps({"call_event": long_ago}))  # an old cursor
    assert requested(due) == [expected(lake, open_hour)]

    assert tick(lake, instance, open_hour_refresh_seconds=0).run_requests == []


def test_a_late_event_for_an_hour_closed_days_ago_is_found_by_its_marker(
    lake: Lake, instance: DagsterInstance
) -> None:
    old = closed_hour(24 * 5)
    stage(lake.store, "call_event", old, call_events(old))
    materialize_hour(lake, instance, old)
    first = tick(lake, instance)
    assert first.run_requests == []

    stage(lake.store, "call_event", old, call_events(old, prefix="late"))
    lake.store.put(change_marker_key("call_event", old, datetime.now(timezone.utc)), b"")
    found = tick(lake, instance, cursor=first.cursor)

    assert requested(found) == [expected(lake, old)]
    materialize_hour(lake, instance, old)
    rows = read_parquet(lake.store.get(curated_key("call_event", old, 0)))
    assert sorted(rows.column("_event_id").to_pylist())[-4:] == [
        "late-1",
        "late-2",
        "late-3",
        "late-4",
    ]
    # The marker is read again for a few minutes (writers' clocks), but the hour is up to date.
    assert tick(lake, instance, cursor=found.cursor).run_requests == []


def test_tick_lists_only_the_look_back_hours(
    lake: Lake, instance: DagsterInstance, monkeypatch
) -> None:
    # 50,000 historical objects: 500 hours of 100 objects each, written as plain files.
    first = datetime(2025, 6, 1, tzinfo=timezone.utc)
    for n in range(500):
        folder = lake.store.root / hour_prefix("staging", "call_event", first + timedelta(hours=n))
        folder.mkdir(parents=True)
        for i in range(100):
            (folder / f"import-{i:032x}.jsonl.gz").write_bytes(b"")
    listed: list[str] = []
    original = LocalStore.list

    def recording_list(self: LocalStore, prefix: str, start_after: str | None = None):
        listed.append(prefix)
        return original(self, prefix, start_after)

    monkeypatch.setattr(LocalStore, "list", recording_list)
    result = tick(lake, instance)

    now = datetime.now(timezone.utc)
    open_hour = hour_floor(now)
    # The look-back hours and the hour before them (its window holds the oldest of them),
    # each with its own window: the hour before it too.
    closed = [open_hour - timedelta(hours=n) for n in (4, 3, 2, 1)]
    candidates = [h for h in closed if now >= h + timedelta(hours=1, minutes=2)] + [open_hour]
    window = {*candidates, *(hour - timedelta(hours=1) for hour in candidates)}
    staging = [p for p in listed if p.startswith("staging/")]
    assert len(staging) == len(set(staging))  # each prefix listed once per tick
    assert set(staging) == {
        hour_prefix("staging", subject, hour)
        for subject in ("agent_state", "call_event")
        for hour in window
    }
    markers = [zone_prefix(CHANGES, s) for s in ("agent_state", "call_event")]
    # The markers: one listing per subject (pruning lists them at most once an hour more).
    assert sorted(p for p in listed if not p.startswith("staging/")) == sorted(markers)
    assert result.run_requests == []


def test_skip_reasons_say_what_the_sensor_waits_for() -> None:
    now = datetime(2026, 3, 4, 21, 10, tzinfo=timezone.utc)
    opened = {"call_event": datetime(2026, 3, 4, 21, 5, tzinfo=timezone.utc).isoformat()}
    assert waiting_for(now, opened, 900, 120) == (
        "the open hour 2026-03-04-21:00 refreshes at 21:20 UTC"
    )
    assert waiting_for(now, opened, 0, 120) == (
        "the open hour 2026-03-04-21:00 is curated once closed, at 22:02 UTC"
    )
    late = {"call_event": datetime(2026, 3, 4, 21, 55, tzinfo=timezone.utc).isoformat()}
    assert "curated once closed, at 22:02 UTC" in waiting_for(now, late, 900, 120)


def test_markers_a_saved_cursor_has_not_read_are_never_pruned(
    lake: Lake, instance: DagsterInstance
) -> None:
    """A tick that fails after pruning but before its cursor is saved must not lose markers:
    pruning only takes what the saved cursor had read (and is older than a day)."""
    now = datetime.now(timezone.utc)
    read = change_marker_key("call_event", closed_hour(24 * 9), now - timedelta(days=3))
    unread = [closed_hour(24 * 8), closed_hour(24 * 7)]
    lake.store.put(read, b"")
    for n, hour in enumerate(unread):
        stage(lake.store, "call_event", hour, call_events(hour, prefix=f"u{n}"))
        lake.store.put(change_marker_key("call_event", hour, now - timedelta(days=2, hours=n)), b"")
    cursor = json.dumps({"open": {}, "markers": {"call_event": read}, "waiting": {}})

    result = tick(lake, instance, cursor=cursor)

    assert sorted(r.partition_key for r in result.run_requests) == [
        partition_key(h) for h in unread
    ]

    def left() -> list[str]:
        return sorted(info.key for info in lake.store.list(zone_prefix(CHANGES, "call_event")))

    assert len(left()) == 3  # nothing this tick read was pruned before its cursor is saved
    state = json.loads(result.cursor)
    state["pruned"] = {}  # an hour later
    tick(lake, instance, cursor=json.dumps(state))
    newest = max(left())
    assert left() == [newest] and newest == state["markers"]["call_event"]


def test_a_tick_compares_a_bounded_number_of_hours_and_carries_the_rest(lake: Lake) -> None:
    """An import or a sender touching thousands of old hours must not push a tick past
    Dagster's sensor timeout: the rest waits in the cursor for the next ticks."""
    now = datetime.now(timezone.utc)
    touched = [closed_hour(24 * 30) + timedelta(hours=3 * n) for n in range(40)]
    for hour in touched:
        lake.store.put(change_marker_key("agent_state", hour, now), b"")
    schemas = load_subject(DEFAULT_SCHEMAS_DIR, "agent_state")
    knobs = {"lookback_hours": 3, "close_grace": timedelta(minutes=2), "open_hour_due": False}
    first_hour = partition_hour(START)

    first = plan_sensor_hours(
        lake.store,
        schemas,
        now,
        **knobs,
        first_hour=first_hour,
        last_marker=None,
        waiting=[],
        most=30,
    )
    assert len(first.hours) <= 30 + 3  # the look-back window always, then what fits
    later = plan_sensor_hours(
        lake.store,
        schemas,
        now,
        **knobs,
        first_hour=first_hour,
        last_marker=first.last_marker,
        waiting=first.waiting,
        most=200,
    )
    compared = set(first.hours) | set(later.hours)
    assert set(touched) <= compared and later.waiting == []
    assert len(first.waiting) > 0
