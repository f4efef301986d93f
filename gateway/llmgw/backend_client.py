"""The pooled HTTP client every worker uses to reach its backends (aiohttp), and its limits.

aiohttp rather than httpx on this path: profiled under load, httpx's send was about half of a
worker's CPU (encode/httpx#3215); aiohttp's C-accelerated client costs a fraction of that.
"""

from __future__ import annotations

import aiohttp
import orjson

from .settings import Settings

# Below vLLM's (uvicorn's) 5 s keep-alive: the gateway closes an idle connection before the
# backend does, so it never sends a request down a connection the backend is closing.
KEEPALIVE_SECS = 4.0


class CappedConnector(aiohttp.TCPConnector):
    """A TCP connector that keeps at most `max_idle` idle connections (HTTP_MAX_KEEPALIVE).

    aiohttp bounds open connections but not idle ones; after a burst, the surplus would sit
    open on the backends until the keep-alive expires. Beyond the cap they close at release.
    """

    def __init__(self, *, max_idle: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self._max_idle = max_idle

    def _release(self, key, protocol, *, should_close: bool = False) -> None:
        idle = sum(len(conns) for conns in self._conns.values())
        super()._release(key, protocol, should_close=should_close or idle >= self._max_idle)


def build_session(settings: Settings) -> aiohttp.ClientSession:
    """One session per worker; connections to every backend are pooled and reused."""
    connector = CappedConnector(max_idle=settings.http_max_keepalive,
                                limit=settings.http_max_connections, limit_per_host=0,
                                keepalive_timeout=KEEPALIVE_SECS, use_dns_cache=True)
    # No total timeout: MAX_REQUEST_SECS caps a request in the request path. sock_read is the
    # longest silence allowed from a backend; waiting for a free pooled connection is not
    # capped here (it is bounded by MAX_REQUEST_SECS) so that it is never mistaken for a dead
    # backend.
    timeout = aiohttp.ClientTimeout(total=None, connect=None,
                                    sock_connect=settings.upstream_connect_timeout_secs,
                                    sock_read=settings.upstream_timeout_seconds)
    return aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False,
                                 cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
                                 skip_auto_headers=("User-Agent", "Accept-Encoding"),
                                 json_serialize=lambda v: orjson.dumps(v).decode(),
                                 raise_for_status=False)
