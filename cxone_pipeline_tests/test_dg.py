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
    groups = {a["asset_key"]: a["group_name"] for a in defs["assets"]}
    assert {key: groups[key] for key in groups if key.endswith("/call_event")} == {
        f"{zone}/call_event": f"call_event/{zone}" for zone in ("staging", "curated", "quarantine")
    }
    assert "staging_sensor" in [s["name"] for s in defs["sensors"]]
