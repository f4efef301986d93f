"""Where Redis is: the one URL of REDIS_URL, the primary that Redis Sentinel names, or a Redis
Cluster reached through REDIS_URL's node.

Every Redis client of the gateway and the batch runner is built here, so each follows a
failover the same way. With REDIS_SENTINELS set, REDIS_URL still gives the credentials, the
database and TLS (rediss://) of the data nodes; its host and port are not used. A connection
asks the sentinels for the primary each time it connects: one that dies with the old primary
connects again to the new one, and a connection to a primary that was demoted (it answers
READONLY) is closed by redis-py and by the request path's channel alike, so the next command
asks again. No restart is needed.

While no sentinel names a healthy primary (between the primary's death and the promotion),
connecting fails with `MasterNotFoundError`, a `ConnectionError`: the request path treats it as
Redis unreachable (LIMITER_FAILURE_POLICY).

With REDIS_CLUSTER, REDIS_URL names one node of the cluster; the clients learn the others from
it. Commands go to the node owning their key's slot (redis-py's RedisCluster; the request
path's ClusterChannel). Pub/sub (key invalidations) uses a plain connection to REDIS_URL's
node: a cluster delivers a message published on any node to subscribers on every node.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError

from .admission.cluster_channel import ClusterChannel
from .admission.redis_channel import RedisChannel

Address = tuple[str, int] | str  # host and port, or a unix socket's path


def parse_sentinels(text: str) -> list[tuple[str, int]]:
    """`host:port,host:port` (a bare host means port 26379); empty means no Sentinel."""
    found = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep:
            host, port = item, "26379"
        host = host.strip("[]")  # [::1]:26379
        if not host or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{item!r} is not host:port")
        found.append((host, int(port)))
    return found


def check_topology(settings: Any) -> None:
    """Start-up checks of REDIS_SENTINELS and REDIS_CLUSTER: a ValueError naming the setting."""
    try:
        sentinels = parse_sentinels(settings.redis_sentinels)
    except ValueError as exc:
        raise ValueError(f"REDIS_SENTINELS: {exc}") from None
    tcp = not settings.redis_url.startswith("unix://")
    if sentinels and not tcp:
        raise ValueError("REDIS_SENTINELS needs a redis:// or rediss:// REDIS_URL")
    if settings.redis_cluster:
        if sentinels:
            raise ValueError("REDIS_CLUSTER and REDIS_SENTINELS exclude each other")
        if not tcp:
            raise ValueError("REDIS_CLUSTER needs a redis:// or rediss:// REDIS_URL")
        if settings.global_max_concurrent:
            raise ValueError("GLOBAL_MAX_CONCURRENT must be 0 with REDIS_CLUSTER: a platform-wide "
                             "lease set cannot sit in every organisation's slot (the pools' "
                             "queues cap the backends)")


class _SentinelBlockingPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool (it asks for the primary on connect) with the blocking pool's wait for
    a free connection: a burst waits for one of the pool's connections instead of failing."""


class RedisLink:
    """Builds the Redis clients of one process and tells the channel where to connect."""

    def __init__(self, url: str, *, sentinels: list[tuple[str, int]] | None = None,
                 master_name: str = "llmgw", sentinel_password: str | None = None,
                 sentinel_tls: bool = False, timeout: float = 0.5, cluster: bool = False) -> None:
        self._url = url
        self._cluster = cluster
        self._options = parse_url(url)
        self._master_name = master_name
        self._sentinel: Sentinel | None = None
        if sentinels:
            # The sentinels' own connections: short timeouts, since each connect of a data
            # connection asks them first.
            sentinel_kwargs: dict[str, Any] = {
                "socket_timeout": max(timeout, 0.5), "socket_connect_timeout": max(timeout, 0.5),
                "password": sentinel_password, "ssl": sentinel_tls,
                "lib_name": None, "lib_version": None}
            self._sentinel = Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs)

    @property
    def url(self) -> str:
        """REDIS_URL: the channel reads its credentials, database and TLS from it."""
        return self._url

    @property
    def sentinel(self) -> bool:
        return self._sentinel is not None

    def channel(self, timeout: float) -> RedisChannel | ClusterChannel:
        """The request path's pipelined channel: to the primary, or to every cluster node."""
        if self._cluster:
            return ClusterChannel(self._url, timeout)
        return RedisChannel(self._url, timeout,
                            locate=self.primary if self._sentinel is not None else None)

    def subscriber(self) -> Redis:
        """A client for pub/sub, with no read timeout (a subscription waits as long as it
        must): on a cluster, a plain one to REDIS_URL's node."""
        if self._cluster:
            return Redis(connection_pool=BlockingConnectionPool.from_url(
                self._url, max_connections=4, timeout=None, decode_responses=True,
                socket_connect_timeout=1.0, health_check_interval=30, lib_name=None,
                lib_version=None), auto_close_connection_pool=True)
        return self.client(None)

    def client(self, timeout: float | None, *, pool_size: int = 64,
               decode_responses: bool = True) -> Redis:
        """A client with a bounded pool: a burst waits for one of `pool_size` connections
        instead of opening hundreds at once (each connect costs round trips)."""
        # One immediate retry, on connection errors only: it replaces a pooled connection that
        # a Redis restart or a failover left dead. A timeout is not retried: Redis is slow,
        # asking twice adds load.
        retry = Retry(NoBackoff(), 1, supported_errors=(ConnectionError,))
        kwargs: dict[str, Any] = dict(
            max_connections=pool_size, timeout=timeout, decode_responses=decode_responses,
            socket_timeout=timeout, socket_connect_timeout=max(timeout or 1.0, 0.5),
            health_check_interval=30, retry=retry, retry_on_error=[ConnectionError],
            lib_name=None, lib_version=None)
        if self._cluster:
            return RedisCluster.from_url(
                self._url, max_connections=pool_size, decode_responses=decode_responses,
                socket_timeout=timeout, socket_connect_timeout=max(timeout or 1.0, 0.5),
                health_check_interval=30, lib_name=None, lib_version=None)
        if self._sentinel is None:
            pool = BlockingConnectionPool.from_url(self._url, **kwargs)
        else:
            options = {k: v for k, v in self._options.items()
                       if k in ("username", "password", "db")}
            if self._options.get("connection_class") is not None:  # rediss://
                options["ssl"] = True
            pool = _SentinelBlockingPool(self._master_name, self._sentinel, **options, **kwargs)
        return Redis(connection_pool=pool, auto_close_connection_pool=True)

    async def primary(self) -> Address:
        """Where the request path's channel connects now: REDIS_URL's address, or the primary
        the sentinels name (MasterNotFoundError while none is healthy)."""
        if self._sentinel is not None:
            return await self._sentinel.discover_master(self._master_name)
        options = self._options
        return options.get("path") or (options.get("host", "127.0.0.1"),
                                       options.get("port", 6379))

    async def aclose(self) -> None:
        if self._sentinel is not None:
            await self._sentinel.aclose()


def link_from(settings: Any) -> RedisLink:
    """The link that the settings describe (REDIS_URL, REDIS_SENTINELS and their options)."""
    secret = settings.redis_sentinel_password
    password = (secret.get_secret_value() or None) if secret is not None else None
    return RedisLink(settings.redis_url, sentinels=parse_sentinels(settings.redis_sentinels),
                     master_name=settings.redis_master_name, sentinel_password=password,
                     sentinel_tls=settings.redis_sentinel_tls,
                     timeout=settings.redis_timeout_secs, cluster=settings.redis_cluster)
