"""Sender-chosen strings on their way into Dagster: bounded, stripped, never Markdown."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

from cxone_pipeline.curate import check_schema_drift, check_unique_event_ids, curate_hour
from cxone_pipeline.defs.assets import _curated_metadata
from cxone_pipeline.display import code, counts_text, names_text, plain, top_counts
from cxone_pipeline.lake.layout import curated_key
from cxone_pipeline.lake.store import LocalStore
from cxone_pipeline.registry import load_subject
from cxone_pipeline.resolve import write_parquet
from cxone_pipeline.settings import DEFAULT_SCHEMAS_DIR
from cxone_pipeline_tests.dagster_fixtures import CALL_PAYLOADS, envelope, stage

HOUR = datetime(2026, 3, 4, 5, tzinfo=timezone.utc)
LINK = "[click](https://evil.example/x) ![i](https://evil.example/i.png) <b>"


def outside_code_spans(markdown: str) -> str:
    return re.sub(r"`[^`]*`", "", markdown)


def test_plain_strips_controls_and_bounds_length() -> None:
    assert plain("a\x00b\u202ec\u200bd\ne") == "abcd e"
    assert plain("x" * 500) == "x" * 63 + "…"
    assert plain("\x00" * 10_000 + "y" * 10_000) == "…"  # only a bounded prefix is read
    assert code("a`b") == "`a'b`"


def test_counts_keep_the_largest_and_summarise_the_rest() -> None:
    counts = {f"f{n:03d}": n for n in range(100)}
    shown = top_counts(counts, limit=3)
    assert shown == {"f099": 99, "f098": 98, "f097": 97, "… 97 more": sum(range(97))}
    assert counts_text({"b": 1, "a": 1, "c": 5}, limit=2) == "`c` (5), `a` (1), … 1 more (1)"
    assert names_text(["v2", "v1", "v3"], limit=2) == "`v1`, `v2`, … 1 more"


def test_thousands_of_hostile_names_stay_small_and_inert(tmp_path) -> None:
    """The review: unique `_schema_version` values and field names made a 3.8 MB check
    description and 1.7 MB of metadata, with Markdown links rendered."""
    store = LocalStore(tmp_path)
    schemas = load_subject(DEFAULT_SCHEMAS_DIR, "call_event")
    at = HOUR + timedelta(minutes=1)
    hostile = [
        envelope(f"x{n}", at, {**CALL_PAYLOADS["v2"], "_schema_version": f"{LINK}{n}" * 20})
        for n in range(2_000)
    ] + [
        envelope(f"y{n}", at, {**CALL_PAYLOADS["v2"], f"{LINK}field{n}" * 10: n}, "v2")
        for n in range(2_000)
    ]
    stage(store, "call_event", HOUR, hostile)
    outcome = curate_hour(store, schemas, HOUR)
    drift = check_schema_drift(outcome)
    assert (drift.passed, drift.severity) == (False, "ERROR")
    assert len(drift.description) < 5_000
    assert len(json.dumps(drift.metadata)) < 10_000
    assert "… 1,980 more" in drift.description
    assert "](" not in outside_code_spans(drift.description)
    assert "https://" not in outside_code_spans(drift.description)
    metadata = _curated_metadata(outcome, store.url)
    assert len(json.dumps(metadata["unmapped_fields"].value)) < 5_000
    assert len(json.dumps(metadata["unknown_versions"].value)) < 5_000

    # Repeated ids: a sample, bounded, in code spans.
    store.put(curated_key("call_event", HOUR, 1), write_parquet(outcome.result.table))
    repeated = check_unique_event_ids(store, "call_event", HOUR)
    assert not repeated.passed
    assert len(repeated.description) < 5_000
    assert "](" not in outside_code_spans(repeated.description)
