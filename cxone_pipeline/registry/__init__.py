"""Schema registry: the subjects and writer/canonical schema versions under `schemas/`."""

from __future__ import annotations

from pathlib import Path

from cxone_pipeline.lake.layout import is_valid_subject


def discover_subjects(schemas_dir: Path) -> list[str]:
    """Subject names: folders of `schemas_dir` with a valid name and a `canonical.avsc`."""
    if not schemas_dir.is_dir():
        return []
    return sorted(
        entry.name
        for entry in schemas_dir.iterdir()
        if entry.is_dir() and is_valid_subject(entry.name) and (entry / "canonical.avsc").is_file()
    )
