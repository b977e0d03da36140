"""What a curated hour says to a person on call: hour ranges, top quarantine reasons, samples.

Plain functions over the engine's results; `cxone_pipeline.defs` turns them into metadata.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from cxone_pipeline.curate import CheckOutcome
from cxone_pipeline.lake.hours import describe_hours, plural
from cxone_pipeline.lake.layout import hour_floor, partition_hour
from cxone_pipeline.resolve import Reject

# One of settings.QUARANTINE_RATE_ACTIONS.
QuarantineAction = Literal["tag", "fail", "ignore"]
RECENT_QUARANTINE_RATE = "recent_quarantine_rate"
RECENT_HOURS = 24
QUARANTINE_RATE_TAG = "cxone/quarantine_rate"
QUARANTINE_RATE_HOURS_TAG = "cxone/quarantine_rate_failed_hours"

SAMPLE_RECORDS = 3
SAMPLE_CHARS = 300
TOP_REASONS = 5
REASON_CHARS = 200
# Inside a reason, the listed payload keys and quoted values differ per record: reasons that
# differ only there are the same reason.
_VARYING = re.compile(r"\(keys: [^)]*\)|'[^']*'|\"[^\"]*\"|\b\d+\b")


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def top_reasons(rejects: Iterable[Reject], limit: int = TOP_REASONS) -> list[dict[str, Any]]:
    """The most frequent reasons, each with its code, count and one message as it was written."""
    counts: Counter[tuple[str, str]] = Counter()
    example: dict[tuple[str, str], str] = {}
    for reject in rejects:
        reason = (reject.code, _VARYING.sub("…", reject.message))
        counts[reason] += 1
        example.setdefault(reason, reject.message)
    return [
        {"code": code, "count": count, "message": truncate(example[(code, shape)], REASON_CHARS)}
        for (code, shape), count in counts.most_common(limit)
    ]


def sample_records(rejects: Iterable[Reject], limit: int = SAMPLE_RECORDS) -> list[dict[str, Any]]:
    """A few quarantined records: id, code, reason and the payload as JSON text, truncated."""
    samples = []
    for reject in rejects:
        if len(samples) == limit:
            break
        payload = reject.envelope.get("payload")
        samples.append(
            {
                "event_id": truncate(str(reject.envelope.get("event_id")), 80),
                "code": reject.code,
                "message": truncate(reject.message, REASON_CHARS),
                "payload": truncate(
                    json.dumps(payload, ensure_ascii=False, separators=(",", ":")), SAMPLE_CHARS
                ),
            }
        )
    return samples


@dataclass(frozen=True)
class Verdict:
    """What a run does about its hours' failed quarantine_rate checks: tags, and a failure."""

    tags: dict[str, str] = field(default_factory=dict)
    failure: str | None = None


def quarantine_verdict(
    subject: str,
    results_by_partition: Mapping[str, Sequence[CheckOutcome]],
    action: QuarantineAction,
) -> Verdict:
    """`tag`: the run carries which hours failed; `fail`: it is also failed, after every hour
    was written and checked; `ignore`: the checks alone say it."""
    failed = [
        partition_hour(partition)
        for partition, results in results_by_partition.items()
        if any(r.name == "quarantine_rate" and not r.passed for r in results)
    ]
    if not failed or action == "ignore":
        return Verdict()
    hours = describe_hours(failed)
    tags = {QUARANTINE_RATE_TAG: "failed", QUARANTINE_RATE_HOURS_TAG: truncate(hours, 250)}
    if action == "tag":
        return Verdict(tags)
    return Verdict(
        tags,
        f"quarantine_rate failed for {plural(len(failed), 'hour')} of {subject}: {hours}. Every "
        f"hour was written and checked; read quarantine/{subject} (the check's metadata lists "
        "the top reasons) and see docs/operations.md#when-a-check-fails",
    )


@dataclass(frozen=True)
class HourTally:
    """What one hour's latest materialization counted."""

    partition: str
    quarantined: int
    events_read: int

    @property
    def rate(self) -> float:
        return self.quarantined / self.events_read if self.events_read else 0.0


def recent_window(now: datetime, hours: int = RECENT_HOURS) -> list[datetime]:
    """The open hour and the hours before it, `hours` in all, oldest first."""
    open_hour = hour_floor(now)
    return [open_hour - timedelta(hours=n) for n in range(hours - 1, -1, -1)]


def check_recent_quarantine(
    subject: str, tallies: Sequence[HourTally], max_rate: float
) -> CheckOutcome:
    """ERROR while any recent hour quarantined more than `max_rate`, naming those hours."""
    failing = [t for t in tallies if t.rate > max_rate]
    # One number worth a plot across runs; the rest is text.
    metadata: dict[str, Any] = {
        "failing_hour_count": len(failing),
        "failing_hours": {
            t.partition: f"{t.rate:.2%} ({t.quarantined} of {t.events_read})" for t in failing
        },
        "hours_checked": f"{len(tallies)} materialized of the last {RECENT_HOURS}",
        "limit": f"{max_rate:.2%}",
    }
    if not failing:
        return CheckOutcome(
            RECENT_QUARANTINE_RATE,
            True,
            "ERROR",
            f"none of the {len(tallies)} materialized hours of the last {RECENT_HOURS} "
            f"quarantined more than {max_rate:.2%}",
            metadata,
        )
    worst = ", ".join(
        f"{t.partition} ({t.rate:.2%})" for t in sorted(failing, key=lambda t: t.partition)
    )
    return CheckOutcome(
        RECENT_QUARANTINE_RATE,
        False,
        "ERROR",
        f"{plural(len(failing), 'hour')} of the last {RECENT_HOURS} quarantined more than "
        f"{max_rate:.2%}: {truncate(worst, 400)}. Open the quarantine_rate check's Partitions "
        f"tab, or quarantine/{subject} for those hours; see docs/operations.md#when-a-check-fails",
        metadata,
    )
