"""The response cache: deterministic answers kept per organisation, collapsed, replayed.

Import from the modules (`cache.lookup`, ...): this file stays empty so `streaming` can use
`cache.collect` without importing the request-path side, which imports `streaming`.
"""
