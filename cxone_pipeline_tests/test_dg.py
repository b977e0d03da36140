"""Dagster's newer CLI reads the project from pyproject.toml's [tool.dg] section."""

import json
import subprocess
import sys
from pathlib import Path

from cxone_pipeline.settings import PROJECT_ROOT

DG = Path(sys.executable).parent / "dg"


def dg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(DG), *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=240
    )


def test_dg_check_and_list_defs() -> None:
    checked = dg("check", "defs")
    assert checked.returncode == 0, checked.stderr
    assert "All definitions loaded successfully." in checked.stdout
    listed = dg("list", "defs", "--json")
    assert listed.returncode == 0, listed.stderr
    defs = json.loads(listed.stdout)
    assert {a["asset_key"]: a["group_name"] for a in defs["assets"]} == {
        f"{zone}/{subject}": f"{subject}/{zone}"
        for zone in ("staging", "curated", "quarantine")
        for subject in ("agent_state", "call_event")
    }
    assert [s["name"] for s in defs["sensors"]] == ["staging_sensor"]
