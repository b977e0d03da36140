"""The outside API: authenticate against a CXone tenant, register our landing URL with it,
and read its Reporting API.

Kept import-free so `cxone-pipeline --help` does not pay for httpx: import from
`client`, `registration`, `reporting` and `errors`.
"""
