"""HTTP intake: authenticate, parse, stage durably, then acknowledge."""
