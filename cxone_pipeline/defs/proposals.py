"""The `propose_schema` job: a schema proposal left in the lake (`proposals/<S>/…`) for review."""

# No `from __future__ import annotations`: Dagster reads the op's config type at runtime.
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg

from cxone_pipeline.defs.resources import CurationSettings, LakeResource
from cxone_pipeline.lake.layout import DEFAULT_SUBJECT, InvalidName, partition_hour
from cxone_pipeline.lake.store import StoreError
from cxone_pipeline.registry import SchemaError
from cxone_pipeline.registry.drift import DEFAULT_LIMIT, last_hours, read_drift
from cxone_pipeline.registry.propose import ProposalError, propose, store_proposal


def propose_schema_job(subjects: Sequence[str]) -> dg.JobDefinition:
    """The job, offering the registry's subjects as a choice. Plain `String`/`Int` config
    types, not Pythonic `str` fields: those would accept `{env: VAR}`, letting whoever can
    launch a run from the UI read the code server's environment."""
    config_schema = {
        "subject": dg.Field(
            dg.Enum("ProposeSubject", [dg.EnumValue(name) for name in subjects]),
            default_value=DEFAULT_SUBJECT if DEFAULT_SUBJECT in subjects else subjects[0],
            description="the subject whose drift to read",
        ),
        "since_hours": dg.Field(
            dg.Int, is_required=False, description="the last N hours; default: the reconcile window"
        ),
        "partitions": dg.Field(
            [dg.String], default_value=[], description="hourly partition keys instead"
        ),
        "enums": dg.Field([dg.String], default_value=[], description="fields typed as enums"),
        "accept_renames": dg.Field(
            [dg.String], default_value=[], description="suggested renames to apply"
        ),
        "limit": dg.Field(dg.Int, default_value=DEFAULT_LIMIT, description="records read at most"),
    }

    @dg.op(name="propose_schema_op", config_schema=config_schema)
    def propose_schema_op(
        context: dg.OpExecutionContext, lake: LakeResource, curation: CurationSettings
    ) -> dg.Output[str]:
        """Read the drift, propose, and write the proposal under proposals/<subject>/; outputs
        the key of its proposal.json (none when there is nothing to propose)."""
        return _propose(context, context.op_config, lake, curation)

    @dg.job(
        name="propose_schema",
        description="Propose the next schema versions of a subject from its quarantined and "
        "unmapped records, into the lake under proposals/<subject>/ for review (the registry "
        "is not changed: apply with `cxone-pipeline schemas propose --write`). Safe to launch "
        "from the UI.",
    )
    def propose_schema() -> None:
        propose_schema_op()

    return propose_schema


# What one launch may ask for at most: a year of hours, a million records.
MAX_HOURS = 24 * 366
MAX_RECORDS = 1_000_000


def _check_bounds(config: dict) -> None:
    if len(config["partitions"]) > MAX_HOURS or (config.get("since_hours") or 0) > MAX_HOURS:
        raise ValueError(f"at most {MAX_HOURS} hours per proposal: narrow the window")
    if not 0 < config["limit"] <= MAX_RECORDS:
        raise ValueError(f"limit must be between 1 and {MAX_RECORDS}")


def _propose(
    context: dg.OpExecutionContext,
    config: dict,
    lake: LakeResource,
    curation: CurationSettings,
) -> dg.Output[str]:
    now = datetime.now(timezone.utc)
    store = lake.store()
    subject = config["subject"]
    try:
        _check_bounds(config)
        if config["partitions"]:
            hours = [partition_hour(key) for key in config["partitions"]]
        else:
            since = config.get("since_hours") or curation.reconcile_days * 24
            hours = list(last_hours(now, since))
        sample = read_drift(store, curation.subject(subject), hours, config["limit"])
        proposal = propose(
            Path(curation.schemas_dir), sample, config["enums"], config["accept_renames"]
        )
    except (InvalidName, SchemaError, StoreError, ProposalError, ValueError) as exc:
        raise dg.Failure(description=str(exc)) from None
    keys = store_proposal(store, proposal, now) if proposal.files else []
    url = store.url.rstrip("/")
    proposal_json = next((k for k in keys if k.endswith("/proposal.json")), "")
    context.log.info(
        f"{subject}: {len(proposal.versions)} version(s) proposed, "
        f"{len(proposal.still_failing)} record(s) still failing"
        + (f"; written under {url}/{proposal_json.rsplit('/', 1)[0]}/" if keys else "")
    )
    return dg.Output(
        proposal_json,
        metadata={
            "versions": [v.version for v in proposal.versions],
            "quarantined_read": proposal.read["quarantined"],
            "unmapped_read": proposal.read["unmapped"],
            "resolved": sum(sum(v.resolved.values()) for v in proposal.versions),
            "still_failing": len(proposal.still_failing),
            "renames_to_review": [
                f"{r.sender_field} -> {r.canonical_field}"
                for r in proposal.renames
                if not r.accepted
            ],
            "files": dg.MetadataValue.json([f"{url}/{key}" for key in keys]),
        },
    )
