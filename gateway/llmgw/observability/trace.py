"""What one request did, filled in along the request path and read once at its end."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Trace:
    request_id: str
    route: str = "other"        # chat, completions, text2sql, embeddings, rerank, models, admin...
    model: str = "-"            # the public model name, once resolved
    stream: bool = False
    org: str | None = None
    key_id: str | None = None
    backend: str | None = None
    upstream_secs: float = 0.0  # the backend's share of the time to the first byte
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error_code: str | None = None
    cache: str | None = None    # HIT | MISS, when the cache was consulted
    retries: int = 0
    content: str | None = None  # only with LOG_CONTENT=on; redacted before it is written
