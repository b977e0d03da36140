"""An event gets the same id whether the landing or the engine derives it."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from cxone_pipeline.lake.envelope import event_id
from cxone_pipeline.landing.intake import envelope_lines
from cxone_pipeline.registry import load_subject
from cxone_pipeline.registry.subject import SubjectRules
from cxone_pipeline.resolve import transform
from cxone_pipeline.settings import DEFAULT_SCHEMAS_DIR


def test_engine_and_landing_derive_the_same_ids() -> None:
    payloads = [
        {"customerId": "Zoë", "duration": 3, "agentId": "ä-1"},  # non-ASCII, no id
        {"customerId": "c", "duration": 4, "agentId": "a", "eventId": 12345},  # integer id
    ]
    hour = datetime(2026, 11, 27, 19, tzinfo=timezone.utc)
    staged_lines = envelope_lines(payloads, hour, None, None, SubjectRules(), hour)
    ids, lines = staged_lines.ids, staged_lines.by_hour[hour]
    # A hand-dropped file: the same envelopes without their event_id field.
    bare = [{k: v for k, v in json.loads(line).items() if k != "event_id"} for line in lines]
    staged = "".join(json.dumps(e) + "\n" for e in bare).encode()

    result = transform([staged], load_subject(DEFAULT_SCHEMAS_DIR, "call_event"))

    assert ids[0] == event_id(payloads[0]) and ids[0].startswith("sha256:")
    assert ids[1] == "12345"
    assert sorted(result.table.column("_event_id").to_pylist()) == sorted(ids)
