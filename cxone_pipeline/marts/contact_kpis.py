"""`contact_kpis`: per skill and UTC day, contacts, abandonment, and average handle and queue time.

The example model to copy: a plain function from the day's curated rows (a pandas frame) to
a table with a fixed Arrow schema, checks that read the written file back, and one function
that does both for the asset. Which curated columns carry each fact is a per-subject mapping,
so moving the model to another subject is its name plus a `ContactColumns` entry.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cxone_pipeline.curate import CheckOutcome
from cxone_pipeline.lake.store import Store
from cxone_pipeline.marts import read_mart, write_mart

CONTACT_KPIS = "contact_kpis"


@dataclass(frozen=True)
class ContactColumns:
    """The curated columns a subject's KPIs come from; None where the subject lacks the fact
    (its KPI is then null, never a made-up zero)."""

    skill_id: str
    # Summed into one contact's handle time.
    handle_seconds: tuple[str, ...]
    skill_name: str | None = None
    abandoned: str | None = None
    queue_seconds: str | None = None

    def names(self) -> list[str]:
        optional = (self.skill_name, self.abandoned, self.queue_seconds)
        return [self.skill_id, *self.handle_seconds, *(name for name in optional if name)]


SUBJECT_COLUMNS = {
    # Call events as a Studio script posts them: one row per call, its duration, no
    # abandonment flag and no queue time.
    "call_event": ContactColumns(skill_id="skill_id", handle_seconds=("duration_seconds",)),
    # CXone's completed contacts (Reporting API `contacts/completed`). Handle time is taken as
    # agent plus after-call-work seconds; whether CXone's agentSeconds already includes hold
    # time is not documented, so hold_seconds is left out [UNCONFIRMED].
    "completed_contact": ContactColumns(
        skill_id="skill_id",
        skill_name="skill_name",
        abandoned="abandoned",
        handle_seconds=("agent_seconds", "acw_seconds"),
        queue_seconds="in_queue_seconds",
    ),
}
# The subject the shipped model reads (a test checks every mapping against its subject's
# canonical.avsc): CXone's completed contacts, pulled or pushed.
CONTACT_KPIS_SUBJECT = "completed_contact"

KPI_SCHEMA = pa.schema(
    [
        pa.field("contact_date", pa.date32(), nullable=False),
        pa.field("skill_id", pa.int64()),
        pa.field("skill_name", pa.string()),
        pa.field("contacts", pa.int64(), nullable=False),
        pa.field("abandoned", pa.int64()),
        pa.field("abandoned_rate", pa.float64()),
        pa.field("avg_handle_seconds", pa.float64()),
        pa.field("avg_queue_seconds", pa.float64()),
    ]
)


class MartInputError(Exception):
    """The curated rows lack a column the model's mapping names."""


def _column(contacts: pd.DataFrame, name: str | None, dtype: str) -> pd.Series:
    if name is None:
        return pd.Series(pd.NA, index=contacts.index, dtype=dtype)
    return contacts[name].astype(dtype)


def _facts(contacts: pd.DataFrame, columns: ContactColumns) -> pd.DataFrame:
    """One row per contact in the model's own terms."""
    missing = [name for name in columns.names() if name not in contacts.columns]
    if missing:
        raise MartInputError(
            f"{CONTACT_KPIS}: the curated rows have no column {', '.join(map(repr, missing))}; "
            "fix the subject's ContactColumns in cxone_pipeline/marts/contact_kpis.py"
        )
    handle = contacts[list(columns.handle_seconds)].astype("Float64").sum(axis=1, skipna=False)
    return pd.DataFrame(
        {
            "skill_id": _column(contacts, columns.skill_id, "Int64"),
            "skill_name": _column(contacts, columns.skill_name, "string"),
            "abandoned": _column(contacts, columns.abandoned, "boolean"),
            "handle_seconds": handle,
            "queue_seconds": _column(contacts, columns.queue_seconds, "Float64"),
        },
        index=contacts.index,
    )


def contact_kpis(contacts: pd.DataFrame, columns: ContactColumns, day: date) -> pa.Table:
    """One row per skill (contacts without a skill: one row with a null skill_id), by skill id.

    Average handle time counts answered contacts only (an abandoned one was never handled);
    average queue time counts every contact with a queue time, abandoned ones included.
    """
    facts = _facts(contacts, columns)
    abandoned = facts["abandoned"].fillna(False).astype(bool)
    by_skill = facts.groupby("skill_id", dropna=False, sort=True)
    kpis = pd.DataFrame(
        {
            "skill_name": by_skill["skill_name"].first(),
            "contacts": by_skill.size(),
            "abandoned": abandoned.groupby(facts["skill_id"], dropna=False).sum(),
            "avg_handle_seconds": facts["handle_seconds"]
            .mask(abandoned)
            .groupby(facts["skill_id"], dropna=False)
            .mean(),
            "avg_queue_seconds": by_skill["queue_seconds"].mean(),
        }
    ).reset_index()
    if columns.abandoned is None:
        kpis["abandoned"] = pd.NA
    kpis["abandoned_rate"] = kpis["abandoned"].astype("Float64") / kpis["contacts"]
    kpis.insert(0, "contact_date", day)
    return pa.Table.from_pandas(kpis, schema=KPI_SCHEMA, preserve_index=False)


# Checks, on the file as written and read back -------------------------------------------------


def check_contacts_reconciled(kpis: pa.Table, contacts_read: int) -> CheckOutcome:
    counted = pc.sum(kpis.column("contacts")).as_py() or 0
    metadata: dict[str, Any] = {"contacts_in_mart": counted, "curated_rows_read": contacts_read}
    if counted != contacts_read:
        return CheckOutcome(
            "contacts_reconciled",
            False,
            "ERROR",
            f"the mart counts {counted} contacts but {contacts_read} curated rows were read: a "
            "contact was lost or counted twice. Re-materialize the day",
            metadata,
        )
    return CheckOutcome(
        "contacts_reconciled", True, "ERROR", f"{counted} contacts, as read", metadata
    )


def check_one_row_per_skill(kpis: pa.Table) -> CheckOutcome:
    skills = Counter(kpis.column("skill_id").to_pylist())
    repeated = sorted((s for s, n in skills.items() if n > 1), key=str)
    metadata: dict[str, Any] = {"skills": len(skills), "repeated_skills": repeated[:20]}
    if repeated:
        return CheckOutcome(
            "one_row_per_skill",
            False,
            "ERROR",
            f"skill_id {repeated[:20]} appear(s) more than once. Re-materialize the day",
            metadata,
        )
    return CheckOutcome("one_row_per_skill", True, "ERROR", f"{len(skills)} skills", metadata)


def check_values_in_range(kpis: pa.Table) -> CheckOutcome:
    """Rates within [0, 1] and no negative average: a negative duration upstream shows here."""
    bad = {}
    for name, low, high in (
        ("abandoned_rate", 0.0, 1.0),
        ("avg_handle_seconds", 0.0, None),
        ("avg_queue_seconds", 0.0, None),
    ):
        values = [v for v in kpis.column(name).to_pylist() if v is not None]
        out = [v for v in values if v < low or (high is not None and v > high)]
        if out:
            bad[name] = out[:10]
    if bad:
        return CheckOutcome(
            "values_in_range",
            False,
            "ERROR",
            f"values out of range: {bad}. Look for negative durations in the day's curated rows",
            {"out_of_range": bad},
        )
    return CheckOutcome(
        "values_in_range", True, "ERROR", "rates within [0, 1], averages not negative"
    )


CHECK_DESCRIPTIONS = {
    "contacts_reconciled": (
        "ERROR when the contacts of the written file, read back from the lake, do not add up to "
        "the curated rows the run read."
    ),
    "one_row_per_skill": "ERROR when a skill_id occurs twice in the day's file.",
    "values_in_range": (
        "ERROR when abandoned_rate leaves [0, 1] or an average time is negative (negative "
        "durations upstream)."
    ),
}


@dataclass(frozen=True)
class MartOutcome:
    day: date
    key: str
    kpis: pa.Table
    contacts_read: int
    checks: list[CheckOutcome]


def refresh_contact_kpis(
    store: Store, contacts: pd.DataFrame, columns: ContactColumns, day: date
) -> MartOutcome:
    """Compute the day's KPIs, replace the day's file, and check it as a reader would see it."""
    key = write_mart(store, CONTACT_KPIS, day, contact_kpis(contacts, columns, day))
    written = read_mart(store, CONTACT_KPIS, day)
    checks = [
        check_contacts_reconciled(written, len(contacts)),
        check_one_row_per_skill(written),
        check_values_in_range(written),
    ]
    return MartOutcome(day, key, written, len(contacts), checks)
