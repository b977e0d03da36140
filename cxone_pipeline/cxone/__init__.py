"""The outside API: authenticate against a CXone tenant and register our landing URL with it.

Kept import-free so `cxone-pipeline --help` does not pay for httpx: import from
`client`, `registration` and `errors`.
"""
