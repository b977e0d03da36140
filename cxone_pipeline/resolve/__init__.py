"""Resolution engine: staged envelopes of every schema version into one canonical table."""

from cxone_pipeline.resolve.arrow_schema import canonical_arrow_schema
from cxone_pipeline.resolve.engine import TransformResult, transform
from cxone_pipeline.resolve.parquet import read_parquet, write_parquet
from cxone_pipeline.resolve.rejects import REJECT_CODES, Reject, read_rejects, rejects_to_bytes

__all__ = [
    "REJECT_CODES",
    "Reject",
    "TransformResult",
    "canonical_arrow_schema",
    "read_parquet",
    "read_rejects",
    "rejects_to_bytes",
    "transform",
    "write_parquet",
]
