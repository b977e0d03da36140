"""One record through fastavro: write with its writer schema, read with the canonical reader."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from fastavro import schemaless_reader, schemaless_writer

from cxone_pipeline.registry import InvalidRecord, SchemaVersion
from cxone_pipeline.registry.detection import avro_datum, prepare


def resolve_record(
    payload: Mapping[str, Any], writer: SchemaVersion, canonical: SchemaVersion
) -> dict[str, Any]:
    """Avro schema resolution of one payload valid for `writer`; InvalidRecord if it cannot be."""
    datum = avro_datum(prepare(payload, writer))
    buffer = io.BytesIO()
    try:
        schemaless_writer(buffer, writer.schema, datum)
        buffer.seek(0)
        return schemaless_reader(buffer, writer.schema, canonical.schema)
    except Exception as exc:  # fastavro raises many types; all mean "unresolvable"
        raise InvalidRecord(
            f"{writer.subject} {writer.version}: cannot resolve to {canonical.path.name}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
