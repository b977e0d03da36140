"""`devenv up` publishes nothing: every process it starts binds to loopback."""

from __future__ import annotations

from cxone_pipeline.devenv import stack_commands
from cxone_pipeline.landing.command import is_loopback

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
