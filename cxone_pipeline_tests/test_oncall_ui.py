"""The on-call view asserted in the real Dagster UI with headless Chromium (oncall_ui.py)."""

from pathlib import Path

import pytest

from cxone_pipeline_tests.oncall_ui import run


# The webserver loads the code location on two busy cores before the first page renders.
@pytest.mark.timeout(420)
def test_a_failing_hour_is_visible_on_the_overview_and_the_check_partitions(
    tmp_path: Path,
) -> None:
    run(tmp_path)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "oncall-check-partitions.png",
        "oncall-overview.png",
        "oncall-quarantine-hour.png",
        "oncall-recent-check.png",
        "zones-lineage.png",
        "zones-search.png",
    ]
