"""ClusterChannel and the limiter on a real 3-shard Redis Cluster (redis-server processes on
loopback): each organisation's limits exact under bursts, organisations spread over the
shards, a stale slot map corrected by MOVED, scripts loaded on every shard."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from redis.asyncio.cluster import RedisCluster

from llmgw.admission.cluster_channel import ClusterChannel, first_key
from llmgw.admission.redis_limiter import RedisLimiter, counter_sets
from llmgw.tenancy.limits import Limits
from redis_topology import Cluster

ORGS = 30
LIMIT = 10
PER_ORG = 30  # admissions tried at once per organisation
OPEN = dict(rps=10**5, burst=10**6, rpm_limit=10**7, tpm_limit=10**10, max_concurrent=10**5,
            daily_token_limit=10**12, daily_request_limit=10**9, monthly_token_limit=10**12,
            max_context_tokens=8192, max_output_tokens=512)


def test_commands_route_by_their_first_key():
    assert first_key(("EVALSHA", "abc", 2, "k1", "k2", "arg")) == "k1"
    assert first_key(("EVALSHA", "abc", 0, "arg")) is None
    assert first_key(("GET", "k")) == "k" and first_key(("MGET", "a", "b")) == "a"
    assert first_key(("PING",)) is None and first_key(("SCRIPT", "LOAD", "x")) is None


def test_each_node_gets_the_credentials_of_the_url():
    """A password with URL delimiters in it reaches every node as it came."""
    channel = ClusterChannel("redis://user%3A1:p%40ss%3Aw%2Fd@seed:7000/0", timeout=1.0)
    node = channel._node(("10.0.0.2", 7001))
    assert node._address == ("10.0.0.2", 7001)
    assert node._hello == [("AUTH", "user:1", "p@ss:w/d")]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("cluster"), shards=3)
    yield cluster
    cluster.stop()


def _limiter(cluster: Cluster):
    client = RedisCluster.from_url(cluster.url)
    channel = ClusterChannel(cluster.url, timeout=2.0)
    limiter = RedisLimiter(client, channel, lease_ms=30_000, global_max_concurrent=100,
                           usage_retention_secs=86400, platform_sets=False)
    return client, channel, limiter


async def _burst(limiter: RedisLimiter, orgs: list[str], tag: str) -> Counter:
    limits = Limits(**{**OPEN, "max_concurrent": LIMIT})

    async def one(org: str, i: int):
        verdict = await limiter.admit(f"{tag}-{org}-{i}", counter_sets(org, limits, "k", Limits()),
                                      1, 0)
        return org if verdict.admitted else None
    got = await asyncio.gather(*(one(org, i) for org in orgs for i in range(PER_ORG)))
    return Counter(o for o in got if o is not None)


def test_each_organisation_admits_exactly_its_limit_across_the_shards(cluster):
    async def main():
        client, channel, limiter = _limiter(cluster)
        orgs = [f"org_{i:016x}" for i in range(ORGS)]
        admitted = await _burst(limiter, orgs, "first")
        assert admitted == Counter({org: LIMIT for org in orgs})
        again = await _burst(limiter, orgs, "second")  # leases held: nothing more
        assert again == Counter()
        await channel.aclose()
        await client.aclose()
    asyncio.run(main())
    per_node = cluster.keys_per_node()
    assert all(n > 0 for n in per_node), per_node  # organisations spread over every shard


def test_a_stale_slot_map_is_corrected_by_moved(cluster):
    async def main():
        client, channel, limiter = _limiter(cluster)
        await channel.send(("PING",))
        await channel.send(("SET", "llmgw:test:warm", "1"))  # reads the map
        channel._slots = [cluster_seed(cluster)] * len(channel._slots)  # every slot "moved"
        orgs = [f"org_{i:016x}" for i in range(100, 110)]
        admitted = await _burst(limiter, orgs, "moved")
        assert admitted == Counter({org: LIMIT for org in orgs})
        assert len(set(channel._slots)) == 3  # the map read again
        await channel.aclose()
        await client.aclose()
    asyncio.run(main())


def cluster_seed(cluster: Cluster) -> tuple[str, int]:
    return ("127.0.0.1", cluster.ports[0])
