"""`devenv up` publishes nothing (every process it starts binds to loopback), and creates a
new Dagster instance's storage once, before its processes open it."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

from cxone_pipeline.devenv import create_instance_storage, stack_commands
from cxone_pipeline.landing.command import is_loopback
from cxone_pipeline.settings import PROJECT_ROOT

BIND_FLAGS = {"landing": "--host", "dagster-webserver": "-h"}


def test_up_binds_every_listener_to_loopback() -> None:
    commands = {
        name: [str(part) for part in command]
        for name, command in stack_commands(8000, 3000).items()
    }
    for name, flag in BIND_FLAGS.items():
        command = commands[name]
        assert is_loopback(command[command.index(flag) + 1]), name
    # The daemon listens on nothing; every other process names its address explicitly.
    assert set(commands) - set(BIND_FLAGS) == {"dagster-daemon"}
    assert not any(arg.startswith(("--host=", "0.0.0.0")) for c in commands.values() for arg in c)


def test_a_new_dagster_home_gets_its_storage_with_one_schema_revision(tmp_path: Path) -> None:
    shutil.copy(PROJECT_ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    create_instance_storage({**os.environ, "DAGSTER_HOME": str(tmp_path)})
    for database in ("schedules/schedules.db", "history/runs.db", "history/runs/index.db"):
        with sqlite3.connect(tmp_path / database) as connection:
            revisions = connection.execute("SELECT version_num FROM alembic_version").fetchall()
        assert len(revisions) == 1, database
