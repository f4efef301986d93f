"""The pooled HTTP client each worker uses to reach its backends, built from the settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .backend_http import BackendHTTP
from .settings import Settings

# Below vLLM's (uvicorn's) 5 s keep-alive: the gateway closes an idle connection before the
# backend does, so it never sends a request down a connection the backend is closing.
KEEPALIVE_SECS = 4.0


@asynccontextmanager
async def backend_http(settings: Settings) -> AsyncIterator[BackendHTTP]:
    """One per worker; connections to every backend are pooled and reused. Getting one (a
    free slot, then the connect) takes at most the connect timeout, and each request's caller
    bounds it by what is left of its deadline too."""
    http = BackendHTTP(max_connections=settings.http_max_connections,
                       max_idle=settings.http_max_keepalive, keepalive_secs=KEEPALIVE_SECS,
                       connect_timeout=settings.upstream_connect_timeout_secs)
    try:
        yield http
    finally:
        await http.aclose()
